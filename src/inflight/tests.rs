//! The in-flight decision against a fake node: every kind of op left in flight, the
//! grace on the monotonic clock, tasks that are not ours or older than the guest's last
//! task, and the digest of an unanswered config update. (HA requests: `tests_ha`.)

use super::*;
use crate::action::{Action, ActionKind, Params};
use crate::journal::{JournalOptions, OpState};
use std::cell::RefCell;

/// A node whose answers the test sets.
pub(super) struct Fake {
    pub(super) state: Result<TaskState, ApiError>,
    pub(super) tasks: Result<Vec<Upid>, ApiError>,
    pub(super) digest: Result<String, ApiError>,
    pub(super) guest: Result<Option<GuestNow>, ApiError>,
    /// The `since` of each task-list query.
    pub(super) asked_since: RefCell<Vec<i64>>,
}

impl Default for Fake {
    fn default() -> Fake {
        Fake {
            state: Ok(TaskState::Running),
            tasks: Ok(Vec::new()),
            digest: Ok("d1".into()),
            guest: Ok(Some(GuestNow {
                status: crate::pve::PowerState::Stopped,
                ha_managed: false,
                ha_state: None,
            })),
            asked_since: RefCell::new(Vec::new()),
        }
    }
}

impl Node for Fake {
    fn task_state(&self, _: &Upid) -> Result<TaskState, ApiError> {
        self.state.clone()
    }
    fn tasks_since(&self, _: Vmid, _: &[&str], since: i64) -> Result<Vec<Upid>, ApiError> {
        self.asked_since.borrow_mut().push(since);
        self.tasks.clone()
    }
    fn config_digest(&self, _: Vmid) -> Result<String, ApiError> {
        self.digest.clone()
    }
    fn guest_now(&self, _: Vmid) -> Result<Option<GuestNow>, ApiError> {
        self.guest.clone()
    }
}

pub(super) const TOKEN: &str = "agent@pve!t";

pub(super) fn upid(starttime: i64, user: &str) -> Upid {
    typed_upid(starttime, "vzstart", user)
}

pub(super) fn typed_upid(starttime: i64, kind: &str, user: &str) -> Upid {
    format!("UPID:pve1:0001A2B3:0456789A:{starttime:08X}:{kind}:101:{user}:")
        .parse()
        .unwrap()
}

pub(super) fn http503() -> ApiError {
    ApiError::Http {
        status: 503,
        message: "busy".into(),
        errors: Default::default(),
    }
}

pub(super) fn finished(ok: bool, status: &str) -> Result<TaskState, ApiError> {
    Ok(TaskState::Finished {
        ok,
        exitstatus: status.into(),
    })
}

/// A journal in a fresh temp dir, removed on drop.
pub(super) struct Scratch {
    journal: Option<Journal>,
    dir: std::path::PathBuf,
}

impl Scratch {
    pub(super) fn new() -> Scratch {
        Scratch::keeping(JournalOptions::default().keep_finished)
    }

