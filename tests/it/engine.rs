//! The engine against the simulated node: every assertion is on what the node saw (its
//! request log and its guests), not only on what the agent reported.

use super::rig::{fast_sim, guest, mutations_of, pass, Rig};
use felhom_agent::sim::{Effect, FaultRule, Faults, Match, PowerState, Sim, SimGuest, SimOptions};
use std::collections::BTreeMap;

/// 60 guests on the node, 50 of them named with every kind of drift.
fn drifted_fleet() -> (Vec<SimGuest>, String, BTreeMap<u32, Vec<&'static str>>) {
    let mut guests = Vec::new();
    let mut desired = Vec::new();
    let mut expected = BTreeMap::new();
    for i in 0..50u32 {
        let vmid = 200 + i;
        let (g, spec, muts): (SimGuest, serde_json::Value, Vec<&str>) = match i % 5 {
            0 => (
                guest(vmid, false),
                serde_json::json!({"vmid": vmid, "state": "running", "memory": 1024}),
                vec!["PUT config", "POST start"],
            ),
            1 => (
                guest(vmid, true),
                serde_json::json!({"vmid": vmid, "state": "stopped", "cores": 2}),
                vec!["POST shutdown", "PUT config"],
            ),
            2 => (
                guest(vmid, true),
                serde_json::json!({"vmid": vmid, "state": "running", "cores": 4, "swap": 256}),
                vec!["PUT config"],
            ),
            3 => (
                guest(vmid, true),
                serde_json::json!({"vmid": vmid, "state": "running", "cores": 1, "memory": 512}),
                vec![],
            ),
            _ => (
                guest(vmid, false),
                serde_json::json!({"vmid": vmid, "state": "stopped", "onboot": true,
                    "description": "batch\n", "tags": ["Batch", "nightly", "batch"]}),
                vec!["PUT config"],
            ),
        };
        guests.push(g);
        desired.push(spec);
        expected.insert(vmid, muts);
    }
    for vmid in 300..310 {
        guests.push(guest(vmid, vmid % 2 == 0));
    }
    let desired = serde_json::json!({"version": 1, "guests": desired}).to_string();
    (guests, desired, expected)
}

