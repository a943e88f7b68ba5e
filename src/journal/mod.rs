//! The crash-safe journal: what the agent asked Proxmox to do, durable before it acts.
//!
//! felhom-agent must survive being killed at any moment without losing track of an
//! action, and without doing it twice while its task still runs. Every action is
//! journaled as an *op*: `started` (durable) before the API call, `task_running` with
//! the UPID (durable) before waiting on the task, then `succeeded`, `failed` or
//! `abandoned`. How an op left in flight ended is decided outside, in `crate::inflight`;
//! the journal only stores what was decided.
//!
//! An op may carry a one-shot key (a desired entry's `once`): the journal records it
//! with the op, and keeps the op of a key that was carried out for good, so that the
//! engine can ask, whatever restarted or was compacted in between, whether a key
//! was ever used ([`Journal::keys`], [`KeyUse::is_spent`]).
//!
//! It also keeps, for every guest, its latest op that has a UPID, however many ops
//! have finished since ([`Journal::last_tasks`]): a task of the agent's that the node
//! lists and the journal does not tie to an op must then be newer than that one, so
//! `crate::inflight` never takes an old task for an op whose answer was lost.
//!
//! # The file
//!
//! `<state_dir>/journal` ([`file_in`]) holds one JSON object per line, each
//! terminated by `\n` (the JSON never contains a raw newline or NUL: serde_json
//! escapes both). Records are only ever appended, and the file is only ever
//! replaced whole, by compaction and by the rewrite at open (`journal.tmp`, fsync,
//! rename, fsync the directory). A record, as written:
//!
//! ```text
//! {"v":1,"seq":42,"op":17,"vmid":101,"kind":"start","params":{},"state":"task_running","upid":"UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:101:agent@pve!reconciler:","ts":"2026-11-26T20:49:12.345Z","crc":"d7061c10"}
//! ```
//!
//! and a record of an op with a one-shot key:
//!
//! ```text
//! {"v":2,"seq":43,"op":18,"vmid":102,"kind":"start","params":{},"key":"first-boot","state":"started","ts":"2026-11-26T20:49:13.002Z","crc":"4dfc9f4b"}
//! ```
//!
//! The members, always in this order:
//!
//! * `v`: the format version, the number `1` or `2`. It is the first member, so a
//!   reader finds it before anything else; a reader rejects any version it does not
//!   know (opening fails with [`JournalError::Corrupt`]). Any change to this format,
//!   even a new optional member, gets a new version: a reader rejects members its
//!   version does not have.
//!   * Version 1: every member below but `key`.
//!   * Version 2: version 1 plus `key`, which it always has.
//!
//!   A record is written in the oldest version that can hold it ([`version_for`]):
//!   version 2 when its op has a key, version 1 otherwise, byte for byte as before
//!   keys existed. A reader takes both, side by side in one file (compaction copies
//!   lines verbatim, so old lines stay as they were written), and refuses a
//!   version-1 line with `key` or a version-2 line without it. Writing version 2 only
//!   when needed keeps a journal readable by a version-1 build, after a downgrade of
//!   the agent, until the first one-shot action is journaled; and it leaves the
//!   lines of every ordinary op, and the cost of replaying them, as they were.
//! * `seq`: a u64, strictly increasing down the file, starting at 1. It continues
//!   across restarts and compaction (which copies records verbatim). Gaps are
//!   allowed: a sequence number taken by an append that failed is not reused.
//! * `op`: the op id, a u64 unique forever. A new op gets the highest id seen so
//!   far plus one, so the `started` records appear in increasing op order.
//! * `vmid`: the guest, a number (crate::pve::Vmid).
//! * `kind`: `start`, `shutdown`, `stop` or `set_config` (crate::action::ActionKind).
//! * `params`: an object of strings, the request's parameters by PVE's own names
//!   (crate::action::Params), e.g. `{"forceStop":"1","timeout":"60"}`.
//! * `key`: version 2 only: the op's one-shot key (crate::action::Action::key), a
//!   string, as the operator wrote it in a desired entry's `once`.
//!
//!   `vmid`, `kind`, `params` and `key` are repeated in every record of an op, so each
//!   line reads on its own; a reader takes them from the `started` record, and
//!   refuses a later record of the op that names another guest, kind or key.
//! * `state`: what this record says happened:
//!   * `started`: about to call the API. Always the op's first record.
//!   * `task_running`: the API returned this UPID; the task is running. At most once,
//!     straight after `started`.
//!   * `succeeded`: the call returned null (synchronous success) or the task ended OK.
//!   * `failed`: the call or the task failed; see `error`.
//!   * `abandoned`: the op did not happen, or can no longer happen (no task appeared
//!     for an unanswered start or stop, the config changed under an unanswered
//!     `set_config`, or HA will no longer carry out the request an `hastart` or
//!     `hastop` task filed); the next pass re-plans from the live state.
//!
//!   The last three finish the op: nothing follows them.
//! * `upid`: the task's UPID as a string, present once known (from `task_running`
//!   on); absent otherwise.
//! * `error`: present for `failed` (the API error, or the task's exit status) and
//!   `abandoned` (why); absent otherwise.
//! * `ts`: when the record was made, UTC RFC 3339 with milliseconds
//!   (`2026-11-26T20:49:12.345Z`).
//! * `crc`: the last member, exactly `,"crc":"` + 8 lowercase hex digits + `"}`.
//!   It is the CRC-32C (Castagnoli) of the bytes of the line with that member cut
//!   out: everything before `,"crc":` followed by the closing `}`, which is itself
//!   the record's JSON object without `crc`. The newline is not covered. Readers
//!   check the CRC on the bytes as they are, never on a re-serialization.
//!
//! # One-shot keys
//!
//! A key is *spent* once its op is in flight, once it `succeeded`, and once its
//! request reached the node and started a task, whatever became of that task: a
//! one-shot action is attempted at most once, even if it failed or an HA request was
//! overridden. An op `abandoned` before any task existed did not happen, and an op
//! refused by the node (no task, or a task that failed on the guest's lock and so did
//! nothing) leaves its key unspent ([`keys::spends_key`]). [`Journal::keys`] (and
//! [`keys_of`] for [`read_records`]) gives the latest op of each guest and key;
//! compaction keeps every op that spent its key, forever, besides what it keeps
//! anyway (an operator writes each key, so they are few), so a spent key
//! survives any number of compactions.
//!
//! # Crash safety
//!
//! A batch of records is appended with one `write(2)` and made durable with one
//! `fdatasync` before any caller is acknowledged (group commit); this includes
//! `succeeded`, `failed` and `abandoned`, which could have ridden the next sync but
//! are cheap enough to wait for, and that way a returned call always means "on disk".
//! So a crash can only tear the records of the batch being written: at open, a run
//! of bad lines at the very end (partial, no newline, bad CRC or JSON, NUL-filled)
//! is copied to `journal.broken` and cut off. A bad line followed by a good one
//! cannot come from a crash and is reported as corruption; it is never skipped.
//! An fsync error poisons the journal for good (see [`JournalError::is_fatal`]).
//!
//! ## Rewritten at open
//!
//! When `fdatasync` fails, Linux marks the pages whose writeback failed clean and
//! never writes them again, and reports the error once, to the descriptors open at
//! the time. The batch that failed stays readable from the page cache: the next
//! process reads it as good records (no error reaches it, and it cannot tell) and
//! would append after it. After a power cut the disk can then hold garbage where
//! that batch was, followed by good records: corruption, and the service stays
//! down (exit 3). So before the first append, [`Journal::open`] writes what it read
//! (the good records, the torn tail left out) to a new file and replaces the
//! journal with it: `journal.tmp`, fsync, rename, fsync the directory, the same
//! steps as compaction. From then on, what the process read is what is on disk,
//! in a new inode that no failed writeback ever touched. If the file is at or past
//! `compact_bytes`, this rewrite is also its compaction, keeping what compaction
//! keeps. A crash before the rename leaves the old file whole, and the
//! next open starts over; the torn tail, saved before the rewrite, may then be
//! saved to `journal.broken` twice, never lost.
//!
//! Every open rewrites, not only the open after an unclean end. A marker saying
//! "the last process closed cleanly" would spare a clean restart one rewrite, but
//! it is one more piece of state that every way a process can end (panic, stall,
//! SIGKILL, a failed close, a failed fsync of the marker itself) must leave right,
//! and if it is ever wrong we are back to silent corruption. The rewrite is cheap
//! because compaction keeps the file under `compact_bytes` (4 MiB by default; the
//! compacted file is much smaller). Measured with `cargo bench --bench bench` on
//! the development virtual machine: opening a journal just under 4 MiB takes about
//! 20 ms, of which the write, fsync and directory fsync of the new file are about
//! 3 ms (the rest, reading and replaying, every open does anyway). A disk that
//! syncs slowly makes that fsync slower, once per start of the agent.
//!
//! # One process at a time
//!
//! [`Journal::open`] takes an exclusive `flock` on `<state_dir>/lock` and holds it
//! until the last clone of the handle is dropped; a second process gets
//! [`JournalError::Locked`] (after a grace of half a second, for the moment a
//! process starting a child lends it the lock: see `open::LOCK_GRACE`). The kernel
//! drops the lock when the process dies, so a crash never leaves a stale one.
//! Readers take no lock: [`read_records`] (the `journal` and `plan` commands) reads
//! the file as it is, leaving out a torn tail, which may be a batch being written.
//!
//! # Module map
//!
//! `crc` is CRC-32C; `record` encodes and decodes one line (decoding into a `view`
//! that borrows from the file's bytes, `canonical` being its fast path); `scan` walks
//! a whole file's bytes, telling a torn tail from corruption, and `index` replays the
//! records, with `keys` folding the one-shot keys (all pure, no I/O);
//! `open` does the file work of opening, locking and repairing; `replace` swaps in
//! a new file crash-safely (for open and `compact`, which picks what to keep);
//! `handle` is the [`Journal`] handle and `writer` its writer thread, which owns the
//! messages between them; `failpoint` lets tests crash or fail it at exact places.
//! How an op left in flight ended is decided in `crate::inflight`, not here.

