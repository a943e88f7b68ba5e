//! `felhom-agent demo`: the whole agent against an embedded simulated node.
//!
//! It starts the simulated node in-process on loopback with a small drifted fleet, writes
//! a real config, token file and desired state into a temporary state dir, and drives the
//! real engine (client, journal, lanes) over HTTP: the plan, each action as it runs, the
//! converged result; then it drifts one guest by hand and shows the next pass repair it.

use crate::agent::{self, Agent};
use crate::cancel::CancelSource;
use crate::engine::{Engine, PassReport, Progress};
use crate::exit::ExitCode;
use crate::lanes::Outcome;
use crate::sim::{PowerState, Sim, SimGuest, SimOptions};
use crossbeam_channel::Receiver;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DESIRED: &str = r#"{
  "version": 1,
  "guests": [
    {"vmid": 101, "name": "web1", "state": "running", "cores": 2, "memory": 1024, "swap": 512,
     "description": "web frontend", "onboot": true, "tags": ["prod", "web"]},
    {"vmid": 102, "name": "web2", "state": "running", "cores": 2, "memory": 1024, "swap": 512,
     "description": "web frontend", "onboot": true, "tags": ["prod", "web"]},
    {"vmid": 103, "name": "db", "state": "running", "cores": 4, "memory": 4096, "swap": 1024,
     "onboot": true, "tags": ["db", "prod"]},
    {"vmid": 104, "name": "batch", "state": "stopped", "cores": 1, "memory": 512},
    {"vmid": 105, "name": "cache", "state": "running", "memory": 2048, "tags": ["prod"]},
    {"vmid": 106, "name": "backup-target", "state": "running"},
    {"vmid": 107, "name": "old-image", "state": "running"},
    {"vmid": 201, "name": "app", "type": "qemu", "state": "running", "cores": 2, "memory": 2048},
    {"vmid": 202, "name": "win", "type": "qemu", "state": "running", "memory": 4096,
     "tags": ["prod"]},
    {"vmid": 203, "name": "lab", "type": "qemu", "state": "running"}
  ]
}
"#;

