//! The [`Journal`] handle and the one thread (`journal`) that owns the file.
//!
//! Callers send a request over a crossbeam channel and wait on their own bounded(1)
//! reply channel. The writer takes every request queued at that moment, encodes them,
//! appends them with one `write(2)`, makes them durable with one `fdatasync`, applies
//! them to the shared index, and only then answers each caller (group commit).

use super::index::{allowed, summary_of, Index};
use super::record::encode_into;
use super::view::View;
use super::{open, JournalError, JournalOptions, OpId, OpState, OpSummary, Record};
use crate::action::{Action, ActionKind, Params};
use crate::log;
use crate::pve::{Upid, Vmid};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a caller waits for the writer's answer. A local fdatasync that takes
/// this long means a hung disk: the caller gets a fatal [`JournalError::Stalled`]
/// and the daemon exits rather than act on a record that may not be durable.
const ACK_DEADLINE: Duration = Duration::from_secs(120);

/// Upper bound on one group commit, so that one write stays a sane size.
const MAX_BATCH: usize = 1024;

/// A handle on the journal. Cheap to clone and share between threads; the writer
/// thread stops and is joined by [`Journal::close`] or when the last clone drops.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    repaired: Option<String>,
    /// `None` once closed. Requests are sent under the read lock, so after `close`
    /// takes the write lock no request can slip in behind the writer's last one.
    tx: RwLock<Option<Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
}

/// What the caller threads and the writer thread both see.
pub(super) struct Shared {
    pub(super) index: Mutex<Index>,
    pub(super) poisoned: AtomicBool,
    pub(super) size: AtomicU64,
    pub(super) written: AtomicU64,
    pub(super) syncs: AtomicU64,
    pub(super) compactions: AtomicU64,
}

impl Shared {
    pub(super) fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn poison(&self) {
        self.poisoned.store(true, Ordering::SeqCst);
    }

    fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }
}

enum Entry {
    Begin {
        vmid: Vmid,
        kind: ActionKind,
        params: Params,
    },
    Step {
        op: OpId,
        state: OpState,
        upid: Option<Upid>,
        error: Option<String>,
    },
}

struct Request {
    entry: Entry,
    reply: Sender<Result<OpId, JournalError>>,
}