    /// A journal that keeps only the last `keep_finished` finished ops.
    fn keeping(keep_finished: usize) -> Scratch {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("felhom-inflight-{}-{n}", std::process::id()));
        let opts = JournalOptions {
            keep_finished,
            ..JournalOptions::default()
        };
        let journal = Journal::open(&dir, opts).unwrap();
        Scratch {
            journal: Some(journal),
            dir,
        }
    }

    pub(super) fn j(&self) -> &Journal {
        self.journal.as_ref().unwrap()
    }

    /// Begins an op of `kind` for guest 101, optionally with a UPID.
    pub(super) fn op(&self, kind: ActionKind, with: Option<Upid>) -> OpId {
        self.op_of(101, kind, with)
    }

    /// Begins an op of `kind` for guest `vmid`, optionally with a UPID.
    fn op_of(&self, vmid: u64, kind: ActionKind, with: Option<Upid>) -> OpId {
        let mut params = Params::new();
        if kind == ActionKind::SetConfig {
            params.insert("digest".into(), "d1".into());
            params.insert("cores".into(), "2".into());
        }
        let op = self
            .j()
            .begin(&Action {
                vmid: Vmid::new(vmid).unwrap(),
                kind,
                guest: crate::pve::GuestKind::Lxc,
                via_task: false,
                key: None,
                guard: None,
                params,
                reason: "test".into(),
            })
            .unwrap();
        if let Some(u) = with {
            self.j().task_running(op, &u).unwrap();
        }
        op
    }

    pub(super) fn state(&self, op: OpId) -> OpState {
        self.j().op(op).unwrap().state
    }

    /// One settle over the journal; returns why 101 is held, if it is.
    pub(super) fn settle(&self, node: &Fake, tracker: &Tracker) -> Option<String> {
        settle(
            self.j(),
            node,
            TOKEN,
            tracker,
            &BTreeSet::new(),
            &Cancel::never(),
        )
        .unwrap();
        self.j()
            .in_flight()
            .first()
            .map(|op| tracker.why(op.op).unwrap())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(j) = self.journal.take() {
            let _ = j.close();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn tracker() -> Tracker {
    Tracker::new(Duration::from_secs(120))
}

#[test]
fn an_op_with_a_upid_follows_its_task() {
    let cases = [
        (
            Ok(TaskState::Running),
            Some("still running"),
            OpState::TaskRunning,
        ),
        (finished(true, "OK"), None, OpState::Succeeded),
        (finished(true, "WARNINGS: 2"), None, OpState::Succeeded),
        (finished(false, "boom"), None, OpState::Failed),
        (
            Err(http503()),
            Some("cannot read task"),
            OpState::TaskRunning,
        ),
    ];
    for (state, held, after) in cases {
        let s = Scratch::new();
        let op = s.op(ActionKind::Start, Some(upid(1000, TOKEN)));
        let node = Fake {
            state,
            ..Fake::default()
        };
        let why = s.settle(&node, &tracker());
        match held {
            Some(text) => assert!(why.as_deref().unwrap().contains(text), "{why:?}"),
            None => assert_eq!(why, None),
        }
        assert_eq!(s.state(op), after);
    }
}

#[test]
fn an_unanswered_start_is_found_in_the_task_list() {
    let s = Scratch::new();
    let op = s.op(ActionKind::Start, None);
    let started = s.j().op(op).unwrap().started_at;
    let ours = upid(started + 1, TOKEN);
    let node = Fake {
        tasks: Ok(vec![upid(started + 2, "root@pam"), ours.clone()]),
        state: finished(true, "OK"),
        ..Fake::default()
    };
    assert_eq!(s.settle(&node, &tracker()), None);
    let summary = s.j().op(op).unwrap();
    assert_eq!(summary.state, OpState::Succeeded);
    assert_eq!(summary.upid, Some(ours), "the UPID is journaled first");
    // The journal knows no earlier task of 101: nothing from before the op's record is
    // taken, so the search starts there.
    assert_eq!(node.asked_since.borrow()[0], started - CLOCK_SKEW_SECS);
}

#[test]
fn the_search_reaches_back_to_the_guests_last_task_and_at_most_a_day() {
    for last_age in [600, 3 * 86_400] {
        let s = Scratch::new();
        let now = crate::time::unix_now();
        let first = s.op(ActionKind::Start, Some(upid(now - last_age, TOKEN)));
        s.j().succeeded(first).unwrap();
        let op = s.op(ActionKind::Stop, None);
        let started = s.j().op(op).unwrap().started_at;
        let node = Fake::default();
        assert!(s.settle(&node, &tracker()).is_some());
        let since = (now - last_age).max(started - CLOCK_STEP_SECS);
        assert_eq!(
            node.asked_since.borrow()[0],
            since,
            "last task {last_age} s ago"
        );
    }
}

#[test]
fn a_task_another_op_owns_is_not_taken() {
    let s = Scratch::new();
    let now = crate::time::unix_now();
    let older = upid(now - 10, TOKEN);
    let first = s.op(ActionKind::Start, Some(older.clone()));
    s.j().succeeded(first).unwrap();
    let op = s.op(ActionKind::Start, None);
    let node = Fake {
        tasks: Ok(vec![older]),
        ..Fake::default()
    };
    let why = s.settle(&node, &tracker()).unwrap();
    assert!(
        why.contains("no vzstart/qmstart/hastart task listed yet"),
        "{why}"
    );
    assert_eq!(s.state(op), OpState::Started);
}

#[test]
fn after_a_backward_clock_step_the_latest_unowned_task_since_the_last_one_is_taken() {
    let s = Scratch::new();
    let now = crate::time::unix_now();
    let last = upid(now - 1800, TOKEN);
    let first = s.op(ActionKind::Start, Some(last.clone()));
    s.j().succeeded(first).unwrap();
    let op = s.op(ActionKind::Stop, None);
    let started = s.j().op(op).unwrap().started_at;
    // Stepped back 10 minutes between the record and the fork: the task starts "before"
    // the record, but after the guest's last task, so it is this op's.
    let task = upid(started - 600, TOKEN);
    let node = Fake {
        tasks: Ok(vec![upid(started - 1200, TOKEN), task.clone(), last]),
        ..Fake::default()
    };
    let why = s.settle(&node, &tracker()).unwrap();
    assert!(why.contains("still running"), "{why}");
    assert_eq!(s.j().op(op).unwrap().upid, Some(task));
}

#[test]
fn an_old_task_the_journal_forgot_is_never_taken() {
    // 101's start of yesterday, then more finished ops elsewhere than the journal
    // keeps (2 here): the journal still knows 101's last task and owns its UPID.
    let s = Scratch::keeping(2);
    let now = crate::time::unix_now();
    let yesterday = upid(now - 20 * 3600, TOKEN);
    let first = s.op(ActionKind::Start, Some(yesterday.clone()));
    s.j().succeeded(first).unwrap();
    for _ in 0..3 {
        let other = s.op_of(102, ActionKind::Start, None);
        s.j().succeeded(other).unwrap();
    }
    assert!(
        s.j().op(first).is_none(),
        "out of the window of finished ops"
    );
    assert!(s.j().upids().contains(&yesterday));
    let op = s.op(ActionKind::Start, None);
    // Yesterday's task, and one still older that no journal ever tied to an op (a state
    // directory wiped since, say): neither is this op's.
    let older = upid(now - 22 * 3600, TOKEN);
    let node = Fake {
        tasks: Ok(vec![older.clone(), yesterday.clone()]),
        state: finished(true, "OK"),
        ..Fake::default()
    };
    let why = s.settle(&node, &tracker()).unwrap();
    assert!(
        why.contains("no vzstart/qmstart/hastart task listed yet"),
        "{why}"
    );
    assert_eq!(s.state(op), OpState::Started);
    // Nor without any task of the guest in the journal: nothing from before the op's
    // record is taken then.
    let s = Scratch::new();
    let op = s.op(ActionKind::Start, None);
    let node = Fake {
        tasks: Ok(vec![older, yesterday]),
        state: finished(true, "OK"),
        ..Fake::default()
    };
    let why = s.settle(&node, &tracker()).unwrap();
    assert!(
        why.contains("no vzstart/qmstart/hastart task listed yet"),
        "{why}"
    );
    assert_eq!(s.state(op), OpState::Started);
}

#[test]
fn a_vm_config_update_is_not_settled_by_an_old_qmconfig_task() {
    // A VM's update by task (qmconfig) whose answer was lost: an older qmconfig task of
    // ours from before the guest's last task does not settle it; the digest decides.
    let s = Scratch::new();
    let now = crate::time::unix_now();
    let first = s.op(ActionKind::Start, Some(upid(now - 600, TOKEN)));
    s.j().succeeded(first).unwrap();
    let op = s.op(ActionKind::SetConfig, None);
    let node = Fake {
        tasks: Ok(vec![typed_upid(now - 900, "qmconfig", TOKEN)]),
        state: finished(true, "OK"),
        ..Fake::default()
    };
    let why = s.settle(&node, &tracker()).unwrap();
    assert!(why.contains("config is unchanged"), "{why}");
    assert_eq!(s.state(op), OpState::Started);
    assert_eq!(s.j().op(op).unwrap().upid, None);
}

#[test]
fn an_unanswered_start_without_a_task_is_held_through_the_grace_on_the_monotonic_clock() {
    let s = Scratch::new();
    let op = s.op(ActionKind::Start, None);
    let node = Fake::default();
    // However old the record looks on the wall clock (a forward step, or a restart long
    // after), the grace counts from this process's first look.
    let tracker = Tracker::new(Duration::from_millis(300));
    let first = Instant::now();
    let why = s.settle(&node, &tracker).unwrap();
    assert!(why.contains("waiting up to"), "{why}");
    assert_eq!(s.state(op), OpState::Started);
    // Looked at again until the grace has passed on the monotonic clock.
    let deadline = first + Duration::from_secs(10);
    while s.j().op(op).unwrap().state == OpState::Started {
        assert!(Instant::now() < deadline, "never settled");
        s.settle(&node, &tracker);
        Cancel::never().wait(Duration::from_millis(20));
    }
    assert!(first.elapsed() >= Duration::from_millis(300));
    let op = s.j().op(op).unwrap();
    assert_eq!(op.state, OpState::Abandoned);
    assert!(op.error.unwrap().contains("not carried out"));
}

#[test]
fn the_grace_counts_from_the_instant_the_executor_got_no_answer() {
    let grace = Duration::from_secs(60);
    // Told by the executor that the call went unanswered a whole grace ago: the first
    // look already ends the op, instead of starting the count.
    let s = Scratch::new();
    let op = s.op(ActionKind::Start, None);
    let tracker = Tracker::new(grace);
    let then = Instant::now()
        .checked_sub(grace)
        .expect("the clock is past a minute");
    tracker.unanswered(op, then);
    assert_eq!(tracker.unanswered_since(op), Some(then));
    assert_eq!(s.settle(&Fake::default(), &tracker), None);
    let ended = s.j().op(op).unwrap();
    assert_eq!(ended.state, OpState::Abandoned);
    assert!(ended.error.unwrap().contains("after 60 s"));
    assert_eq!(tracker.unanswered_since(op), None, "forgotten once ended");
    // Told nothing (a restart): the count starts at the first look.
    let s = Scratch::new();
    let op = s.op(ActionKind::Start, None);
    let tracker = Tracker::new(grace);
    let why = s.settle(&Fake::default(), &tracker).unwrap();
    assert!(why.contains("waiting up to"), "{why}");
    assert_eq!(s.state(op), OpState::Started);
    // Told twice, the later instant stands (the longer wait).
    let tracker = Tracker::new(grace);
    let now = Instant::now();
    tracker.unanswered(op, now);
    tracker.unanswered(op, then);
    assert_eq!(tracker.unanswered_since(op), Some(now));
}

#[test]
fn a_failing_task_list_holds_without_counting_as_no_task() {
    let s = Scratch::new();
    let op = s.op(ActionKind::Shutdown, None);
    let node = Fake {
        tasks: Err(http503()),
        ..Fake::default()
    };
    let tracker = Tracker::new(Duration::ZERO);
    let why = s.settle(&node, &tracker).unwrap();
    assert!(why.contains("cannot read the task list"), "{why}");
    assert_eq!(s.state(op), OpState::Started);
}

#[test]
fn an_unanswered_config_update_is_settled_by_the_digest() {
    // Digest changed: the update can no longer apply.
    let s = Scratch::new();
    let op = s.op(ActionKind::SetConfig, None);
    let node = Fake {
        digest: Ok("d2".into()),
        ..Fake::default()
    };
    assert_eq!(s.settle(&node, &tracker()), None);
    assert_eq!(s.state(op), OpState::Abandoned);

    // Unchanged: held through the grace.
    let s = Scratch::new();
    let op = s.op(ActionKind::SetConfig, None);
    let why = s.settle(&Fake::default(), &tracker()).unwrap();
    assert!(why.contains("config is unchanged"), "{why}");
    assert_eq!(s.state(op), OpState::Started);
    assert_eq!(
        s.settle(&Fake::default(), &Tracker::new(Duration::ZERO)),
        None
    );
    assert_eq!(s.state(op), OpState::Abandoned);

    // Unreadable: held.
    let s = Scratch::new();
    let op = s.op(ActionKind::SetConfig, None);
    let node = Fake {
        digest: Err(http503()),
        ..Fake::default()
    };
    assert!(s.settle(&node, &Tracker::new(Duration::ZERO)).is_some());
    assert_eq!(s.state(op), OpState::Started);
}

#[test]
fn settle_leaves_busy_guests_to_their_lanes() {
    let s = Scratch::new();
    let op = s.op(ActionKind::Start, Some(upid(1000, TOKEN)));
    let node = Fake {
        state: finished(true, "OK"),
        ..Fake::default()
    };
    let busy = BTreeSet::from([Vmid::new(101).unwrap()]);
    settle(s.j(), &node, TOKEN, &tracker(), &busy, &Cancel::never()).unwrap();
    assert_eq!(s.state(op), OpState::TaskRunning);
}

#[test]
fn recovery_waits_for_a_late_task_and_preview_agrees_without_journaling() {
    let s = Scratch::new();
    let op = s.op(ActionKind::Start, None);
    let ops = s.j().in_flight();
    let owned = s.j().upids();
    let last_tasks = s.j().last_tasks();
    let known = Known {
        token_id: TOKEN,
        owned: &owned,
        last_tasks: &last_tasks,
    };
    // No task yet: preview holds it and journals nothing.
    let holds = preview(&ops, &known, &Fake::default(), &tracker());
    assert!(holds[&Vmid::new(101).unwrap()].contains("no vzstart/qmstart/hastart task"));
    assert_eq!(s.state(op), OpState::Started);
    // Recovery with a deadline shorter than the grace: held, not abandoned.
    let opts = RecoverOptions {
        deadline: Instant::now() + Duration::from_millis(300),
        cancel: Cancel::never(),
    };
    let done = recover(s.j(), &Fake::default(), TOKEN, &tracker(), &opts).unwrap();
    assert_eq!(done.resolved, 0);
    assert_eq!(done.held.len(), 1);
    assert_eq!(s.state(op), OpState::Started);
    // The task shows up: recovery follows it to its end.
    let started = s.j().op(op).unwrap().started_at;
    let node = Fake {
        tasks: Ok(vec![upid(started, TOKEN)]),
        state: finished(false, "command 'lxc-start' failed"),
        ..Fake::default()
    };
    let preview_holds = preview(&ops, &known, &node, &tracker());
    assert!(preview_holds.is_empty(), "{preview_holds:?}");
    let opts = RecoverOptions {
        deadline: Instant::now() + Duration::from_secs(5),
        cancel: Cancel::never(),
    };
    let done = recover(s.j(), &node, TOKEN, &tracker(), &opts).unwrap();
    assert_eq!((done.resolved, done.held.len()), (1, 0));
    assert_eq!(s.state(op), OpState::Failed);
}

#[test]
fn recovery_stops_at_once_when_cancelled() {
    let s = Scratch::new();
    s.op(ActionKind::Start, Some(upid(1000, TOKEN)));
    let mut source = crate::cancel::CancelSource::new();
    source.cancel();
    let opts = RecoverOptions {
        deadline: Instant::now() + Duration::from_secs(60),
        cancel: source.token(),
    };
    let t = Instant::now();
    let r = recover(s.j(), &Fake::default(), TOKEN, &tracker(), &opts);
    assert!(matches!(r, Err(RecoverError::Cancelled)));
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// An op as the journal would summarise it, started `age` seconds ago by the wall clock.
fn op_started(age: i64) -> OpSummary {
    OpSummary {
        op: OpId(7),
        vmid: Vmid::new(101).unwrap(),
        kind: ActionKind::Start,
        params: Params::new(),
        key: None,
        state: OpState::Started,
        upid: None,
        started_at: crate::time::unix_now() - age,
        error: None,
    }
}

#[test]
fn wall_clock_steps_neither_end_the_grace_nor_hide_the_task() {
    let now = crate::time::unix_now();
    let known_last = |last: Upid| {
        (
            BTreeSet::from([last.clone()]),
            BTreeMap::from([(Vmid::new(101).unwrap(), last)]),
        )
    };
    // The clock stepped forward ten days since the record (or the agent was down that
    // long; 101's last task is from before the record): the grace still starts at this
    // look.
    let (owned, last_tasks) = known_last(upid(now - 11 * 86_400, TOKEN));
    let known = Known {
        token_id: TOKEN,
        owned: &owned,
        last_tasks: &last_tasks,
    };
    let op = op_started(10 * 86_400);
    let verdict = look(&op, &Fake::default(), &known, &tracker());
    assert!(
        matches!(&verdict, Verdict::Held(w) if w.contains("waiting up to 119 s more")
        || w.contains("waiting up to 120 s more")),
        "{verdict:?}"
    );
    // 101's last task, three hours ago by the node's clock. The clock stepped back two
    // hours between the record and the fork: the task starts "before" the record, but
    // after the guest's last task, and is still found.
    let (owned, last_tasks) = known_last(upid(now - 3 * 3600, TOKEN));
    let known = Known {
        token_id: TOKEN,
        owned: &owned,
        last_tasks: &last_tasks,
    };
    let op = op_started(-7200);
    let task = upid(now, TOKEN);
    let node = Fake {
        tasks: Ok(vec![task.clone()]),
        ..Fake::default()
    };
    assert_eq!(
        look(&op, &node, &known, &tracker()),
        Verdict::TaskFound(task)
    );
}

#[test]
fn the_search_starts_at_the_record_when_the_guests_last_task_is_later() {
    let at = 1_700_000_000;
    let from = |last| search_from(at, last);
    let normal = |earliest| SearchFrom {
        earliest,
        clock_went_back: false,
    };
    assert_eq!(from(None), normal(at - CLOCK_SKEW_SECS));
    assert_eq!(from(Some(at - 600)), normal(at - 600));
    assert_eq!(from(Some(at - 3 * 86_400)), normal(at - CLOCK_STEP_SECS));
    // Within the skew the last task is still taken as before the record.
    assert_eq!(
        from(Some(at + CLOCK_SKEW_SECS)),
        normal(at + CLOCK_SKEW_SECS)
    );
    // Later than that: the clock went back since the last task.
    let back = SearchFrom {
        earliest: at - CLOCK_SKEW_SECS,
        clock_went_back: true,
    };
    assert_eq!(from(Some(at + CLOCK_SKEW_SECS + 1)), back);
    assert_eq!(from(Some(at + 3600)), back);
}

#[test]
fn after_the_clock_went_back_the_ops_own_task_is_found_and_a_missing_one_is_held() {
    // 101's last task started an hour after this op's record by the node's clock (it
    // ran an hour fast until it was stepped back).
    let s = Scratch::new();
    let now = crate::time::unix_now();
    let last = typed_upid(now + 3600, "vzstart", TOKEN);
    let first = s.op(ActionKind::Start, Some(last.clone()));
    s.j().succeeded(first).unwrap();
    let op = s.op(ActionKind::Shutdown, None);
    let started = s.j().op(op).unwrap().started_at;
    // The op's own task, and one of ours from before its record, which is not taken.
    let task = typed_upid(started, "vzshutdown", TOKEN);
    let node = Fake {
        tasks: Ok(vec![
            typed_upid(started - 600, "vzshutdown", TOKEN),
            task.clone(),
        ]),
        ..Fake::default()
    };
    let why = s.settle(&node, &tracker()).unwrap();
    assert!(why.contains("still running"), "{why}");
    assert_eq!(s.j().op(op).unwrap().upid, Some(task));
    assert_eq!(node.asked_since.borrow()[0], started - CLOCK_SKEW_SECS);

    // No task of it listed: held, and still held once the grace has passed.
    let s = Scratch::new();
    let first = s.op(ActionKind::Start, Some(last));
    s.j().succeeded(first).unwrap();
    let op = s.op(ActionKind::Shutdown, None);
    let started = s.j().op(op).unwrap().started_at;
    let node = Fake {
        tasks: Ok(vec![typed_upid(started - 600, "vzshutdown", TOKEN)]),
        ..Fake::default()
    };
    let tracker = Tracker::new(Duration::ZERO);
    for _ in 0..2 {
        let why = s.settle(&node, &tracker).unwrap();
        assert!(why.contains("the clock went back"), "{why}");
        assert_eq!(s.state(op), OpState::Started);
    }
}
