//! Helpers of the review tests in `review2.rs`: driving an open pass of the real
//! engine, and the UPIDs of tasks a journal may hold.

use super::T;
use felhom_agent::engine::{Engine, PassReport};
use felhom_agent::pve::Upid;
use felhom_agent::sim::{PowerState, Sim};
use std::time::{Duration, Instant};

/// Whether the node runs guest `vmid`.
pub fn running(sim: &Sim, vmid: u32) -> bool {
    sim.guest(vmid).unwrap().status == PowerState::Running
}

/// Feeds the open pass's results (and its stage wake-ups) until it ends.
pub fn finish_pass(engine: &mut Engine) -> PassReport {
    let deadline = Instant::now() + T;
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
