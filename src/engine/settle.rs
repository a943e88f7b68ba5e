//! Ops left in flight while the agent runs: a task that outlived its wait, or a start
//! or stop whose request went unanswered. Before each pass the engine looks at every
//! such op once, without waiting: a finished task is journaled with its outcome, a
//! task found in the node's task list gets its UPID journaled, and whatever is still
//! unknown holds its guest, so nothing is done twice while a task may still run.
//! (At start-up, recovery does the same with waiting; what it could not resolve is
//! picked up here.)

use crate::journal::{Journal, OpSummary, TaskLookup, TaskState, CLOCK_SKEW_SECS};
use crate::log;
use crate::plan::Hold;
use crate::pve::Vmid;
use std::collections::{BTreeMap, BTreeSet};

/// How long a start or stop without an answer may go without a task in the node's
/// task list before it is taken as never carried out. pveproxy gives up on pvedaemon
/// after 30 s; the task, if any, is listed once pvedaemon forks it.
pub const NO_TASK_GRACE_SECS: i64 = 120;

/// Settles what it can of the journal's in-flight ops (skipping guests whose lane is
/// busy: the lane owns that op) and returns a hold for every guest still in doubt.
pub fn settle(
    journal: &Journal,
    tasks: &dyn TaskLookup,
    busy: &BTreeSet<Vmid>,
    now: i64,
) -> BTreeMap<Vmid, Hold> {
    let mut holds = BTreeMap::new();
    for op in journal.in_flight() {
        if busy.contains(&op.vmid) {
            continue;
        }
        if let Some(what) = settle_one(journal, tasks, &op, now) {
            holds.insert(op.vmid, Hold::InFlight { what });
        }
    }
    holds
}

