//! Virtual machines managed as containers are: the same desired state, plan, lanes,
//! journal and promises, with what QEMU does differently. Asserted on the node's own
//! request log and guests.

use super::rig::{fast_sim, guest, mutations_of, pass, Rig};
use felhom_agent::sim::{PowerState, SimGuest};

fn vm(vmid: u32) -> SimGuest {
    SimGuest::vm(vmid, "pve1")
}

fn setting(g: &SimGuest, key: &str) -> Option<String> {
    g.other.get(key).cloned()
}

#[test]
fn a_mixed_fleet_converges_in_one_pass_and_the_next_mutates_nothing() {
    let mut stopped_vm = vm(201);
    stopped_vm.hostname = Some("db".into());
    let guests = vec![
        guest(101, false),
        guest(102, true),
        stopped_vm,
        vm(202).running(),
    ];
    let desired = r#"{"guests": [
        {"vmid": 101, "state": "running", "memory": 1024},
        {"vmid": 102, "state": "stopped"},
        {"vmid": 201, "type": "qemu", "state": "running", "cores": 2, "sockets": 2,
         "memory": 4096, "balloon": 1024, "description": "db", "onboot": true, "tags": ["db"]},
        {"vmid": 202, "state": "stopped"}]}"#;
    let rig = Rig::new(
        "qemu-mixed",
        fast_sim(),
        guests,
        desired,
        serde_json::json!({}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let report = pass(&mut engine, &rig.desired());
    assert_eq!((report.failed, report.applied), (0, 6), "{report:?}");
    assert_eq!(mutations_of(&rig.sim, 201), ["PUT config", "POST start"]);
    assert_eq!(mutations_of(&rig.sim, 202), ["POST shutdown"]);
    let g = rig.sim.guest(201).unwrap();
    assert_eq!(g.status, PowerState::Running);
    assert_eq!((g.cores, g.memory), (Some(2), Some(4096)));
    assert_eq!(setting(&g, "sockets").as_deref(), Some("2"));
    assert_eq!(setting(&g, "balloon").as_deref(), Some("1024"));
    assert_eq!(rig.sim.guest(202).unwrap().status, PowerState::Stopped);
    // The tasks were QEMU's.
    assert!(rig.sim.tasks_started(201)[0].contains(":qmstart:"));
    for _ in 0..2 {
        let before = rig.sim.mutations().len();
        let report = pass(&mut engine, &rig.desired());
        assert_eq!(report.planned, 0, "{report:?}");
        assert_eq!(rig.sim.mutations().len(), before);
    }
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn new_cores_for_a_running_vm_are_written_once_then_reported_pending() {
    let desired = r#"{"guests": [{"vmid": 201, "state": "running", "cores": 4}]}"#;
    let rig = Rig::new(
        "qemu-pending",
        fast_sim(),
        vec![vm(201).running()],
        desired,
        serde_json::json!({}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let report = pass(&mut engine, &rig.desired());
    assert_eq!(report.applied, 1, "{report:?}");
    // Without CPU hotplug, the change waits in the pending section.
    let g = rig.sim.guest(201).unwrap();
    assert_eq!(g.cores, Some(1));
    assert_eq!(g.pending.get("cores").map(String::as_str), Some("4"));
    for _ in 0..4 {
        let report = pass(&mut engine, &rig.desired());
        assert_eq!(report.planned, 0, "{report:?}");
        assert_eq!(report.pending.len(), 1, "{report:?}");
        assert_eq!(report.pending[0].keys, ["cores"]);
    }
    assert_eq!(mutations_of(&rig.sim, 201), ["PUT config"]);
    // `plan` says so too.
    let out = rig.bin(&["plan"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pending: cores (waits for a restart"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn vms_in_states_the_agent_does_not_fight_get_no_mutation() {
    let mut template = vm(205);
    template.template = true;
    let guests = vec![
        vm(201).paused(),
        vm(202).hibernated(),
        vm(203).backup_of_stopped(),
        vm(204).with_qmp(felhom_agent::sim::QmpState::IoError),
        template,
    ];
    let desired = r#"{"guests": [
        {"vmid": 201, "state": "running", "cores": 2},
        {"vmid": 202, "state": "running"},
        {"vmid": 203, "state": "running"},
        {"vmid": 204, "state": "stopped"},
        {"vmid": 205, "state": "running"}]}"#;
    let rig = Rig::new(
        "qemu-states",
        fast_sim(),
        guests,
        desired,
        serde_json::json!({}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    for _ in 0..3 {
        let report = pass(&mut engine, &rig.desired());
        assert_eq!(report.planned, 0, "{report:?}");
        let reasons: Vec<String> = report
            .skipped
            .iter()
            .map(|s| format!("{} {}", s.vmid, s.reason))
            .collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(reasons[0].starts_with("201 paused:"), "{reasons:?}");
        assert!(
            reasons[1].starts_with("202 locked (suspended)"),
            "{reasons:?}"
        );
        assert!(reasons[2].starts_with("203 locked (backup)"), "{reasons:?}");
        assert!(
            reasons[3].contains("cannot be shut down gracefully"),
            "{reasons:?}"
        );
        assert!(reasons[4].starts_with("205 template"), "{reasons:?}");
    }
    assert!(rig.sim.mutations().is_empty(), "{:?}", rig.sim.mutations());
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn a_stopped_vm_with_pending_changes_is_started_once_and_comes_up_with_them() {
    let desired = r#"{"guests": [{"vmid": 201, "state": "running", "cores": 4, "memory": 4096}]}"#;
    let g = vm(201)
        .with_pending("cores", "4")
        .with_pending("memory", "4096");
    let rig = Rig::new(
        "qemu-start-pending",
        fast_sim(),
        vec![g],
        desired,
        serde_json::json!({}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let report = pass(&mut engine, &rig.desired());
    assert_eq!(report.applied, 1, "{report:?}");
    assert_eq!(mutations_of(&rig.sim, 201), ["POST start"]);
    let g = rig.sim.guest(201).unwrap();
    assert_eq!(g.status, PowerState::Running);
    assert_eq!((g.cores, g.memory), (Some(4), Some(4096)));
    assert!(g.pending.is_empty(), "{:?}", g.pending);
    let report = pass(&mut engine, &rig.desired());
    assert_eq!(report.planned, 0, "{report:?}");
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn a_graceful_shutdown_that_times_out_ends_per_stop_mode() {
    let desired =
        r#"{"guests": [{"vmid": 201, "state": "stopped"}, {"vmid": 202, "state": "stopped"}]}"#;
    let mut deaf = vm(201).running();
    deaf.ignores_acpi = true;
    let paused = vm(202).paused();
    // stop_mode "shutdown": the shutdown times out and forceStop ends it; the paused VM
    // is left (it cannot be shut down gracefully).
    let rig = Rig::new(
        "qemu-shutdown",
        fast_sim(),
        vec![deaf.clone(), paused.clone()],
        desired,
        serde_json::json!({"shutdown_timeout_secs": 1}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let report = pass(&mut engine, &rig.desired());
    assert_eq!(report.applied, 1, "{report:?}");
    assert_eq!(mutations_of(&rig.sim, 201), ["POST shutdown"]);
    let sent = &rig.sim.mutations()[0].params;
    assert_eq!(
        (sent["timeout"].as_str(), sent["forceStop"].as_str()),
        ("1", "1")
    );
    assert_eq!(rig.sim.guest(201).unwrap().status, PowerState::Stopped);
    assert!(mutations_of(&rig.sim, 202).is_empty());
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
    // stop_mode "stop": both are stopped hard.
    let rig = Rig::new(
        "qemu-stop",
        fast_sim(),
        vec![deaf, paused],
        desired,
        serde_json::json!({"stop_mode": "stop"}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let report = pass(&mut engine, &rig.desired());
    assert_eq!(report.applied, 2, "{report:?}");
    assert_eq!(mutations_of(&rig.sim, 201), ["POST stop"]);
    assert_eq!(mutations_of(&rig.sim, 202), ["POST stop"]);
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn a_field_the_guest_kind_lacks_is_an_error_naming_guest_and_field() {
    let desired = r#"{"guests": [{"vmid": 101, "state": "running", "sockets": 2},
                                  {"vmid": 201, "state": "running", "swap": 512}]}"#;
    let rig = Rig::new(
        "qemu-unfit",
        fast_sim(),
        vec![guest(101, false), vm(201)],
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
            "101 unfit: a container has no sockets: remove it from this guest, or check its vmid and type",
            "201 unfit: a virtual machine has no swap: remove it from this guest, or check its vmid and type"
        ]
    );
    assert!(rig.sim.mutations().is_empty());
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
    // With `type` given, the file itself is refused, naming the place.
    rig.write_desired(r#"{"guests": [{"vmid": 101, "type": "lxc", "sockets": 2}]}"#);
    let out = rig.bin(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("guest 101: sockets: a container has no sockets"),
        "{err}"
    );
}
