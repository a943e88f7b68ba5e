//! The operator's controls: a PVE tag that takes a guest away from the agent, and the
//! name that guards against a reused vmid. Asserted on what the node saw.

use super::rig::{fast_sim, guest, mutations_of, pass, Rig};
use felhom_agent::sim::PowerState;

fn requests_for(rig: &Rig, vmid: u32) -> Vec<String> {
    rig.sim
        .requests()
        .iter()
        .filter(|r| r.vmid == Some(vmid))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[test]
fn a_guest_held_by_tag_gets_nothing_beyond_the_list_until_the_tag_goes() {
    let mut g = guest(101, false);
    g.tags = Some("felhom-hold;prod".into());
    let desired = r#"{"guests": [{"vmid": 101, "state": "running", "memory": 1024,
                                   "description": "web", "tags": ["prod"]}]}"#;
    let rig = Rig::new(
        "controls-hold",
        fast_sim(),
        vec![g],
        desired,
        serde_json::json!({}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let desired = rig.desired();
    for _ in 0..3 {
        let report = pass(&mut engine, &desired);
        assert_eq!(report.skipped[0].class, "hold_tag", "{report:?}");
    }
    assert_eq!(requests_for(&rig, 101), Vec::<String>::new());
    // The operator takes the tag off in the GUI: the next pass converges the guest,
    // and the tag is not put back.
    rig.sim.update_guest(101, |g| g.tags = Some("prod".into()));
    let report = pass(&mut engine, &desired);
    assert_eq!(report.applied, 2, "{report:?}");
    assert_eq!(mutations_of(&rig.sim, 101), ["PUT config", "POST start"]);
    let g = rig.sim.guest(101).unwrap();
    assert_eq!(g.status, PowerState::Running);
    assert_eq!(g.tags.as_deref(), Some("prod"));
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn a_reused_vmid_is_left_alone_unless_the_guard_is_off() {
    let mut g = guest(101, false);
    g.hostname = Some("scratch".into());
    let desired = r#"{"guests": [{"vmid": 101, "name": "web1", "state": "running"}]}"#;
    let rig = Rig::new(
        "controls-identity",
        fast_sim(),
        vec![g],
        desired,
        serde_json::json!({}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let report = pass(&mut engine, &rig.desired());
    let skip = &report.skipped[0];
    assert_eq!(skip.class, "identity");
    assert_eq!(
        skip.reason,
        "identity mismatch: desired \"web1\", found \"scratch\""
    );
    assert_eq!(requests_for(&rig, 101), Vec::<String>::new());
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
    // `plan` says the same.
    let out = rig.bin(&["plan"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("identity mismatch"));

    // An operator who renames guests on purpose turns the guard off.
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rig.config_path).unwrap()).unwrap();
    cfg["identity_guard"] = false.into();
    std::fs::write(&rig.config_path, cfg.to_string()).unwrap();
    let (mut engine, journal, mut cancel) = rig.engine();
    let report = pass(&mut engine, &rig.desired());
    assert_eq!(report.applied, 1, "{report:?}");
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn ha_guests_are_driven_through_requests_and_verified_with_ha_mode_request() {
    let mut g = guest(101, false);
    g.ha = Some("stopped".into());
    let desired = r#"{"guests": [{"vmid": 101, "state": "running", "memory": 1024}]}"#;
    let rig = Rig::new(
        "controls-ha",
        fast_sim(),
        vec![g],
        desired,
        serde_json::json!({"ha_mode": "request"}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let report = pass(&mut engine, &rig.desired());
    assert_eq!(report.applied, 2, "{report:?}");
    assert_eq!(mutations_of(&rig.sim, 101), ["PUT config", "POST start"]);
    // The task was HA's request; the guest was seen running before the start counted.
    let tasks = rig.sim.tasks_started(101);
    assert_eq!(tasks.len(), 1);
    assert!(tasks[0].contains(":hastart:"), "{tasks:?}");
    let g = rig.sim.guest(101).unwrap();
    assert_eq!((g.status, g.memory), (PowerState::Running, Some(1024)));
    // Converged: the next pass sends nothing.
    let report = pass(&mut engine, &rig.desired());
    assert_eq!(report.planned, 0, "{report:?}");
    assert_eq!(rig.sim.mutations().len(), 2);
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn a_guest_that_migrates_between_the_read_and_the_action_is_left_to_its_new_node() {
    use felhom_agent::sim::{Effect, FaultRule, Faults, Match, SimOptions};
    let opts = SimOptions {
        nodes: vec!["pve1".into(), "pve2".into()],
        ..fast_sim()
    };
    let desired = r#"{"guests": [{"vmid": 101, "state": "running"}]}"#;
    let rig = Rig::new(
        "controls-moved",
        opts,
        vec![guest(101, false)],
        desired,
        serde_json::json!({}),
    );
    // The start waits at the node while the guest migrates to pve2.
    rig.sim.set_faults(Faults::rule(FaultRule::new(
        Match::post("status/start"),
        Effect::Delay(std::time::Duration::from_millis(400)),
    )));
    let (mut engine, journal, mut cancel) = rig.engine();
    let (_plan, done) = engine.start_pass(&rig.desired());
    assert!(done.is_none());
    assert!(rig.sim.wait_until(std::time::Duration::from_secs(10), |s| s
        .max_concurrent_mutations()
        == 1));
    rig.sim.update_guest(101, |g| g.node = "pve2".into());
    let result = engine
        .results()
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let report = engine.on_result(result).unwrap();
    assert_eq!(
        (report.moved, report.failed, report.in_flight),
        (1, 0, 0),
        "{report:?}"
    );
    assert!(journal.in_flight().is_empty());
    // No backoff, no alarm: the next pass sees it elsewhere and leaves it.
    rig.sim.set_faults(Faults::default());
    let report = pass(&mut engine, &rig.desired());
    assert_eq!(report.skipped[0].class, "elsewhere", "{report:?}");
    assert_eq!(rig.sim.guest(101).unwrap().status, PowerState::Stopped);
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn a_guest_the_agent_panicked_on_is_quarantined_until_its_desired_state_changes() {
    let rig = Rig::one_stopped_guest("controls-quarantine");
    // The agent panics as it starts acting on 101 (a bug, simulated).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
        .args(["once", "--config"])
        .arg(&rig.config_path)
        .env("FELHOM_FAILPOINT", "action-panic")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let file = rig.state_dir().join("quarantine.json");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("failpoint action-panic"), "{text}");
    // Held from then on, across restarts: nothing is sent for it.
    let out = rig.bin(&["plan"]);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("skipped: quarantined: the agent crashed acting on it"),
        "{plan}"
    );
    let out = rig.bin(&["once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(rig.sim.mutations().is_empty());
    // A new desired spec for it lifts the quarantine.
    rig.write_desired(r#"{"guests": [{"vmid": 101, "state": "running", "memory": 1024}]}"#);
    let out = rig.bin(&["once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mutations_of(&rig.sim, 101), ["PUT config", "POST start"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "{}");
}
