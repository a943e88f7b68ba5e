//! One-shot keys: which op last used each guest's key, and whether that spent it.
//! Folded record by record, by the index as it replays and by [`keys_of`] over what
//! `read_records` returns, so that the service and the read-only commands decide
//! the same way. Pure: no I/O, no clock.

use super::view::View;
use super::{OpId, OpState, Record};
use crate::action::ActionKind;
use crate::pve::{Upid, Vmid};
use std::collections::{BTreeMap, BTreeSet};

/// The latest op of one guest's one-shot key, as of its latest record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyUse {
    pub op: OpId,
    pub kind: ActionKind,
    pub state: OpState,
    /// The op's task, once journaled.
    pub upid: Option<Upid>,
    /// Unix seconds of the `started` record.
    pub started_at: i64,
    /// Unix seconds of the record that finished the op, once it is finished.
    pub finished_at: Option<i64>,
    /// The op failed because the guest was locked ([`is_refusal`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
}

impl KeyUse {
    /// Whether the key may never be carried out again ([`spends_key`]).
    pub fn is_spent(&self) -> bool {
        spends_key(self.state, self.upid.is_some(), self.refused)
    }
}

/// Whether an op of a one-shot key, as of its latest record, used the key up: true
/// while the op is in flight, once it `succeeded`, and once its request reached the
/// node and started a task, whatever became of it (a task that failed, or an HA
/// request the journal `abandoned` because something else was asked since): a
/// one-shot action is carried out at most once, even if it failed or was overridden.
/// False when the op was `abandoned` before any task existed (the journal's way of
/// saying it did not happen), when it failed with no task (the node refused the
/// request outright), and when its task failed on the guest's lock (`refused`: PVE
/// checks the lock inside the task, which then does nothing), so that it runs once
/// the refusal clears.
pub(crate) fn spends_key(state: OpState, has_task: bool, refused: bool) -> bool {
    match state {
        OpState::Abandoned => has_task,
        OpState::Failed => has_task && !refused,
        _ => true,
    }
}

/// Whether a failed task's exit status is the node's refusal for a lock: the guest's
/// own (`CT is locked (backup)`) or its config file's (`can't lock file ... got
/// timeout`). The same messages the executor takes as `blocked`.
pub(crate) fn is_refusal(error: Option<&str>) -> bool {
    use crate::pve::messages;
    error.is_some_and(|e| messages::lock_name(e).is_some() || messages::is_lock_timeout(e))
}

/// The latest op per guest and key, folded from the records in file order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Keys {
    latest: BTreeMap<(Vmid, String), KeyUse>,
}

impl Keys {
    /// Folds in the next record, already checked against the ones before it, with
    /// its op's UPID as far as it is known (the caller has parsed it already). A
    /// `started` record with a key makes its op the key's latest; a later record
    /// updates the key only if it is of that op. (The engine never begins an op with
    /// a key that is spent, so an older op of the key is one that was abandoned or
    /// refused.)
    pub(crate) fn apply(&mut self, rec: &View<'_>, upid: Option<Upid>) {
        let Some(key) = rec.key.as_deref() else {
            return;
        };
        let slot = (rec.vmid, key.to_string());
        if rec.state == OpState::Started {
            let used = KeyUse {
                op: rec.op,
                kind: rec.kind,
                state: rec.state,
                upid: None,
                started_at: rec.unix_ts(),
                finished_at: None,
                refused: false,
            };
            self.latest.insert(slot, used);
            return;
        }
        let Some(used) = self.latest.get_mut(&slot).filter(|u| u.op == rec.op) else {
            return;
        };
        used.state = rec.state;
        if upid.is_some() {
            used.upid = upid;
        }
        if rec.state.is_finished() {
            used.finished_at = Some(rec.unix_ts());
            used.refused = rec.state == OpState::Failed && is_refusal(rec.error.as_deref());
        }
    }

    pub(crate) fn get(&self) -> &BTreeMap<(Vmid, String), KeyUse> {
        &self.latest
    }
}

/// The latest op per guest and one-shot key in `records`, as [`super::Journal::keys`]
/// gives it for the journal it holds open. Records are taken as they come: use
/// [`super::read_records`] to check them first.
pub fn keys_of(records: &[Record]) -> BTreeMap<(Vmid, String), KeyUse> {
    let mut keys = Keys::default();
    for rec in records.iter().filter(|r| r.key.is_some()) {
        keys.apply(&View::of(rec), rec.upid.clone());
    }
    keys.latest
}

/// Each guest's spent keys, as the planner takes them.
pub fn spent_by_guest(keys: &BTreeMap<(Vmid, String), KeyUse>) -> BTreeMap<Vmid, BTreeSet<String>> {
    let mut out: BTreeMap<Vmid, BTreeSet<String>> = BTreeMap::new();
    for ((vmid, key), used) in keys {
        if used.is_spent() {
            out.entry(*vmid).or_default().insert(key.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ops_that_started_nothing_leave_a_key_unspent() {
        let upid: Upid = "UPID:pve1:0001A2B3:0456789A:6B0CA569:vzstart:101:agent@pve!t:"
            .parse()
            .unwrap();
        let used = |state, upid: Option<&Upid>, refused| KeyUse {
            op: OpId(1),
            kind: ActionKind::Start,
            state,
            upid: upid.cloned(),
            started_at: 0,
            finished_at: None,
            refused,
        };
        let table: Vec<(OpState, bool, bool, bool)> = [
            (OpState::Started, false, false),
            (OpState::TaskRunning, true, false),
            (OpState::Succeeded, false, false),
            (OpState::Succeeded, true, false),
            // Refused by the API: no task ran.
            (OpState::Failed, false, false),
            // The task ran and failed: spent.
            (OpState::Failed, true, false),
            // The task failed on the guest's lock: it did nothing.
            (OpState::Failed, true, true),
            // Never reached the node.
            (OpState::Abandoned, false, false),
            // An HA request that was overridden: it reached the node.
            (OpState::Abandoned, true, false),
        ]
        .into_iter()
        .map(|(s, task, refused)| {
            let u = used(s, task.then_some(&upid), refused);
            (s, task, refused, u.is_spent())
        })
        .collect();
        let spent: Vec<bool> = table.iter().map(|t| t.3).collect();
        assert_eq!(
            spent,
            [true, true, true, true, false, true, false, false, true],
            "{table:?}"
        );
    }

    #[test]
    fn a_lock_message_is_a_refusal() {
        assert!(is_refusal(Some("CT is locked (backup)")));
        assert!(is_refusal(Some(
            "can't lock file '/run/lock/lxc/pve-config-101.lock' - got timeout"
        )));
        assert!(!is_refusal(Some("command 'lxc-start' failed: exit code 1")));
        assert!(!is_refusal(None));
    }
}