mod canonical;
mod compact;
mod crc;
mod error;
mod failpoint;
mod handle;
mod index;
mod keys;
mod open;
#[cfg(test)]
mod props;
mod record;
mod replace;
mod scan;
mod swar;
mod view;
mod writer;

pub use crc::crc32c;
pub use error::JournalError;
pub use handle::Journal;
pub use keys::{keys_of, spent_by_guest, KeyUse};

use crate::action::{ActionKind, Params};
use crate::pve::{Upid, Vmid};
use std::fmt;
use std::path::{Path, PathBuf};

/// The journal's file in the state directory `state_dir`: the one place its name
/// is spelled.
pub fn file_in(state_dir: &Path) -> PathBuf {
    state_dir.join(open::FILE_NAME)
}

/// The newest format version this build reads and writes. It reads every version
/// from 1 up to this one; the module doc says what each has.
pub const FORMAT_VERSION: u32 = 2;

/// The version a record is written in: the oldest that can hold it, 2 for a record
/// whose op has a one-shot key and 1 otherwise. The writer writes it, and a reader
/// refuses a line whose version is not this.
pub fn version_for(has_key: bool) -> u32 {
    if has_key {
        2
    } else {
        1
    }
}

/// Where an op stands, as of one record. Ordered as an op lives.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OpState {
    /// About to call the API.
    Started,
    /// The API returned a UPID; the task runs.
    TaskRunning,
    /// Done: null answer or task OK.
    Succeeded,
    /// Done: the call or the task failed.
    Failed,
    /// Done: it did not happen, or can no longer happen (see `crate::inflight`).
    Abandoned,
}

