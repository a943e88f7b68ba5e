//! Compaction, and a process killed in the middle of it.

use super::{action, assert_seqs_increase, opts, upid, ChildTest, TempDir, CHILD_DIR_ENV};
use felhom_agent::action::ActionKind;
use felhom_agent::journal::{
    in_flight_of, last_tasks_of, read_records, Journal, JournalOptions, OpId, OpState,
};
use std::path::Path;
use std::time::Duration;

#[test]
fn compaction_keeps_in_flight_ops_and_recent_history() {
    let dir = TempDir::new("compact");
    // A stale journal.tmp from an earlier crash is removed at open.
    std::fs::write(dir.file("journal.tmp"), b"half a compaction").unwrap();
    let journal = Journal::open(dir.path(), opts(8 * 1024, 5)).unwrap();
    assert!(!dir.file("journal.tmp").exists());
    let long_running = journal.begin(&action(100, ActionKind::Shutdown)).unwrap();
    journal
        .task_running(long_running, &upid(100, "vzshutdown", 1))
        .unwrap();
    let mut finished = Vec::new();
    for i in 0..120 {
        let op = journal.begin(&action(200 + i, ActionKind::Start)).unwrap();
        journal.succeeded(op).unwrap();
        finished.push(op);
    }
    let appended = 2 + 2 * 120;
    assert!(journal.compactions() >= 1);
    assert!(journal.size_bytes() < 8 * 1024);
    assert_eq!(journal.records_written(), appended);
    let count = journal.record_count();
    journal.close().unwrap();
    assert!(!dir.file("journal.tmp").exists());

    let records = read_records(&dir.journal()).unwrap();
    assert_eq!(records.len() as u64, count);
    assert!(records.len() < 60, "{} records kept", records.len());
    assert_seqs_increase(&records);
    assert_eq!(records.last().unwrap().seq, appended, "seq continues");
    let kept = |op: OpId| records.iter().filter(|r| r.op == op).count();
    assert_eq!(kept(long_running), 2);
    for op in &finished[finished.len() - 5..] {
        assert_eq!(kept(*op), 2, "op {op}");
    }
    assert_eq!(kept(finished[0]), 0);
    let in_flight = in_flight_of(&records);
    assert_eq!(in_flight.len(), 1);
    assert_eq!(in_flight[0].op, long_running);

    // Op ids and seqs continue after reopening the compacted file.
    let journal = Journal::open(dir.path(), opts(8 * 1024, 5)).unwrap();
    assert_eq!(journal.in_flight().len(), 1);
    let op = journal.begin(&action(999, ActionKind::Stop)).unwrap();
    assert_eq!(op, OpId(finished.last().unwrap().0 + 1));
    journal.close().unwrap();
    let records = read_records(&dir.journal()).unwrap();
    assert_eq!(records.last().unwrap().seq, appended + 1);
}

#[test]
fn each_guests_last_task_survives_compactions_whatever_keep_finished_says() {
    let dir = TempDir::new("compact-last-task");
    let small = opts(4 * 1024, 3);
    let journal = Journal::open(dir.path(), small.clone()).unwrap();
    // 101 and 102 each get a task; 102 a later one, which replaces the first.
    let task = |journal: &Journal, vmid: u64, n: u32| {
        let op = journal.begin(&action(vmid, ActionKind::Start)).unwrap();
        let upid = upid(vmid, "vzstart", n);
        journal.task_running(op, &upid).unwrap();
        journal.succeeded(op).unwrap();
        (op, upid)
    };
    let (first, t101) = task(&journal, 101, 1);
    let (replaced, _) = task(&journal, 102, 2);
    let (later, t102) = task(&journal, 102, 3);
    // Then a busy day elsewhere, ops without tasks, and one of 101 without a task.
    let busy = |journal: &Journal| {
        for i in 0..300 {
            let op = journal
                .begin(&action(200 + i % 50, ActionKind::Start))
                .unwrap();
            journal.abandoned(op, "no task found").unwrap();
        }
        let op = journal.begin(&action(101, ActionKind::Stop)).unwrap();
        journal.abandoned(op, "no task found").unwrap();
    };
    busy(&journal);
    assert!(journal.compactions() >= 5, "{}", journal.compactions());
    let want = format!("101 {t101}\n102 {t102}\n");
    let render =
        |m: &std::collections::BTreeMap<felhom_agent::pve::Vmid, felhom_agent::pve::Upid>| {
            m.iter()
                .map(|(v, u)| format!("{v} {u}\n"))
                .collect::<String>()
        };
    assert_eq!(render(&journal.last_tasks()), want);
    assert!(journal.upids().contains(&t101) && journal.upids().contains(&t102));
    journal.close().unwrap();

    let records = read_records(&dir.journal()).unwrap();
    let kept = |op: OpId| records.iter().filter(|r| r.op == op).count();
    assert_eq!((kept(first), kept(replaced), kept(later)), (3, 0, 3));
    assert_eq!(render(&last_tasks_of(&records)), want);
    // After a reopen that compacts keeping no finished op at all.
    let journal = Journal::open(dir.path(), opts(1024, 0)).unwrap();
    assert_eq!(journal.compactions(), 1, "compacted at open");
    assert_eq!(render(&journal.last_tasks()), want);
    journal.close().unwrap();
    let records = read_records(&dir.journal()).unwrap();
    assert_eq!(render(&last_tasks_of(&records)), want);
    let journal = Journal::open(dir.path(), small).unwrap();
    assert_eq!(render(&journal.last_tasks()), want);
    journal.close().unwrap();
}

