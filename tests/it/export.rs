//! `felhom-agent export` against the simulated node: adopting a drifted fleet plans
//! nothing, an edit of the export plans exactly that edit, and export is read-only
//! beside a running agent. Virtual machines beside containers: [`vms`].

mod vms;

use super::rig::{fast_sim, Rig};
use felhom_agent::action::ActionKind;
use felhom_agent::journal::{Journal, JournalOptions};
use felhom_agent::sim::fleet;
use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `plan --json`'s actions, as `vmid kind key=value...` lines (digest left out).
/// `text`, an export, as the desired state: it plans nothing, and a pass changes
/// nothing on the node.
fn assert_adopted(rig: &Rig, text: &str) {
    rig.write_desired(text);
    assert_eq!(planned(rig), Vec::<String>::new());
    let out = rig.bin(&["once", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["planned"], 0, "{report}");
    assert!(rig.sim.mutations().is_empty(), "adopting changed nothing");
}

/// `text` with `key` of guest `vmid` set to `value`: exactly `expected` is planned.
fn assert_one_edit_planned(
    rig: &Rig,
    text: &str,
    vmid: u64,
    key: &str,
    value: serde_json::Value,
    expected: &str,
) {
    let mut doc: serde_json::Value = serde_json::from_str(text).unwrap();
    let guest = doc["guests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|g| g["vmid"] == vmid)
        .unwrap();
    guest[key] = value;
    rig.write_desired(&doc.to_string());
    assert_eq!(planned(rig), [expected], "{key} of {vmid}");
}

fn planned(rig: &Rig) -> Vec<String> {
    let out = rig.bin(&["plan", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let mut line = format!("{} {}", a["vmid"], a["kind"].as_str().unwrap());
            for (k, p) in a["params"].as_object().unwrap() {
                if k != "digest" {
                    line += &format!(" {k}={}", p.as_str().unwrap());
                }
            }
            line
        })
        .collect()
}

/// The export, checked to have succeeded.
fn export(rig: &Rig, args: &[&str]) -> (String, String) {
    let mut all = vec!["export"];
    all.extend(args);
    let out = rig.bin(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    (stdout(&out), stderr(&out))
}

/// The vmids an export names.
fn vmids(text: &str) -> Vec<u64> {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    v["guests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["vmid"].as_u64().unwrap())
        .collect()
}

/// Ten varied guests, drifted from a desired state that wants them all running with
/// 2 GiB, and spelled the ways PVE may store them: upper-case and repeated tags, a
/// description with trailing blank lines, no swap or onboot key.
fn drifted_rig(tag: &str) -> Rig {
    let mut guests = fleet(10, "pve1");
    guests[0].tags = Some("Web;PROD;web".into());
    guests[1].description = Some("db server\n\n\n".into());
    guests[2].swap = None;
    guests[2].onboot = None;
    let desired: Vec<String> = (100..110)
        .map(|v| format!(r#"{{"vmid": {v}, "state": "running", "memory": 2048}}"#))
        .collect();
    Rig::new(
        tag,
        fast_sim(),
        guests,
        &format!(r#"{{"guests": [{}]}}"#, desired.join(",")),
        serde_json::json!({}),
    )
}

#[test]
fn adopting_the_export_of_a_drifted_fleet_plans_nothing() {
    let rig = drifted_rig("export-fleet");
    assert!(planned(&rig).len() > 5, "the fleet starts drifted");
    let (text, notes) = export(&rig, &["--all"]);
    assert_eq!(vmids(&text), (100..110).collect::<Vec<_>>());
    // Guests without `cores` (104, 109) keep it unmanaged, and say so; the locked guest
    // (103) is noted.
    assert!(
        notes.contains("104: cores not set (all host cores)"),
        "{notes}"
    );
    assert!(notes.contains("109: cores not set"), "{notes}");
    assert!(notes.contains("103: locked (backup)"), "{notes}");
    assert!(text.contains(r#""tags": ["prod", "web"]"#), "{text}");
    assert!(text.contains(r#""description": "db server""#), "{text}");
    assert!(text.contains(r#""name": "web1""#), "{text}");

    assert_adopted(&rig, &text);

    // One field edited in the export: exactly that change is planned.
    for (vmid, key, value, expected) in [
        (
            101,
            "memory",
            serde_json::json!(4096),
            "101 set_config memory=4096",
        ),
        (
            105,
            "tags",
            serde_json::json!(["dev"]),
            "105 set_config tags=dev",
        ),
        (
            100,
            "state",
            serde_json::json!("stopped"),
            "100 shutdown forceStop=1 timeout=5",
        ),
    ] {
        assert_one_edit_planned(&rig, &text, vmid, key, value, expected);
    }
}

#[test]
fn export_chooses_by_vmid_and_tag_and_refuses_what_is_not_there() {
    let rig = drifted_rig("export-choose");
    // fleet(10) tags every third guest `prod`.
    let (text, _) = export(&rig, &["--tag", "PROD"]);
    assert_eq!(vmids(&text), [100, 103, 106, 109]);
    let (text, _) = export(&rig, &["--vmid", "101,102", "--tag", "prod"]);
    assert_eq!(vmids(&text), [100, 101, 102, 103, 106, 109]);
    let (text, notes) = export(&rig, &["--tag", "nosuch"]);
    assert_eq!(vmids(&text), Vec::<u64>::new());
    assert!(
        notes.contains("no guest on node pve1 has the tag nosuch"),
        "{notes}"
    );
    // Only the chosen guests' configs were read.
    rig.sim.clear_requests();
    export(&rig, &["--vmid", "105"]);
    let read: Vec<u32> = rig.sim.requests().iter().filter_map(|r| r.vmid).collect();
    assert_eq!(read, [105, 105], "its config and its pending section");

    for (args, message) in [
        (&["--vmid", "101,999"][..], "no guest 999 on node pve1"),
        (&["--all", "--vmid", "101"], "--all cannot be combined"),
        (&[], "choose the guests with --vmid, --tag or --all"),
        (&["--vmid", "12"], "invalid vmid \"12\""),
        (&["--all", "--tail", "3"], "export does not take --tail"),
    ] {
        let mut all = vec!["export"];
        all.extend(args);
        let out = rig.bin(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "nothing exported");
    }
    assert!(rig.sim.mutations().is_empty());
}

#[test]
fn a_pending_change_stays_unmanaged_and_adopting_it_plans_nothing() {
    let rig = drifted_rig("export-pending");
    rig.sim.update_guest(101, |g| {
        g.pending.insert("memory".into(), "8192".into());
    });
    let (text, notes) = export(&rig, &["--vmid", "101"]);
    assert!(
        notes.contains("101: memory has a change pending until the next restart"),
        "{notes}"
    );
    assert!(!text.contains("\"memory\""), "{text}");
    assert!(text.contains("\"swap\": 0"), "{text}");
    rig.write_desired(&text);
    assert_eq!(planned(&rig), Vec::<String>::new());
}

#[test]
fn export_runs_beside_an_agent_that_holds_the_journal() {
    let rig = drifted_rig("export-beside");
    // The running agent's journal: locked, with an op of its own in flight on 102.
    let journal = Journal::open(&rig.state_dir(), JournalOptions::default()).unwrap();
    let op = journal
        .begin(&super::journal::action(102, ActionKind::Start))
        .unwrap();
    let before = std::fs::read(journal.path()).unwrap();
    let (text, notes) = export(&rig, &["--vmid", "101,102"]);
    assert_eq!(vmids(&text), [101, 102]);
    assert!(
        notes.contains(&format!("102: the agent's op {op} start is in flight")),
        "{notes}"
    );
    assert_eq!(
        std::fs::read(journal.path()).unwrap(),
        before,
        "journal untouched"
    );
    // No desired file is needed to export one.
    std::fs::remove_file(rig.dir.path().join("desired.json")).unwrap();
    export(&rig, &["--all"]);
    journal.abandoned(op, "test over").unwrap();
    journal.close().unwrap();
    assert!(rig.sim.mutations().is_empty());
}
