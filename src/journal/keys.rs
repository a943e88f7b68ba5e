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
}

impl KeyUse {
    /// Whether the key may never be carried out again: true while its op is in
    /// flight, once it `succeeded`, and once its task `failed` (a one-shot action is
    /// carried out at most once, even if it failed). False when the op was
    /// `abandoned` (the journal's way of saying it did not happen) and when it failed
    /// with no task: the node refused the request (a lock, say) and started nothing,
    /// so it may run once the refusal clears.
    pub fn is_spent(&self) -> bool {
        match self.state {
            OpState::Abandoned => false,
            OpState::Failed => self.upid.is_some(),
            _ => true,
        }
    }
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
    fn only_abandoned_or_refused_ops_leave_a_key_unspent() {
        let used = |state| KeyUse {
            op: OpId(1),
            kind: ActionKind::Start,
            state,
            upid: None,
            started_at: 0,
            finished_at: None,
        };
        let spent: Vec<(OpState, bool)> = [
            OpState::Started,
            OpState::TaskRunning,
            OpState::Succeeded,
            OpState::Failed,
            OpState::Abandoned,
        ]
        .into_iter()
        .map(|s| (s, used(s).is_spent()))
        .collect();
        assert_eq!(
            spent,
            [
                (OpState::Started, true),
                (OpState::TaskRunning, true),
                (OpState::Succeeded, true),
                (OpState::Failed, false),
                (OpState::Abandoned, false),
            ]
        );
        // A failed op with a task: the task ran and failed, the key is spent.
        let upid: Upid = "UPID:pve1:0001A2B3:0456789A:6B0CA569:vzstart:101:agent@pve!t:"
            .parse()
            .unwrap();
        let ran = KeyUse {
            upid: Some(upid),
            ..used(OpState::Failed)
        };
        assert!(ran.is_spent());
    }
}
