//! What the scenarios are built from: a simulated node with a real config, token file
//! and desired state in a temp dir; the real engine driven in-process (as `once`
//! builds it); and the real binary as a process, with a notify socket the bench owns,
//! its exit waited on with a deadline, and its threads and memory read from /proc.

use crossbeam_channel::Receiver;
use felhom_agent::agent::{self, Agent};
use felhom_agent::cancel::CancelSource;
use felhom_agent::desired::DesiredState;
use felhom_agent::engine::{Engine, PassReport};
use felhom_agent::journal::Journal;
use felhom_agent::sim::{PowerState, Sim, SimGuest, SimOptions};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
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

/// Task times as short as the scenario allows; the rest as the tests' rig has them.
pub fn sim_options(task: Duration) -> SimOptions {
    SimOptions {
        task_duration: task,
        shutdown_duration: task,
        ha_task_duration: Duration::from_millis(5),
        ha_apply_delay: Duration::from_millis(30),
        lock_wait: Duration::from_millis(200),
        ..SimOptions::default()
    }
}

/// A container with 1 core, 512 MiB memory and 512 MiB swap.
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

/// A simulated node and a config dir pointing at it.
pub struct Node {
    pub sim: Sim,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Node {
    /// `extra` keys override the config's defaults (`interval_secs` is 3600: passes
    /// run when the bench says).
    pub fn new(
        root: &Path,
        tag: &str,
        opts: SimOptions,
        guests: Vec<SimGuest>,
        desired: &serde_json::Value,
        extra: serde_json::Value,
    ) -> Node {
        let sim = Sim::start(opts).expect("the simulated node starts");
        for g in guests {
            sim.add_guest(g);
        }
        let dir = root.join(tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("token");
        std::fs::write(&secret, sim.token_secret()).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(dir.join("desired.json"), desired.to_string()).unwrap();
        let mut config = serde_json::json!({
            "api_url": sim.url(), "node": "pve1", "token_id": sim.token_id(),
            "token_secret_file": secret, "desired_file": dir.join("desired.json"),
            "state_dir": dir.join("state"), "interval_secs": 3600,
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            config[k] = v.clone();
        }
        let path = dir.join("config.json");
        std::fs::write(&path, config.to_string()).unwrap();
        Node {
            sim,
            dir,
            config: path,
        }
    }

    /// The real engine, its journal and cancel source, and the desired state, built
    /// the way `felhom-agent once` builds them.
    pub fn engine(&self) -> InProcess {
        let loaded = agent::load(&self.config).expect("the config loads");
        let cancel = CancelSource::new();
        let built = Agent::start(&loaded, &cancel.token()).expect("the agent starts");
        let engine = built.engine(&loaded.config.live, cancel.token(), None);
        InProcess {
            engine: Some(engine),
            journal: built.journal,
            cancel,
            desired: loaded.desired,
        }
    }

    /// Ends the node; its audit of the agent's promise runs on the way (a violation
    /// panics, and fails the bench).
    pub fn finish(self) {
        let audit = self.sim.finish();
        assert!(audit.is_clean(), "{audit}");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The engine in this process.
pub struct InProcess {
    engine: Option<Engine>,
    pub journal: Journal,
    cancel: CancelSource,
    pub desired: DesiredState,
}

impl InProcess {
    /// One whole pass, waited for (at most `limit`); returns the report and how long
    /// it took.
    pub fn pass(&mut self, limit: Duration) -> (PassReport, Duration) {
        let engine = self.engine.as_mut().expect("not closed");
        let t = Instant::now();
        let (_, report) = engine.run_pass(&self.desired, Instant::now() + limit);
        (report, t.elapsed())
    }

    /// Stops the lanes and closes the journal.
    pub fn close(mut self) {
        if let Some(engine) = self.engine.take() {
            let cancel = &mut self.cancel;
            engine.shutdown(Instant::now(), || cancel.cancel());
        }
        self.journal.close().unwrap();
    }
}

/// Which agent binary the process scenarios run.
pub struct Binary {
    pub path: PathBuf,
    /// What it is, for the table.
    pub label: String,
    /// Whether it is the static node binary that `./build.sh` makes.
    pub node_build: bool,
}

/// The node binary (`./build.sh`: musl, its allocator and no simulator) when it is
/// there; otherwise the binary cargo built for this bench.
pub fn binary(full: bool) -> Binary {
    let node = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-musl/release/felhom-agent");
    if full {
        if let Ok(meta) = std::fs::metadata(&node) {
            let built = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            return Binary {
                path: node,
                label: format!(
                    "node binary (musl, no sim feature, built {})",
                    felhom_agent::time::rfc3339(built)
                ),
                node_build: true,
            };
        }
    }
    Binary {
        path: PathBuf::from(env!("CARGO_BIN_EXE_felhom-agent")),
        label: if full {
            "the bench's own release binary (glibc): no node binary, run ./build.sh".into()
        } else {
            "the test build's binary (smoke)".into()
        },
        node_build: false,
    }
}

/// `felhom-agent run` as a child process.
pub struct Proc {
    pub pid: u32,
    notify: UnixDatagram,
    exited: Receiver<ExitStatus>,
    waiter: Option<std::thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
}

pub const SIGUSR1: i32 = 10;
pub const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

extern "C" {
    // From the C library std already links.
    fn kill(pid: i32, sig: i32) -> i32;
}

impl Proc {
    /// Starts `run --config <config>` with a notify socket in `dir`; stderr goes to a
    /// file there (`agent.log`).
    pub fn run(bin: &Path, config: &Path, dir: &Path) -> Proc {
        let sock = dir.join("notify");
        let _ = std::fs::remove_file(&sock);
        let notify = UnixDatagram::bind(&sock).unwrap();
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        let mut child = Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .env("NOTIFY_SOCKET", &sock)
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the agent starts");
        let pid = child.id();
        let (tx, exited) = crossbeam_channel::bounded(1);
        let waiter = std::thread::Builder::new()
            .name(format!("agent {pid} waiter"))
            .spawn(move || {
                let _ = tx.send(child.wait().expect("wait for the agent"));
            })
            .unwrap();
        Proc {
            pid,
            notify,
            exited,
            waiter: Some(waiter),
            status: None,
        }
    }

    /// The next notify datagram that starts with `prefix`, waited for until `deadline`
    /// (or `None`); `tick` is called between datagrams at least every `every`.
    pub fn wait_notify(
        &self,
        prefix: &str,
        deadline: Instant,
        every: Duration,
        mut tick: impl FnMut(),
    ) -> Option<String> {
        let mut buf = [0u8; 4096];
        loop {
            tick();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.notify.set_read_timeout(Some(left.min(every))).unwrap();
            if let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]);
                if let Some(line) = msg.lines().find(|l| l.starts_with(prefix)) {
                    return Some(line.to_string());
                }
            }
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on a child we started and have not reaped, with a valid
        // signal number.
        assert_eq!(unsafe { kill(self.pid as i32, sig) }, 0);
    }

    /// Waits for the exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let s = self
            .exited
            .recv_timeout(timeout)
            .expect("the agent exits in time");
        self.status = Some(s);
        if let Some(w) = self.waiter.take() {
            w.join().unwrap();
        }
        s
    }

    /// SIGTERM, and the exit, which must be clean.
    pub fn stop(mut self) {
        self.signal(SIGTERM);
        let s = self.wait_exit(Duration::from_secs(60));
        assert!(s.success(), "the agent exited with {s}");
    }

    /// Live threads now, from /proc/<pid>/task.
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid)).map_or(0, |d| d.count())
    }

    /// The names of the live threads (`comm`), sorted.
    pub fn thread_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|s| s.trim().to_string())
            .collect();
        names.sort();
        names
    }

    /// A field of /proc/<pid>/status in KiB (`VmHWM`, `VmRSS`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            // SAFETY: as in `signal`; the process may be gone already.
            unsafe { kill(self.pid as i32, SIGKILL) };
            let _ = self.exited.recv_timeout(Duration::from_secs(10));
            if let Some(w) = self.waiter.take() {
                let _ = w.join();
            }
        }
    }
}

/// Whether every guest in `desired` (`{"guests": [...]}`) is in its desired power state
/// with its desired cores and memory, and no task runs.
pub fn converged(sim: &Sim, desired: &serde_json::Value) -> bool {
    let guests = sim.guests();
    let by_vmid: std::collections::BTreeMap<u32, &SimGuest> =
        guests.iter().map(|g| (g.vmid, g)).collect();
    sim.running_tasks() == 0
        && desired["guests"].as_array().unwrap().iter().all(|want| {
            let Some(g) = by_vmid.get(&(want["vmid"].as_u64().unwrap() as u32)) else {
                return false;
            };
            let state = match want["state"].as_str() {
                Some("running") => g.status == PowerState::Running,
                Some("stopped") => g.status == PowerState::Stopped,
                _ => true,
            };
            state
                && want["cores"]
                    .as_u64()
                    .is_none_or(|c| g.cores == Some(c as u32))
                && want["memory"].as_u64().is_none_or(|m| g.memory == Some(m))
        })
}