#[test]
fn fifty_drifted_guests_converge_with_exactly_the_minimal_actions() {
    let (guests, desired, expected) = drifted_fleet();
    let rig = Rig::new(
        "engine-fleet",
        fast_sim(),
        guests,
        &desired,
        serde_json::json!({"max_parallel": 4}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let desired = rig.desired();

    let report = pass(&mut engine, &desired);
    assert!(report.ok(), "{report:?}");
    let want_actions: usize = expected.values().map(Vec::len).sum();
    assert_eq!(report.planned, want_actions);
    assert_eq!(report.applied, want_actions);

    // Exactly the minimal actions, in plan order per guest.
    for (vmid, muts) in &expected {
        assert_eq!(&mutations_of(&rig.sim, *vmid), muts, "guest {vmid}");
    }
    // The node is where the desired state says.
    for i in 0..50u32 {
        let g = rig.sim.guest(200 + i).unwrap();
        match i % 5 {
            0 => assert!(g.status == PowerState::Running && g.memory == Some(1024)),
            1 => assert!(g.status == PowerState::Stopped && g.cores == Some(2)),
            2 => assert!(g.cores == Some(4) && g.swap == Some(256)),
            4 => {
                assert_eq!(g.onboot, Some(true));
                assert_eq!(g.description.as_deref(), Some("batch\n"));
                assert_eq!(g.tags.as_deref(), Some("batch;nightly"));
            }
            _ => {}
        }
    }
    // Never more tasks at once than max_parallel.
    assert!(
        rig.sim.max_concurrent_tasks() <= 4,
        "{}",
        rig.sim.max_concurrent_tasks()
    );
    assert!(rig.sim.max_concurrent_mutations() <= 4);
    assert!(rig.sim.max_concurrent_tasks() >= 2, "lanes ran in parallel");

    // Unmanaged guests got no request at all beyond the list.
    assert!(rig
        .sim
        .requests()
        .iter()
        .all(|r| r.vmid.is_none_or(|v| !(300..310).contains(&v))));

    // A second pass finds nothing to do and mutates nothing.
    let before = rig.sim.mutations().len();
    let report = pass(&mut engine, &desired);
    assert_eq!(report.planned, 0, "{report:?}");
    assert_eq!(report.in_sync.len(), 50);
    assert_eq!(rig.sim.mutations().len(), before);

    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    assert!(journal.in_flight().is_empty());
    journal.close().unwrap();
}

#[test]
fn skipped_guests_say_why_and_are_not_touched() {
    let mut locked = guest(101, false);
    locked.lock = Some("backup".into());
    let mut ha = guest(102, false);
    ha.ha = Some("started".into());
    let mut template = guest(103, false);
    template.template = true;
    let elsewhere = {
        let mut g = guest(104, false);
        g.node = "pve2".into();
        g
    };
    let opts = SimOptions {
        nodes: vec!["pve1".into(), "pve2".into()],
        ..fast_sim()
    };
    let desired = r#"{"guests": [
        {"vmid": 101, "state": "running"}, {"vmid": 102, "state": "running"},
        {"vmid": 103, "state": "running"}, {"vmid": 104, "state": "running"},
        {"vmid": 105, "state": "running"}]}"#;
    let rig = Rig::new(
        "engine-skips",
        opts,
        vec![locked, ha, template, elsewhere],
        desired,
        serde_json::json!({}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let report = pass(&mut engine, &rig.desired());
    let reasons: Vec<String> = report
        .skipped
        .iter()
        .map(|s| format!("{} {}", s.vmid, s.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            "101 locked (backup)",
            "102 ha-managed (ha state started): ha-manager owns it",
            "103 template: a template cannot run",
            "104 elsewhere: pve2",
            "105 missing: on no node of the cluster",
        ]
    );
    assert!(report.ok());
    assert!(rig.sim.mutations().is_empty(), "{:?}", rig.sim.mutations());
    // A guest on another node is not even read through this node.
    assert!(rig.sim.requests().iter().all(|r| r.vmid != Some(104)));
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn failures_back_off_and_blocked_guests_are_retried_without_counting_as_failures() {
    let desired =
        r#"{"guests": [{"vmid": 101, "state": "running"}, {"vmid": 102, "state": "running"}]}"#;
    let rig = Rig::new(
        "engine-backoff",
        fast_sim(),
        vec![guest(101, false), guest(102, false)],
        desired,
        serde_json::json!({}),
    );
    rig.sim.set_faults(Faults {
        fail_tasks: [
            (101, "startup for container '101' failed".to_string()),
            (102, "CT is locked (backup)".to_string()),
        ]
        .into(),
        ..Faults::default()
    });
    let (mut engine, journal, mut cancel) = rig.engine();
    let desired = rig.desired();

    let r1 = pass(&mut engine, &desired);
    assert_eq!((r1.failed, r1.blocked), (1, 1), "{r1:?}");
    assert_eq!(r1.errors.len(), 1);
    assert_eq!(r1.errors[0].vmid.get(), 101);

    // At once again: the failed guest backs off, the blocked one is retried.
    let r2 = pass(&mut engine, &desired);
    assert_eq!((r2.failed, r2.blocked), (0, 1), "{r2:?}");
    let held: Vec<String> = r2
        .skipped
        .iter()
        .map(|s| format!("{} {}", s.vmid, s.class))
        .collect();
    assert_eq!(held, ["101 backoff"]);
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);
    assert_eq!(mutations_of(&rig.sim, 102), ["POST start", "POST start"]);

    // The lock goes away: the blocked guest converges on the next pass.
    rig.sim.set_faults(Faults::default());
    let r3 = pass(&mut engine, &desired);
    assert_eq!(r3.applied, 1, "{r3:?}");
    assert_eq!(rig.sim.guest(102).unwrap().status, PowerState::Running);
    assert_eq!(rig.sim.guest(101).unwrap().status, PowerState::Stopped);
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn already_in_state_counts_as_converged() {
    // The guest starts by another hand between the agent's read and its start request:
    // PVE answers "CT 101 already running", which is convergence, not failure.
    let rig = Rig::one_stopped_guest("engine-converged");
    // The hand start races the agent's request on purpose: when it wins, the request
    // arrives at a running guest, which the node's audit rightly sees as sent twice.
    rig.sim.allow_violations();
    rig.sim.set_faults(Faults::rule(FaultRule::new(
        Match::post("status/start"),
        Effect::Delay(std::time::Duration::from_millis(800)),
    )));
    let (mut engine, journal, mut cancel) = rig.engine();
    let (plan, done) = engine.start_pass(&rig.desired());
    assert_eq!(plan.unwrap().actions.len(), 1);
    assert!(done.is_none());
    // The request is at the node (past the agent's last look) when the hand starts it.
    let at_node = |s: &Sim| s.max_concurrent_mutations() == 1;
    assert!(rig
        .sim
        .wait_until(std::time::Duration::from_secs(10), at_node));
    rig.sim
        .update_guest(101, |g| g.status = PowerState::Running);
    let result = engine
        .results()
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the start returns");
    let report = engine.on_result(result).expect("the pass completes");
    assert_eq!((report.converged, report.failed), (1, 0), "{report:?}");
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);
    assert!(rig.sim.tasks_started(101).is_empty());
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn pending_drift_is_reported_and_never_resent() {
    let mut g = guest(101, true);
    g.pending.insert("memory".into(), "2048".into());
    let desired = r#"{"guests": [{"vmid": 101, "memory": 2048}]}"#;
    let rig = Rig::new(
        "engine-pending",
        fast_sim(),
        vec![g],
        desired,
        serde_json::json!({}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    for _ in 0..2 {
        let report = pass(&mut engine, &rig.desired());
        let pending: Vec<String> = report
            .pending
            .iter()
            .map(|p| format!("{} {}", p.vmid, p.keys.join(",")))
            .collect();
        assert_eq!(pending, ["101 memory"]);
        assert_eq!(report.planned, 0);
    }
    assert!(rig.sim.mutations().is_empty());
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn ha_managed_guests_are_left_to_ha_manager() {
    let mut g = guest(101, true);
    g.ha = Some("started".into());
    let desired = r#"{"guests": [{"vmid": 101, "state": "stopped", "cores": 3}]}"#;
    let rig = Rig::new(
        "engine-ha",
        fast_sim(),
        vec![g],
        desired,
        serde_json::json!({}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let report = pass(&mut engine, &rig.desired());
    assert_eq!(report.skipped.len(), 1);
    assert!(rig.sim.mutations().is_empty());
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn a_guest_that_turns_ha_managed_midway_is_verified_by_its_status() {
    // HA takes the guest over between the read and the start: the node answers with an
    // `hastart` task that ends at once, and the guest starts only later. The action
    // counts as applied only once the guest really runs.
    let opts = SimOptions {
        ha_apply_delay: std::time::Duration::from_millis(600),
        ..fast_sim()
    };
    let desired = r#"{"guests": [{"vmid": 101, "state": "running"}]}"#;
    let rig = Rig::new(
        "engine-ha-race",
        opts,
        vec![guest(101, false)],
        desired,
        serde_json::json!({}),
    );
    rig.sim.set_faults(Faults::rule(FaultRule::new(
        Match::post("status/start"),
        Effect::Delay(std::time::Duration::from_millis(500)),
    )));
    let (mut engine, journal, mut cancel) = rig.engine();
    let (_plan, done) = engine.start_pass(&rig.desired());
    assert!(done.is_none());
    // The request is at the node (past the agent's last look) when HA takes over.
    let at_node = |s: &Sim| s.max_concurrent_mutations() == 1;
    assert!(rig
        .sim
        .wait_until(std::time::Duration::from_secs(10), at_node));
    rig.sim.update_guest(101, |g| g.ha = Some("started".into()));
    let result = engine
        .results()
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the start returns");
    let report = engine.on_result(result).expect("the pass completes");
    assert_eq!(report.applied, 1, "{report:?}");
    let upids = rig.sim.tasks_started(101);
    assert_eq!(upids.len(), 1);
    assert_eq!(upids[0].split(':').nth(5), Some("hastart"), "{}", upids[0]);
    assert_eq!(rig.sim.guest(101).unwrap().status, PowerState::Running);
    // The agent polled the guest's status after the HA task ended.
    assert!(rig
        .sim
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/101/status/current")));
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn an_unreadable_node_plans_nothing_and_the_next_pass_recovers() {
    let rig = Rig::one_stopped_guest("engine-down");
    rig.sim.set_faults(Faults::rule(FaultRule::new(
        Match::any(),
        Effect::StatusBefore(500),
    )));
    let (mut engine, journal, mut cancel) = rig.engine();
    let report = pass(&mut engine, &rig.desired());
    assert!(!report.ok());
    assert!(report.observe_error.is_some(), "{report:?}");
    assert_eq!(report.planned, 0);
    assert!(rig.sim.mutations().is_empty());
    rig.sim.set_faults(Faults::default());
    let report = pass(&mut engine, &rig.desired());
    assert!(report.ok(), "{report:?}");
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn an_unanswered_start_is_held_until_its_task_is_found_and_never_sent_twice() {
    // pveproxy gives up (596) but pvedaemon starts the task anyway (docs/proxmox-api.md §1.4).
    let opts = SimOptions {
        task_duration: std::time::Duration::from_millis(300),
        ..fast_sim()
    };
    let desired = r#"{"guests": [{"vmid": 101, "state": "running"}]}"#;
    let rig = Rig::new(
        "engine-596",
        opts,
        vec![guest(101, false)],
        desired,
        serde_json::json!({}),
    );
    rig.sim.set_faults(Faults::rule(FaultRule::new(
        Match::post("status/start"),
        Effect::StatusAfter(596),
    )));
    let (mut engine, journal, mut cancel) = rig.engine();
    let desired = rig.desired();

    let r1 = pass(&mut engine, &desired);
    assert_eq!((r1.in_flight, r1.failed), (1, 0), "{r1:?}");
    assert_eq!(journal.in_flight().len(), 1);
    assert!(journal.in_flight()[0].upid.is_none());
    rig.sim.set_faults(Faults::default());

    // Next pass: the task is found in the node's task list; the guest stays held.
    let r2 = pass(&mut engine, &desired);
    let held: Vec<&str> = r2.skipped.iter().map(|s| s.class.as_str()).collect();
    assert_eq!(held, ["in_flight"], "{r2:?}");
    assert!(journal.in_flight()[0].upid.is_some());

    // Once the task has ended, the op is resolved from it and nothing is re-sent.
    assert!(rig
        .sim
        .wait_until(std::time::Duration::from_secs(10), |s| s.running_tasks()
            == 0));
    let r3 = pass(&mut engine, &desired);
    assert_eq!(r3.planned, 0, "{r3:?}");
    assert!(journal.in_flight().is_empty());
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);
    assert_eq!(rig.sim.tasks_started(101).len(), 1);
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}
