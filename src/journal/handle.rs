//! The [`Journal`] handle: what every other thread holds. Each call becomes a
//! request to the writer thread (see `writer`) and waits for its answer.

use super::writer::{self, Entry, Request, Shared};
use super::{open, JournalError, JournalOptions, KeyUse, OpId, OpState, OpSummary};
use crate::action::Action;
use crate::log;
use crate::pve::{Upid, Vmid};
use crossbeam_channel::{RecvTimeoutError, Sender};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a caller waits for the writer's answer. A local fdatasync that takes
/// this long means a hung disk: the caller gets a fatal [`JournalError::Stalled`]
/// and the daemon exits rather than act on a record that may not be durable.
const ACK_DEADLINE: Duration = Duration::from_secs(120);

/// A handle on the journal. Cheap to clone and share between threads; the writer
/// thread stops and is joined by [`Journal::close`] or when the last clone drops.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.inner.path)
            .field("poisoned", &self.inner.shared.is_poisoned())
            .finish_non_exhaustive()
    }
}

// The engine shares one handle between its lanes.
const _: () = {
    const fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Journal>();
};

struct Inner {
    /// The state directory's lock, released when the last handle goes.
    _lock: std::fs::File,
    path: PathBuf,
    repaired: Option<String>,
    /// `None` once closed. Requests are sent under the read lock, so after `close`
    /// takes the write lock no request can slip in behind the writer's last one.
    tx: RwLock<Option<Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
}

impl Journal {
    /// Opens (creating the directory and file as needed) and replays
    /// `<state_dir>/journal` under the state directory's lock, cuts off a torn
    /// tail, removes a stale `journal.tmp`, rewrites the file with what it read
    /// (compacting it if it is past `opts.compact_bytes`), and starts the writer
    /// thread. See the module doc of `journal` for why every open rewrites.
    pub fn open(state_dir: &Path, opts: JournalOptions) -> Result<Journal, JournalError> {
        let lock = open::lock(state_dir)?;
        let opened = open::open(state_dir, &opts)?;
        let path = opened.path.clone();
        let repaired = opened.repaired.clone();
        let writer::Started { shared, tx, thread } = writer::spawn(state_dir, opened, opts)?;
        Ok(Journal {
            inner: Arc::new(Inner {
                _lock: lock,
                path,
                repaired,
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

    /// Journals `started` for a new op, with the action's one-shot key if it has
    /// one, and returns its id once that is on disk. From then on [`Journal::keys`]
    /// shows the key in use.
    pub fn begin(&self, action: &Action) -> Result<OpId, JournalError> {
        self.call(Entry::Begin {
            vmid: action.vmid,
            kind: action.kind,
            params: action.params.clone(),
            key: action.key.clone(),
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

    /// The UPIDs the journal ties to an op: those of the ops in flight, of the
    /// finished ops it keeps, of each guest's last task, and of the latest op of each
    /// one-shot key.
    pub fn upids(&self) -> std::collections::BTreeSet<Upid> {
        self.inner.shared.index().upids()
    }

    /// Each guest's last task: the UPID of its latest op that has one, as of the latest
    /// durable records. Kept across restarts and compactions whatever `keep_finished`
    /// says (see the module doc of `journal`); [`super::last_tasks_of`] answers the
    /// same over [`super::read_records`].
    pub fn last_tasks(&self) -> BTreeMap<Vmid, Upid> {
        self.inner.shared.index().last_tasks()
    }

    /// The latest op of each guest's one-shot key, by guest and key, as of the
    /// latest durable records: whether it is spent is [`KeyUse::is_spent`]. A spent
    /// key stays here across restarts and compactions (see the module doc of
    /// `journal`); [`super::keys_of`] answers the same over [`super::read_records`].
    pub fn keys(&self) -> BTreeMap<(Vmid, String), KeyUse> {
        self.inner.shared.index().keys().clone()
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

    /// Compactions done since open, the one open itself may have done included.
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
