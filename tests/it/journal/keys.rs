//! One-shot keys in the journal: recorded with their op in format version 2, found
//! again after a reopen and by the read-only reader, and kept through any number of
//! compactions once spent, in a file that mixes format versions.

use super::{action, assert_seqs_increase, line_of, opts, upid, TempDir};
use felhom_agent::action::{Action, ActionKind};
use felhom_agent::journal::{
    crc32c, keys_of, read_records, Journal, JournalError, JournalOptions, KeyUse, OpId, OpState,
    Record,
};
use felhom_agent::pve::Vmid;
use std::collections::BTreeMap;

fn keyed(vmid: u64, kind: ActionKind, key: &str) -> Action {
    Action {
        key: Some(key.into()),
        guard: None,
        ..action(vmid, kind)
    }
}

/// The keys, one a line: `101 boot: op 1 start succeeded task spent`.
fn render(keys: &BTreeMap<(Vmid, String), KeyUse>) -> String {
    keys.iter()
        .map(|((vmid, key), used)| {
            format!(
                "{vmid} {key}: op {} {} {}{}{}\n",
                used.op,
                used.kind,
                used.state,
                if used.upid.is_some() { " task" } else { "" },
                if used.is_spent() { " spent" } else { "" },
            )
        })
        .collect()
}

/// `records` as `op version key`, one a line, for the ops in `ops`.
fn versions(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{} v{} {}", r.op, r.v, r.key.as_deref().unwrap_or("-")))
        .collect()
}

#[test]
fn every_state_of_a_keyed_op_and_whether_it_spends_the_key() {
    let dir = TempDir::new("keys-states");
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert!(journal.keys().is_empty());

    let boot = journal
        .begin(&keyed(101, ActionKind::Start, "boot"))
        .unwrap();
    assert_eq!(
        render(&journal.keys()),
        "101 boot: op 1 start started spent\n"
    );
    let task = upid(101, "vzstart", 1);
    journal.task_running(boot, &task).unwrap();
    assert_eq!(
        render(&journal.keys()),
        "101 boot: op 1 start task_running task spent\n"
    );
    journal.succeeded(boot).unwrap();
    let halt = journal
        .begin(&keyed(102, ActionKind::Stop, "halt"))
        .unwrap();
    // Refused with no task: the key is not spent.
    journal.failed(halt, "CT 102 not running").unwrap();
    let retry = journal
        .begin(&keyed(103, ActionKind::Start, "boot"))
        .unwrap();
    journal.abandoned(retry, "no task found").unwrap();
    let pending = journal
        .begin(&keyed(104, ActionKind::Shutdown, "once"))
        .unwrap();
    let ordinary = journal.begin(&action(105, ActionKind::Start)).unwrap();
    journal.succeeded(ordinary).unwrap();

    let keys = journal.keys();
    assert_eq!(
        render(&keys),
        "101 boot: op 1 start succeeded task spent\n\
         102 halt: op 2 stop failed\n\
         103 boot: op 3 start abandoned\n\
         104 once: op 4 shutdown started spent\n"
    );
    let now = felhom_agent::time::unix_now();
    for used in keys.values() {
        assert!((now - 60..=now).contains(&used.started_at), "{used:?}");
        match used.finished_at {
            Some(t) => assert!(used.state.is_finished() && t >= used.started_at),
            None => assert!(!used.state.is_finished(), "{used:?}"),
        }
    }
    assert_eq!(
        keys[&(Vmid::new(101).unwrap(), "boot".into())].upid,
        Some(task.clone())
    );
    assert!(journal.upids().contains(&task));
    // The summaries carry the key too.
    assert_eq!(journal.in_flight()[0].key.as_deref(), Some("once"));
    assert_eq!(journal.op(halt).unwrap().key.as_deref(), Some("halt"));
    assert_eq!(journal.op(ordinary).unwrap().key, None);
    journal.close().unwrap();

    // Every record of a keyed op is version 2 and names the key; the others are
    // version 1, as before keys existed.
    let records = read_records(&dir.journal()).unwrap();
    assert_eq!(
        versions(&records),
        [
            "1 v2 boot",
            "1 v2 boot",
            "1 v2 boot",
            "2 v2 halt",
            "2 v2 halt",
            "3 v2 boot",
            "3 v2 boot",
            "4 v2 once",
            "5 v1 -",
            "5 v1 -",
        ]
    );
    assert!(std::fs::read_to_string(dir.journal())
        .unwrap()
        .lines()
        .all(|l| l.starts_with("{\"v\":1,") != l.contains(",\"key\":")));
    // The read-only reader and a reopened journal say what the handle said.
    assert_eq!(keys_of(&records), keys);
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(journal.keys(), keys);
    assert_eq!(journal.in_flight()[0].key.as_deref(), Some("once"));
    // The op in flight goes on with its key.
    journal.succeeded(pending).unwrap();
    let once = &journal.keys()[&(Vmid::new(104).unwrap(), "once".into())];
    assert_eq!((once.state, once.is_spent()), (OpState::Succeeded, true));
    journal.close().unwrap();
    let records = read_records(&dir.journal()).unwrap();
    let last = records.last().unwrap();
    assert_eq!(
        (last.op, last.v, last.key.as_deref(), last.state),
        (pending, 2, Some("once"), OpState::Succeeded)
    );
}

