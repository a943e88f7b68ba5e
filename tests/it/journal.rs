//! The journal on real files in temp dirs, with real threads and a real crash.

mod recover;

use felhom_agent::action::{Action, ActionKind, Params};
use felhom_agent::journal::{
    crc32c, in_flight_of, read_records, Journal, JournalError, JournalOptions, OpId, OpState,
    Record,
};
use felhom_agent::pve::{Upid, Vmid};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "felhom-journal-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn action(vmid: u64, kind: ActionKind) -> Action {
    let mut params = Params::new();
    if kind == ActionKind::Shutdown {
        params.insert("forceStop".into(), "1".into());
        params.insert("timeout".into(), "60".into());
    }
    Action {
        vmid: Vmid::new(vmid).unwrap(),
        kind,
        params,
        reason: "test".into(),
    }
}

pub fn upid(vmid: u64, task_type: &str, n: u32) -> Upid {
    format!("UPID:pve1:{n:08X}:0456789A:6650F1C2:{task_type}:{vmid}:agent@pve!reconciler:")
        .parse()
        .unwrap()
}

/// A journal line written from the documented format alone (not the crate's
/// encoder): the record's JSON object, its CRC-32C, then the crc member.
fn line_of(rec: &Record) -> String {
    let object = serde_json::to_string(rec).unwrap();
    let crc = crc32c(object.as_bytes());
    format!("{},\"crc\":\"{crc:08x}\"}}\n", &object[..object.len() - 1])
}

fn opts(compact_bytes: u64, keep_finished: usize) -> JournalOptions {
    JournalOptions {
        compact_bytes,
        keep_finished,
    }
}

/// Every line's seq is above the one before.
fn assert_seqs_increase(records: &[Record]) {
    for w in records.windows(2) {
        assert!(w[0].seq < w[1].seq, "seq {} then {}", w[0].seq, w[1].seq);
    }
}

#[test]
fn concurrent_callers_are_all_acknowledged_and_grouped() {
    const THREADS: u64 = 8;
    const OPS: u64 = 25;
    let dir = TempDir::new("concurrent");
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (journal, barrier) = (journal.clone(), barrier.clone());
            std::thread::Builder::new()
                .name(format!("caller {t}"))
                .spawn(move || {
                    barrier.wait();
                    let mut done = Vec::new();
                    for i in 0..OPS {
                        let vmid = 100 + t * 1000 + i;
                        let op = journal.begin(&action(vmid, ActionKind::Start)).unwrap();
                        journal
                            .task_running(op, &upid(vmid, "vzstart", i as u32))
                            .unwrap();
                        if i % 5 == 0 {
                            journal.failed(op, "CT is locked (backup)").unwrap();
                        } else {
                            journal.succeeded(op).unwrap();
                        }
                        done.push((op, vmid));
                    }
                    done
                })
                .unwrap()
        })
        .collect();
    let acked: Vec<(OpId, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();

    let total = THREADS * OPS * 3;
    assert_eq!(journal.records_written(), total);
    let syncs = journal.syncs();
    println!("{total} records in {syncs} syncs");
    assert!(
        syncs > 0 && syncs < total,
        "{syncs} syncs for {total} records"
    );
    assert!(journal.in_flight().is_empty());
    let size = journal.size_bytes();
    journal.close().unwrap();

    let records = read_records(&dir.file("journal")).unwrap();
    assert_eq!(records.len() as u64, total);
    assert_eq!(std::fs::metadata(dir.file("journal")).unwrap().len(), size);
    assert_seqs_increase(&records);
    assert!(in_flight_of(&records).is_empty());
    let mut ops: Vec<OpId> = acked.iter().map(|(op, _)| *op).collect();
    ops.sort();
    ops.dedup();
    assert_eq!(ops.len() as u64, THREADS * OPS, "op ids are unique");
    for (op, vmid) in &acked {
        let mine: Vec<&Record> = records.iter().filter(|r| r.op == *op).collect();
        let states: Vec<OpState> = mine.iter().map(|r| r.state).collect();
        assert_eq!(states.len(), 3, "op {op}: {states:?}");
        assert_eq!(states[..2], [OpState::Started, OpState::TaskRunning]);
        assert!(mine.iter().all(|r| u64::from(r.vmid.get()) == *vmid));
        assert_eq!(mine[2].upid, mine[1].upid);
    }
}

