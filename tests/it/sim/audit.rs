//! The node's audit of the agent's promise, driven over raw HTTP: what it catches, what
//! it lets pass, and the check when the `Sim` drops.

use super::*;
use felhom_agent::sim::{Effect, FaultRule, Faults, Match, PowerState, Violation};
use std::net::Shutdown;
use std::panic::{self, AssertUnwindSafe};

const START: &str = "/nodes/pve1/lxc/101/status/start";

/// The text of the panic a drop raises, or `None` when it does not panic.
fn drop_panics(sim: Sim) -> Option<String> {
    let err = panic::catch_unwind(AssertUnwindSafe(move || drop(sim))).err()?;
    Some(match err.downcast::<String>() {
        Ok(s) => *s,
        Err(e) => e
            .downcast_ref::<&str>()
            .map_or(String::new(), |s| s.to_string()),
    })
}

#[test]
fn a_clean_sequence_passes_and_the_drop_is_quiet() {
    let sim = start(vec![guest(101, false)]);
    let upid = upid_of(&post(&sim, START, ""));
    assert_eq!(finished(&sim, &upid)["exitstatus"], "OK");
    assert_eq!(
        put(&sim, "/nodes/pve1/lxc/101/config", "cores=2").status,
        200
    );
    let a = sim.audit();
    assert!(a.is_clean(), "{a}");
    assert_eq!(a.checked, 2);
    assert_eq!(drop_panics(sim), None);
}

#[test]
fn two_actions_in_flight_fail_the_drop_with_every_detail() {
    let sim = start(vec![guest(101, false)]);
    sim.set_faults(Faults {
        hang_tasks: [101].into(),
        ..Faults::default()
    });
    let upid = upid_of(&post(&sim, START, ""));
    // The start task still runs (it hangs).
    assert_eq!(
        put(&sim, "/nodes/pve1/lxc/101/config", "cores=2").status,
        200
    );
    let a = sim.audit();
    assert_eq!(a.violations.len(), 1, "{a}");
    match &a.violations[0] {
        Violation::Overlap {
            vmid,
            first,
            second,
        } => {
            assert_eq!((*vmid, first.seq, second.seq), (101, 0, 1));
            assert_eq!(first.task.as_deref(), Some(upid.as_str()));
            assert_eq!(first.until, None, "the task still runs");
        }
        v => panic!("{v}"),
    }
    let text = drop_panics(sim).expect("the drop panics");
    for part in [
        "guest 101: two actions in flight at once",
        "#0 POST /nodes/pve1/lxc/101/status/start",
        "#1 PUT /nodes/pve1/lxc/101/config",
        &upid,
        "Sim::allow_violations",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
}

#[test]
fn a_start_sent_again_while_the_delayed_one_waits_at_the_node_overlaps_it() {
    // The first start waits at the node; its client gives up and leaves, and the same
    // intent is sent again before the node ever ran the first.
    let sim = start(vec![guest(101, false)]);
    sim.set_faults(Faults::rule(
        FaultRule::new(
            Match::post(START),
            Effect::Delay(Duration::from_millis(300)),
        )
        .times(1),
    ));
    let mut s = connect(sim.addr());
    let req = format!(
        "POST /api2/json{START} HTTP/1.1\r\nHost: x\r\n{}Content-Length: 0\r\n\r\n",
        auth(&sim)
    );
    s.write_all(req.as_bytes()).unwrap();
    s.shutdown(Shutdown::Both).unwrap();
    assert!(sim.wait_until(DEADLINE, |s| s.fault_hits() == [1]));
    assert_eq!(post(&sim, START, "").status, 200);
    assert!(sim.wait_until(DEADLINE, |s| s.requests().len() == 2
        && s.running_tasks() == 0));
    // The first ran once its wait was over (and found the guest started by the second).
    assert!(sim.requests()[0].executed);
    let a = sim.audit();
    assert!(
        a.violations.iter().any(|v| matches!(v,
            Violation::Overlap { first, second, .. } if first.seq == 0 && second.seq == 1)),
        "{a}"
    );
    sim.allow_violations();
}

#[test]
fn intents_sent_twice_are_caught() {
    let sim = start(vec![guest(101, true), guest(102, false)]);
    sim.update_guest(101, |g| g.cores = Some(2));
    assert_eq!(post(&sim, START, "").status, 500);
    assert_eq!(
        post(&sim, "/nodes/pve1/lxc/102/status/shutdown", "").status,
        500
    );
    assert_eq!(
        put(&sim, "/nodes/pve1/lxc/101/config", "cores=2&digest=x").status,
        500
    );
    let a = sim.audit();
    let found: Vec<(u32, u64)> = a
        .violations
        .iter()
        .map(|v| match v {
            Violation::Redundant { vmid, request, .. } => (*vmid, request.seq),
            v => panic!("{v}"),
        })
        .collect();
    assert_eq!(found, [(101, 0), (101, 2), (102, 1)], "{a}");
    assert!(a.to_string().contains("the guest was running"), "{a}");
    sim.allow_violations();
}

#[test]
fn a_start_after_a_hand_stop_is_legitimate() {
    let sim = start(vec![guest(101, false)]);
    let upid = upid_of(&post(&sim, START, ""));
    assert_eq!(finished(&sim, &upid)["exitstatus"], "OK");
    // Someone stops it by hand (not a request), and it is started again.
    sim.update_guest(101, |g| g.status = PowerState::Stopped);
    let upid = upid_of(&post(&sim, START, ""));
    assert_eq!(finished(&sim, &upid)["exitstatus"], "OK");
    let a = sim.audit();
    assert!(a.is_clean(), "{a}");
}

#[test]
fn cleared_requests_are_still_audited_and_the_switch_turns_the_panic_off() {
    let sim = start_with(|o| o.audit_on_drop = false);
    sim.add_guest(guest(101, true));
    assert_eq!(post(&sim, START, "").status, 500);
    sim.clear_requests();
    assert!(sim.requests().is_empty());
    assert_eq!(sim.audit().violations.len(), 1);
    assert_eq!(drop_panics(sim), None);

    let sim = start(vec![guest(101, true)]);
    assert_eq!(post(&sim, START, "").status, 500);
    sim.allow_violations();
    assert_eq!(drop_panics(sim), None);

    let sim = start(vec![guest(101, true)]);
    assert_eq!(post(&sim, START, "").status, 500);
    let a = sim.finish();
    assert_eq!(
        a.violations.len(),
        1,
        "finish returns the audit instead of panicking"
    );
}
