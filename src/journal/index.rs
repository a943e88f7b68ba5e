//! The in-memory replay of a journal: each op's latest state, the ops in flight, each
//! guest's last task, and the counters that continue across restarts. Pure: no I/O, no
//! clock.

use super::keys::{KeyUse, Keys};
use super::view::View;
use super::{OpId, OpState, OpSummary};
use crate::pve::{Upid, Vmid};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Whether an op may go from `from` to `to`. `started` only ever begins an op.
pub(crate) fn allowed(from: OpState, to: OpState) -> bool {
    match from {
        OpState::Started => to != OpState::Started,
        OpState::TaskRunning => to.is_finished(),
        OpState::Succeeded | OpState::Failed | OpState::Abandoned => false,
    }
}

/// An op's summary as its `started` record gives it.
pub(crate) fn summary_of(rec: &View<'_>) -> OpSummary {
    OpSummary {
        op: rec.op,
        vmid: rec.vmid,
        kind: rec.kind,
        params: rec.params(),
        key: rec.key.as_ref().map(|k| k.to_string()),
        state: rec.state,
        upid: None,
        started_at: rec.unix_ts(),
        error: None,
    }
}

/// The replayed state of a journal.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    in_flight: BTreeMap<OpId, OpSummary>,
    /// Finished ops in the order they finished, newest last, at most `keep_finished`.
    finished: VecDeque<OpId>,
    /// The summaries of the ops in `finished`.
    finished_ops: HashMap<OpId, OpSummary>,
    keep_finished: usize,
    /// The latest op of each guest's one-shot key.
    keys: Keys,
    /// Every op with a key that ended having spent it (`keys::spends_key`):
    /// compaction keeps them forever.
    spent_keyed: BTreeSet<OpId>,
    /// Each guest's latest op that has a UPID (its last task): compaction keeps it
    /// whatever `keep_finished` says, so that a task of the agent's is never taken for
    /// a later op's (see `crate::inflight`).
    last_task: HashMap<Vmid, OpId>,
    /// The summaries of the ops in `last_task` that are neither in flight nor in
    /// `finished` (moved here rather than cloned, so that replay stays cheap).
    last_task_ops: HashMap<OpId, OpSummary>,
    last_seq: u64,
    max_op: u64,
    /// The op of the record with the highest seq.
    last_op: Option<OpId>,
    records: u64,
}

impl Index {
    pub(crate) fn new(keep_finished: usize) -> Index {
        Index {
            in_flight: BTreeMap::new(),
            finished: VecDeque::new(),
            finished_ops: HashMap::new(),
            keep_finished,
            keys: Keys::default(),
            spent_keyed: BTreeSet::new(),
            last_task: HashMap::new(),
            last_task_ops: HashMap::new(),
            last_seq: 0,
            max_op: 0,
            last_op: None,
            records: 0,
        }
    }