/// One op; returns why its guest stays held, or `None` when the op is resolved.
fn settle_one(
    journal: &Journal,
    tasks: &dyn TaskLookup,
    op: &OpSummary,
    now: i64,
) -> Option<String> {
    let note = |r: Result<(), crate::journal::JournalError>| {
        if let Err(e) = r {
            log::error(
                "journal write failed",
                &[("op", &op.op), ("error", &log::Chain(&e))],
            );
        }
    };
    let Some(upid) = &op.upid else {
        let Some(task_type) = op.kind.lxc_task_type() else {
            note(journal.abandoned(
                op.op,
                "outcome unknown; the next pass reads the config again",
            ));
            return None;
        };
        return match tasks.find_task(op.vmid, task_type, op.started_at - CLOCK_SKEW_SECS) {
            Ok(Some(upid)) => {
                log::info(
                    "found the task of an unanswered request",
                    &[("op", &op.op), ("upid", &upid)],
                );
                note(journal.task_running(op.op, &upid));
                Some(format!("task {upid} of op {} found; checking it", op.op))
            }
            Ok(None) if now - op.started_at > NO_TASK_GRACE_SECS => {
                note(journal.abandoned(op.op, "no task appeared for the unanswered request"));
                None
            }
            Ok(None) => Some(format!(
                "op {} {} got no answer; looking for its task",
                op.op, op.kind
            )),
            Err(e) => Some(format!(
                "op {} {}: cannot read the task list: {e}",
                op.op, op.kind
            )),
        };
    };
    match tasks.task_state(upid) {
        Ok(TaskState::Running) => Some(format!("task {upid} still running")),
        Ok(TaskState::Finished { ok, exitstatus }) => {
            log::info(
                "in-flight task finished",
                &[
                    ("op", &op.op),
                    ("vmid", &op.vmid),
                    ("upid", upid),
                    ("exitstatus", &exitstatus),
                ],
            );
            if ok {
                note(journal.succeeded(op.op));
            } else {
                note(journal.failed(op.op, &exitstatus));
            }
            None
        }
        Err(e) => Some(format!("cannot read task {upid}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Action, ActionKind, Params};
    use crate::journal::{JournalOptions, OpState};
    use crate::pve::Upid;

    struct Fake {
        state: Result<TaskState, String>,
        found: Result<Option<Upid>, String>,
    }

    impl TaskLookup for Fake {
        fn task_state(&self, _: &Upid) -> Result<TaskState, String> {
            self.state.clone()
        }
        fn find_task(&self, _: Vmid, _: &str, _: i64) -> Result<Option<Upid>, String> {
            self.found.clone()
        }
    }

    fn upid() -> Upid {
        "UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:101:agent@pve!t:"
            .parse()
            .unwrap()
    }

    fn action(kind: ActionKind) -> Action {
        Action {
            vmid: Vmid::new(101).unwrap(),
            kind,
            params: Params::new(),
            reason: "test".into(),
        }
    }

    /// Settles one op in a fresh journal; returns the hold text (if held) and the op's
    /// state afterwards.
    fn check(
        kind: ActionKind,
        with_upid: bool,
        fake: Fake,
        age: i64,
        busy: bool,
    ) -> (Option<String>, OpState) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("felhom-settle-{}-{n}", std::process::id()));
        let j = Journal::open(&dir, JournalOptions::default()).unwrap();
        let op = j.begin(&action(kind)).unwrap();
        if with_upid {
            j.task_running(op, &upid()).unwrap();
        }
        let started = j.in_flight()[0].started_at;
        let busy: BTreeSet<Vmid> = busy.then(|| Vmid::new(101).unwrap()).into_iter().collect();
        let holds = settle(&j, &fake, &busy, started + age);
        let hold = holds.values().next().map(|h| match h {
            Hold::InFlight { what } => what.clone(),
            other => format!("{other:?}"),
        });
        let state = j.op(op).unwrap().state;
        j.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        (hold, state)
    }

    fn running() -> Result<TaskState, String> {
        Ok(TaskState::Running)
    }

    #[test]
    fn each_kind_of_leftover() {
        let fake = |state, found| Fake { state, found };
        let done = |ok: bool, s: &str| {
            Ok(TaskState::Finished {
                ok,
                exitstatus: s.into(),
            })
        };
        let start = ActionKind::Start;
        let (hold, state) = check(start, true, fake(running(), Ok(None)), 0, false);
        assert!(hold.unwrap().ends_with("still running"));
        assert_eq!(state, OpState::TaskRunning);

        let (hold, state) = check(start, true, fake(done(true, "OK"), Ok(None)), 0, false);
        assert_eq!((hold, state), (None, OpState::Succeeded));

        let (hold, state) = check(start, true, fake(done(false, "boom"), Ok(None)), 0, false);
        assert_eq!((hold, state), (None, OpState::Failed));

        let (hold, state) = check(start, true, fake(Err("503".into()), Ok(None)), 0, false);
        assert!(hold.unwrap().contains("cannot read task"));
        assert_eq!(state, OpState::TaskRunning);

        let (hold, state) = check(start, false, fake(running(), Ok(Some(upid()))), 0, false);
        assert!(hold.unwrap().contains("found"));
        assert_eq!(state, OpState::TaskRunning);

        let (hold, state) = check(start, false, fake(running(), Ok(None)), 10, false);
        assert!(hold.unwrap().contains("looking for its task"));
        assert_eq!(state, OpState::Started);

        let (hold, state) = check(
            start,
            false,
            fake(running(), Ok(None)),
            NO_TASK_GRACE_SECS + 1,
            false,
        );
        assert_eq!((hold, state), (None, OpState::Abandoned));

        let (hold, state) = check(
            ActionKind::SetConfig,
            false,
            fake(running(), Ok(None)),
            0,
            false,
        );
        assert_eq!((hold, state), (None, OpState::Abandoned));

        // A busy lane owns its op: left alone.
        let (hold, state) = check(start, true, fake(done(true, "OK"), Ok(None)), 0, true);
        assert_eq!((hold, state), (None, OpState::TaskRunning));
    }
}
