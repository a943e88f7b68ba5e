//! Operations in flight: the one decision, from a journaled op and what the node says
//! about it, to ended, still running, or still unknown.
//!
//! An op is in flight from its `started` record until a record ends it. It stays in
//! flight whenever the agent cannot tell how it ended: the process died, the request got
//! no answer (or one that cannot be read), or the task outlived its wait. While an op is
//! in flight its guest is held: nothing else is sent for it.
//!
//! Three callers ask the same question through [`look`]:
//! - start-up recovery ([`recover`]) looks again and again, with pauses, until every op
//!   has ended, its deadline has passed, or the agent is told to stop;
//! - every pass ([`settle`], on the observer thread) looks once at each op whose guest
//!   no lane is working on;
//! - `felhom-agent plan` ([`preview`]) looks once and journals nothing.
//!
//! What the node is asked, by what the journal knows of the op:
//! - a UPID: the task's status. Running: still held. Stopped: ended with its exit status,
//!   except that an `hastart`/`hastop` task that ended OK only filed a request with HA,
//!   and [`request_outcome`] decides from the guest's state and HA's (the same
//!   decision the executing lane makes, `crate::engine::exec`).
//! - a start, shutdown or stop without a UPID (no answer came, or the agent died before
//!   it journaled one): its task in the node's task list, that is a task of that type for
//!   the guest, by the agent's own token, that no op in the journal owns, and that
//!   started no earlier than the guest's last task the journal knows (see below). Found:
//!   its UPID is journaled and it is looked at as above. Not found: held until no task
//!   has shown up for [`Tracker::grace`] of this process's monotonic time, then ended as
//!   not carried out. pvedaemon may fork the task late (all its workers busy), so "not
//!   listed yet" is not "never".
//! - a config update without an answer: a VM's may have gone by task (`qmconfig`),
//!   searched for as above; a container's update is synchronous and leaves no task, so
//!   the guest's config digest answers. Changed since the digest the update carried:
//!   ended, because PVE refuses an update whose digest no longer matches, so ours can no
//!   longer apply (and may have). Unchanged: held for the same grace, then ended as not
//!   carried out; should it still arrive late, it and any later update carry the same
//!   digest and PVE applies only one of them.
//!
//! Which task is an op's: the agent sends one action at a time per guest and journals
//! every UPID it gets, and the journal keeps each guest's last task however old
//! ([`Journal::last_tasks`]). So a task of ours that no op owns and that started after
//! the guest's last task is this op's (or, rarely, the late task of an op since ended
//! without one); one that started before it is an older op's and is never taken, however
//! the journal has forgotten it. Of those, the first that started no earlier than the
//! op's own record (less [`CLOCK_SKEW_SECS`]) is taken, else the latest (the clock
//! stepped back between the record and the fork). For a guest the journal knows no task
//! of (the first op of a guest, or a state directory that was wiped) the op's own record
//! (less [`CLOCK_SKEW_SECS`]) is the bound instead: a task of ours from before it may be
//! a forgotten op's and is not taken. (A clock stepped back between that record and the
//! fork then leaves the op's own task unfound, and the op is held through its grace: the
//! safe side.)
//!
//! Start times are the clock of the node, which the agent runs on, and a step of that
//! clock moves them too. The guest's last task started before the op's record (the
//! guest was not held when the op began); one that started after it (beyond
//! [`CLOCK_SKEW_SECS`]) says the clock was stepped back since, and every task forked
//! after the step, the op's own too, started "before" the last one. Then the op's own
//! record (less [`CLOCK_SKEW_SECS`]) is the bound, as for a guest the journal knows no
//! task of, and an op whose task is not found is held, never ended after its grace: this
//! clock has been seen to step back, a task forked after one more step would start
//! before the record, and sending the action again could run two side by side. Such an
//! op ends when its task shows up; until then its guest is held, with that reason.
//!
//! Clocks: the grace is measured on the monotonic clock of this process, from the
//! instant the executor of this process got no answer ([`Tracker::unanswered`]), or else
//! from the first time this process looked, so a wall-clock step cannot end it early and
//! a restart starts it again (conservative: an op from before a restart waits its grace
//! in full). The task-list search reaches no further back than [`CLOCK_STEP_SECS`]
//! before the op's wall-clock start.

