//! `adopt` as a table, and the property export exists for: whatever a guest's active
//! config holds, the planner finds the adopted spec in sync.

use super::*;
use crate::plan::{plan, Actual, ActualGuest, PlanSettings};
use crate::rng::XorShift;
use std::collections::BTreeMap;

fn vmid(n: u64) -> Vmid {
    Vmid::new(n).unwrap()
}

fn observed(spec: ActualSpec) -> Observed {
    Observed {
        vmid: vmid(101),
        name: Some("web".into()),
        running: Some(true),
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
            ..ActualSpec::empty(crate::pve::GuestKind::Lxc)
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
    let mut g = observed(ActualSpec::empty(crate::pve::GuestKind::Lxc));
    g.running = Some(false);
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
        ..ActualSpec::empty(crate::pve::GuestKind::Lxc)
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
        ..ActualSpec::empty(crate::pve::GuestKind::Lxc)
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

#[test]
fn fuzz_the_planner_finds_an_adopted_guest_in_sync() {
    crate::fuzz::cases("adopted guests plan nothing", |rng| {
        let g = Observed {
            vmid: vmid(100 + rng.below(1000)),
            name: rng.chance(0.5).then(|| "ct".to_string()),
            running: Some(rng.chance(0.5)),
            lock: None,
            spec: random_actual(rng),
            pending: Vec::new(),
        };
        let (spec, _notes) = adopt(&g);
        let mut desired = DesiredState::default();
        desired.guests.insert(g.vmid, spec);
        let text = desired.to_json();
        let desired = DesiredState::parse(&text, Path::new("export")).expect("reads back");
        let mut actual = Actual::default();
        actual.local.insert(
            g.vmid,
            ActualGuest {
                vmid: g.vmid,
                kind: crate::pve::GuestKind::Lxc,
                tags: None,
                vm_power: None,
                name: g.name.clone(),
                status: if g.running == Some(true) {
                    crate::pve::PowerState::Running
                } else {
                    crate::pve::PowerState::Stopped
                },
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
        assert_eq!(p.in_sync, [g.vmid]);
    });
}

/// An active config as PVE could return it, including values a desired state cannot
/// hold and tag strings in every separator and case.
fn random_actual(rng: &mut XorShift) -> ActualSpec {
    let pick =
        |rng: &mut XorShift, xs: &[&str]| xs[rng.below(xs.len() as u64) as usize].to_string();
    ActualSpec {
        cores: rng.chance(0.7).then(|| rng.below(10_000) as u32),
        memory: rng.chance(0.8).then(|| rng.below(100_000)),
        swap: rng.chance(0.8).then(|| rng.below(100_000)),
        description: rng.chance(0.5).then(|| {
            pick(
                rng,
                &[
                    "",
                    "\n",
                    "one\n",
                    "one\ntwo\n\n",
                    "tab\there\r\n",
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
        ..ActualSpec::empty(crate::pve::GuestKind::Lxc)
    }
}
