//! Defect 6 of the review in `review2.rs`, outside the first promise and found while
//! probing it: the agent's sd_notify sends can block its run loop without a deadline.

use super::super::rig::running;
use super::support;
use super::{Rig, SIGTERM, T};
use std::time::Duration;

/// Defect 6 (outside the first promise, found while probing it): an agent whose
/// service manager is slow to read the notify socket ignores SIGTERM for good.
///
/// `Notifier::send` sends each sd_notify datagram on a blocking socket with no
/// timeout (src/notify.rs:165-166), from the run loop itself. When the manager's
/// receive queue is full (`net.unix.max_dgram_qlen` datagrams: PID 1 busy, or stuck
/// in a reload, with every service on the host notifying), the send blocks until it
/// drains, and with it the whole run loop: SIGTERM's handling starts with
/// `notifier.stopping()` (src/daemon/mod.rs:465), so the agent never stops, and
/// after each pass `STATUS=`, and every `WATCHDOG=1`, block the same way. That breaks
/// the invariant "no wait without a deadline" (ARCHITECTURE.md) and the README's
/// "SIGTERM ... exit 0" within `drain_timeout_secs`.
///
/// Fixed: each send is non-blocking, as libsystemd's `sd_notify` does
/// (`MSG_DONTWAIT`), and a notification that would block is dropped (logged at debug
/// level); a stalled manager costs a STATUS line, not the agent.
#[test]
fn an_agent_stops_on_sigterm_while_its_notify_socket_is_full() {
    let rig = Rig::one_stopped_guest("review2-notify-full");
    let path = rig.dir.path().join("notify");
    let manager = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let mut child = support::spawn_run(&rig.config_path, &path);
    assert!(support::wait_datagram(&manager, "READY=1"));
    assert!(rig.sim.wait_until(T, |s| running(s, 101)));
    // The manager stops reading for a while; its queue fills up.
    let queued = support::fill_queue(&path);
    support::signal(&child, SIGTERM);
    let stopped = support::exits_within(&mut child, Duration::from_secs(25));
    if !stopped {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(manager);
    assert!(
        stopped,
        "SIGTERM did not stop the agent within 25 s (drain_timeout_secs is 20) while \
         its notify socket held {queued} unread datagrams"
    );
}