#[test]
fn wrong_steps_are_errors_and_close_closes_every_clone() {
    let dir = TempDir::new("steps");
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let other = journal.clone();
    let op = journal.begin(&action(101, ActionKind::Shutdown)).unwrap();
    let u = upid(101, "vzshutdown", 1);
    journal.task_running(op, &u).unwrap();
    let again = journal.task_running(op, &u).unwrap_err();
    assert_eq!(
        again.to_string(),
        format!("op {op} cannot go from task_running to task_running")
    );
    assert!(!again.is_fatal());
    journal.succeeded(op).unwrap();
    assert!(matches!(
        journal.failed(op, "late"),
        Err(JournalError::Transition { from: None, .. })
    ));
    assert!(matches!(
        journal.abandoned(OpId(999), "never began"),
        Err(JournalError::Transition { from: None, .. })
    ));
    let done = journal.op(op).unwrap();
    assert_eq!(
        (done.state, done.upid.as_ref(), done.error.as_deref()),
        (OpState::Succeeded, Some(&u), None)
    );
    assert_eq!(done.params["forceStop"], "1");
    assert!(journal.op(OpId(999)).is_none());
    // A refused step does not stop the ones after it.
    let op2 = journal.begin(&action(102, ActionKind::SetConfig)).unwrap();
    assert_eq!(op2, OpId(op.0 + 1));
    assert_eq!(journal.in_flight().len(), 1);
    journal.close().unwrap();
    assert!(matches!(other.succeeded(op2), Err(JournalError::Closed)));
    assert_eq!(other.in_flight()[0].op, op2);
    drop(other);

    let records = read_records(&dir.file("journal")).unwrap();
    let states: Vec<String> = records
        .iter()
        .map(|r| format!("{} {} {}", r.op, r.kind, r.state))
        .collect();
    assert_eq!(
        states,
        [
            "1 shutdown started",
            "1 shutdown task_running",
            "1 shutdown succeeded",
            "2 set_config started"
        ]
    );
    assert_eq!(records[0].params["timeout"], "60");
}

#[test]
fn open_creates_the_state_dir_and_replays_what_it_finds() {
    let dir = TempDir::new("create");
    let state = dir.path().join("var/lib/felhom");
    let journal = Journal::open(&state, JournalOptions::default()).unwrap();
    assert_eq!(journal.path(), state.join("journal"));
    assert_eq!((journal.size_bytes(), journal.record_count()), (0, 0));
    let a = journal.begin(&action(101, ActionKind::Start)).unwrap();
    let b = journal.begin(&action(102, ActionKind::Stop)).unwrap();
    journal.failed(b, "CT 102 not running").unwrap();
    let size = journal.size_bytes();
    journal.close().unwrap();

    let journal = Journal::open(&state, JournalOptions::default()).unwrap();
    assert_eq!((journal.size_bytes(), journal.record_count()), (size, 3));
    assert_eq!(journal.records_written(), 0);
    let in_flight = journal.in_flight();
    assert_eq!(in_flight.len(), 1);
    assert_eq!((in_flight[0].op, in_flight[0].state), (a, OpState::Started));
    let now = felhom_agent::time::unix_now();
    assert!((now - 60..=now).contains(&in_flight[0].started_at));
    let failed = journal.op(b).unwrap();
    assert_eq!(failed.error.as_deref(), Some("CT 102 not running"));
    journal.close().unwrap();
}