mod ha;
mod node;
mod tracker;

pub use ha::{is_ha_request, request_outcome, GuestNow};
pub use node::ClientNode;
pub use tracker::Tracker;

use crate::action::ActionKind;
use crate::cancel::Cancel;
use crate::journal::{Journal, JournalError, OpId, OpSummary};
use crate::log;
use crate::pve::{ApiError, GuestKind, PowerOp, Upid, Vmid};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

/// How long a start, stop or config update without an answer may go unexplained by the
/// node before it is taken as never carried out. pveproxy gives up on pvedaemon after
/// 30 s; a task is listed once pvedaemon forks it.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(120);

/// A task started this little before its op's `started` record is still taken as started
/// after it: the record is written before the call, but task start times are whole
/// seconds and the node's clock may differ a little from the agent's.
pub const CLOCK_SKEW_SECS: i64 = 5;

/// How far before an op's `started` record the task-list search reaches at most, in
/// case the wall clock was stepped back between the record and the task's fork (and
/// never further back than the guest's last task the journal knows).
pub const CLOCK_STEP_SECS: i64 = 86_400;

/// A task's state as the node reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    Running,
    /// `ok` follows pve-common's rule: `OK` and `WARNINGS: n` are success.
    Finished {
        ok: bool,
        exitstatus: String,
    },
}

/// What the in-flight decision asks the node. The real one is [`ClientNode`]; tests use
/// fakes.
pub trait Node {
    /// The status of one task.
    fn task_state(&self, upid: &Upid) -> Result<TaskState, ApiError>;
    /// The tasks of any of `types` (`vzstart`, `qmstart`...) for `vmid` started at or
    /// after `since` (Unix seconds), running or finished.
    fn tasks_since(&self, vmid: Vmid, types: &[&str], since: i64) -> Result<Vec<Upid>, ApiError>;
    /// The digest of the guest's config, whichever kind it is.
    fn config_digest(&self, vmid: Vmid) -> Result<String, ApiError>;
    /// The guest's state and HA's, whichever kind it is; `None` when the guest is not
    /// on this node.
    fn guest_now(&self, vmid: Vmid) -> Result<Option<GuestNow>, ApiError>;
}

/// How one look at an op ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The op is over; journal it and the guest is free.
    Ended(Ending),
    /// The op's task was found in the task list: journal its UPID, then look again.
    TaskFound(Upid),
    /// Not known yet (or still running): the guest stays held, for this reason.
    Held(String),
}

/// How an op ended, as journaled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Succeeded,
    /// With the task's exit status.
    Failed(String),
    /// `abandoned` in the journal: it did not happen, or can no longer happen, and the
    /// next pass plans from the live state.
    Settled(String),
    /// The guest left this node after HA took the request (`succeeded` in the journal,
    /// since the request was delivered): nothing more of ours, its new node's agent
    /// takes it from here.
    Moved(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ended(Ending::Succeeded) => f.write_str("ended: succeeded"),
            Verdict::Ended(Ending::Failed(s)) => write!(f, "ended: failed ({s})"),
            Verdict::Ended(Ending::Settled(s)) => write!(f, "ended: {s}"),
            Verdict::Ended(Ending::Moved(s)) => write!(f, "ended: moved ({s})"),
            Verdict::TaskFound(upid) => write!(f, "task {upid} found"),
            Verdict::Held(why) => f.write_str(why),
        }
    }
}

/// What a look needs besides the op: whose tasks are ours, which UPIDs other ops own,
/// and each guest's last task.
pub struct Known<'a> {
    /// The agent's token id: the `user` of the tasks it starts.
    pub token_id: &'a str,
    /// UPIDs the journal already ties to an op.
    pub owned: &'a BTreeSet<Upid>,
    /// Each guest's last task as the journal keeps it ([`Journal::last_tasks`]): a task
    /// that started before it is never taken for a later op.
    pub last_tasks: &'a BTreeMap<Vmid, Upid>,
}

