//! `adopt` as a table for both kinds, and the property export exists for: whatever a
//! guest's active config and power state hold, the planner plans nothing for the
//! adopted spec (and finds it in sync unless it leaves the guest alone).

use super::*;
use crate::plan::{plan, Actual, ActualGuest, PlanSettings, Skip, SkipReason};
use crate::rng::XorShift;
use std::collections::BTreeMap;

fn vmid(n: u64) -> Vmid {
    Vmid::new(n).unwrap()
}

fn observed(spec: ActualSpec) -> Observed {
    Observed {
        vmid: vmid(101),
        name: Some("web".into()),
        status: PowerState::Running,
        vm_power: None,
        lock: None,
        spec,
        pending: Vec::new(),
    }
}

/// Adopts `g` and renders the result as the export's JSON text plus its notes.
fn check(g: &Observed, expected: &str) {
    let (spec, notes) = adopt(g);
    let mut state = DesiredState::default();
    state.guests.insert(spec.vmid, spec);
    let mut got = state.to_json();
    for n in notes {
        got += &format!("note: {n}\n");
    }
    assert_eq!(got, expected);
}

#[test]
fn every_field_is_filled_in_as_the_planner_compares_it() {
    check(
        &observed(ActualSpec {
            cores: Some(2),
            memory: Some(1024),
            swap: Some(256),
            description: Some("web frontend\nsecond line\n".into()),
            onboot: Some(true),
            tags: Some("Web;prod,web".into()),
            ..ActualSpec::empty(GuestKind::Lxc)
        }),
        r#"{
  "version": 1,
  "guests": [
    {
      "vmid": 101,
      "name": "web",
      "state": "running",
      "cores": 2,
      "memory": 1024,
      "swap": 256,
      "description": "web frontend\nsecond line",
      "onboot": true,
      "tags": ["prod", "web"]
    }
  ]
}
"#,
    );
}

#[test]
fn absent_keys_take_pves_meaning_and_unset_cores_stays_unmanaged() {
    let mut g = observed(ActualSpec::empty(GuestKind::Lxc));
    g.status = PowerState::Stopped;
    g.name = None;
    check(
        &g,
        r#"{
  "version": 1,
  "guests": [
    {
      "vmid": 101,
      "state": "stopped",
      "memory": 512,
      "swap": 0,
      "description": "",
      "onboot": false,
      "tags": []
    }
  ]
}
note: 101: cores not set (all host cores): left out (unmanaged)
"#,
    );
}

#[test]
fn a_pending_change_is_left_to_its_restart_and_a_lock_is_noted() {
    let mut g = observed(ActualSpec {
        cores: Some(1),
        memory: Some(512),
        swap: Some(0),
        ..ActualSpec::empty(GuestKind::Lxc)
    });
    g.pending = vec![Field::Memory, Field::Tags];
    g.lock = Some("backup".into());
    let (spec, notes) = adopt(&g);
    assert_eq!((spec.memory, spec.tags, spec.cores), (None, None, Some(1)));
    assert_eq!(
        notes,
        [
            "101: locked (backup): read while PVE works on it; check it",
            "101: memory has a change pending until the next restart: left out (unmanaged)",
            "101: tags has a change pending until the next restart: left out (unmanaged)",
        ]
    );
}

#[test]
fn values_a_desired_state_cannot_hold_are_left_out() {
    let (spec, notes) = adopt(&observed(ActualSpec {
        cores: Some(9000),
        memory: Some(8),
        description: Some("x".repeat(8193)),
        tags: Some("ok;-bad".into()),
        ..ActualSpec::empty(GuestKind::Lxc)
    }));
    assert_eq!(
        (spec.cores, spec.memory, spec.description, spec.tags),
        (None, None, None, None)
    );
    // The desired-state parser's own words.
    assert_eq!(
        notes,
        [
            "101: cores expected an integer from 1 to 8192, found 9000: left out (unmanaged)",
            "101: memory expected an integer from 16 to 268435456 MiB, found 8: left out (unmanaged)",
            "101: description expected at most 8192 bytes, found 8193 bytes: shorten it: left out (unmanaged)",
            "101: tags invalid tag \"-bad\": a tag starts with a letter, digit or '_' and may go on with letters, digits, '_', '-', '+' and '.': left out (unmanaged)",
        ]
    );
}

#[test]
fn selection_by_vmid_or_tag() {
    let chosen = Selection::Chosen {
        vmids: vec![vmid(101)],
        tags: vec!["prod".to_string()],
    };
    assert!(chosen.wants(vmid(101), &[]));
    assert!(chosen.wants(vmid(102), &["prod".into()]));
    assert!(!chosen.wants(vmid(103), &["dev".into()]));
    assert!(Selection::All.wants(vmid(103), &[]));
}

