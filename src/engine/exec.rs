//! Executing one action against Proxmox, with every step journaled.
//!
//! The contract, in order: journal `started` (durable) → call the API → on error journal
//! `failed` → if a UPID came back, journal `task_running` with it (durable) before waiting
//! → wait → journal `succeeded` or `failed` with the exit status. A config update's
//! null result is a synchronous success (a power call always names its task). Every
//! journal step goes through [`Recorder`], the one seam where a journal error is logged;
//! after the API call has happened, a journal error never turns into a failed action.

use super::precheck::{self, Look};
use crate::action::{Action, ActionKind};
use crate::cancel::Cancel;
use crate::inflight::{Ending, GuestNow, Tracker, Verdict};
use crate::journal::{Journal, JournalError, OpId};
use crate::lanes::{Executor, Outcome};
use crate::log;
use crate::pve::error::ApiError;
use crate::pve::types::{PowerOp, TaskOutcome};
use crate::pve::{Client, WaitError, WaitOptions};
use crate::pve::{GuestKind, Upid};
use crossbeam_channel::Sender;
use std::time::{Duration, Instant};

/// What a lane reports while an action runs, for the demo and logs.
#[derive(Clone, Debug)]
pub enum Progress {
    Started(Action),
    TaskRunning(Action, Upid),
    Finished(Action, Outcome),
}

/// The real executor: the Proxmox client plus the journal.
pub struct ApiExecutor {
    pub client: Client,
    pub node: String,
    pub journal: Journal,
    pub task_timeout: Duration,
    /// The tracker recovery and settling share: told the instant a call went
    /// unanswered, so that the op's grace counts from then; and the one that counts
    /// how long HA leaves a request of ours untouched.
    pub tracker: Tracker,
    /// Told about a fatal journal error (a failed fsync); the daemon exits on it.
    pub fatal: Sender<String>,
    pub progress: Option<Sender<Progress>>,
}

/// The one journaling seam: every lifecycle step of an op goes through here.
struct Recorder<'a> {
    journal: &'a Journal,
    fatal: &'a Sender<String>,
    action: &'a Action,
}

impl Recorder<'_> {
    fn log_err(&self, step: &str, e: &JournalError) {
        log::error(
            "journal write failed",
            &[
                ("vmid", &self.action.vmid),
                ("kind", &self.action.kind),
                ("step", &step),
                ("error", &log::Chain(e)),
            ],
        );
        if e.is_fatal() {
            let _ = self.fatal.try_send(e.to_string());
        }
    }

    fn note(&self, step: &str, r: Result<(), JournalError>) {
        if let Err(e) = r {
            self.log_err(step, &e);
        }
    }

    fn begin(&self) -> Result<OpId, JournalError> {
        self.journal
            .begin(self.action)
            .inspect_err(|e| self.log_err("started", e))
    }

    fn task_running(&self, op: OpId, upid: &Upid) {
        self.note("task_running", self.journal.task_running(op, upid));
    }

    fn succeeded(&self, op: OpId) {
        self.note("succeeded", self.journal.succeeded(op));
    }

    fn failed(&self, op: OpId, error: &str) {
        self.note("failed", self.journal.failed(op, error));
    }

    fn abandoned(&self, op: OpId, why: &str) {
        self.note("abandoned", self.journal.abandoned(op, why));
    }
}

impl Executor for ApiExecutor {
    fn execute(&self, action: &Action, cancel: &Cancel) -> Outcome {
        if crate::failpoint::hit("action-panic") {
            panic!("failpoint action-panic");
        }
        if cancel.is_cancelled() {
            return Outcome::Cancelled("shutting down before the action started".into());
        }
        let rec = Recorder {
            journal: &self.journal,
            fatal: &self.fatal,
            action,
        };
        if let Some(guard) = &action.guard {
            match precheck::look(&self.client, &self.node, action, guard) {
                Look::Go => {}
                Look::AlreadySo(why) => return self.already_so(action, &rec, why),
                Look::Stop(outcome) => {
                    log_not_sent(action, &outcome);
                    self.report(Progress::Finished(action.clone(), outcome.clone()));
                    return outcome;
                }
            }
        }
        // Nothing happens on the node unless its record is durable first.
        let op = match rec.begin() {
            Ok(op) => op,
            Err(e) => return Outcome::Failed(format!("journal unavailable, not acting: {e}")),
        };
        crate::failpoint::stop_here("action-before-call");
        log::info(
            "action started",
            &[
                ("vmid", &action.vmid),
                ("kind", &action.kind),
                ("op", &op),
                ("reason", &action.reason),
            ],
        );
        self.report(Progress::Started(action.clone()));
        let outcome = self.run(action, op, &rec, cancel);
        if let Outcome::InFlight(_) = outcome {
            // No answer, or one that cannot be read, leaves the op without a UPID: its
            // grace counts from now, not from the first look at it.
            if self.journal.op(op).is_some_and(|o| o.upid.is_none()) {
                self.tracker.unanswered(op, Instant::now());
            }
        }
        log_outcome(action, op, &outcome);
        self.report(Progress::Finished(action.clone(), outcome.clone()));
        outcome
    }
}