/// One look at one op: asks the node and decides. Does not journal (see [`settle`]).
pub fn look(op: &OpSummary, node: &dyn Node, known: &Known<'_>, tracker: &Tracker) -> Verdict {
    if let Some(upid) = &op.upid {
        return look_at_task(op, upid, node, tracker);
    }
    // The journal does not say which kind of guest the op was for; a vmid is one kind,
    // so the task types of both (and HA's, which stands in for them) are searched.
    match op.kind {
        ActionKind::SetConfig => match look_for_task(op, &["qmconfig"], node, known, None) {
            // A VM's update may have gone by task (POST); a synchronous one leaves none,
            // and then the config's digest tells.
            Verdict::Held(_) => look_at_config(op, node, tracker),
            found => found,
        },
        kind => look_for_task(op, &task_types(kind), node, known, Some(tracker)),
    }
}

/// The task types an action of `kind` starts, on either kind of guest or through HA.
fn task_types(kind: ActionKind) -> [&'static str; 3] {
    let op = match kind {
        ActionKind::Start => PowerOp::Start,
        ActionKind::Shutdown => PowerOp::Shutdown,
        ActionKind::Stop | ActionKind::SetConfig => PowerOp::Stop,
    };
    [
        GuestKind::Lxc.power_task(op),
        GuestKind::Qemu.power_task(op),
        GuestKind::ha_task(op),
    ]
}

/// The op's task `upid` (journaled, or just found): its status, and for an HA request
/// that ended OK, the guest's.
fn look_at_task(op: &OpSummary, upid: &Upid, node: &dyn Node, tracker: &Tracker) -> Verdict {
    match node.task_state(upid) {
        Ok(TaskState::Running) => Verdict::Held(format!("task {upid} still running")),
        Ok(TaskState::Finished { ok: true, .. }) if is_ha_request(upid) => {
            request_outcome(op.op, op.kind, upid, node.guest_now(op.vmid), tracker)
        }
        Ok(TaskState::Finished { ok: true, .. }) => Verdict::Ended(Ending::Succeeded),
        Ok(TaskState::Finished { exitstatus, .. }) => Verdict::Ended(Ending::Failed(exitstatus)),
        Err(e) => Verdict::Held(format!("cannot read task {upid}: {}", log::Chain(&e))),
    }
}

/// Looks for the op's task among `types` (see the module doc for which task is an
/// op's). Not found: held, and with a `tracker`, held through the grace and then ended.
fn look_for_task(
    op: &OpSummary,
    types: &[&str],
    node: &dyn Node,
    known: &Known<'_>,
    tracker: Option<&Tracker>,
) -> Verdict {
    let record = op.started_at - CLOCK_SKEW_SECS;
    let last = known.last_tasks.get(&op.vmid).map(|u| u.starttime);
    let SearchFrom {
        earliest,
        clock_went_back,
    } = search_from(op.started_at, last);
    let tasks = match node.tasks_since(op.vmid, types, earliest) {
        Ok(tasks) => tasks,
        Err(e) => {
            return Verdict::Held(format!(
                "op {} {} got no answer; cannot read the task list: {}",
                op.op,
                op.kind,
                log::Chain(&e)
            ))
        }
    };
    let mut ours: Vec<Upid> = tasks
        .into_iter()
        .filter(|u| u.user == known.token_id && u.starttime >= earliest && !known.owned.contains(u))
        .collect();
    ours.sort_by_key(|u| u.starttime);
    let after = ours.iter().find(|u| u.starttime >= record);
    if let Some(upid) = after.or(ours.last()) {
        return Verdict::TaskFound(upid.clone());
    }
    let what = format!("no {} task listed yet", types.join("/"));
    match tracker {
        // After a step back, "not listed" is not evidence enough (see the module doc):
        // never taken as not carried out.
        Some(_) if clock_went_back => Verdict::Held(format!(
            "op {} {} got no answer; {what}, and the clock went back since the guest's \
             last task (started at {}, after this op's record at {}), so it stays held \
             until its task shows up",
            op.op,
            op.kind,
            last.unwrap_or_default(),
            op.started_at
        )),
        Some(tracker) => unexplained(op, tracker, &what),
        None => Verdict::Held(what),
    }
}