/// A VM as the reader would see it: running, with the given config.
fn observed_vm(spec: ActualSpec) -> Observed {
    Observed {
        vmid: vmid(201),
        name: Some("db".into()),
        status: PowerState::Running,
        vm_power: Some(VmPower::Running),
        lock: None,
        spec,
        pending: Vec::new(),
    }
}

#[test]
fn a_vm_gets_its_type_and_every_vm_field() {
    check(
        &observed_vm(ActualSpec {
            cores: Some(2),
            sockets: Some(2),
            memory: Some(4096),
            balloon: Some(1024),
            description: Some("db server \t\n\n".into()),
            onboot: Some(true),
            tags: Some("DB;prod".into()),
            ..ActualSpec::empty(GuestKind::Qemu)
        }),
        r#"{
  "version": 1,
  "guests": [
    {
      "vmid": 201,
      "type": "qemu",
      "name": "db",
      "state": "running",
      "cores": 2,
      "sockets": 2,
      "memory": 4096,
      "balloon": 1024,
      "description": "db server",
      "onboot": true,
      "tags": ["db", "prod"]
    }
  ]
}
"#,
    );
}

#[test]
fn absent_vm_keys_take_qemu_servers_meaning_and_unset_balloon_stays_unmanaged() {
    let mut g = observed_vm(ActualSpec::empty(GuestKind::Qemu));
    g.status = PowerState::Stopped;
    g.vm_power = Some(VmPower::Stopped);
    check(
        &g,
        r#"{
  "version": 1,
  "guests": [
    {
      "vmid": 201,
      "type": "qemu",
      "name": "db",
      "state": "stopped",
      "cores": 1,
      "sockets": 1,
      "memory": 512,
      "description": "",
      "onboot": false,
      "tags": []
    }
  ]
}
note: 201: balloon not set (it follows memory): left out (unmanaged)
"#,
    );
}

#[test]
fn a_vm_the_agent_leaves_alone_gets_no_state_and_a_note_saying_why() {
    let vm = |power: VmPower, lock: Option<&str>| {
        let mut g = observed_vm(ActualSpec {
            balloon: Some(0),
            ..ActualSpec::empty(GuestKind::Qemu)
        });
        g.status = if power.has_process() {
            PowerState::Running
        } else {
            PowerState::Stopped
        };
        g.vm_power = Some(power);
        g.lock = lock.map(str::to_string);
        let (spec, notes) = adopt(&g);
        (spec.state.map(RunState::as_str), notes)
    };
    let none = |note: &str| (None, vec![format!("201: {note}")]);
    let alone = "no state written (the agent leaves a VM in this state alone)";
    assert_eq!(vm(VmPower::Running, None), (Some("running"), vec![]));
    assert_eq!(vm(VmPower::Stopped, None), (Some("stopped"), vec![]));
    for (power, lock, words) in [
        (VmPower::Paused, None, "paused"),
        (
            VmPower::Prelaunch,
            None,
            "in prelaunch (started frozen, waiting for a resume)",
        ),
        (VmPower::IoError, None, "halted on a disk error (io-error)"),
        (
            VmPower::GuestSuspended,
            None,
            "suspended by its guest (ACPI S3)",
        ),
        (
            VmPower::Hibernated,
            Some("suspended"),
            "hibernated (lock: suspended)",
        ),
        (
            VmPower::BackupOfStopped,
            Some("backup"),
            "stopped and being backed up (prelaunch, lock: backup)",
        ),
        (
            VmPower::ShutDownInside,
            None,
            "shut down inside while its QEMU is kept (shutdown)",
        ),
        (VmPower::Migrating, None, "migrating"),
        (
            VmPower::Other("guest-panicked".into()),
            None,
            "in QMP state guest-panicked",
        ),
    ] {
        assert_eq!(
            vm(power, lock),
            none(&format!("the VM is {words}: {alone}")),
            "{words}"
        );
    }
    // Another lock is noted as for a container, beside the state.
    let (state, notes) = vm(VmPower::Paused, Some("snapshot"));
    assert_eq!(state, None);
    assert_eq!(
        notes[0],
        "201: locked (snapshot): read while PVE works on it; check it"
    );
    // A VM whose power state was not read, or whose list status is unknown.
    let mut g = observed_vm(ActualSpec::empty(GuestKind::Qemu));
    g.vm_power = None;
    assert_eq!(adopt(&g).0.state, None);
    assert!(adopt(&g).1.contains(
        &"201: its power state was not read: no state written; add one by hand".to_string()
    ));
    g.status = PowerState::Unknown("frozen".into());
    assert!(adopt(&g).1.contains(&"201: the node lists a status the agent does not know (frozen): no state written; add one by hand".to_string()));
}