impl ApiExecutor {
    /// A power action whose guest is already where it would take it: nothing is sent.
    /// A one-shot action is still recorded as carried out (started and succeeded with
    /// no call between), so its key is spent as the desired state asks.
    fn already_so(&self, action: &Action, rec: &Recorder<'_>, why: String) -> Outcome {
        let outcome = Outcome::Converged(why);
        if action.key.is_some() {
            let Ok(op) = rec.begin() else {
                return Outcome::Failed(
                    "journal unavailable, the one-shot key not recorded".into(),
                );
            };
            rec.succeeded(op);
            log_outcome(action, op, &outcome);
        } else {
            log_not_sent(action, &outcome);
        }
        self.report(Progress::Finished(action.clone(), outcome.clone()));
        outcome
    }

    fn report(&self, p: Progress) {
        if let Some(tx) = &self.progress {
            let _ = tx.send(p);
        }
    }

    fn call(&self, action: &Action) -> Result<Option<Upid>, ApiError> {
        let (node, vmid, params) = (self.node.as_str(), action.vmid, &action.params);
        let op = match action.kind {
            ActionKind::Start => PowerOp::Start,
            ActionKind::Stop => PowerOp::Stop,
            ActionKind::Shutdown => PowerOp::Shutdown,
            ActionKind::SetConfig => {
                return match action.guest {
                    GuestKind::Lxc => self.client.lxc_set_config(node, vmid, params),
                    GuestKind::Qemu if action.via_task => {
                        self.client.qemu_set_config_async(node, vmid, params)
                    }
                    GuestKind::Qemu => self.client.qemu_set_config(node, vmid, params),
                }
            }
        };
        self.client
            .guest_power(action.guest, node, vmid, op, params)
            .map(Some)
    }

