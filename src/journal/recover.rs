//! Recovery before the first pass: resolve every op the journal left in flight, so
//! that the agent never repeats an action whose task may still be running.
//!
//! Proxmox is reached through [`TaskLookup`], which the engine implements for the
//! real client (and tests with a fake). For each op in flight:
//!
//! * with a UPID: poll the task (0.2 s, doubling to 2 s, until `task_timeout`) and
//!   journal its outcome;
//! * a power action without a UPID (killed between the call and `task_running`):
//!   look for its task in the node's task list; found, journal `task_running` and
//!   poll it as above; not found, journal `abandoned`;
//! * `set_config` without an answer: it is synchronous and leaves no task, so its
//!   outcome cannot be known: journal `abandoned` (the next pass compares the live
//!   config with the desired one anyway).
//!
//! A task still running at the deadline, or a lookup that fails until then, is not
//! guessed at: [`recover`] returns an error naming those ops and vmids, and their
//! records stay in flight.

use super::{Journal, JournalError, OpId, OpState, OpSummary};
use crate::cancel::Cancel;
use crate::log;
use crate::pve::{Upid, Vmid};
use std::fmt;
use std::time::{Duration, Instant};

/// How far before its `started` record a task may claim to have started: the
/// record is written before the call, but the node's clock and ours may disagree
/// a little, and task start times are whole seconds.
pub const CLOCK_SKEW_SECS: i64 = 5;

const FIRST_POLL: Duration = Duration::from_millis(200);
const MAX_POLL: Duration = Duration::from_secs(2);

/// A task's state as Proxmox reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// `status` is `running`.
    Running,
    /// `ok` follows pve-common's rule: `OK` and `WARNINGS: n` are success.
    Finished { ok: bool, exitstatus: String },
}

/// What recovery needs from Proxmox.
pub trait TaskLookup {
    /// Status of one task, by UPID.
    fn task_state(&self, upid: &Upid) -> Result<TaskState, String>;
    /// The task of `task_type` (vzstart, vzshutdown, vzstop) for `vmid` started at or after `since` (unix secs), newest first.
    fn find_task(&self, vmid: Vmid, task_type: &str, since: i64) -> Result<Option<Upid>, String>;
}

/// How long to wait and when to stop.
#[derive(Clone)]
pub struct RecoveryOptions {
    /// How long recovery waits, in all, for tasks to finish (and failing lookups to
    /// succeed).
    pub task_timeout: Duration,
    /// Shutdown: recovery stops at its next wait.
    pub cancel: Cancel,
}

/// What recovery did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Each op resolved, with the state journaled for it, in the order resolved.
    pub resolved: Vec<(OpId, OpState)>,
    /// Ops whose task was still running when first polled, and that recovery waited for.
    pub waited: usize,
    /// Ops journaled `abandoned`.
    pub abandoned: usize,
}

/// An op recovery could not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    pub op: OpId,
    pub vmid: Vmid,
    pub reason: String,
}

/// Why recovery did not finish. The ops named are still in flight in the journal:
/// the daemon must not act on their guests.
#[derive(Debug)]
pub enum RecoverError {
    /// The journal refused a record.
    Journal(JournalError),
    /// Tasks still running at the deadline, or lookups that kept failing.
    Unresolved(Vec<Unresolved>),
    /// Cancelled (shutdown) before every op was resolved.
    Cancelled(Vec<Unresolved>),
}

impl RecoverError {
    /// The guests with an op still in flight, sorted, without repeats.
    pub fn vmids(&self) -> Vec<Vmid> {
        let mut v: Vec<Vmid> = match self {
            RecoverError::Journal(_) => Vec::new(),
            RecoverError::Unresolved(ops) | RecoverError::Cancelled(ops) => {
                ops.iter().map(|u| u.vmid).collect()
            }
        };
        v.sort();
        v.dedup();
        v
    }
}

impl fmt::Display for RecoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoverError::Journal(_) => f.write_str("recovery could not write the journal"),
            RecoverError::Unresolved(ops) => {
                f.write_str("recovery left ops in flight:")?;
                for (i, u) in ops.iter().enumerate() {
                    let sep = if i == 0 { " " } else { "; " };
                    write!(f, "{sep}op {} vmid {}: {}", u.op, u.vmid, u.reason)?;
                }
                Ok(())
            }
            RecoverError::Cancelled(_) => {
                let vmids: Vec<String> = self.vmids().iter().map(|v| v.to_string()).collect();
                write!(
                    f,
                    "recovery cancelled with ops in flight for vmids {}",
                    vmids.join(", ")
                )
            }
        }
    }
}

impl std::error::Error for RecoverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecoverError::Journal(e) => Some(e),
            _ => None,
        }
    }
}

impl From<JournalError> for RecoverError {
    fn from(e: JournalError) -> Self {
        RecoverError::Journal(e)
    }
}

/// An op being resolved.
struct Pending {
    op: OpSummary,
    /// Known from the journal, or found in the task list.
    upid: Option<Upid>,
    seen_running: bool,
    last_error: Option<String>,
}