/// A journal of three records, closed; returns its bytes and where the last line starts.
fn three_records(dir: &TempDir) -> (Vec<u8>, usize) {
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let op = journal.begin(&action(101, ActionKind::Start)).unwrap();
    journal.task_running(op, &upid(101, "vzstart", 7)).unwrap();
    journal.begin(&action(102, ActionKind::Shutdown)).unwrap();
    journal.close().unwrap();
    let bytes = std::fs::read(dir.file("journal")).unwrap();
    let last = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    (bytes, last)
}

#[test]
fn a_torn_last_record_is_cut_at_every_offset() {
    let src = TempDir::new("torn-src");
    let (bytes, last) = three_records(&src);
    let dir = TempDir::new("torn");
    let mut cases = 0;
    for cut in last..bytes.len() {
        for nul_fill in [false, true] {
            let _ = std::fs::remove_file(dir.file("journal.broken"));
            let mut torn = bytes[..cut].to_vec();
            if nul_fill {
                torn.resize(bytes.len(), 0);
            }
            std::fs::write(dir.file("journal"), &torn).unwrap();

            let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
            let what = format!("cut at {cut} of {}, nul fill {nul_fill}", bytes.len());
            let cut_off = &torn[last..];
            if cut_off.is_empty() {
                assert_eq!(journal.repaired_tail(), None, "{what}");
                assert!(!dir.file("journal.broken").exists(), "{what}");
            } else {
                let said = journal.repaired_tail().expect(&what);
                assert!(said.starts_with(&format!("cut {} bytes at line 3", cut_off.len())));
                let mut saved = cut_off.to_vec();
                saved.push(b'\n');
                assert_eq!(std::fs::read(dir.file("journal.broken")).unwrap(), saved);
            }
            assert_eq!(journal.size_bytes(), last as u64, "{what}");
            let in_flight = journal.in_flight();
            assert_eq!(in_flight.len(), 1, "{what}");
            assert_eq!(in_flight[0].state, OpState::TaskRunning);
            // Appending works, and continues the sequence after the lost record.
            let op = journal.begin(&action(103, ActionKind::Stop)).unwrap();
            assert_eq!(op, OpId(2), "{what}");
            journal.close().unwrap();
            let records = read_records(&dir.file("journal")).unwrap();
            assert_eq!(records.len(), 3, "{what}");
            assert_eq!(records[2].seq, 3);
            cases += 1;
        }
    }
    assert_eq!(cases, 2 * (bytes.len() - last));
}

#[test]
fn a_nul_filled_tail_after_good_records_is_cut() {
    let dir = TempDir::new("nul");
    let (mut bytes, _) = three_records(&dir);
    let good = bytes.len();
    bytes.resize(good + 4096, 0);
    std::fs::write(dir.file("journal"), &bytes).unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let said = journal.repaired_tail().unwrap();
    assert!(
        said.contains("4096 bytes at line 4 (nul-filled tail)"),
        "{said}"
    );
    assert_eq!(journal.size_bytes(), good as u64);
    assert_eq!(journal.in_flight().len(), 2);
    journal.close().unwrap();
}