#[test]
fn compaction_with_nothing_to_keep_still_keeps_the_counters() {
    let dir = TempDir::new("compact-zero");
    let journal = Journal::open(dir.path(), opts(2 * 1024, 0)).unwrap();
    let mut last = OpId(0);
    for i in 0..40 {
        last = journal.begin(&action(100 + i, ActionKind::Stop)).unwrap();
        journal.abandoned(last, "test").unwrap();
    }
    assert!(journal.compactions() >= 1);
    journal.close().unwrap();
    let records = read_records(&dir.journal()).unwrap();
    assert!(records.len() < 20);
    assert_eq!(records.last().unwrap().op, last);
    let journal = Journal::open(dir.path(), opts(2 * 1024, 0)).unwrap();
    assert_eq!(
        journal.begin(&action(101, ActionKind::Stop)).unwrap(),
        OpId(last.0 + 1)
    );
    journal.close().unwrap();
}

#[test]
fn compaction_crash_leaves_a_valid_journal() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        crash_child(Path::new(&dir));
    }
    let dir = TempDir::new("crash");
    let mut child = ChildTest::spawn(
        module_path!(),
        "compaction_crash_leaves_a_valid_journal",
        dir.path(),
        "compact-before-rename",
    );
    let said = child.wait_line(
        "failpoint compact-before-rename reached",
        Duration::from_secs(20),
    );
    let acked: Vec<(u64, OpState)> = said
        .iter()
        .filter_map(|line| line.strip_prefix("acked "))
        .map(|rest| {
            let (op, state) = rest.split_once(' ').unwrap();
            let state: OpState = serde_json::from_str(&format!("\"{state}\"")).unwrap();
            (op.parse().unwrap(), state)
        })
        .collect();
    assert!(
        dir.file("journal.tmp").exists(),
        "killed between fsync and rename"
    );
    child.kill();

    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert!(!dir.file("journal.tmp").exists());
    assert_eq!(journal.repaired_tail(), None);
    journal.close().unwrap();
    let records = read_records(&dir.journal()).unwrap();
    assert_seqs_increase(&records);
    assert!(acked.len() > 10, "{} acknowledgements", acked.len());
    for (op, state) in &acked {
        assert!(
            records
                .iter()
                .any(|r| r.op == OpId(*op) && r.state == *state),
            "acknowledged op {op} {state} is in the journal"
        );
    }
}

/// Appends until the writer blocks at the failpoint (the parent then kills us),
/// printing each acknowledgement.
fn crash_child(dir: &Path) -> ! {
    let journal = Journal::open(dir, opts(4 * 1024, 2)).unwrap();
    for i in 0.. {
        let op = journal.begin(&action(100 + i, ActionKind::Start)).unwrap();
        eprintln!("acked {op} started");
        journal.succeeded(op).unwrap();
        eprintln!("acked {op} succeeded");
    }
    unreachable!("the failpoint blocks the writer")
}