/// The fleet as found: most guests drifted in some way, one locked by a backup, one a
/// template, one (108) not named by the desired state at all; and three VMs: one running
/// whose new cores can only wait for a restart, one stopped, one paused.
fn fleet() -> Vec<SimGuest> {
    let g = |vmid, name: &str, running, cores, memory, swap| {
        let mut g = SimGuest::new(vmid, "pve1");
        g.hostname = Some(name.to_string());
        g.status = if running {
            PowerState::Running
        } else {
            PowerState::Stopped
        };
        g.cores = cores;
        g.memory = Some(memory);
        g.swap = Some(swap);
        g
    };
    let mut web1 = g(101, "web1", false, Some(1), 512, 512);
    web1.tags = Some("web".into());
    let mut web2 = g(102, "web2", true, Some(2), 1024, 512);
    web2.description = Some("web frontend\n".into());
    web2.onboot = Some(true);
    web2.tags = Some("prod;web".into());
    let db = g(103, "db", false, Some(2), 2048, 512);
    let batch = g(104, "batch", true, Some(1), 512, 512);
    let cache = g(105, "cache", true, None, 1024, 0);
    let mut backup = g(106, "backup-target", false, Some(1), 512, 512);
    backup.lock = Some("backup".into());
    let mut template = g(107, "old-image", false, Some(1), 512, 512);
    template.template = true;
    let unmanaged = g(108, "someone-elses", true, Some(8), 8192, 0);
    let vm = |vmid, name: &str| SimGuest::vm(vmid, "pve1").with_config("name", name);
    let app = vm(201, "app").running();
    let win = vm(202, "win");
    let lab = vm(203, "lab").paused();
    vec![
        web1, web2, db, batch, cache, backup, template, unmanaged, app, win, lab,
    ]
}

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let dir = std::env::temp_dir().join(format!(
            "felhom-demo-{}-{}",
            std::process::id(),
            crate::time::unix_now()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn main(args: &[String]) -> ExitCode {
    if let Some(a) = args.first() {
        eprintln!("felhom-agent demo takes no arguments, got {a:?}");
        return ExitCode::Usage;
    }
    // The demo prints its own account of every action; the agent's log lines would say
    // the same again on stderr. Warnings and errors still show.
    crate::log::set_level(crate::log::Level::Warn);
    match run() {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::Failure
        }
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let sim = Sim::start(SimOptions {
        task_duration: Duration::from_millis(400),
        shutdown_duration: Duration::from_millis(600),
        ..SimOptions::default()
    })?;
    for g in fleet() {
        sim.add_guest(g);
    }
    let dir = TempDir::new()?;
    let secret_file = dir.0.join("token.secret");
    write_private(&secret_file, sim.token_secret())?;
    std::fs::write(dir.0.join("desired.json"), DESIRED)?;
    let config_path = dir.0.join("config.json");
    let config = serde_json::json!({
        "api_url": sim.url(),
        "node": "pve1",
        "token_id": sim.token_id(),
        "token_secret_file": secret_file,
        "desired_file": dir.0.join("desired.json"),
        "state_dir": dir.0.join("state"),
        "max_parallel": 4,
        "shutdown_timeout_secs": 10,
    });
    std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;

    println!("felhom-agent demo");
    println!("==================");
    println!(
        "simulated Proxmox node pve1 at {} with {} containers and {} virtual machines",
        sim.url(),
        sim.guests().iter().filter(|g| !g.is_vm()).count(),
        sim.guests().iter().filter(|g| g.is_vm()).count()
    );
    println!("state dir {}", dir.0.display());
    println!();

    let loaded = agent::load(&config_path)?;
    let mut cancel = CancelSource::new();
    let agent = Agent::start(&loaded, &cancel.token())?;
    let journal = agent.journal.clone();
    agent.recover(&cancel.token())?;
    let (progress_tx, progress) = crossbeam_channel::unbounded();
    let mut engine = agent.engine(&loaded.config.live, cancel.token(), Some(progress_tx));
    drop(agent);

    println!("1. the plan (read-only): what differs from the desired state");
    let (plan, obs) = engine.plan(&loaded.desired)?;
    indent(&crate::plan::render(&plan, &obs.names));

    println!("2. one pass: each guest on its own lane, at most 4 tasks at once");
    let report = pass(&mut engine, &loaded.desired, &progress, t0)?;
    summary(&report);

    println!(
        "3. the next pass: nothing left to change; VM 201's new cores wait in its pending section \
         for a restart, reported and not sent again"
    );
    let (plan, obs) = engine.plan(&loaded.desired)?;
    indent(&crate::plan::render(&plan, &obs.names));
    let mutations = sim.mutations().len();
    let report = pass(&mut engine, &loaded.desired, &progress, t0)?;
    println!(
        "   mutations the node saw: {} before this pass, {} after",
        mutations,
        sim.mutations().len()
    );
    summary(&report);

    println!("4. someone edits 103 by hand: memory 4096 -> 256, and stops it");
    sim.update_guest(103, |g| {
        g.memory = Some(256);
        g.status = PowerState::Stopped;
    });
    let (plan, obs) = engine.plan(&loaded.desired)?;
    indent(&crate::plan::render(&plan, &obs.names));
    let report = pass(&mut engine, &loaded.desired, &progress, t0)?;
    summary(&report);

    println!("5. what the node looks like now");
    for g in sim.guests() {
        let state = match (g.status, g.is_vm()) {
            (PowerState::Running, true) => format!("{:?}", g.qmp).to_lowercase(),
            (PowerState::Running, false) => "running".into(),
            (PowerState::Stopped, _) => "stopped".into(),
        };
        println!(
            "   {} {} {:<14} {:<8} cores {:<9} memory {:<5} swap {:<5} tags {}",
            g.vmid,
            if g.is_vm() { "VM" } else { "CT" },
            g.hostname
                .clone()
                .or_else(|| g.other.get("name").cloned())
                .unwrap_or_default(),
            state,
            g.cores.map_or("unlimited".into(), |c| c.to_string()),
            g.memory.unwrap_or(512),
            g.swap.unwrap_or(0),
            g.tags.clone().unwrap_or_default()
        );
    }
    println!();
    println!(
        "the node saw {} requests, {} of them mutations, {} on guest 108 (unmanaged); at most {} tasks ran at once",
        sim.requests().len(),
        sim.mutations().len(),
        sim.requests().iter().filter(|r| r.vmid == Some(108)).count(),
        sim.max_concurrent_tasks()
    );
    let audit = sim.audit();
    println!(
        "the node's audit of {} mutating requests: {}",
        audit.checked,
        if audit.is_clean() {
            "no guest ever had two actions in flight, no intent was sent twice".to_string()
        } else {
            audit.to_string()
        }
    );
    engine.shutdown(Instant::now() + Duration::from_secs(5), || cancel.cancel());
    println!(
        "journal: {} records, nothing in flight: {}",
        journal.records_written(),
        journal.in_flight().is_empty()
    );
    journal.close()?;
    sim.shutdown();
    println!("done in {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Runs one pass, printing each action's progress as it happens, in order, from this
/// thread.
fn pass(
    engine: &mut Engine,
    desired: &crate::desired::DesiredState,
    progress: &Receiver<Progress>,
    t0: Instant,
) -> Result<PassReport, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (_plan, done) = engine.start_pass(desired);
    let mut report = done;
    while report.is_none() {
        crossbeam_channel::select! {
            recv(progress) -> p => {
                if let Ok(p) = p {
                    print_progress(p, t0);
                }
            }
            recv(engine.results()) -> r => {
                let r = r.map_err(|_| "lanes ended early".to_string())?;
                report = engine.on_result(r);
            }
            recv(engine.next_wake().map_or(crossbeam_channel::never(), crossbeam_channel::at)) -> _ => {
                report = engine.on_wake().pop();
            }
            recv(crossbeam_channel::at(deadline)) -> _ => return Err("pass took over a minute".into()),
        }
    }
    while let Ok(p) = progress.try_recv() {
        print_progress(p, t0);
    }
    Ok(report.expect("loop ends with a report"))
}

fn indent(text: &str) {
    for line in text.lines() {
        println!("   {line}");
    }
    println!();
}

fn summary(r: &PassReport) {
    println!("   {}", r.summary());
    println!();
}

fn print_progress(p: Progress, t0: Instant) {
    let at = format!("{:>5.1}s", t0.elapsed().as_secs_f64());
    match p {
        Progress::Started(a) => {
            println!("   {at} {} {:<10} started   {}", a.vmid, a.kind, a.reason)
        }
        Progress::TaskRunning(a, upid) => {
            println!("   {at} {} {:<10} task      {upid}", a.vmid, a.kind)
        }
        Progress::Finished(a, o) => {
            let mark = match o {
                Outcome::Applied { .. } | Outcome::Converged(_) => "done",
                _ => "NOT DONE",
            };
            println!("   {at} {} {:<10} {mark:<9} {o}", a.vmid, a.kind)
        }
    }
}
