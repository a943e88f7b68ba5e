//! The benchmark: `./build.sh bench` (`cargo bench --bench bench`).
//!
//! Measures what issue 11 (performance) and issue 10 (passes to converge under faults)
//! set targets for, and prints one table: each scenario, its floor or target, the
//! measured figure, the ratio, and whether the target is met. The same goes to
//! `target/bench.json`. Scenarios, numbered as in the issue:
//! 1. convergence of 40 containers to start against its floor, and status polls per
//!    task ([`converge::waves`]);
//! 2. convergence of 400 guests with mixed actions against its floor ([`converge::mixed`]);
//! 3. a pass with nothing to do over 1000 managed and 1000 unmanaged containers
//!    ([`nodrift::no_drift`]);
//! 4. and 5. the live threads and peak memory of `felhom-agent run`
//!    ([`process::threads_and_memory`]);
//! 6. the journal: group commit and recovery ([`journal`]);
//! 7. start-up to READY=1 and the static binary's size ([`process::startup`]);
//! 8. passes to converge under seeded faults ([`faults::passes_to_converge`]).
//!
//! Nothing here asserts a time: a target not met is a row marked `NOT MET`. What is
//! asserted is that each scenario did what it measures (the fleet converged, the pass
//! had nothing to do), and the simulated node's audit of the agent's promise.
//!
//! `FELHOM_BENCH_ONLY=4,5,8` runs only those scenarios (`-` is the planner), and
//! writes `target/bench-partial.json` instead.
//!
//! `cargo test` runs it too (without `--bench`), with small sizes and nothing judged,
//! so that the benchmark itself is checked on every change; its JSON goes to
//! `target/bench-smoke.json`.

mod converge;
mod faults;
mod journal;
mod nodrift;
mod process;
mod rig;
mod table;

use std::path::PathBuf;
use std::time::{Duration, Instant};
use table::Row;

struct Sizes {
    waves: converge::Waves,
    mixed: converge::Mixed,
    no_drift: u32,
    no_drift_passes: usize,
    threads_guests: u32,
    memory_guests: u32,
    startup_runs: usize,
    fault: faults::Sizes,
    /// Seeded runs per fault setting.
    fault_runs: u64,
    /// Journal sizes to recover, each with its target in ms.
    records: &'static [(u64, Option<f64>)],
    /// Records each journal writer appends.
    appends: u32,
    plan_guests: u32,
    runs: usize,
}

const FULL: Sizes = Sizes {
    waves: converge::Waves {
        guests: 40,
        task: Duration::from_secs(1),
        max_parallel: 4,
        runs: 3,
    },
    mixed: converge::Mixed {
        guests: 400,
        task: Duration::from_millis(200),
        max_parallel: 8,
    },
    no_drift: 1000,
    no_drift_passes: 9,
    threads_guests: 1000,
    memory_guests: 50,
    startup_runs: 10,
    fault: faults::Sizes {
        guests: 16,
        spacing: faults::SPACING,
        max_passes: 12,
    },
    fault_runs: 5,
    records: &[(100_000, Some(300.0)), (1_000_000, Some(3000.0))],
    appends: 200,
    plan_guests: 10_000,
    runs: 5,
};

const SMOKE: Sizes = Sizes {
    waves: converge::Waves {
        guests: 8,
        task: Duration::from_millis(50),
        max_parallel: 4,
        runs: 1,
    },
    mixed: converge::Mixed {
        guests: 16,
        task: Duration::from_millis(20),
        max_parallel: 8,
    },
    no_drift: 20,
    no_drift_passes: 2,
    threads_guests: 10,
    memory_guests: 5,
    startup_runs: 1,
    fault: faults::Sizes {
        guests: 4,
        spacing: Duration::from_millis(100),
        max_passes: 3,
    },
    fault_runs: 2,
    records: &[(3_000, None)],
    appends: 10,
    plan_guests: 200,
    runs: 1,
};

/// The default fault seed; `FELHOM_BENCH_SEED` (decimal or 0x-hex) sets another.
const SEED: u64 = 0x5eed_0b0e;

fn seed() -> u64 {
    let Ok(v) = std::env::var("FELHOM_BENCH_SEED") else {
        return SEED;
    };
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("FELHOM_BENCH_SEED={v} is not a number"))
}

/// The first three fields of /proc/loadavg: how busy the machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=7"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Cargo's target directory: this executable is `<target>/<profile>/deps/bench-<hash>`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(PathBuf::from))
        .filter(|p| p.join("CACHEDIR.TAG").exists())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The scenarios `FELHOM_BENCH_ONLY` picks (`4,5,8`), or `None` for all.
fn only() -> Option<Vec<String>> {
    let v = std::env::var("FELHOM_BENCH_ONLY").ok()?;
    Some(v.split(',').map(|s| s.trim().to_string()).collect())
}