/// Where the task-list search for an op's task starts (Unix seconds, the node's clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SearchFrom {
    earliest: i64,
    /// The guest's last task started after the op's record: the clock went back since,
    /// and an op whose task is not found is held, never ended after its grace.
    clock_went_back: bool,
}

/// The search bound for an op recorded at `started_at` (the agent's clock) whose guest's
/// last journaled task started at `last` (the node's clock, the same machine's).
///
/// Normally the last task: nothing of ours from before it is this op's. But one action
/// at a time per guest means that task started before this op's record, so one that
/// started after it (beyond [`CLOCK_SKEW_SECS`]) says the clock was stepped back since,
/// and every task forked after the step, this op's too, started "before" it. The op's
/// own record is the bound then, as for a guest the journal knows no task of: a task of
/// ours from before the record is an older op's (the record is written before the call).
fn search_from(started_at: i64, last: Option<i64>) -> SearchFrom {
    let record = started_at - CLOCK_SKEW_SECS;
    match last {
        Some(last) if last > started_at + CLOCK_SKEW_SECS => SearchFrom {
            earliest: record,
            clock_went_back: true,
        },
        Some(last) => SearchFrom {
            earliest: last.max(started_at - CLOCK_STEP_SECS),
            clock_went_back: false,
        },
        None => SearchFrom {
            earliest: record,
            clock_went_back: false,
        },
    }
}

fn look_at_config(op: &OpSummary, node: &dyn Node, tracker: &Tracker) -> Verdict {
    let sent = op.params.get("digest");
    match node.config_digest(op.vmid) {
        Ok(now) if Some(&now) != sent => Verdict::Ended(Ending::Settled(
            "the config changed since the update was sent, so it can no longer apply; \
             the next pass plans from the live config"
                .into(),
        )),
        Ok(_) => unexplained(op, tracker, "the config is unchanged so far"),
        Err(e) => Verdict::Held(format!(
            "op {} {} got no answer; cannot read the config: {}",
            op.op,
            op.kind,
            log::Chain(&e)
        )),
    }
}

/// An op the node does not explain yet: held through the grace, then ended.
fn unexplained(op: &OpSummary, tracker: &Tracker, what: &str) -> Verdict {
    let waited = tracker.unexplained_for(op.op, Instant::now());
    if waited >= tracker.grace() {
        return Verdict::Ended(Ending::Settled(format!(
            "not carried out: {what} after {} s",
            waited.as_secs()
        )));
    }
    Verdict::Held(format!(
        "op {} {} got no answer; {what} (waiting up to {} s more)",
        op.op,
        op.kind,
        (tracker.grace() - waited).as_secs()
    ))
}

/// Journals a verdict. A found task is journaled and looked at once more at once.
fn apply(
    journal: &Journal,
    op: &OpSummary,
    verdict: Verdict,
    node: &dyn Node,
    tracker: &Tracker,
) -> Result<Verdict, JournalError> {
    let verdict = match verdict {
        Verdict::TaskFound(upid) => {
            journal.task_running(op.op, &upid)?;
            log::info(
                "found the task of an unanswered op",
                &[("op", &op.op), ("vmid", &op.vmid), ("upid", &upid)],
            );
            look_at_task(op, &upid, node, tracker)
        }
        other => other,
    };
    match &verdict {
        Verdict::Ended(ending) => {
            match ending {
                Ending::Succeeded | Ending::Moved(_) => journal.succeeded(op.op)?,
                Ending::Failed(status) => journal.failed(op.op, status)?,
                Ending::Settled(why) => journal.abandoned(op.op, why)?,
            }
            tracker.ended(op.op);
            log::info(
                "op in flight resolved",
                &[
                    ("op", &op.op),
                    ("vmid", &op.vmid),
                    ("kind", &op.kind),
                    ("verdict", &verdict),
                ],
            );
        }
        Verdict::Held(why) => tracker.held(op.op, why),
        Verdict::TaskFound(_) => unreachable!("looked at above"),
    }
    Ok(verdict)
}