    /// Applies the next record of the file, or says why it cannot follow the ones
    /// before it.
    pub(crate) fn apply(&mut self, rec: &View<'_>) -> Result<(), String> {
        if rec.seq <= self.last_seq {
            return Err(format!(
                "seq {} does not follow seq {}",
                rec.seq, self.last_seq
            ));
        }
        // A keyed op's UPID, for `keys`: parsed once, from its `task_running` record.
        let mut keyed_upid = None;
        if rec.state == OpState::Started {
            if rec.op.0 <= self.max_op {
                return Err(format!(
                    "op {} starts again or out of order (highest op so far {})",
                    rec.op, self.max_op
                ));
            }
            self.in_flight.insert(rec.op, summary_of(rec));
            self.max_op = rec.op.0;
        } else {
            let Some(cur) = self.in_flight.get_mut(&rec.op) else {
                return Err(format!(
                    "op {} is not in flight, cannot record {}",
                    rec.op, rec.state
                ));
            };
            if !allowed(cur.state, rec.state) {
                return Err(format!(
                    "op {} cannot go from {} to {}",
                    rec.op, cur.state, rec.state
                ));
            }
            if cur.vmid != rec.vmid || cur.kind != rec.kind {
                return Err(format!(
                    "op {} was {} {} when started, not {} {}",
                    rec.op, cur.kind, cur.vmid, rec.kind, rec.vmid
                ));
            }
            if !same_key(cur.key.as_ref(), rec.key.as_ref()) {
                return Err(format!(
                    "op {} was started with {}, this record has {}",
                    rec.op,
                    said_key(cur.key.as_deref()),
                    said_key(rec.key.as_deref())
                ));
            }
            if rec.state.is_finished() {
                let mut done = self.in_flight.remove(&rec.op).expect("looked up above");
                if done.key.is_some() {
                    let refused = rec.state == OpState::Failed
                        && super::keys::is_refusal(rec.error.as_deref());
                    if super::keys::spends_key(rec.state, done.upid.is_some(), refused) {
                        self.spent_keyed.insert(rec.op);
                    }
                    keyed_upid = done.upid.clone();
                }
                done.state = rec.state;
                done.error = rec.error.as_ref().map(|e| e.to_string());
                if self.keep_finished > 0 {
                    self.finished.push_back(rec.op);
                    self.finished_ops.insert(rec.op, done);
                } else {
                    self.keep_if_last_task(done);
                }
                if self.finished.len() > self.keep_finished {
                    if let Some(old) = self.finished.pop_front() {
                        if let Some(done) = self.finished_ops.remove(&old) {
                            self.keep_if_last_task(done);
                        }
                    }
                }
            } else {
                cur.state = rec.state;
                cur.upid = rec.upid().map_err(|e| format!("op {}: {e}", rec.op))?;
                if cur.key.is_some() {
                    keyed_upid = cur.upid.clone();
                }
                if cur.upid.is_some() {
                    self.note_task(rec.vmid, rec.op);
                }
            }
        }
        if rec.key.is_some() {
            self.keys.apply(rec, keyed_upid);
        }
        self.last_seq = rec.seq;
        self.last_op = Some(rec.op);
        self.records += 1;
        Ok(())
    }

    /// `op` of `vmid` has a UPID now: it is the guest's last task unless a later op
    /// of the guest already has one.
    fn note_task(&mut self, vmid: Vmid, op: OpId) {
        let previous = self.last_task.entry(vmid).or_insert(op);
        if *previous < op {
            let old = std::mem::replace(previous, op);
            self.last_task_ops.remove(&old);
        }
    }

    /// Keeps a finished op that leaves the window of the last `keep_finished` if it
    /// is its guest's last task.
    fn keep_if_last_task(&mut self, done: OpSummary) {
        if self.last_task.get(&done.vmid) == Some(&done.op) {
            self.last_task_ops.insert(done.op, done);
        }
    }

    /// Each guest's last task: the UPID of its latest op that has one, in flight or
    /// finished however long ago.
    pub(crate) fn last_tasks(&self) -> BTreeMap<Vmid, Upid> {
        self.last_task
            .iter()
            .filter_map(|(vmid, op)| {
                let summary = self
                    .in_flight
                    .get(op)
                    .or_else(|| self.finished_ops.get(op))
                    .or_else(|| self.last_task_ops.get(op))?;
                Some((*vmid, summary.upid.clone()?))
            })
            .collect()
    }

    /// An op in flight.
    pub(crate) fn get(&self, op: OpId) -> Option<&OpSummary> {
        self.in_flight.get(&op)
    }

    /// An op in flight or among the last `keep_finished` finished.
    pub(crate) fn op(&self, op: OpId) -> Option<&OpSummary> {
        self.in_flight
            .get(&op)
            .or_else(|| self.finished_ops.get(&op))
    }

    /// The ops in flight, by op id.
    pub(crate) fn in_flight(&self) -> Vec<OpSummary> {
        self.in_flight.values().cloned().collect()
    }

    /// The UPIDs of the ops in flight, of the finished ops kept, of each guest's last
    /// task, and of the latest op of each one-shot key.
    pub(crate) fn upids(&self) -> BTreeSet<Upid> {
        self.in_flight
            .values()
            .chain(self.finished_ops.values())
            .chain(self.last_task_ops.values())
            .filter_map(|o| o.upid.clone())
            .chain(self.keys.get().values().filter_map(|k| k.upid.clone()))
            .collect()
    }