#[test]
fn a_flipped_byte_in_a_middle_record_is_corruption() {
    let dir = TempDir::new("flip");
    three_records(&dir);
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    journal.begin(&action(103, ActionKind::Stop)).unwrap();
    journal.close().unwrap();
    let path = dir.file("journal");
    let bytes = std::fs::read(&path).unwrap();
    let ends: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] == b'\n').collect();
    assert_eq!(ends.len(), 4);
    let first_end = ends[0] + 1;
    // Every single-bit flip anywhere in line 2, its newline included (which merges
    // it with line 3: still a bad line with a good one, line 4, after it).
    for at in first_end..=ends[1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        match read_records(&path) {
            Err(JournalError::Corrupt { line, .. }) => assert_eq!(line, 2, "flip at {at}"),
            other => panic!("flip at {at}: {other:?}"),
        }
    }
    let mut bad = bytes.clone();
    bad[first_end + 10] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    let err = Journal::open(dir.path(), JournalOptions::default())
        .err()
        .unwrap();
    assert!(err.is_fatal());
    assert_eq!(err.exit_code().code(), 3);
    match &err {
        JournalError::Corrupt {
            path: p,
            line,
            reason,
        } => {
            assert_eq!((p, *line), (&path, 2));
            assert!(reason.contains("crc mismatch"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing was repaired or moved.
    assert_eq!(std::fs::read(&path).unwrap(), bad);
    assert!(!dir.file("journal.broken").exists());
}

#[test]
fn an_unknown_version_is_refused() {
    let dir = TempDir::new("version");
    let (mut bytes, _) = three_records(&dir);
    let body = r#"{"v":2,"seq":4,"whatever":true"#;
    let crc = crc32c(format!("{body}}}").as_bytes());
    bytes.extend(format!("{body},\"crc\":\"{crc:08x}\"}}\n").bytes());
    std::fs::write(dir.file("journal"), &bytes).unwrap();
    let err = Journal::open(dir.path(), JournalOptions::default())
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "journal {} is corrupt at line 4: unsupported format version 2 (this build reads 1)",
            dir.file("journal").display()
        )
    );
}

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

#[test]
fn recovery_of_100_000_records() {
    let dir = TempDir::new("big");
    let mut text = String::with_capacity(25 << 20);
    let mut seq = 0;
    let mut record = |op: u64, state: OpState, kind: ActionKind| {
        seq += 1;
        let a = action(100 + op % 500, kind);
        let rec = Record {
            v: 1,
            seq,
            op: OpId(op),
            vmid: a.vmid,
            kind,
            params: a.params,
            state,
            upid: (state != OpState::Started)
                .then(|| upid(100 + op % 500, "vzshutdown", op as u32)),
            error: (state == OpState::Failed).then(|| "container did not stop".to_string()),
            ts: "2026-11-26T20:49:12.345Z".into(),
        };
        text += &line_of(&rec);
    };
    let mut op = 0;
    // 33,330 finished ops of three records, then five in flight of two: 100,000.
    for _ in 0..33_330 {
        op += 1;
        record(op, OpState::Started, ActionKind::Shutdown);
        record(op, OpState::TaskRunning, ActionKind::Shutdown);
        let end = if op % 7 == 0 {
            OpState::Failed
        } else {
            OpState::Succeeded
        };
        record(op, end, ActionKind::Shutdown);
    }
    for _ in 0..5 {
        op += 1;
        record(op, OpState::Started, ActionKind::Shutdown);
        record(op, OpState::TaskRunning, ActionKind::Shutdown);
    }
    assert_eq!(seq, 100_000);
    std::fs::write(dir.file("journal"), &text).unwrap();

    let started = Instant::now();
    let journal = Journal::open(dir.path(), opts(u64::MAX, 1000)).unwrap();
    let in_flight = journal.in_flight();
    let took = started.elapsed();
    println!(
        "recovery of {} records ({} bytes): open + in_flight took {:.1} ms",
        journal.record_count(),
        text.len(),
        took.as_secs_f64() * 1000.0
    );
    assert_eq!(in_flight.len(), 5);
    assert_eq!(journal.record_count(), 100_000);
    journal.close().unwrap();

    // With the default threshold the writer compacts the file as it starts, before
    // it takes the first request: so the first append returns after compaction.
    let started = Instant::now();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    journal.begin(&action(101, ActionKind::Start)).unwrap();
    let took = started.elapsed();
    println!(
        "open + compaction + one append, to {} records ({} bytes), took {:.1} ms",
        journal.record_count(),
        journal.size_bytes(),
        took.as_secs_f64() * 1000.0
    );
    assert_eq!(journal.compactions(), 1);
    assert_eq!(journal.in_flight().len(), 6);
    journal.close().unwrap();
}