#[test]
fn a_spent_key_survives_many_compactions() {
    let dir = TempDir::new("keys-compact");
    // 4 KiB and the last 3 finished ops: each compaction drops all but a few.
    let small = opts(4 * 1024, 3);
    let journal = Journal::open(dir.path(), small.clone()).unwrap();
    let boot = journal
        .begin(&keyed(101, ActionKind::Start, "boot"))
        .unwrap();
    let task = upid(101, "vzstart", 1);
    journal.task_running(boot, &task).unwrap();
    journal.succeeded(boot).unwrap();
    let halt = journal
        .begin(&keyed(102, ActionKind::Stop, "halt"))
        .unwrap();
    // Its task ran and failed: the key is spent (one refused with no task is not,
    // and compaction may drop it).
    journal.task_running(halt, &upid(102, "vzstop", 3)).unwrap();
    journal
        .failed(halt, "command 'lxc-stop' failed: exit code 1")
        .unwrap();
    let retry = journal
        .begin(&keyed(103, ActionKind::Start, "retry"))
        .unwrap();
    journal.abandoned(retry, "no task found").unwrap();
    let long = journal
        .begin(&keyed(104, ActionKind::Shutdown, "long"))
        .unwrap();
    journal
        .task_running(long, &upid(104, "vzshutdown", 2))
        .unwrap();
    let before = journal.keys();
    let ordinary = |journal: &Journal, n: u64| {
        for i in 0..n {
            let op = journal
                .begin(&action(200 + i % 50, ActionKind::Start))
                .unwrap();
            journal.succeeded(op).unwrap();
        }
    };
    ordinary(&journal, 400);
    assert!(journal.compactions() >= 10, "{}", journal.compactions());
    assert!(journal.size_bytes() < 8 * 1024);
    // The live index still knows the abandoned key; nothing changed for the others.
    assert_eq!(journal.keys(), before);
    journal.close().unwrap();

    let records = read_records(&dir.journal()).unwrap();
    assert_seqs_increase(&records);
    let kept = |op: OpId| records.iter().filter(|r| r.op == op).count();
    assert_eq!(
        (kept(boot), kept(halt), kept(retry), kept(long)),
        (3, 3, 0, 2),
        "spent keys' ops whole, the abandoned one dropped"
    );
    assert!(records.len() < 40, "{} records kept", records.len());
    let spent = "101 boot: op 1 start succeeded task spent\n\
                 102 halt: op 2 stop failed task spent\n\
                 104 long: op 4 shutdown task_running task spent\n";
    assert_eq!(render(&keys_of(&records)), spent);

    // After a reopen, after more compactions, and after a compaction at open with
    // no finished op kept at all.
    let journal = Journal::open(dir.path(), small.clone()).unwrap();
    assert_eq!(render(&journal.keys()), spent);
    assert!(journal.upids().contains(&task));
    journal.succeeded(long).unwrap();
    let from = journal.compactions();
    ordinary(&journal, 400);
    assert!(journal.compactions() >= from + 10);
    journal.close().unwrap();
    let tiny = opts(1024, 0);
    let journal = Journal::open(dir.path(), tiny.clone()).unwrap();
    assert_eq!(journal.compactions(), 1, "compacted at open");
    let spent = "101 boot: op 1 start succeeded task spent\n\
                 102 halt: op 2 stop failed task spent\n\
                 104 long: op 4 shutdown succeeded task spent\n";
    assert_eq!(render(&journal.keys()), spent);
    journal.close().unwrap();
    let records = read_records(&dir.journal()).unwrap();
    assert_eq!(render(&keys_of(&records)), spent);
    // The three spent ops and the op of the last record (the highest op).
    let ops: std::collections::BTreeSet<OpId> = records.iter().map(|r| r.op).collect();
    assert_eq!(ops.len(), 4, "{ops:?}");
    assert!([boot, halt, long].iter().all(|op| ops.contains(op)));
    let journal = Journal::open(dir.path(), tiny).unwrap();
    assert_eq!(render(&journal.keys()), spent);
    journal.close().unwrap();
}

