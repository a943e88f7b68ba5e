//! The benchmark: `./build.sh bench` (`cargo bench --bench bench`).
//!
//! Measures what the issues set targets for, and prints one line per number:
//! journal recovery of 100,000 and 1,000,000 records, the journal's open at its
//! compaction threshold, durable appends from one writer and from 64 (group commit),
//! the planner over 10,000 guests, one pass over 50 drifted guests against the
//! simulated node, and the resident memory and thread count of a running agent.
//!
//! Run by `cargo test` too (without `--bench`), with small sizes, so that the benchmark
//! itself is checked on every change; only `--bench` runs the full sizes.

use felhom_agent::cancel::CancelSource;
use felhom_agent::desired::{DesiredState, GuestSpec, RunState};
use felhom_agent::plan::{self, Actual, ActualGuest, ActualSpec, PlanSettings};
use felhom_agent::pve::Vmid;
use felhom_agent::sim::{PowerState, Sim, SimGuest, SimOptions};
use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod journal;

struct Sizes {
    /// Journal sizes to recover, each with its target.
    records: &'static [(u64, Option<&'static str>)],
    /// Records each journal writer appends.
    appends: u32,
    plan_guests: u32,
    pass_guests: u32,
    rss_guests: u32,
    runs: usize,
}

const FULL: Sizes = Sizes {
    records: &[(100_000, Some("< 300 ms")), (1_000_000, Some("< 3000 ms"))],
    appends: 200,
    plan_guests: 10_000,
    pass_guests: 50,
    rss_guests: 200,
    runs: 5,
};

const SMOKE: Sizes = Sizes {
    records: &[(3_000, None)],
    appends: 10,
    plan_guests: 200,
    pass_guests: 5,
    rss_guests: 10,
    runs: 1,
};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full { FULL } else { SMOKE };
    felhom_agent::log::set_level(felhom_agent::log::Level::Error);
    let dir = TempDir::new();
    println!(
        "felhom-agent bench ({})",
        if full { "full" } else { "smoke" }
    );
    let mut measures = Vec::new();
    for (records, target) in sizes.records {
        measures.extend(journal::recovery(&dir.0, *records, sizes.runs, *target));
    }
    measures.extend(journal::open_at_threshold(&dir.0, sizes.runs.max(3)));
    measures.extend(journal::appends(&dir.0, 64, sizes.appends));
    for m in &measures {
        println!("{m}");
    }
    planner(&sizes);
    pass_against_sim(&dir.0, &sizes);
    agent_memory(&dir.0, &sizes);
    binary_size();
    println!("bench: 1 passed, 0 failed");
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("felhom-bench-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn vmid(n: u32) -> Vmid {
    Vmid::new(n.into()).unwrap()
}

fn planner(s: &Sizes) {
    let mut desired = DesiredState::default();
    let mut observed = Actual::default();
    for i in 0..s.plan_guests {
        let v = vmid(100 + i);
        let mut spec = GuestSpec::new(v);
        spec.state = Some(if i % 2 == 0 {
            RunState::Running
        } else {
            RunState::Stopped
        });
        spec.memory = Some(1024);
        spec.cores = Some(2);
        spec.tags = Some(vec!["prod".into(), "web".into()]);
        spec.description = Some("bench guest\n".into());
        desired.guests.insert(v, spec);
        observed.local.insert(
            v,
            ActualGuest {
                tags: None,
                kind: felhom_agent::pve::GuestKind::Lxc,
                vm_power: None,
                vmid: v,
                name: None,
                running: i % 3 == 0,
                lock: None,
                template: false,
                spec: Ok(ActualSpec {
                    cores: Some(1 + i % 3),
                    memory: Some(512 + u64::from(i % 2) * 512),
                    tags: Some("prod;web".into()),
                    description: Some("bench guest\n".into()),
                    digest: "0123456789abcdef0123456789abcdef01234567".into(),
                    ..ActualSpec::empty(felhom_agent::pve::GuestKind::Lxc)
                }),
            },
        );
    }
    let holds = BTreeMap::new();
    let settings = PlanSettings::default();
    let mut times = Vec::new();
    let mut actions = 0;
    for _ in 0..s.runs.max(3) {
        let t = Instant::now();
        let p = plan::plan(&desired, &observed, &holds, &settings);
        times.push(t.elapsed());
        actions = p.actions.len();
    }
    println!(
        "planner: {} guests -> {} actions: median {}",
        s.plan_guests,
        actions,
        ms(median(times))
    );
}

