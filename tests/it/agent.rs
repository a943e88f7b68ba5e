//! The real binary as a running process: its stderr lines, its sd_notify datagrams on a
//! socket the test owns, signals, and its exit, each waited on with a deadline.

use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const SIGKILL: i32 = 9;
pub const SIGHUP: i32 = 1;
pub const SIGTERM: i32 = 15;

extern "C" {
    // From the C library std already links; the test crate has no libc dependency.
    fn kill(pid: i32, sig: i32) -> i32;
}

pub struct Agent {
    pub pid: u32,
    lines: Receiver<String>,
    exited: Receiver<ExitStatus>,
    notify: UnixDatagram,
    threads: Vec<std::thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
    /// Every stderr line seen so far.
    pub seen: Vec<String>,
}

impl Agent {
    /// Starts `felhom-agent run --config <config>` with a notify socket in `dir`.
    pub fn run(config: &Path, dir: &Path, env: &[(&str, &str)]) -> Agent {
        Agent::run_with(config, dir, &[], env)
    }

    /// [`Agent::run`] with more arguments (`--log-level debug`).
    pub fn run_with(config: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Agent {
        let sock_path = dir.join(format!("notify-{}", crate::rig::unique()));
        let notify = UnixDatagram::bind(&sock_path).expect("bind notify socket");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_felhom-agent"));
        cmd.arg("run")
            .args(args)
            .arg("--config")
            .arg(config)
            .env("NOTIFY_SOCKET", &sock_path)
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("agent starts");
        let pid = child.id();
        let stderr = child.stderr.take().unwrap();
        let (line_tx, lines) = crossbeam_channel::unbounded();
        let reader = std::thread::Builder::new()
            .name(format!("agent {pid} stderr"))
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = line_tx.send(line);
                }
            })
            .unwrap();
        let (exit_tx, exited) = crossbeam_channel::bounded(1);
        let waiter = std::thread::Builder::new()
            .name(format!("agent {pid} waiter"))
            .spawn(move || {
                let _ = exit_tx.send(child.wait().expect("wait for agent"));
            })
            .unwrap();
        Agent {
            pid,
            lines,
            exited,
            notify,
            threads: vec![reader, waiter],
            status: None,
            seen: Vec::new(),
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we started and a valid signal number.
        let rc = unsafe { kill(self.pid as i32, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid);
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.recv_deadline(deadline) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no stderr line with {needle:?} within {timeout:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits until `n` more stderr lines have come or `timeout` has passed; returns how
    /// many came.
    pub fn wait_lines(&mut self, n: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut got = 0;
        while got < n {
            match self.lines.recv_deadline(deadline) {
                Ok(line) => {
                    self.seen.push(line);
                    got += 1;
                }
                Err(_) => break,
            }
        }
        got
    }

    /// Waits for a notify datagram whose text contains `needle`; returns it.
    pub fn wait_notify(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no notify message with {needle:?} within {timeout:?}; got {got:?}\nstderr:\n{}",
                self.drain_lines()
            );
            self.notify.set_read_timeout(Some(left)).unwrap();
            if let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.contains(needle) {
                    return msg;
                }
                got.push(msg);
            }
        }
    }

    fn drain_lines(&mut self) -> String {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        match self.exited.recv_timeout(timeout) {
            Ok(s) => {
                self.status = Some(s);
                for t in self.threads.drain(..) {
                    let _ = t.join();
                }
                self.drain_lines();
                s
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "agent did not exit within {timeout:?}\nstderr:\n{}",
                    self.drain_lines()
                )
            }
            Err(RecvTimeoutError::Disconnected) => unreachable!("the waiter always sends"),
        }
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill9(&mut self) {
        self.signal(SIGKILL);
        self.wait_exit(Duration::from_secs(10));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.status.is_none() {
            // SAFETY: as in `signal`; the process may already be gone.
            unsafe { kill(self.pid as i32, SIGKILL) };
            let _ = self.exited.recv_timeout(Duration::from_secs(10));
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// Polls `cond` until it holds or `timeout` passes; for conditions with no event to
/// wait on (a file's content). Returns whether it held.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let (_never_tx, never) = crossbeam_channel::bounded::<()>(0);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // A bounded wait on a channel nobody sends on: the poll interval.
        let _ = never.recv_timeout(Duration::from_millis(10));
    }
}

pub const SIGUSR1: i32 = 10;

/// A running agent whose one action (starting guest 101) has a task that takes a
/// minute, with the task's UPID already durable in the journal.
pub fn agent_with_a_long_task(tag: &str, extra: serde_json::Value) -> (crate::rig::Rig, Agent) {
    let opts = felhom_agent::sim::SimOptions {
        task_duration: Duration::from_secs(60),
        ..crate::rig::fast_sim()
    };
    let desired = r#"{"guests": [{"vmid": 101, "state": "running"}]}"#;
    let rig = crate::rig::Rig::new(
        tag,
        opts,
        vec![crate::rig::guest(101, false)],
        desired,
        extra,
    );
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    let t = Duration::from_secs(20);
    agent.wait_notify("READY=1", t);
    assert!(rig.sim.wait_until(t, |s| s.running_tasks() == 1));
    let journal = felhom_agent::journal::file_in(&rig.state_dir());
    assert!(poll_until(t, || std::fs::read_to_string(&journal)
        .is_ok_and(|j| j.contains("\"task_running\""))));
    (rig, agent)
}
