//! The one thread (`journal`) that owns the file.
//!
//! Callers send a request over a crossbeam channel and wait on their own bounded(1)
//! reply channel. The writer takes every request queued at that moment, encodes them,
//! appends them with one `write(2)`, makes them durable with one `fdatasync`, applies
//! them to the shared index, and only then answers each caller (group commit).
//!
//! This module owns the messages ([`Request`], [`Entry`]) and the state the writer
//! shares with its callers ([`Shared`]); the handle uses them, not the other way.

use super::failpoint::Failpoint;
use super::index::{allowed, summary_of, Index};
use super::open::Opened;
use super::record::encode_into;
use super::view::View;
use super::{version_for, JournalError, JournalOptions, OpId, OpState, OpSummary, Record};
use crate::action::{ActionKind, Params};
use crate::log;
use crate::pve::{Upid, Vmid};
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// Upper bound on one group commit, so that one write stays a sane size.
const MAX_BATCH: usize = 1024;

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

    pub(super) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }
}

/// What a caller asks the writer to journal.
pub(super) enum Entry {
    /// A new op: its `started` record.
    Begin {
        vmid: Vmid,
        kind: ActionKind,
        params: Params,
        key: Option<String>,
    },
    /// The next record of an op in flight.
    Step {
        op: OpId,
        state: OpState,
        upid: Option<Upid>,
        error: Option<String>,
    },
}

/// One entry and where to answer: the op's id once the record is durable.
pub(super) struct Request {
    pub(super) entry: Entry,
    pub(super) reply: Sender<Result<OpId, JournalError>>,
}

/// A started writer thread, as the handle holds it.
pub(super) struct Started {
    pub(super) shared: Arc<Shared>,
    /// Dropping every clone lets the writer drain its queue and return.
    pub(super) tx: Sender<Request>,
    pub(super) thread: JoinHandle<()>,
}

/// Starts the writer thread (`journal`) on a journal `open` has opened and
/// rewritten.
pub(super) fn spawn(
    dir: &Path,
    opened: Opened,
    opts: JournalOptions,
) -> Result<Started, JournalError> {
    let Opened {
        path,
        file,
        index,
        size,
        compacted,
        ..
    } = opened;
    let (next_seq, next_op) = (index.next_seq(), index.next_op());
    let shared = Arc::new(Shared {
        poisoned: AtomicBool::new(false),
        size: AtomicU64::new(size),
        written: AtomicU64::new(0),
        syncs: AtomicU64::new(0),
        compactions: AtomicU64::new(u64::from(compacted)),
        index: Mutex::new(index),
    });
    let compact_at = if compacted {
        next_compaction(opts.compact_bytes, size)
    } else {
        opts.compact_bytes
    };
    let writer = Writer {
        dir: dir.to_path_buf(),
        path: path.clone(),
        file,
        size,
        next_seq,
        next_op,
        compact_at,
        opts,
        shared: shared.clone(),
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name("journal".into())
        .spawn(move || writer.run(&rx))
        .map_err(|e| JournalError::io(&path, "spawn the writer thread", e))?;
    Ok(Started { shared, tx, thread })
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
    fn run(mut self, rx: &Receiver<Request>) {
        let shared = self.shared.clone();
        // Open compacted the file already if it was past its threshold.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
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
        let synced = if Failpoint::AppendSyncFails.is_on() {
            Err(std::io::Error::other("failpoint append-sync-fails"))
        } else {
            self.file.sync_data()
        };
        if let Err(e) = synced {
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
            Entry::Begin {
                vmid,
                kind,
                params,
                key,
            } => {
                let op = OpId(self.next_op);
                self.next_op += 1;
                Record {
                    v: version_for(key.is_some()),
                    seq: 0,
                    op,
                    vmid,
                    kind,
                    params,
                    key,
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
                    v: version_for(cur.key.is_some()),
                    seq: 0,
                    op,
                    vmid: cur.vmid,
                    kind: cur.kind,
                    params: cur.params.clone(),
                    key: cur.key.clone(),
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

/// Where the next compaction is due once a compaction left the file at `size`: if
/// what must be kept is itself large, do not compact again at once.
pub(super) fn next_compaction(compact_bytes: u64, size: u64) -> u64 {
    compact_bytes.max(size.saturating_mul(2))
}