impl OpState {
    /// The name used in the file and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Started => "started",
            OpState::TaskRunning => "task_running",
            OpState::Succeeded => "succeeded",
            OpState::Failed => "failed",
            OpState::Abandoned => "abandoned",
        }
    }

    /// True for `succeeded`, `failed` and `abandoned`: nothing follows them.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            OpState::Succeeded | OpState::Failed | OpState::Abandoned
        )
    }
}

impl fmt::Display for OpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An op id: unique forever within one journal.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct OpId(pub u64);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One line of the journal, decoded and checked. Serializes to the line's members
/// in file order, without `crc`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    /// The line's format version, which [`version_for`] gives for it.
    pub v: u32,
    pub seq: u64,
    pub op: OpId,
    pub vmid: Vmid,
    pub kind: ActionKind,
    pub params: Params,
    /// The op's one-shot key; `None` for an ordinary op (and in every version-1 line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub state: OpState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upid: Option<Upid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ts: String,
}

/// An op as the journal knows it after replay: its `started` fields and its latest state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OpSummary {
    pub op: OpId,
    pub vmid: Vmid,
    pub kind: ActionKind,
    pub params: Params,
    /// The op's one-shot key, if it has one (left out of the JSON when it has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub state: OpState,
    pub upid: Option<Upid>,
    /// Unix seconds of the `started` record.
    pub started_at: i64,
    pub error: Option<String>,
}