/// Runs one scenario (`what` begins with its numbers), unless `FELHOM_BENCH_ONLY`
/// leaves it out, saying on stderr how long it took.
fn step(what: &str, f: impl FnOnce() -> Vec<Row>) -> Vec<Row> {
    if let Some(only) = only() {
        let numbers = what.split(' ').next().unwrap_or("");
        if !numbers.split(',').any(|n| only.iter().any(|o| o == n)) {
            return Vec::new();
        }
    }
    eprintln!("bench: {what}...");
    let t = Instant::now();
    let rows = f();
    eprintln!("bench: {what}: {:.1} s", t.elapsed().as_secs_f64());
    rows
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let s = if full { FULL } else { SMOKE };
    table::self_check();
    felhom_agent::log::set_level(felhom_agent::log::Level::Error);
    let dir = rig::TempDir::new();
    let root = dir.0.as_path();
    let seed = seed();
    let bin = rig::binary(full);
    let date = felhom_agent::time::rfc3339(felhom_agent::time::unix_now());
    let command = if full {
        "cargo bench --bench bench"
    } else {
        "cargo test (smoke sizes)"
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_before = loadavg();
    let started = Instant::now();

    let mut rows = Vec::new();
    rows.extend(step("1 convergence", || converge::waves(root, &s.waves)));
    rows.extend(step("2 convergence at scale", || {
        converge::mixed(root, &s.mixed)
    }));
    rows.extend(step("3 no-drift pass", || {
        nodrift::no_drift(root, s.no_drift, s.no_drift_passes)
    }));
    rows.extend(step("4,5 threads and memory", || {
        process::threads_and_memory(root, &bin, s.threads_guests, s.memory_guests)
    }));
    rows.extend(step("6 journal", || {
        let mut rows = Vec::new();
        for (records, target) in s.records {
            rows.extend(journal::recovery(root, *records, s.runs, *target));
        }
        rows.extend(journal::open_at_threshold(root, s.runs.max(3)));
        rows.extend(journal::appends(root, 64, s.appends));
        rows
    }));
    rows.extend(step("7 start-up", || {
        process::startup(root, &bin, s.startup_runs)
    }));
    let mut fault_log = Vec::new();
    rows.extend(step("8 passes under faults", || {
        let seeds: Vec<u64> = (0..s.fault_runs).map(|i| seed.wrapping_add(i)).collect();
        // Both settings side by side: most of a run is waiting for its next pass.
        let done: Vec<(Row, Vec<String>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = [&faults::SOME, &faults::MANY]
                .into_iter()
                .map(|setting| {
                    let (fault, seeds) = (&s.fault, &seeds);
                    std::thread::Builder::new()
                        .name(format!("bench faults 1 in {}", setting.error_one_in))
                        .spawn_scoped(scope, move || {
                            faults::passes_to_converge(root, setting, fault, seeds)
                        })
                        .unwrap()
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut rows = Vec::new();
        for (row, log) in done {
            fault_log.extend(log);
            rows.push(row);
        }
        rows
    }));
    rows.extend(step("- planner", || {
        vec![converge::planner(s.plan_guests, s.runs.max(3))]
    }));
    table::label(&mut rows);

    let took = started.elapsed();
    let load_after = loadavg();
    let header = format!(
        "felhom-agent bench ({}), {date}, commit {}, `{command}`; {cpus} CPUs, load average {load_before} before, {load_after} after; {:.0} s; agent binary for 4, 5, 7: {}; fault seed {seed:#x}",
        if full { "full" } else { "smoke" },
        commit(),
        took.as_secs_f64(),
        bin.label,
    );
    println!("{header}\n");
    print!("{}", table::render(&rows, full));
    println!("\nnotes:\n{}", table::notes(&rows));
    println!("passes under faults (scenario 8):");
    for line in &fault_log {
        println!("{line}");
    }
    let met = rows.iter().filter(|r| r.met() == Some(true)).count();
    let judged = rows.iter().filter(|r| r.met().is_some()).count();
    if full {
        println!("\ntargets met: {met} of {judged}");
    }
    let json = serde_json::json!({
        "mode": if full { "full" } else { "smoke" },
        "date": date,
        "commit": commit(),
        "command": command,
        "cpus": cpus,
        "load_average": {"before": load_before, "after": load_after},
        "seconds": took.as_secs_f64(),
        "agent_binary": {"path": bin.path, "what": bin.label, "node_build": bin.node_build},
        "fault_seed": seed,
        "fault_passes": fault_log,
        "rows": rows.iter().map(|r| table::json(r, full)).collect::<Vec<_>>(),
    });
    // A partial run (FELHOM_BENCH_ONLY) never overwrites a whole one.
    let out = target_dir().join(match (full, only().is_some()) {
        (_, true) => "bench-partial.json",
        (true, false) => "bench.json",
        (false, false) => "bench-smoke.json",
    });
    std::fs::write(&out, serde_json::to_string_pretty(&json).unwrap() + "\n").unwrap();
    println!("written: {}", out.display());
}
