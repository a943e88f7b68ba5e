//! A test rig: a simulated node, a temp dir with a real config, token file and desired
//! state, and ways to drive the real engine in-process or the real binary.

use super::config::TempDir;
use felhom_agent::agent::{self, Agent};
use felhom_agent::cancel::CancelSource;
use felhom_agent::engine::Engine;
use felhom_agent::journal::Journal;
use felhom_agent::sim::{PowerState, Sim, SimGuest, SimOptions};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Rig {
    pub sim: Sim,
    pub dir: TempDir,
    pub config_path: PathBuf,
}

/// Fast tasks, so a pass over many guests stays well under a second or two.
pub fn fast_sim() -> SimOptions {
    SimOptions {
        task_duration: Duration::from_millis(30),
        shutdown_duration: Duration::from_millis(40),
        ha_task_duration: Duration::from_millis(5),
        ha_apply_delay: Duration::from_millis(30),
        lock_wait: Duration::from_millis(200),
        ..SimOptions::default()
    }
}

pub fn guest(vmid: u32, running: bool) -> SimGuest {
    let mut g = SimGuest::new(vmid, "pve1");
    g.hostname = Some(format!("ct{vmid}"));
    g.status = if running {
        PowerState::Running
    } else {
        PowerState::Stopped
    };
    g.cores = Some(1);
    g.memory = Some(512);
    g.swap = Some(512);
    g
}

impl Rig {
    /// A rig whose config points at the sim; `extra` keys override the defaults.
    pub fn new(
        tag: &str,
        opts: SimOptions,
        guests: Vec<SimGuest>,
        desired: &str,
        extra: serde_json::Value,
    ) -> Rig {
        let sim = Sim::start(opts).expect("sim starts");
        for g in guests {
            sim.add_guest(g);
        }
        let dir = TempDir::new(tag);
        let secret = dir.write("token.secret", sim.token_secret(), 0o600);
        dir.write("desired.json", desired, 0o644);
        let mut config = serde_json::json!({
            "api_url": sim.url(),
            "node": "pve1",
            "token_id": sim.token_id(),
            "token_secret_file": secret,
            "desired_file": dir.path().join("desired.json"),
            "state_dir": dir.path().join("state"),
            "interval_secs": 3600,
            "shutdown_timeout_secs": 5,
            "task_timeout_secs": 40,
        });
        // `extra` overrides keys; a null removes one.
        for (k, v) in extra.as_object().into_iter().flatten() {
            if v.is_null() {
                config.as_object_mut().unwrap().remove(k);
            } else {
                config[k] = v.clone();
            }
        }
        let config_path = dir.write("config.json", config.to_string(), 0o644);
        Rig {
            sim,
            dir,
            config_path,
        }
    }

    /// The most common rig: guest 101, stopped, desired running; default config.
    pub fn one_stopped_guest(tag: &str) -> Rig {
        let desired = r#"{"guests": [{"vmid": 101, "state": "running"}]}"#;
        Rig::new(
            tag,
            fast_sim(),
            vec![guest(101, false)],
            desired,
            serde_json::json!({}),
        )
    }

    pub fn write_desired(&self, desired: &str) {
        self.dir.write("desired.json", desired, 0o644);
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The real engine, journal and cancel source, built the way `once` builds them.
    pub fn engine(&self) -> (Engine, Journal, CancelSource) {
        let loaded = agent::load(&self.config_path).expect("config loads");
        let cancel = CancelSource::new();
        let built = Agent::start(&loaded, &cancel.token()).expect("the agent starts");
        let engine = built.engine(&loaded.config.live, cancel.token(), None);
        let journal = built.journal;
        (engine, journal, cancel)
    }

    pub fn desired(&self) -> felhom_agent::desired::DesiredState {
        agent::load(&self.config_path)
            .expect("config loads")
            .desired
    }

    /// Runs the real binary with `--config` and waits for it (bounded by the test
    /// harness' own timeout through the binary's task and pass deadlines).
    pub fn bin(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .expect("binary runs")
    }
}

/// Runs one pass through the engine and waits for it.
pub fn pass(
    engine: &mut Engine,
    desired: &felhom_agent::desired::DesiredState,
) -> felhom_agent::engine::PassReport {
    let (_plan, report) = engine.run_pass(desired, Instant::now() + Duration::from_secs(30));
    report
}

/// Feeds a pass opened with `Engine::start_pass` its results (and its stage wake-ups)
/// until it ends, within 30 s.
pub fn finish_pass(engine: &mut Engine) -> felhom_agent::engine::PassReport {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let wake = engine.next_wake().map_or(deadline, |w| w.min(deadline));
        match engine.results().recv_deadline(wake) {
            Ok(r) => {
                if let Some(report) = engine.on_result(r) {
                    return report;
                }
            }
            Err(_) => {
                assert!(Instant::now() < deadline, "the pass did not end");
                if let Some(report) = engine.on_wake().pop() {
                    return report;
                }
            }
        }
    }
}

/// Whether guest `vmid` runs on the node.
pub fn running(sim: &Sim, vmid: u32) -> bool {
    sim.guest(vmid).expect("the guest exists").status == PowerState::Running
}

/// Fails with the node's audit when it found a violation (a clearer message than the
/// panic of the `Sim` dropping).
pub fn assert_audit_clean(sim: &Sim) {
    let audit = sim.audit();
    assert!(audit.is_clean(), "{audit}");
}

/// Points the rig's config at `url` (a proxy in front of the node) instead of the
/// simulated node.
pub fn point_config_at(rig: &Rig, url: &str) {
    let text = std::fs::read_to_string(&rig.config_path).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    cfg["api_url"] = url.into();
    std::fs::write(&rig.config_path, cfg.to_string()).unwrap();
}

/// The mutating requests the node saw, as `METHOD path` lines for one guest.
pub fn mutations_of(sim: &Sim, vmid: u32) -> Vec<String> {
    sim.mutations()
        .into_iter()
        .filter(|r| r.vmid == Some(vmid))
        .map(|r| format!("{} {}", r.method, r.path.rsplit('/').next().unwrap_or("")))
        .collect()
}

/// A number unique within this test process, for file names.
pub fn unique() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// `count` finished ops on other guests (vmids 1000 up), journaled by eight threads the
/// way the agent journals them: a busy day on a large node. Returns how many times the
/// journal was compacted meanwhile.
pub fn busy_day(
    state_dir: &std::path::Path,
    options: felhom_agent::journal::JournalOptions,
    count: usize,
) -> u64 {
    use felhom_agent::action::ActionKind;

    let journal = felhom_agent::journal::Journal::open(state_dir, options).expect("journal opens");
    const WRITERS: usize = 8;
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let journal = &journal;
            std::thread::Builder::new()
                .name(format!("busy day {w}"))
                .spawn_scoped(s, move || {
                    for i in (w..count).step_by(WRITERS) {
                        let action =
                            super::journal::action(1000 + (i % 500) as u64, ActionKind::Start);
                        let op = journal.begin(&action).unwrap();
                        journal.succeeded(op).unwrap();
                    }
                })
                .expect("writer starts");
        }
    });
    let compactions = journal.compactions();
    journal.close().unwrap();
    compactions
}