impl Journal {
    /// Opens (creating the directory and file as needed) and replays
    /// `<state_dir>/journal`, cuts off a torn tail, removes a stale `journal.tmp`,
    /// and starts the writer thread.
    pub fn open(state_dir: &Path, opts: JournalOptions) -> Result<Journal, JournalError> {
        let opened = open::open(state_dir, opts.keep_finished)?;
        let shared = Arc::new(Shared {
            poisoned: AtomicBool::new(false),
            size: AtomicU64::new(opened.size),
            written: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            index: Mutex::new(opened.index),
        });
        let (next_seq, next_op) = {
            let index = shared.index();
            (index.next_seq(), index.next_op())
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer = Writer {
            dir: state_dir.to_path_buf(),
            path: opened.path.clone(),
            next_seq,
            next_op,
            compact_at: opts.compact_bytes,
            file: opened.file,
            size: opened.size,
            shared: shared.clone(),
            opts,
        };
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| JournalError::io(&opened.path, "spawn the writer thread", e))?;
        Ok(Journal {
            inner: Arc::new(Inner {
                path: opened.path,
                repaired: opened.repaired,
                tx: RwLock::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                shared,
            }),
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Journals `started` for a new op and returns its id once that is on disk.
    pub fn begin(&self, action: &Action) -> Result<OpId, JournalError> {
        self.call(Entry::Begin {
            vmid: action.vmid,
            kind: action.kind,
            params: action.params.clone(),
        })
    }

    /// Journals that `op`'s task is running as `upid`, durably.
    pub fn task_running(&self, op: OpId, upid: &Upid) -> Result<(), JournalError> {
        self.step(op, OpState::TaskRunning, Some(upid.clone()), None)
    }

    /// Journals that `op` succeeded, durably.
    pub fn succeeded(&self, op: OpId) -> Result<(), JournalError> {
        self.step(op, OpState::Succeeded, None, None)
    }

    /// Journals that `op` failed with `error`, durably.
    pub fn failed(&self, op: OpId, error: &str) -> Result<(), JournalError> {
        self.step(op, OpState::Failed, None, Some(error.to_string()))
    }

    /// Journals that `op` was given up on, and why, durably.
    pub fn abandoned(&self, op: OpId, why: &str) -> Result<(), JournalError> {
        self.step(op, OpState::Abandoned, None, Some(why.to_string()))
    }

    /// The ops whose latest durable record is `started` or `task_running`, by op id.
    pub fn in_flight(&self) -> Vec<OpSummary> {
        self.inner.shared.index().in_flight()
    }

    /// An op that is in flight or among the last `keep_finished` finished (with
    /// its final state and error), as of its latest durable record.
    pub fn op(&self, op: OpId) -> Option<OpSummary> {
        self.inner.shared.index().op(op).cloned()
    }

    /// The size of the journal file.
    pub fn size_bytes(&self) -> u64 {
        self.inner.shared.size.load(Ordering::SeqCst)
    }

    /// Records appended (and synced) through this handle since open.
    pub fn records_written(&self) -> u64 {
        self.inner.shared.written.load(Ordering::SeqCst)
    }

    /// Records in the file now (replayed at open, appended, minus what compaction dropped).
    pub fn record_count(&self) -> u64 {
        self.inner.shared.index().records()
    }

    /// Successful fdatasync calls on the journal since open: one per group commit.
    pub fn syncs(&self) -> u64 {
        self.inner.shared.syncs.load(Ordering::SeqCst)
    }

    /// Compactions done since open.
    pub fn compactions(&self) -> u64 {
        self.inner.shared.compactions.load(Ordering::SeqCst)
    }

    /// What [`Journal::open`] cut off as a torn tail, said for people.
    pub fn repaired_tail(&self) -> Option<String> {
        self.inner.repaired.clone()
    }

    /// Stops the writer once every queued record is written and synced, and joins
    /// it. Calls through other clones then return [`JournalError::Closed`].
    /// Returns [`JournalError::Poisoned`] if the journal was poisoned.
    pub fn close(self) -> Result<(), JournalError> {
        self.inner.shutdown()
    }

    fn step(
        &self,
        op: OpId,
        state: OpState,
        upid: Option<Upid>,
        error: Option<String>,
    ) -> Result<(), JournalError> {
        self.call(Entry::Step {
            op,
            state,
            upid,
            error,
        })
        .map(|_| ())
    }

    fn call(&self, entry: Entry) -> Result<OpId, JournalError> {
        if self.inner.shared.is_poisoned() {
            return Err(JournalError::Poisoned);
        }
        let (reply, answer) = crossbeam_channel::bounded(1);
        {
            let tx = self.inner.tx.read().unwrap_or_else(PoisonError::into_inner);
            let tx = tx.as_ref().ok_or(JournalError::Closed)?;
            // The writer only drops its receiver by dying.
            tx.send(Request { entry, reply })
                .map_err(|_| JournalError::Poisoned)?;
        }
        match answer.recv_timeout(ACK_DEADLINE) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => {
                log::error(
                    "journal writer stalled",
                    &[("waited_s", &ACK_DEADLINE.as_secs())],
                );
                self.inner.shared.poison();
                Err(JournalError::Stalled {
                    waited: ACK_DEADLINE,
                })
            }
            Err(RecvTimeoutError::Disconnected) => Err(JournalError::Poisoned),
        }
    }
}

impl Inner {
    fn shutdown(&self) -> Result<(), JournalError> {
        // Dropping the only sender lets the writer drain its queue and return.
        drop(
            self.tx
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                self.shared.poison();
            }
        }
        if self.shared.is_poisoned() {
            Err(JournalError::Poisoned)
        } else {
            Ok(())
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) path: PathBuf,
    pub(super) file: File,
    /// The file's size: every byte before it is a good, synced record.
    pub(super) size: u64,
    pub(super) next_seq: u64,
    pub(super) next_op: u64,
    /// Compact once `size` reaches this.
    pub(super) compact_at: u64,
    pub(super) opts: JournalOptions,
    pub(super) shared: Arc<Shared>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Request>) {
        let shared = self.shared.clone();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.maybe_compact();
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter().take(MAX_BATCH - 1));
                self.commit(batch);
                self.maybe_compact();
            }
        }));
        if ran.is_err() {
            // Pending callers see their reply channel disconnect and get `Poisoned`.
            log::error("journal writer thread panicked", &[]);
            shared.poison();
        }
    }

    /// One group commit: stage, write once, sync once, apply, answer.
    fn commit(&mut self, batch: Vec<Request>) {
        if self.shared.is_poisoned() {
            for req in batch {
                let _ = req.reply.send(Err(JournalError::Poisoned));
            }
            return;
        }
        let mut buf = Vec::with_capacity(256 * batch.len());
        let mut records = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        {
            let shared = self.shared.clone();
            let index = shared.index();
            let mut staged = HashMap::new();
            for req in batch {
                match self.stage(&index, &mut staged, req.entry) {
                    Ok(rec) => {
                        encode_into(&rec, &mut buf);
                        waiting.push((req.reply, rec.op));
                        records.push(rec);
                    }
                    Err(e) => {
                        let _ = req.reply.send(Err(e));
                    }
                }
            }
        }
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.file.write_all(&buf) {
            self.undo_write(&e);
            for (reply, _) in waiting {
                let source = std::io::Error::new(e.kind(), e.to_string());
                let _ = reply.send(Err(JournalError::io(&self.path, "write", source)));
            }
            return;
        }
        if let Err(e) = self.file.sync_data() {
            log::error(
                "journal fsync failed, the journal is poisoned",
                &[("file", &self.path.display()), ("err", &e)],
            );
            self.shared.poison();
            for (reply, _) in waiting {
                let source = std::io::Error::new(e.kind(), e.to_string());
                let _ = reply.send(Err(JournalError::Sync {
                    path: self.path.clone(),
                    source,
                }));
            }
            return;
        }
        self.size += buf.len() as u64;
        self.shared.size.store(self.size, Ordering::SeqCst);
        self.shared.syncs.fetch_add(1, Ordering::SeqCst);
        self.shared
            .written
            .fetch_add(records.len() as u64, Ordering::SeqCst);
        {
            let mut index = self.shared.index();
            for rec in &records {
                if let Err(why) = index.apply(&View::of(rec)) {
                    // Staging checked the same rules; this is a bug, and the next
                    // open would call the file corrupt, so stop writing now.
                    log::error("journal index refused a staged record", &[("why", &why)]);
                    self.shared.poison();
                }
            }
        }
        for (reply, op) in waiting {
            let _ = reply.send(Ok(op));
        }
    }

    /// A failed append may have left part of the batch in the file; cut it off so
    /// that later records do not follow a torn one. If even that fails, poison.
    fn undo_write(&mut self, e: &std::io::Error) {
        log::warn(
            "journal append failed, cutting the partial batch off",
            &[("file", &self.path.display()), ("err", e)],
        );
        if let Err(e) = self.file.set_len(self.size) {
            log::error(
                "journal could not cut a failed append, the journal is poisoned",
                &[("file", &self.path.display()), ("err", &e)],
            );
            self.shared.poison();
        }
    }

    /// Turns a request into the record to write, checking it against the index and
    /// the records staged before it in this batch.
    fn stage(
        &mut self,
        index: &Index,
        staged: &mut HashMap<OpId, OpSummary>,
        entry: Entry,
    ) -> Result<Record, JournalError> {
        let ts = crate::time::now_rfc3339();
        let rec = match entry {
            Entry::Begin { vmid, kind, params } => {
                let op = OpId(self.next_op);
                self.next_op += 1;
                Record {
                    v: super::FORMAT_VERSION,
                    seq: 0,
                    op,
                    vmid,
                    kind,
                    params,
                    state: OpState::Started,
                    upid: None,
                    error: None,
                    ts,
                }
            }
            Entry::Step {
                op,
                state,
                upid,
                error,
            } => {
                let cur = staged.get(&op).or_else(|| index.get(op));
                let cur = match cur {
                    Some(cur) if allowed(cur.state, state) => cur,
                    other => {
                        return Err(JournalError::Transition {
                            op,
                            from: other.map(|c| c.state).filter(|s| !s.is_finished()),
                            to: state,
                        })
                    }
                };
                Record {
                    v: super::FORMAT_VERSION,
                    seq: 0,
                    op,
                    vmid: cur.vmid,
                    kind: cur.kind,
                    params: cur.params.clone(),
                    state,
                    upid: upid.or_else(|| cur.upid.clone()),
                    error,
                    ts,
                }
            }
        };
        let rec = Record {
            seq: self.next_seq,
            ..rec
        };
        self.next_seq += 1;
        match staged.get_mut(&rec.op) {
            Some(s) => {
                s.state = rec.state;
                s.upid = rec.upid.clone();
            }
            None => {
                let mut s = match index.get(rec.op) {
                    Some(s) => s.clone(),
                    None => summary_of(&View::of(&rec)),
                };
                s.state = rec.state;
                s.upid = rec.upid.clone();
                staged.insert(rec.op, s);
            }
        }
        Ok(rec)
    }
}