fn fleet(n: u32) -> (Vec<SimGuest>, String) {
    let mut guests = Vec::new();
    let mut specs = Vec::new();
    for i in 0..n {
        let v = 100 + i;
        let mut g = SimGuest::new(v, "pve1");
        g.status = if i % 2 == 0 {
            PowerState::Stopped
        } else {
            PowerState::Running
        };
        g.cores = Some(1);
        g.memory = Some(512);
        guests.push(g);
        specs.push(serde_json::json!({"vmid": v, "state": "running", "cores": 2, "memory": 1024}));
    }
    (guests, serde_json::json!({"guests": specs}).to_string())
}

/// Writes config, token and desired state for a sim; returns the config path.
fn write_config(dir: &Path, sim: &Sim, desired: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let secret = dir.join("token");
    std::fs::write(&secret, sim.token_secret()).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(dir.join("desired.json"), desired).unwrap();
    let config = serde_json::json!({
        "api_url": sim.url(), "node": "pve1", "token_id": sim.token_id(),
        "token_secret_file": secret, "desired_file": dir.join("desired.json"),
        "state_dir": dir.join("state"), "interval_secs": 3600,
    });
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

fn pass_against_sim(dir: &Path, s: &Sizes) {
    let sim = Sim::start(SimOptions {
        task_duration: Duration::from_millis(100),
        ..SimOptions::default()
    })
    .unwrap();
    let (guests, desired) = fleet(s.pass_guests);
    for g in guests {
        sim.add_guest(g);
    }
    let config = write_config(&dir.join("pass"), &sim, &desired);
    let loaded = felhom_agent::agent::load(&config).unwrap();
    let mut cancel = CancelSource::new();
    let agent = felhom_agent::agent::Agent::start(&loaded, &cancel.token()).unwrap();
    let journal = agent.journal.clone();
    let mut engine = agent.engine(&loaded.config.live, cancel.token(), None);
    let t = Instant::now();
    let (_, report) = engine.run_pass(&loaded.desired, Instant::now() + Duration::from_secs(120));
    let took = t.elapsed();
    assert!(report.ok(), "{report:?}");
    let requests = sim.requests().len();
    let t = Instant::now();
    let (_, second) = engine.run_pass(&loaded.desired, Instant::now() + Duration::from_secs(60));
    let idle = t.elapsed();
    assert_eq!(second.planned, 0);
    println!(
        "pass: {} drifted guests, {} actions (tasks of 100 ms, max_parallel 4): {} with {} requests; in-sync pass {} with {} requests",
        s.pass_guests,
        report.applied,
        ms(took),
        requests,
        ms(idle),
        sim.requests().len() - requests
    );
    engine.shutdown(Instant::now(), || cancel.cancel());
    journal.close().unwrap();
    sim.shutdown();
}

/// Starts the real agent against a sim, waits for its first pass, and reads its
/// memory high-water mark and thread count from /proc.
fn agent_memory(dir: &Path, s: &Sizes) {
    let sim = Sim::start(SimOptions {
        task_duration: Duration::from_millis(50),
        ..SimOptions::default()
    })
    .unwrap();
    let (guests, desired) = fleet(s.rss_guests);
    for g in guests {
        sim.add_guest(g);
    }
    let dir = dir.join("rss");
    let config = write_config(&dir, &sim, &desired);
    let sock_path = dir.join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut passes = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while passes < 2 && Instant::now() < deadline {
        let n = sock.recv(&mut buf).expect("agent reports its passes");
        let msg = String::from_utf8_lossy(&buf[..n]);
        if msg.starts_with("STATUS=pass") {
            passes += 1;
            if passes == 1 {
                // A second pass over the converged fleet.
                signal(child.id(), SIGUSR1);
            }
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_string())
            .unwrap_or_default()
    };
    println!(
        "agent: {} guests, after two passes: VmHWM {}, VmRSS {}, {} threads (lanes are retired after 60 s idle)",
        s.rss_guests,
        field("VmHWM:"),
        field("VmRSS:"),
        field("Threads:")
    );
    signal(child.id(), SIGTERM);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    sim.shutdown();
}

const SIGUSR1: i32 = 10;
const SIGTERM: i32 = 15;

extern "C" {
    // From the C library std already links.
    fn kill(pid: i32, sig: i32) -> i32;
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child we started, with a valid signal number.
    assert_eq!(unsafe { kill(pid as i32, sig) }, 0);
}

fn binary_size() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-musl/release/felhom-agent");
    match std::fs::metadata(&p) {
        Ok(m) => println!(
            "static binary: {} bytes ({:.2} MiB) at {}",
            m.len(),
            m.len() as f64 / 1048576.0,
            p.display()
        ),
        Err(_) => println!("static binary: not built (run ./build.sh)"),
    }
}