/// Resolves every op in flight in `journal`; see the module doc.
pub fn recover(
    journal: &Journal,
    tasks: &dyn TaskLookup,
    opts: &RecoveryOptions,
) -> Result<RecoveryReport, RecoverError> {
    let mut report = RecoveryReport::default();
    let mut pending = Vec::new();
    for op in journal.in_flight() {
        if op.upid.is_none() && op.kind.lxc_task_type().is_none() {
            let why = format!(
                "{} was in flight with no answer; the next pass re-plans from the live state",
                op.kind
            );
            abandon(journal, &op, &why, &mut report)?;
        } else {
            pending.push(Pending {
                upid: op.upid.clone(),
                op,
                seen_running: false,
                last_error: None,
            });
        }
    }
    let deadline = Instant::now() + opts.task_timeout;
    let mut interval = FIRST_POLL;
    loop {
        let mut still = Vec::with_capacity(pending.len());
        for mut p in pending {
            if !poll(journal, tasks, &mut p, &mut report)? {
                still.push(p);
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(report);
        }
        let now = Instant::now();
        if now >= deadline {
            let timeout = opts.task_timeout;
            return Err(RecoverError::Unresolved(
                pending.iter().map(|p| unresolved(p, timeout)).collect(),
            ));
        }
        if opts.cancel.wait(interval.min(deadline - now)) {
            return Err(RecoverError::Cancelled(
                pending
                    .iter()
                    .map(|p| Unresolved {
                        op: p.op.op,
                        vmid: p.op.vmid,
                        reason: "recovery cancelled".into(),
                    })
                    .collect(),
            ));
        }
        interval = (interval * 2).min(MAX_POLL);
    }
}

/// One look at one op. Returns true once it is resolved (and journaled).
fn poll(
    journal: &Journal,
    tasks: &dyn TaskLookup,
    p: &mut Pending,
    report: &mut RecoveryReport,
) -> Result<bool, JournalError> {
    let upid = match &p.upid {
        Some(upid) => upid.clone(),
        None => {
            // Only power kinds get here (see `recover`).
            let task_type = p.op.kind.lxc_task_type().unwrap_or_default();
            let since = p.op.started_at - CLOCK_SKEW_SECS;
            match tasks.find_task(p.op.vmid, task_type, since) {
                Ok(Some(upid)) => {
                    journal.task_running(p.op.op, &upid)?;
                    log::info(
                        "recovery found the task of an op",
                        &[("op", &p.op.op), ("vmid", &p.op.vmid), ("upid", &upid)],
                    );
                    p.upid = Some(upid.clone());
                    upid
                }
                Ok(None) => {
                    let why = format!(
                        "no {task_type} task for vmid {} since {}; the next pass re-plans from the live state",
                        p.op.vmid,
                        crate::time::rfc3339(since)
                    );
                    abandon(journal, &p.op, &why, report)?;
                    return Ok(true);
                }
                Err(e) => {
                    p.last_error = Some(e);
                    return Ok(false);
                }
            }
        }
    };
    let (state, error) = match tasks.task_state(&upid) {
        Ok(TaskState::Running) => {
            p.seen_running = true;
            p.last_error = None;
            return Ok(false);
        }
        Err(e) => {
            p.last_error = Some(e);
            return Ok(false);
        }
        Ok(TaskState::Finished { ok: true, .. }) => {
            journal.succeeded(p.op.op)?;
            (OpState::Succeeded, None)
        }
        Ok(TaskState::Finished {
            ok: false,
            exitstatus,
        }) => {
            journal.failed(p.op.op, &exitstatus)?;
            (OpState::Failed, Some(exitstatus))
        }
    };
    if p.seen_running {
        report.waited += 1;
    }
    report.resolved.push((p.op.op, state));
    log::info(
        "recovery resolved an op from its task",
        &[
            ("op", &p.op.op),
            ("vmid", &p.op.vmid),
            ("kind", &p.op.kind),
            ("state", &state),
            ("upid", &upid),
            ("exitstatus", &error.as_deref().unwrap_or("OK")),
        ],
    );
    Ok(true)
}

fn abandon(
    journal: &Journal,
    op: &OpSummary,
    why: &str,
    report: &mut RecoveryReport,
) -> Result<(), JournalError> {
    journal.abandoned(op.op, why)?;
    report.abandoned += 1;
    report.resolved.push((op.op, OpState::Abandoned));
    log::info(
        "recovery abandoned an op",
        &[
            ("op", &op.op),
            ("vmid", &op.vmid),
            ("kind", &op.kind),
            ("why", &why),
        ],
    );
    Ok(())
}

fn unresolved(p: &Pending, timeout: Duration) -> Unresolved {
    let reason = match (&p.last_error, &p.upid) {
        (Some(e), _) => format!("task lookup kept failing: {e}"),
        (None, Some(upid)) => format!(
            "task {upid} still running after {:.1} s",
            timeout.as_secs_f64()
        ),
        (None, None) => "task not looked up".into(),
    };
    Unresolved {
        op: p.op.op,
        vmid: p.op.vmid,
        reason,
    }
}