    /// The latest op of each guest's one-shot key.
    pub(crate) fn keys(&self) -> &BTreeMap<(Vmid, String), KeyUse> {
        self.keys.get()
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.last_seq + 1
    }

    pub(crate) fn next_op(&self) -> u64 {
        self.max_op + 1
    }

    /// Records replayed since the last [`Index::set_records`].
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// After compaction: how many records the new file holds.
    pub(crate) fn set_records(&mut self, n: u64) {
        self.records = n;
    }

    /// The ops whose records compaction keeps: every op in flight, the last
    /// `keep_finished` finished ones, every op with a one-shot key that ended
    /// `succeeded` or `failed` (a spent key stays spent through any number of
    /// compactions), each guest's latest op with a UPID (so that its last task stays
    /// the journal's through any number of compactions), and always the op with the
    /// highest id and the op of the last record, so that the next op id and seq
    /// survive even `keep_finished == 0`.
    pub(crate) fn keep_set(&self) -> BTreeSet<OpId> {
        let mut keep: BTreeSet<OpId> = self.in_flight.keys().copied().collect();
        keep.extend(self.finished.iter().copied());
        keep.extend(self.spent_keyed.iter().copied());
        keep.extend(self.last_task.values().copied());
        if self.max_op > 0 {
            keep.insert(OpId(self.max_op));
        }
        keep.extend(self.last_op);
        keep
    }

    /// A readable rendering, for tests.
    #[cfg(test)]
    pub(crate) fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "records {}, next seq {}, next op {}\n",
            self.records,
            self.next_seq(),
            self.next_op()
        );
        for o in self.in_flight.values() {
            let _ = write!(
                out,
                "in flight: op {} {} {} {}",
                o.op, o.vmid, o.kind, o.state
            );
            if let Some(key) = &o.key {
                let _ = write!(out, " key={key}");
            }
            for (k, v) in &o.params {
                let _ = write!(out, " {k}={v}");
            }
            if let Some(u) = &o.upid {
                let _ = write!(out, " {u}");
            }
            out.push('\n');
        }
        let finished: Vec<String> = self
            .finished
            .iter()
            .map(|o| format!("{o} {}", self.finished_ops[o].state))
            .collect();
        let keep: Vec<String> = self.keep_set().iter().map(|o| o.to_string()).collect();
        let _ = writeln!(
            out,
            "finished: [{}] keep: [{}]",
            finished.join(", "),
            keep.join(" ")
        );
        for (vmid, upid) in self.last_tasks() {
            let _ = writeln!(out, "last task {vmid}: op {} {upid}", self.last_task[&vmid]);
        }
        for ((vmid, key), used) in self.keys() {
            let _ = writeln!(
                out,
                "key {vmid} {key}: op {} {} {}{}",
                used.op,
                used.kind,
                used.state,
                if used.is_spent() { " spent" } else { "" }
            );
        }
        out
    }
}

/// Whether a record names the key its op started with. (A match, not a comparison
/// of `as_deref`s: replay runs this for every record, and the size-optimized build
/// calls `as_deref` out of line.)
fn same_key(started: Option<&String>, rec: Option<&std::borrow::Cow<'_, str>>) -> bool {
    match (started, rec) {
        (None, None) => true,
        (Some(a), Some(b)) => a.as_str() == b.as_ref(),
        _ => false,
    }
}

/// A key as an error message says it.
fn said_key(key: Option<&str>) -> String {
    match key {
        Some(k) => format!("key {k:?}"),
        None => "no key".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        use OpState::*;
        let all = [Started, TaskRunning, Succeeded, Failed, Abandoned];
        let mut table = String::new();
        for from in all {
            let to: Vec<&str> = all
                .iter()
                .filter(|t| allowed(from, **t))
                .map(|t| t.as_str())
                .collect();
            table += &format!("{from} -> {}\n", to.join(" "));
        }
        assert_eq!(
            table,
            "started -> task_running succeeded failed abandoned\n\
             task_running -> succeeded failed abandoned\n\
             succeeded -> \n\
             failed -> \n\
             abandoned -> \n"
        );
    }
}