    /// The guest's state and HA's, as the node says; `None` when it is not on this node.
    fn guest_now(&self, action: &Action) -> Result<Option<GuestNow>, ApiError> {
        match self
            .client
            .guest_status(action.guest, &self.node, action.vmid)
        {
            Ok(now) => Ok(Some(GuestNow::from(now))),
            Err(e) if e.is_config_missing() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn run(&self, action: &Action, op: OpId, rec: &Recorder<'_>, cancel: &Cancel) -> Outcome {
        let upid = match self.call(action) {
            Ok(Some(upid)) => upid,
            Ok(None) => {
                rec.succeeded(op);
                return Outcome::Applied {
                    upid: None,
                    warnings: 0,
                };
            }
            Err(e) if e.is_outcome_unknown() => {
                // The node may have carried it out: the op stays in flight in the
                // journal and its guest is held until `crate::inflight` reads from the
                // node how it ended (its task, or for a config update its digest).
                return Outcome::InFlight(format!("outcome unknown: {}", log::Chain(&e)));
            }
            Err(e) => {
                let msg = e.to_string();
                rec.failed(op, &msg);
                return classify_api_error(action, &e);
            }
        };
        rec.task_running(op, &upid);
        log::debug(
            "task running",
            &[
                ("vmid", &action.vmid),
                ("kind", &action.kind),
                ("upid", &upid),
            ],
        );
        self.report(Progress::TaskRunning(action.clone(), upid.clone()));
        let deadline = Instant::now() + self.task_timeout;
        let waited = self.client.wait_task(
            &upid,
            &WaitOptions {
                deadline,
                cancel: cancel.clone(),
            },
        );
        match waited {
            Ok(TaskOutcome::Ok) => self.verify_ha(action, op, rec, upid, 0, deadline, cancel),
            Ok(TaskOutcome::Warnings(n)) => {
                log::warn(
                    "task finished with warnings",
                    &[("vmid", &action.vmid), ("upid", &upid), ("warnings", &n)],
                );
                self.verify_ha(action, op, rec, upid, n, deadline, cancel)
            }
            Ok(TaskOutcome::Failed(status)) => {
                rec.failed(op, &status);
                classify_task_error(action, &status)
            }
            // In all three the task may still run: the op stays in flight in the journal
            // (task_running, with its UPID), and the guest is not touched again until a
            // later pass, or recovery at the next start, sees how the task ended.
            Err(WaitError::Cancelled) => {
                Outcome::Cancelled(format!("task {upid} still in flight at shutdown"))
            }
            Err(WaitError::Timeout) => Outcome::InFlight(format!(
                "task {upid} still running after {}s",
                self.task_timeout.as_secs()
            )),
            Err(WaitError::Api(e)) => {
                Outcome::InFlight(format!("cannot read the status of task {upid}: {e}"))
            }
        }
    }

    /// An HA-managed guest answers with an `hastart`/`hastop` task that only files a
    /// request with HA; the guest changes state later. Its outcome is decided as for an
    /// op in flight ([`crate::inflight::request_outcome`]), looking again until it is
    /// decided or the task's deadline passes; then the op stays in flight, and every
    /// pass looks at it again.
    #[allow(clippy::too_many_arguments)]
    fn verify_ha(
        &self,
        action: &Action,
        op: OpId,
        rec: &Recorder<'_>,
        upid: Upid,
        warnings: u32,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Outcome {
        let applied = |upid: Upid| Outcome::Applied {
            upid: Some(upid),
            warnings,
        };
        if !crate::inflight::is_ha_request(&upid) {
            rec.succeeded(op);
            return applied(upid);
        }
        let mut interval = Duration::from_millis(200);
        loop {
            let now = self.guest_now(action);
            let verdict =
                crate::inflight::request_outcome(op, action.kind, &upid, now, &self.tracker);
            let ending = match verdict {
                Verdict::Ended(ending) => ending,
                // `request_outcome` never finds a task: held, then.
                Verdict::Held(_) | Verdict::TaskFound(_)
                    if Instant::now() + interval < deadline =>
                {
                    if cancel.wait(interval) {
                        return Outcome::Cancelled(format!(
                            "ha request {upid} unverified at shutdown"
                        ));
                    }
                    interval = (interval * 3 / 2).min(Duration::from_secs(2));
                    continue;
                }
                held => {
                    // Not failed: HA may still act on the request, so the op stays in
                    // flight and holds its guest until a look decides it.
                    let why = held.to_string();
                    self.tracker.held(op, &why);
                    return Outcome::InFlight(format!(
                        "{why}; not decided within the task timeout of {} s",
                        self.task_timeout.as_secs()
                    ));
                }
            };
            self.tracker.ended(op);
            return match ending {
                Ending::Succeeded => {
                    rec.succeeded(op);
                    applied(upid)
                }
                // HA may relocate the guest to carry the request out; the request was
                // delivered, so the op is done and the guest is its new node's.
                Ending::Moved(m) => {
                    rec.succeeded(op);
                    Outcome::Moved(m)
                }
                Ending::Failed(m) => {
                    rec.failed(op, &m);
                    Outcome::Failed(m)
                }
                // Nothing more of ours: the next pass plans from the live state.
                Ending::Settled(m) => {
                    rec.abandoned(op, &m);
                    Outcome::Blocked(m)
                }
            };
        }
    }
}

/// One line per finished action: `action applied` at info, anything that did not
/// apply at warn.
fn log_outcome(action: &Action, op: OpId, outcome: &Outcome) {
    let class = outcome.class();
    let mut fields: Vec<log::Field<'_>> =
        vec![("vmid", &action.vmid), ("kind", &action.kind), ("op", &op)];
    match outcome {
        Outcome::Applied { upid, warnings } => {
            if let Some(upid) = upid {
                fields.push(("upid", upid));
            }
            if *warnings > 0 {
                fields.push(("warnings", warnings));
            }
            log::info("action applied", &fields);
        }
        Outcome::Converged(m) => {
            fields.push(("detail", m));
            log::info("action converged", &fields);
        }
        Outcome::Moved(m) => {
            fields.push(("detail", m));
            log::info("guest moved to another node; left to its agent", &fields);
        }
        Outcome::Blocked(m) | Outcome::Cancelled(m) | Outcome::InFlight(m) => {
            fields.push(("result", &class));
            fields.push(("error", m));
            log::warn("action not done", &fields);
        }
        Outcome::Terminal(m) | Outcome::Failed(m) => {
            fields.push(("result", &class));
            fields.push(("error", m));
            log::warn("action failed", &fields);
        }
    }
}

/// One line for a power action the last look kept from being sent.
fn log_not_sent(action: &Action, outcome: &Outcome) {
    log::info(
        "action not sent",
        &[
            ("vmid", &action.vmid),
            ("kind", &action.kind),
            ("result", &outcome.class()),
            ("detail", outcome),
        ],
    );
}

/// Maps an API error to what the guest should do next.
pub fn classify_api_error(action: &Action, e: &ApiError) -> Outcome {
    let msg = e.to_string();
    match action.kind {
        ActionKind::Start if e.is_already_running() => return Outcome::Converged(msg),
        ActionKind::Stop | ActionKind::Shutdown if e.is_not_running() => {
            return Outcome::Converged(msg)
        }
        _ => {}
    }
    if e.is_config_missing() {
        // Migrated between the read and the action: PVE checks the config's node
        // before anything else (docs/proxmox-api.md §5.5).
        Outcome::Moved(msg)
    } else if e.lock_name().is_some() || e.is_lock_timeout() || e.is_digest_mismatch() {
        Outcome::Blocked(msg)
    } else if e.is_param_error() {
        Outcome::Terminal(msg)
    } else {
        Outcome::Failed(msg)
    }
}

/// Maps a failed task's exit status to what the guest should do next.
pub fn classify_task_error(action: &Action, status: &str) -> Outcome {
    use crate::pve::messages;
    let msg = status.to_string();
    match action.kind {
        ActionKind::Start if messages::is_already_running(status) => Outcome::Converged(msg),
        ActionKind::Stop | ActionKind::Shutdown if messages::is_not_running(status) => {
            Outcome::Converged(msg)
        }
        _ if messages::is_config_missing(status) => Outcome::Moved(msg),
        _ if messages::lock_name(status).is_some() || messages::is_lock_timeout(status) => {
            Outcome::Blocked(msg)
        }
        _ => Outcome::Failed(msg),
    }
}
