//! VM power calls over raw HTTP: `qm*` tasks, a start that applies pending changes,
//! shutdown through ACPI or the guest agent with its timeout and `forceStop`, and the
//! states the agent must not fight (paused, a backup of a stopped VM, hibernated,
//! templates, HA).

use super::vm_api::vm;
use super::*;
use felhom_agent::sim::{PowerState, QmpState};

fn vm_post(sim: &Sim, id: u32, op: &str, form: &str) -> Resp {
    post(sim, &format!("/nodes/pve1/qemu/{id}/status/{op}"), form)
}

/// Starts a power call and waits for its task's exit status.
fn exit_of(sim: &Sim, id: u32, op: &str, form: &str) -> String {
    let upid = upid_of(&vm_post(sim, id, op, form));
    finished(sim, &upid)["exitstatus"]
        .as_str()
        .unwrap()
        .to_string()
}

fn state(sim: &Sim, id: u32) -> (PowerState, QmpState) {
    let g = sim.guest(id).unwrap();
    (g.status, g.qmp)
}

#[test]
fn a_start_applies_pending_changes_and_a_shutdown_takes_the_next_ones() {
    let sim = start(vec![vm(100).with_pending("cores", "2")]);
    let upid = upid_of(&vm_post(&sim, 100, "start", ""));
    assert_eq!(upid.split(':').nth(5), Some("qmstart"));
    assert_eq!(finished(&sim, &upid)["exitstatus"], "OK");
    let g = sim.guest(100).unwrap();
    assert_eq!((g.status, g.cores), (PowerState::Running, Some(2)));
    assert!(g.pending.is_empty());
    // Pending while it runs, applied by the API shutdown.
    let r = put(&sim, "/nodes/pve1/qemu/100/config", "cores=4");
    assert_eq!(r.status, 200);
    assert_eq!(sim.guest(100).unwrap().pending["cores"], "4");
    let upid = upid_of(&vm_post(&sim, 100, "shutdown", "timeout=30"));
    assert_eq!(upid.split(':').nth(5), Some("qmshutdown"));
    assert_eq!(finished(&sim, &upid)["exitstatus"], "OK");
    let g = sim.guest(100).unwrap();
    assert_eq!((g.status, g.cores), (PowerState::Stopped, Some(4)));
    let by_type = get(&sim, "/nodes/pve1/tasks?typefilter=qmshutdown").json();
    assert_eq!(by_type["total"], 1);
}

#[test]
fn a_start_of_a_running_vm_fails_in_its_task_and_a_stop_of_a_stopped_one_succeeds() {
    let sim = start(vec![vm(100).running(), vm(101)]);
    // Sends intents the VMs already meet, to see the node's answer.
    sim.allow_violations();
    let r = vm_post(&sim, 100, "start", "");
    assert_eq!(r.status, 200, "no synchronous check, unlike a container");
    assert_eq!(
        finished(&sim, &upid_of(&r))["exitstatus"],
        "VM 100 already running"
    );
    assert_eq!(exit_of(&sim, 101, "stop", ""), "OK");
    assert_eq!(exit_of(&sim, 101, "shutdown", "timeout=10"), "OK");
    assert_eq!(state(&sim, 101).0, PowerState::Stopped);
    assert_eq!(sim.audit().violations.len(), 3, "{}", sim.audit());
}

#[test]
fn an_acpi_shutdown_times_out_unless_forced() {
    let sim = start_with(|o| o.shutdown_duration = Duration::from_secs(3));
    sim.add_guest(vm(100).running());
    sim.add_guest(vm(101).running());
    let mut deaf = vm(102).running();
    deaf.ignores_acpi = true;
    sim.add_guest(deaf);
    let gives_up = upid_of(&vm_post(&sim, 100, "shutdown", "timeout=0"));
    let forced = upid_of(&vm_post(&sim, 101, "shutdown", "timeout=0&forceStop=1"));
    assert_eq!(
        finished(&sim, &gives_up)["exitstatus"],
        "VM quit/powerdown failed - got timeout"
    );
    assert_eq!(finished(&sim, &forced)["exitstatus"], "OK");
    assert_eq!(state(&sim, 100).0, PowerState::Running);
    assert_eq!(state(&sim, 101).0, PowerState::Stopped);
    // A guest that ignores the power button runs into the timeout however long it is.
    assert_eq!(
        exit_of(&sim, 102, "shutdown", "timeout=1"),
        "VM quit/powerdown failed - got timeout"
    );
    assert_eq!(state(&sim, 102).0, PowerState::Running);
}

