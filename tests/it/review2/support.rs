//! Helpers of the review tests in `review2.rs`: driving an open pass of the real
//! engine, and the UPIDs of tasks a journal may hold.

use super::T;
use felhom_agent::engine::{Engine, PassReport};
use felhom_agent::pve::Upid;
use felhom_agent::sim::Sim;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Feeds the open pass's results until it ends (its report) or `stop` holds (`None`),
/// within [`T`].
pub fn run_until(engine: &mut Engine, stop: impl Fn() -> bool) -> Option<PassReport> {
    let deadline = Instant::now() + T;
    while !stop() && Instant::now() < deadline {
        let next = Instant::now() + Duration::from_millis(50);
        if let Ok(r) = engine.results().recv_deadline(next.min(deadline)) {
            if let Some(report) = engine.on_result(r) {
                return Some(report);
            }
        }
    }
    None
}

/// The UPID of a task of the agent's on node pve1 for guest `vmid`, started at
/// `starttime` (Unix seconds, the node's clock).
pub fn upid_at(sim: &Sim, kind: &str, vmid: u32, starttime: i64) -> Upid {
    format!(
        "UPID:pve1:0000{:04X}:00ABCDEF:{starttime:08X}:{kind}:{vmid}:{}:",
        vmid,
        sim.token_id()
    )
    .parse()
    .expect("a valid UPID")
}

extern "C" {
    // From the C library std already links; the test crate has no libc dependency.
    fn kill(pid: i32, sig: i32) -> i32;
}

/// `felhom-agent run` with its sd_notify socket at `socket` (bound by the caller), its
/// stderr dropped.
pub fn spawn_run(config: &Path, socket: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("NOTIFY_SOCKET", socket)
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("agent starts")
}

/// Sends `sig` to `child`.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) with a pid this test started and a valid signal number.
    let rc = unsafe { kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill({}, {sig})", child.id());
}

/// Waits up to `timeout` for `child` to exit; returns whether it did.
pub fn exits_within(child: &mut Child, timeout: Duration) -> bool {
    super::poll_until(timeout, || child.try_wait().ok().flatten().is_some())
}

/// Reads datagrams from `socket` until one contains `needle`, within [`T`].
pub fn wait_datagram(socket: &UnixDatagram, needle: &str) -> bool {
    let deadline = Instant::now() + T;
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n]).contains(needle) {
                return true;
            }
        }
    }
    false
}

/// Fills `socket`'s receive queue with datagrams until the kernel takes no more, as
/// when the service manager does not read its notify socket for a while; returns how
/// many went in.
pub fn fill_queue(socket: &Path) -> usize {
    let sender = UnixDatagram::unbound().unwrap();
    sender.set_nonblocking(true).unwrap();
    let mut n = 0;
    while sender.send_to(b"X=1", socket).is_ok() {
        n += 1;
        assert!(n < 1_000_000, "the queue never filled");
    }
    n
}
