//! Compaction, and a process killed in the middle of it.

use super::{action, assert_seqs_increase, opts, upid, TempDir};
use felhom_agent::action::ActionKind;
use felhom_agent::journal::{in_flight_of, read_records, Journal, JournalOptions, OpId, OpState};
use std::path::Path;
use std::time::{Duration, Instant};

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

    let records = read_records(&dir.file("journal")).unwrap();
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
    let records = read_records(&dir.file("journal")).unwrap();
    assert_eq!(records.last().unwrap().seq, appended + 1);
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
    let records = read_records(&dir.file("journal")).unwrap();
    assert!(records.len() < 20);
    assert_eq!(records.last().unwrap().op, last);
    let journal = Journal::open(dir.path(), opts(2 * 1024, 0)).unwrap();
    assert_eq!(
        journal.begin(&action(101, ActionKind::Stop)).unwrap(),
        OpId(last.0 + 1)
    );
    journal.close().unwrap();
}

/// Set in the child process of `compaction_crash_leaves_a_valid_journal`.
const CRASH_CHILD_ENV: &str = "FELHOM_TEST_JOURNAL_CRASH_CHILD";

#[test]
fn compaction_crash_leaves_a_valid_journal() {
    if let Ok(dir) = std::env::var(CRASH_CHILD_ENV) {
        crash_child(Path::new(&dir));
    }
    let dir = TempDir::new("crash");
    let test = format!(
        "{}::compaction_crash_leaves_a_valid_journal",
        module_path!().split_once("::").unwrap().1
    );
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &test, "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, dir.path())
        .env("FELHOM_FAILPOINT", "compact-before-rename")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let reader = std::thread::Builder::new()
        .name("child stderr".into())
        .spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut acked: Vec<(u64, OpState)> = Vec::new();
    let mut reached = false;
    while !reached {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the child reaches the failpoint in time");
        if line == "failpoint compact-before-rename reached" {
            reached = true;
        } else if let Some(rest) = line.strip_prefix("acked ") {
            let (op, state) = rest.split_once(' ').unwrap();
            let state: OpState = serde_json::from_str(&format!("\"{state}\"")).unwrap();
            acked.push((op.parse().unwrap(), state));
        }
    }
    assert!(
        dir.file("journal.tmp").exists(),
        "killed between fsync and rename"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();

    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert!(!dir.file("journal.tmp").exists());
    assert_eq!(journal.repaired_tail(), None);
    journal.close().unwrap();
    let records = read_records(&dir.file("journal")).unwrap();
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