#[test]
fn a_shutdown_goes_through_the_guest_agent_when_one_answers() {
    let sim = start_with(|o| o.shutdown_duration = Duration::from_millis(1500));
    let mut agent = vm(100).running().with_config("agent", "1");
    agent.guest_agent = true;
    agent.ignores_acpi = true;
    sim.add_guest(agent.clone());
    // Enabled in the config but dead in the guest: ACPI, which this guest ignores.
    let mut dead = agent.clone();
    dead.vmid = 101;
    dead.guest_agent = false;
    sim.add_guest(dead);
    let mut slow = agent;
    slow.vmid = 102;
    sim.add_guest(slow);
    let via_agent = upid_of(&vm_post(&sim, 100, "shutdown", "timeout=5"));
    let via_acpi = upid_of(&vm_post(&sim, 101, "shutdown", "timeout=1"));
    let too_short = upid_of(&vm_post(&sim, 102, "shutdown", "timeout=1"));
    assert_eq!(finished(&sim, &via_agent)["exitstatus"], "OK");
    assert_eq!(
        finished(&sim, &via_acpi)["exitstatus"],
        "VM quit/powerdown failed - got timeout"
    );
    assert_eq!(
        finished(&sim, &too_short)["exitstatus"],
        "VM quit/powerdown failed",
        "the agent's wait ran out: no suffix"
    );
    assert_eq!(state(&sim, 100).0, PowerState::Stopped);
    assert_eq!(state(&sim, 101).0, PowerState::Running);
    assert_eq!(state(&sim, 102).0, PowerState::Running);
}

#[test]
fn a_paused_vm_refuses_a_graceful_shutdown() {
    let sim = start(vec![vm(100).paused(), vm(101).paused(), vm(102).paused()]);
    let r = vm_post(&sim, 100, "shutdown", "timeout=10");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "VM is paused - cannot shutdown")
    );
    assert_eq!(r.json()["message"], "VM is paused - cannot shutdown\n");
    assert!(sim.tasks_started(100).is_empty());
    // forceStop turns it into a stop, still a qmshutdown task; stop works as well.
    let upid = upid_of(&vm_post(&sim, 101, "shutdown", "timeout=10&forceStop=1"));
    assert_eq!(upid.split(':').nth(5), Some("qmshutdown"));
    assert_eq!(finished(&sim, &upid)["exitstatus"], "OK");
    assert_eq!(exit_of(&sim, 102, "stop", ""), "OK");
    assert_eq!(state(&sim, 101), (PowerState::Stopped, QmpState::Running));
    assert_eq!(state(&sim, 102).0, PowerState::Stopped);
    assert_eq!(state(&sim, 100), (PowerState::Running, QmpState::Paused));
}

#[test]
fn a_backup_of_a_stopped_vm_is_locked_and_a_start_boots_it() {
    let sim = start(vec![
        vm(100).backup_of_stopped(),
        vm(101).backup_of_stopped(),
    ]);
    let r = vm_post(&sim, 100, "shutdown", "timeout=10");
    assert_eq!(
        r.reason, "VM is paused - cannot shutdown",
        "prelaunch counts as paused"
    );
    assert_eq!(exit_of(&sim, 100, "stop", ""), "VM is locked (backup)");
    assert_eq!(state(&sim, 100), (PowerState::Running, QmpState::Prelaunch));
    // A start resumes the QEMU the backup runs, which boots the guest.
    assert_eq!(exit_of(&sim, 101, "start", ""), "OK");
    assert_eq!(state(&sim, 101), (PowerState::Running, QmpState::Running));
    assert_eq!(sim.guest(101).unwrap().lock.as_deref(), Some("backup"));
}

#[test]
fn a_hibernated_vm_resumes_without_its_pending_changes() {
    let sim = start(vec![
        vm(100).hibernated().with_pending("cores", "4"),
        vm(101).hibernated(),
    ]);
    let r = put(&sim, "/nodes/pve1/qemu/100/config", "onboot=1");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "VM is locked (suspended)")
    );
    assert_eq!(exit_of(&sim, 100, "start", ""), "OK");
    let g = sim.guest(100).unwrap();
    assert_eq!(
        (g.status, g.lock.as_deref(), g.cores),
        (PowerState::Running, None, Some(1))
    );
    assert_eq!(g.pending["cores"], "4", "applied only by a cold start");
    assert!(!g.other.contains_key("vmstate"));
    // A stop of a hibernated VM has nothing to do.
    sim.allow_violations();
    assert_eq!(exit_of(&sim, 101, "stop", ""), "OK");
    assert_eq!(sim.guest(101).unwrap().lock.as_deref(), Some("suspended"));
}