/// One look at every op in flight whose guest is not in `skip` (guests whose lane owns
/// their op), journaling what is resolved. Stops early when `cancel` fires.
pub fn settle(
    journal: &Journal,
    node: &dyn Node,
    token_id: &str,
    tracker: &Tracker,
    skip: &BTreeSet<Vmid>,
    cancel: &Cancel,
) -> Result<(), JournalError> {
    let owned = journal.upids();
    let last_tasks = journal.last_tasks();
    let known = Known {
        token_id,
        owned: &owned,
        last_tasks: &last_tasks,
    };
    for op in journal.in_flight() {
        if cancel.is_cancelled() {
            break;
        }
        if skip.contains(&op.vmid) {
            continue;
        }
        let verdict = look(&op, node, &known, tracker);
        apply(journal, &op, verdict, node, tracker)?;
    }
    Ok(())
}

/// How long recovery may take, and what stops it.
#[derive(Clone)]
pub struct RecoverOptions {
    pub deadline: Instant,
    pub cancel: Cancel,
}

/// The ops recovery could not resolve by its deadline: they stay in flight and hold
/// their guests, and every pass looks at them again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub resolved: usize,
    pub held: Vec<(OpId, Vmid, String)>,
}

/// Why recovery stopped before its deadline.
#[derive(Debug)]
pub enum RecoverError {
    Journal(JournalError),
    Cancelled,
}

impl fmt::Display for RecoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoverError::Journal(_) => f.write_str("recovery could not write the journal"),
            RecoverError::Cancelled => f.write_str("recovery cancelled"),
        }
    }
}

impl std::error::Error for RecoverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecoverError::Journal(e) => Some(e),
            RecoverError::Cancelled => None,
        }
    }
}

impl From<JournalError> for RecoverError {
    fn from(e: JournalError) -> Self {
        RecoverError::Journal(e)
    }
}

const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Start-up recovery: [`settle`] every op, pausing 0.2 s (doubling to 2 s) between looks,
/// until none is left in flight or the deadline passes.
pub fn recover(
    journal: &Journal,
    node: &dyn Node,
    token_id: &str,
    tracker: &Tracker,
    opts: &RecoverOptions,
) -> Result<Recovered, RecoverError> {
    let before = journal.in_flight().len();
    let mut pause = FIRST_PAUSE;
    loop {
        settle(
            journal,
            node,
            token_id,
            tracker,
            &BTreeSet::new(),
            &opts.cancel,
        )?;
        if opts.cancel.is_cancelled() {
            return Err(RecoverError::Cancelled);
        }
        let left = journal.in_flight();
        let now = Instant::now();
        if left.is_empty() || now >= opts.deadline {
            let held: Vec<(OpId, Vmid, String)> = left
                .iter()
                .map(|op| {
                    let why = tracker.why(op.op).unwrap_or_else(|| "not looked at".into());
                    (op.op, op.vmid, why)
                })
                .collect();
            return Ok(Recovered {
                resolved: before.saturating_sub(left.len()),
                held,
            });
        }
        if opts.cancel.wait(pause.min(opts.deadline - now)) {
            return Err(RecoverError::Cancelled);
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// The read-only look `felhom-agent plan` takes: which guests a pass would hold for an
/// op in flight, and why. Journals nothing; an op the node shows ended holds nothing,
/// since the service journals it on its next look. `known` as the journal's records
/// give it ([`crate::journal::last_tasks_of`] for its last tasks).
pub fn preview(
    ops: &[OpSummary],
    known: &Known<'_>,
    node: &dyn Node,
    tracker: &Tracker,
) -> BTreeMap<Vmid, String> {
    let mut holds = BTreeMap::new();
    for op in ops {
        let verdict = match look(op, node, known, tracker) {
            Verdict::TaskFound(upid) => look_at_task(op, &upid, node, tracker),
            other => other,
        };
        if let Verdict::Held(why) = verdict {
            holds.insert(op.vmid, why);
        }
    }
    holds
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ha;