/// Tuning for [`Journal::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalOptions {
    /// Compact once the file grows past this many bytes, or is found past it at
    /// open (default 4 MiB).
    pub compact_bytes: u64,
    /// How many finished ops compaction keeps, newest by finish first (default 1000).
    /// Besides them it keeps the ops in flight, the spent one-shot keys' ops and each
    /// guest's latest op with a UPID.
    pub keep_finished: usize,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            compact_bytes: 4 << 20,
            keep_finished: 1000,
        }
    }
}

/// Reads and checks every record of the journal at `path`, read-only: no repair, no
/// writes. A torn tail (what [`Journal::open`] would cut off) is left out of the
/// result; a bad record followed by a good one, an unknown version or an impossible
/// sequence is [`JournalError::Corrupt`]. Pass the records to [`in_flight_of`] and
/// [`keys_of`] for what the handle's [`Journal::in_flight`] and [`Journal::keys`] say.
pub fn read_records(path: &Path) -> Result<Vec<Record>, JournalError> {
    let bytes = std::fs::read(path).map_err(|e| JournalError::io(path, "read", e))?;
    let mut records = Vec::new();
    let mut index = index::Index::new(0);
    scan::scan(&bytes, |rec, _| {
        index.apply(&rec)?;
        records.push(rec.to_record()?);
        Ok(())
    })
    .map_err(|c| JournalError::Corrupt {
        path: path.to_path_buf(),
        line: c.line,
        reason: c.reason,
    })?;
    Ok(records)
}

/// Each guest's last task in `records`: the UPID of its latest op that has one, as
/// [`Journal::last_tasks`] gives it for the journal it holds open. Records are taken
/// as they come: use [`read_records`] to check them first.
pub fn last_tasks_of(records: &[Record]) -> std::collections::BTreeMap<Vmid, Upid> {
    let mut last: std::collections::BTreeMap<Vmid, (OpId, &Upid)> = Default::default();
    for rec in records {
        if let Some(upid) = &rec.upid {
            let slot = last.entry(rec.vmid).or_insert((rec.op, upid));
            if slot.0 <= rec.op {
                *slot = (rec.op, upid);
            }
        }
    }
    last.into_iter()
        .map(|(vmid, (_, upid))| (vmid, upid.clone()))
        .collect()
}

/// The ops whose latest record in `records` is `started` or `task_running`, by op id.
/// Records are taken as they come: use [`read_records`] to check them first.
pub fn in_flight_of(records: &[Record]) -> Vec<OpSummary> {
    let mut ops: std::collections::BTreeMap<OpId, OpSummary> = Default::default();
    for rec in records {
        if rec.state == OpState::Started {
            ops.insert(rec.op, index::summary_of(&view::View::of(rec)));
        } else if let Some(op) = ops.get_mut(&rec.op) {
            op.state = rec.state;
            if rec.upid.is_some() {
                op.upid = rec.upid.clone();
            }
            op.error = rec.error.clone();
        }
    }
    ops.into_values()
        .filter(|o| !o.state.is_finished())
        .collect()
}