#[test]
fn locks_templates_freeze_and_too_many_vcpus_fail_or_hold_in_the_task() {
    let sim = start(vec![
        vm(100).running(),
        vm(101),
        vm(102).with_config("freeze", "1"),
        vm(103)
            .with_config("sockets", "2")
            .with_config("cores", "8"),
        vm(104).with_config("hotplug", "disk,memory"),
    ]);
    sim.update_guest(100, |g| g.lock = Some("migrate".into()));
    sim.update_guest(101, |g| g.template = true);
    sim.allow_violations();
    assert_eq!(exit_of(&sim, 100, "start", ""), "VM is locked (migrate)");
    assert_eq!(
        exit_of(&sim, 100, "shutdown", "timeout=5"),
        "VM is locked (migrate)"
    );
    assert_eq!(
        exit_of(&sim, 101, "start", ""),
        "you can't start a vm if it's a template"
    );
    assert_eq!(exit_of(&sim, 102, "start", ""), "OK");
    assert_eq!(state(&sim, 102), (PowerState::Running, QmpState::Prelaunch));
    assert_eq!(
        exit_of(&sim, 103, "start", ""),
        "MAX 8 vcpus allowed per VM on this node"
    );
    assert_eq!(
        exit_of(&sim, 104, "start", ""),
        "NUMA needs to be enabled for memory hotplug"
    );
    assert_eq!(state(&sim, 103).0, PowerState::Stopped);
}

#[test]
fn ha_vms_get_ha_tasks_and_change_state_later() {
    let sim = start(vec![
        vm(100).ha("stopped"),
        vm(101).running().ha("started"),
        vm(102).ha("error"),
    ]);
    // The refused stop arrives while the shutdown's request is in flight, on purpose.
    sim.allow_violations();
    let up = upid_of(&vm_post(&sim, 100, "start", ""));
    assert_eq!(up.split(':').nth(5), Some("hastart"));
    let down = upid_of(&vm_post(&sim, 101, "shutdown", "timeout=10"));
    assert_eq!(down.split(':').nth(5), Some("hastop"));
    let r = vm_post(&sim, 101, "stop", "overrule-shutdown=1");
    assert_eq!(
        r.param_error("overrule-shutdown"),
        "Not applicable for HA resources."
    );
    assert_eq!(
        exit_of(&sim, 102, "start", ""),
        "service 'vm:102' in error state, must be disabled and fixed first"
    );
    assert_eq!(task_status(&sim, &up)["exitstatus"], "OK");
    assert!(sim.wait_until(DEADLINE, |s| {
        s.guest(100).unwrap().status == PowerState::Running
            && s.guest(101).unwrap().status == PowerState::Stopped
    }));
}

#[test]
fn tasks_take_the_config_lock_and_wait_for_it() {
    let sim = start_with(|o| {
        o.shutdown_duration = Duration::from_secs(3);
        o.lock_wait = Duration::from_millis(200);
    });
    // Races the shutdown on purpose, to see its config lock.
    sim.allow_violations();
    sim.add_guest(vm(100).running());
    let shut = upid_of(&vm_post(&sim, 100, "shutdown", "timeout=30"));
    let lock = "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout";
    let r = put(&sim, "/nodes/pve1/qemu/100/config", "onboot=1");
    assert_eq!((r.status, r.reason.as_str()), (500, lock));
    // A stop gets its task at once; the task gives up waiting for the lock.
    let stop = upid_of(&vm_post(&sim, 100, "stop", ""));
    assert!(sim.wait_until(DEADLINE, |s| s.running_tasks() == 1));
    assert_eq!(task_status(&sim, &stop)["exitstatus"], lock);
    // overrule-shutdown aborts the shutdown, and the stop goes ahead.
    let stop = upid_of(&vm_post(&sim, 100, "stop", "overrule-shutdown=1"));
    assert_eq!(task_status(&sim, &shut)["exitstatus"], "received interrupt");
    assert_eq!(finished(&sim, &stop)["exitstatus"], "OK");
    assert_eq!(state(&sim, 100).0, PowerState::Stopped);
}

#[test]
fn root_only_parameters_and_quorum() {
    let sim = start(vec![vm(100), vm(101).running()]);
    let r = vm_post(&sim, 100, "start", "stateuri=tcp");
    assert_eq!(r.param_error("stateuri"), "Only root may use this option.");
    let r = vm_post(&sim, 101, "shutdown", "keepActive=1");
    assert_eq!(
        r.param_error("keepActive"),
        "Only root may use this option."
    );
    let r = vm_post(&sim, 101, "shutdown", "timeout=-1");
    assert_eq!(r.status, 400);
    sim.set_quorate(false);
    let r = vm_post(&sim, 100, "start", "");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "cluster not ready - no quorum?")
    );
    assert!(sim.tasks_started(100).is_empty() && sim.tasks_started(101).is_empty());
}