#[test]
fn a_vms_pending_cores_are_left_to_its_restart() {
    let mut g = observed_vm(ActualSpec {
        cores: Some(2),
        memory: Some(2048),
        ..ActualSpec::empty(GuestKind::Qemu)
    });
    g.pending = vec![Field::Cores, Field::Balloon];
    let (spec, notes) = adopt(&g);
    assert_eq!(
        (
            spec.cores,
            spec.sockets,
            spec.memory,
            spec.balloon,
            spec.swap
        ),
        (None, Some(1), Some(2048), None, None)
    );
    assert_eq!(
        notes,
        [
            "201: balloon not set (it follows memory): left out (unmanaged)",
            "201: cores has a change pending until the next restart: left out (unmanaged)",
            "201: balloon has a change pending until the next restart: left out (unmanaged)",
        ]
    );
}

#[test]
fn fuzz_the_planner_plans_nothing_for_an_adopted_guest() {
    crate::fuzz::cases("adopted guests plan nothing", |rng| {
        let kind = if rng.chance(0.5) {
            GuestKind::Lxc
        } else {
            GuestKind::Qemu
        };
        let vm_power = (kind == GuestKind::Qemu).then(|| random_vm_power(rng));
        let status = match &vm_power {
            Some(p) if p.has_process() => PowerState::Running,
            Some(_) => PowerState::Stopped,
            None if rng.chance(0.5) => PowerState::Running,
            None => PowerState::Stopped,
        };
        let g = Observed {
            vmid: vmid(100 + rng.below(1000)),
            name: rng.chance(0.5).then(|| "guest".to_string()),
            status,
            vm_power,
            lock: None,
            spec: random_actual(rng, kind),
            pending: Vec::new(),
        };
        let (spec, _notes) = adopt(&g);
        let mut desired = DesiredState::default();
        desired.guests.insert(g.vmid, spec);
        let text = desired.to_json();
        let desired = DesiredState::parse(&text, Path::new("export")).expect("reads back");
        assert_eq!(desired.to_json(), text, "reads back as written");
        let mut actual = Actual::default();
        actual.local.insert(
            g.vmid,
            ActualGuest {
                vmid: g.vmid,
                kind,
                tags: None,
                vm_power: g.vm_power.clone(),
                name: g.name.clone(),
                status: g.status.clone(),
                lock: None,
                template: false,
                spec: Ok(g.spec.clone()),
            },
        );
        let p = plan(
            &desired,
            &actual,
            &BTreeMap::new(),
            &PlanSettings::default(),
        );
        assert!(p.actions.is_empty(), "{:?}\n{text}", p.actions);
        match &g.vm_power {
            // The planner leaves such a VM alone, whatever its entry says.
            Some(power) if power.leave_alone() => {
                assert!(
                    matches!(
                        p.skipped[..],
                        [Skip {
                            reason: SkipReason::VmState { .. },
                            ..
                        }]
                    ),
                    "{:?}",
                    p.skipped
                );
            }
            _ => assert_eq!(p.in_sync, [g.vmid], "{:?}\n{text}", p.skipped),
        }
    });
}

/// Any power state a VM's `status/current` may give.
fn random_vm_power(rng: &mut XorShift) -> VmPower {
    let all = [
        VmPower::Running,
        VmPower::Stopped,
        VmPower::Hibernated,
        VmPower::Paused,
        VmPower::IoError,
        VmPower::GuestSuspended,
        VmPower::BackupOfStopped,
        VmPower::Prelaunch,
        VmPower::ShutDownInside,
        VmPower::Migrating,
        VmPower::Other("guest-panicked".into()),
    ];
    all[rng.below(all.len() as u64) as usize].clone()
}

/// An active config of `kind` as PVE could return it, including values a desired state
/// cannot hold and tag strings in every separator and case.
fn random_actual(rng: &mut XorShift, kind: GuestKind) -> ActualSpec {
    let pick =
        |rng: &mut XorShift, xs: &[&str]| xs[rng.below(xs.len() as u64) as usize].to_string();
    let vm = kind == GuestKind::Qemu;
    ActualSpec {
        cores: rng.chance(0.7).then(|| rng.below(10_000) as u32),
        sockets: (vm && rng.chance(0.5)).then(|| rng.below(5000) as u32),
        memory: rng.chance(0.8).then(|| rng.below(100_000)),
        balloon: (vm && rng.chance(0.5)).then(|| rng.below(100_000)),
        swap: (!vm && rng.chance(0.8)).then(|| rng.below(100_000)),
        description: rng.chance(0.5).then(|| {
            pick(
                rng,
                &[
                    "",
                    "\n",
                    "one\n",
                    "one\ntwo\n\n",
                    "tab\there\r\n",
                    "trailing \t ",
                    "é€\n",
                    "x",
                ],
            )
        }),
        onboot: rng.chance(0.7).then(|| rng.chance(0.5)),
        tags: rng.chance(0.6).then(|| {
            pick(
                rng,
                &[
                    "",
                    "prod",
                    "Prod;web",
                    "web,prod ,web",
                    "a;b;A",
                    " x\ty\n",
                    "bad!",
                ],
            )
        }),
        digest: "d".into(),
        pending: Vec::new(),
        ..ActualSpec::empty(kind)
    }
}
