//! The node's audit of VM requests, and the fault rules on VM paths: an intent sent
//! twice (a start of a running VM, a config write whose values already hold or already
//! wait in the pending section), two actions in flight, and faults aimed at a VM.

use super::vm_api::vm;
use super::*;
use felhom_agent::sim::{Effect, FaultRule, Faults, Match, Violation};

const CONFIG: &str = "/nodes/pve1/qemu/100/config";

/// The `why` of each intent-sent-twice violation, in order.
fn redundant(sim: &Sim) -> Vec<String> {
    sim.audit()
        .violations
        .iter()
        .filter_map(|v| match v {
            Violation::Redundant { why, .. } => Some(why.clone()),
            Violation::Overlap { .. } => None,
        })
        .collect()
}

#[test]
fn a_clean_vm_sequence_passes() {
    let sim = start(vec![vm(100)]);
    let upid = upid_of(&post(&sim, "/nodes/pve1/qemu/100/status/start", ""));
    assert_eq!(finished(&sim, &upid)["exitstatus"], "OK");
    assert_eq!(put(&sim, CONFIG, "cores=2").status, 200);
    let upid = upid_of(&post(&sim, CONFIG, "onboot=1"));
    assert_eq!(finished(&sim, &upid)["exitstatus"], "OK");
    let a = sim.audit();
    assert!(a.is_clean(), "{a}");
    assert_eq!(a.checked, 3);
}

#[test]
fn power_intents_already_met_are_caught() {
    let sim = start(vec![
        vm(100).running(),
        vm(101).paused(),
        vm(102),
        vm(103).backup_of_stopped(),
    ]);
    sim.allow_violations();
    for (id, op) in [
        (100, "start"),
        (101, "start"),
        (102, "stop"),
        (102, "shutdown"),
        (103, "start"),
    ] {
        let form = if op == "shutdown" { "timeout=5" } else { "" };
        let r = post(&sim, &format!("/nodes/pve1/qemu/{id}/status/{op}"), form);
        finished(&sim, &upid_of(&r));
    }
    assert_eq!(
        redundant(&sim),
        [
            "the guest was running",
            "the guest was running (qmpstatus paused)",
            "the guest was stopped and no task of it was running",
            "the guest was stopped and no task of it was running",
        ],
        "a start under a backup's lock resumes the VM: not met before"
    );
}

#[test]
fn writing_again_what_holds_or_waits_in_pending_is_caught() {
    let sim = start(vec![vm(100)
        .running()
        .with_config("onboot", "1")
        .with_config("description", "db")
        .with_config("memory", "current=2048")
        .with_pending("cores", "4")
        .with_pending_delete("numa")]);
    sim.allow_violations();
    assert_eq!(put(&sim, CONFIG, "onboot=1&description=db%0A").status, 200);
    assert_eq!(put(&sim, CONFIG, "cores=4").status, 200);
    let upid = upid_of(&post(&sim, CONFIG, "cores=4&delete=numa"));
    finished(&sim, &upid);
    // Not met: the node compares memory as text, and `2048` is not `current=2048`.
    assert_eq!(put(&sim, CONFIG, "memory=2048").status, 200);
    assert_eq!(put(&sim, CONFIG, "cores=2").status, 200);
    let why = redundant(&sim);
    assert_eq!(why.len(), 3, "{}", sim.audit());
    assert!(
        why[0].contains("onboot=\"1\"") && why[0].contains("description="),
        "{why:?}"
    );
    assert!(why[1].contains("cores=\"4\""), "{why:?}");
    assert!(why[2].contains("delete=\"numa\""), "{why:?}");
}

#[test]
fn a_config_task_and_a_start_in_flight_together_overlap() {
    let sim = start(vec![vm(100)]);
    sim.allow_violations();
    sim.set_faults(Faults {
        hang_tasks: [100].into(),
        ..Faults::default()
    });
    let config = upid_of(&post(&sim, CONFIG, "cores=2"));
    let r = post(&sim, "/nodes/pve1/qemu/100/status/start", "");
    assert_eq!(r.status, 200);
    let a = sim.audit();
    match &a.violations[..] {
        [Violation::Overlap {
            vmid: 100,
            first,
            second,
        }] => {
            assert_eq!(first.task.as_deref(), Some(config.as_str()));
            assert_eq!(first.until, None, "the config task still runs");
            assert!(second.path.ends_with("/status/start"));
        }
        other => panic!("{other:?}"),
    }
    sim.set_faults(Faults::default());
}

#[test]
fn fault_rules_aim_at_vm_requests() {
    let sim = start(vec![vm(100), vm(101)]);
    sim.set_faults(
        Faults::rule(FaultRule::new(
            Match::post("/status/start").vmid(100),
            Effect::StatusBefore(503),
        ))
        .with(FaultRule::new(
            Match::get("/qemu").vmid(101),
            Effect::StatusBefore(500),
        )),
    );
    let r = post(&sim, "/nodes/pve1/qemu/100/status/start", "");
    assert_eq!(r.status, 503);
    assert!(sim.tasks_started(100).is_empty(), "not executed");
    assert_eq!(get(&sim, "/nodes/pve1/qemu/101/status/current").status, 500);
    assert_eq!(get(&sim, "/nodes/pve1/qemu/100/status/current").status, 200);
    assert_eq!(sim.fault_hits(), [1, 1]);
    let mut f = Faults::default();
    f.fail_tasks.insert(101, "simulated failure".into());
    sim.set_faults(f);
    let upid = upid_of(&post(&sim, "/nodes/pve1/qemu/101/status/start", ""));
    assert_eq!(finished(&sim, &upid)["exitstatus"], "simulated failure");
    let mutations = sim.mutations();
    assert_eq!(
        mutations.iter().filter_map(|r| r.vmid).collect::<Vec<_>>(),
        [100, 101]
    );
}