/// `body` (a JSON object without its closing brace) as a line with its crc.
fn sealed(body: &str) -> String {
    let crc = crc32c(format!("{body}}}").as_bytes());
    format!("{body},\"crc\":\"{crc:08x}\"}}\n")
}

#[test]
fn a_file_mixing_versions_opens_and_an_unknown_version_is_refused() {
    let dir = TempDir::new("keys-mixed");
    let record = |seq: u64, op: u64, vmid: u64, key: Option<&str>, state: OpState| Record {
        v: if key.is_some() { 2 } else { 1 },
        seq,
        op: OpId(op),
        vmid: Vmid::new(vmid).unwrap(),
        kind: ActionKind::Start,
        params: Default::default(),
        key: key.map(str::to_string),
        state,
        upid: (state == OpState::TaskRunning).then(|| upid(vmid, "vzstart", op as u32)),
        error: None,
        ts: "2026-11-26T20:49:12.345Z".into(),
    };
    // Written from the documented line format, not by the journal's own encoder.
    let text: String = [
        record(1, 1, 101, None, OpState::Started),
        record(2, 2, 102, Some("first-boot"), OpState::Started),
        record(3, 1, 101, None, OpState::Succeeded),
        record(4, 2, 102, Some("first-boot"), OpState::TaskRunning),
        record(5, 3, 103, None, OpState::Started),
    ]
    .iter()
    .map(line_of)
    .collect();
    assert!(text.contains(r#""params":{},"key":"first-boot","state":"started""#));
    std::fs::write(dir.journal(), &text).unwrap();

    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(
        render(&journal.keys()),
        "102 first-boot: op 2 start task_running task spent\n"
    );
    let in_flight: Vec<(OpId, Option<String>)> = journal
        .in_flight()
        .into_iter()
        .map(|o| (o.op, o.key))
        .collect();
    assert_eq!(
        in_flight,
        [(OpId(2), Some("first-boot".into())), (OpId(3), None)]
    );
    journal.succeeded(OpId(2)).unwrap();
    journal.succeeded(OpId(3)).unwrap();
    let op = journal
        .begin(&keyed(104, ActionKind::Start, "first-boot"))
        .unwrap();
    assert_eq!(op, OpId(4));
    journal.close().unwrap();
    let written = std::fs::read_to_string(dir.journal()).unwrap();
    assert!(written.starts_with(&text), "old lines are copied verbatim");
    let records = read_records(&dir.journal()).unwrap();
    assert_eq!(
        versions(&records),
        [
            "1 v1 -",
            "2 v2 first-boot",
            "1 v1 -",
            "2 v2 first-boot",
            "3 v1 -",
            "2 v2 first-boot",
            "3 v1 -",
            "4 v2 first-boot",
        ]
    );
    let keys = keys_of(&records);
    assert_eq!(
        render(&keys),
        "102 first-boot: op 2 start succeeded task spent\n\
         104 first-boot: op 4 start started spent\n"
    );

    // A line of a version this build does not know, written whole, is corruption:
    // the journal is neither opened nor repaired, and the reader refuses it too.
    let v3 = sealed(
        r#"{"v":3,"seq":9,"op":5,"vmid":105,"kind":"start","params":{},"key":"k","state":"started","ts":"2026-11-26T20:49:12Z""#,
    );
    let v1_with_key = sealed(
        r#"{"v":1,"seq":9,"op":5,"vmid":105,"kind":"start","params":{},"key":"k","state":"started","ts":"2026-11-26T20:49:12Z""#,
    );
    for (line, reason) in [
        (v3, "unsupported format version 3 (this build reads 1 to 2)"),
        (
            v1_with_key,
            "a version 1 record with key (a member of version 2)",
        ),
    ] {
        let bad = format!("{written}{line}");
        std::fs::write(dir.journal(), &bad).unwrap();
        let expected = format!(
            "journal {} is corrupt at line 9: {reason}",
            dir.journal().display()
        );
        match Journal::open(dir.path(), JournalOptions::default()) {
            Err(e @ JournalError::Corrupt { .. }) => assert_eq!(e.to_string(), expected),
            other => panic!("{:?}", other.map(|j| j.size_bytes())),
        }
        assert_eq!(std::fs::read_to_string(dir.journal()).unwrap(), bad);
        assert!(!dir.file("journal.broken").exists());
        assert_eq!(
            read_records(&dir.journal()).unwrap_err().to_string(),
            expected
        );
    }
}
