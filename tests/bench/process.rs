//! The real binary as a process (scenarios 4, 5 and 7): `felhom-agent run` against a
//! simulated node in this process, with a notify socket the bench owns. Its live
//! threads are sampled from /proc/<pid>/task while it converges a drifted fleet, its
//! peak resident memory (`VmHWM`) is read after it has converged and run one more pass,
//! and its start-up is timed from spawn to `READY=1`.

use crate::rig::{guest, sim_options, Binary, Node, Proc, SIGUSR1};
use crate::table::{Row, Target, Unit};
use std::path::Path;
use std::time::{Duration, Instant};

/// What `run` did with a drifted fleet.
struct Run {
    most_threads: usize,
    names_at_most: Vec<String>,
    hwm_kib: u64,
    converged: bool,
    first_pass: Duration,
}

/// How often the thread count is sampled while the agent works.
const SAMPLE: Duration = Duration::from_millis(2);

/// `n` stopped containers, desired running with 2 cores: a config update and a start
/// each. Runs the agent until its first pass has reported, then asks for a second pass
/// (SIGUSR1) over the converged fleet, then stops it.
fn drifted_run(root: &Path, bin: &Binary, tag: &str, n: u32, max_parallel: u32) -> Run {
    let guests = (0..n).map(|i| guest(100 + i, false)).collect();
    let desired = serde_json::json!({"guests": (0..n)
        .map(|i| serde_json::json!({"vmid": 100 + i, "state": "running", "cores": 2}))
        .collect::<Vec<_>>()});
    let node = Node::new(
        root,
        tag,
        sim_options(Duration::from_millis(20)),
        guests,
        &desired,
        serde_json::json!({"max_parallel": max_parallel}),
    );
    let agent = Proc::run(&bin.path, &node.config, &node.dir);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut most = 0;
    let mut names = Vec::new();
    let mut sample = || {
        let now = agent.threads();
        if now > most {
            most = now;
            names = agent.thread_names();
        }
    };
    let started = Instant::now();
    agent
        .wait_notify("READY=1", deadline, SAMPLE, &mut sample)
        .expect("the agent reports READY=1");
    let first = agent.wait_notify("STATUS=pass", deadline, SAMPLE, &mut sample);
    let first_pass = started.elapsed();
    assert!(first.is_some(), "no first pass within the deadline");
    let converged = crate::rig::converged(&node.sim, &desired);
    agent.signal(SIGUSR1);
    let second = agent.wait_notify("STATUS=pass", deadline, SAMPLE, &mut sample);
    assert!(second.is_some(), "no second pass within the deadline");
    let hwm_kib = agent.status_kib("VmHWM");
    agent.stop();
    node.finish();
    Run {
        most_threads: most,
        names_at_most: names,
        hwm_kib,
        converged,
        first_pass,
    }
}

/// Thread names with counts: `lane worker x4, main, ...` (numbers dropped).
fn summarize(names: &[String]) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for n in names {
        let base = n.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end();
        *counts.entry(base.to_string()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(n, c)| if c > 1 { format!("{n} x{c}") } else { n })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Scenarios 4 and 5: threads and peak memory of `run` with `big` drifted guests, and
/// peak memory with `small`.
pub fn threads_and_memory(root: &Path, bin: &Binary, big: u32, small: u32) -> Vec<Row> {
    const MAX_PARALLEL: u32 = 4;
    // The agent's own threads (main, signals, journal, observer, loader), the two
    // config readers beside the observer, and minreq's helper thread per request in
    // flight (one per lane and one for the observer): the bound tests/it/cost.rs
    // guards, counted the same way.
    const CONSTANT: u32 = 12;
    let run = drifted_run(root, bin, "threads", big, MAX_PARALLEL);
    let small_run = drifted_run(root, bin, "memory-small", small, MAX_PARALLEL);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let note = |r: &Run| {
        if r.converged {
            String::new()
        } else {
            " (NOT converged by the first pass)".to_string()
        }
    };
    vec![
        Row::new(
            "4",
            format!(
                "threads: run, {big} drifted containers, max_parallel {MAX_PARALLEL}: most live{}",
                note(&run)
            ),
            Unit::Count,
            run.most_threads as f64,
        )
        .target(Target::AtMost(f64::from(MAX_PARALLEL + CONSTANT)))
        .detail(format!(
            "/proc/<pid>/task sampled every {} ms from spawn through a first pass of {:.1} s and a second; the target is max_parallel + {CONSTANT} (main, signals, journal, observer, loader; two config readers; minreq's unnamed helper thread per request in flight, one per lane and one for the observer, which takes its parent's name); at the peak: {}",
            SAMPLE.as_millis(),
            run.first_pass.as_secs_f64(),
            summarize(&run.names_at_most)
        )),
        Row::new(
            "5",
            format!("memory: run, {big} managed containers: peak RSS{}", note(&run)),
            Unit::MiB,
            mib(run.hwm_kib),
        )
        .target(Target::Below(8.0))
        .detail(
            "VmHWM from /proc/<pid>/status after the first pass (every guest drifted: a config update and a start each) and a second pass over the converged fleet (SIGUSR1)",
        ),
        Row::new(
            "5",
            format!(
                "memory: run, {small} managed containers: peak RSS{}",
                note(&small_run)
            ),
            Unit::MiB,
            mib(small_run.hwm_kib),
        )
        .target(Target::Below(4.0))
        .detail("as above"),
    ]
}

/// Scenario 7: spawn to `READY=1` with an empty journal (a fresh state directory each
/// run), median of `runs`; then the node binary's size, when it is there.
pub fn startup(root: &Path, bin: &Binary, runs: usize) -> Vec<Row> {
    let n = 50;
    let guests = (0..n).map(|i| guest(100 + i, true)).collect();
    let desired = serde_json::json!({"guests": (0..n)
        .map(|i| serde_json::json!({"vmid": 100 + i, "state": "running"}))
        .collect::<Vec<_>>()});
    let node = Node::new(
        root,
        "startup",
        sim_options(Duration::from_millis(20)),
        guests,
        &desired,
        serde_json::json!({}),
    );
    let mut times = Vec::new();
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(node.dir.join("state"));
        let t = Instant::now();
        let agent = Proc::run(&bin.path, &node.config, &node.dir);
        let ready = agent.wait_notify(
            "READY=1",
            Instant::now() + Duration::from_secs(30),
            Duration::from_secs(1),
            || {},
        );
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(ready.is_some(), "no READY=1");
        agent.stop();
    }
    node.finish();
    times.sort_by(f64::total_cmp);
    let mut rows = vec![Row::new(
        "7",
        "start-up: spawn to READY=1, empty journal",
        Unit::Millis,
        times[times.len() / 2],
    )
    .target(Target::Below(50.0))
    .detail(format!(
        "`run` with a fresh state directory and {n} guests desired, timed from spawn to the READY=1 datagram on the bench's NOTIFY_SOCKET; median of {runs} (fastest {:.1} ms, slowest {:.1} ms)",
        times[0],
        times[times.len() - 1]
    ))];
    if bin.node_build {
        let bytes = std::fs::metadata(&bin.path).unwrap().len();
        rows.push(
            Row::new(
                "7",
                "static node binary size",
                Unit::MiB,
                bytes as f64 / 1048576.0,
            )
            .target(Target::Below(3.0))
            .detail(format!(
                "{bytes} bytes, {}",
                bin.path
                    .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                    .unwrap_or(&bin.path)
                    .display()
            )),
        );
    }
    rows
}
