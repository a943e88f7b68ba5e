//! The journal on real files in temp dirs, with real threads and a real crash.

mod compact;
mod keys;
mod repair;
mod rewrite;

use felhom_agent::action::{Action, ActionKind, Params};
use felhom_agent::journal::{
    crc32c, file_in, in_flight_of, read_records, Journal, JournalError, JournalOptions, OpId,
    OpState, Record,
};
use felhom_agent::pve::{Upid, Vmid};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
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

    /// The journal file in this directory.
    pub fn journal(&self) -> PathBuf {
        file_in(&self.0)
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
        guest: felhom_agent::pve::GuestKind::Lxc,
        via_task: false,
        key: None,
        guard: None,
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
pub fn line_of(rec: &Record) -> String {
    let object = serde_json::to_string(rec).unwrap();
    let crc = crc32c(object.as_bytes());
    format!("{},\"crc\":\"{crc:08x}\"}}\n", &object[..object.len() - 1])
}

pub fn opts(compact_bytes: u64, keep_finished: usize) -> JournalOptions {
    JournalOptions {
        compact_bytes,
        keep_finished,
    }
}

/// Every line's seq is above the one before.
pub fn assert_seqs_increase(records: &[Record]) {
    for w in records.windows(2) {
        assert!(w[0].seq < w[1].seq, "seq {} then {}", w[0].seq, w[1].seq);
    }
}

/// Set in a child process started by [`ChildTest`]: the state directory to use.
pub const CHILD_DIR_ENV: &str = "FELHOM_TEST_JOURNAL_CHILD_DIR";

/// This test binary running one of its tests again as a child process, with
/// [`CHILD_DIR_ENV`] and `FELHOM_FAILPOINT` set, its stderr read line by line.
pub struct ChildTest {
    child: Child,
    lines: crossbeam_channel::Receiver<String>,
    reader: Option<JoinHandle<()>>,
    seen: Vec<String>,
}

impl ChildTest {
    /// Runs the test `name` of the module `module` (its `module_path!()`).
    pub fn spawn(module: &str, name: &str, dir: &Path, failpoint: &str) -> ChildTest {
        let test = format!("{}::{name}", module.split_once("::").unwrap().1);
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &test, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir)
            .env("FELHOM_FAILPOINT", failpoint)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = crossbeam_channel::unbounded();
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
        ChildTest {
            child,
            lines,
            reader: Some(reader),
            seen: Vec::new(),
        }
    }

    /// Waits for the line `line`, and returns every line before it.
    pub fn wait_line(&mut self, line: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let from = self.seen.len();
        loop {
            match self.lines.recv_deadline(deadline) {
                Ok(l) if l == line => return self.seen[from..].to_vec(),
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "the child said no {line:?} within {timeout:?}; it said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the child to close its stderr, then reaps it.
    pub fn wait_exit(mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.recv_deadline(deadline) {
                Ok(l) => self.seen.push(l),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => panic!(
                    "the child did not exit within {timeout:?}; it said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
        let status = self.child.wait().unwrap();
        (status, std::mem::take(&mut self.seen))
    }

    /// Kills the child and reaps it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ChildTest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
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

    let records = read_records(&dir.journal()).unwrap();
    assert_eq!(records.len() as u64, total);
    assert_eq!(std::fs::metadata(dir.journal()).unwrap().len(), size);
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

    let records = read_records(&dir.journal()).unwrap();
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
    assert_eq!(journal.path(), file_in(&state));
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
            key: None,
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
    std::fs::write(dir.journal(), &text).unwrap();

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

    // With the default threshold, the rewrite at open is a compaction: done
    // before open returns, before the first append.
    let started = Instant::now();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_eq!(journal.compactions(), 1);
    // The five in flight and the last 1000 finished ops, three records each.
    assert_eq!(journal.record_count(), 5 * 2 + 1000 * 3);
    assert_eq!(
        journal.size_bytes(),
        std::fs::metadata(dir.journal()).unwrap().len()
    );
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
