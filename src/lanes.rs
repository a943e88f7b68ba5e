//! Per-guest lanes: one named thread per active guest, fed by a crossbeam channel.
//!
//! A guest's actions run in plan order inside one job, so two actions for the same guest
//! never run at once. Across guests, a shared pool of [`Permits`] bounds how many
//! mutating calls or task waits are in flight. A lane that panics reports its job as
//! failed and is replaced by a fresh thread on the next dispatch.
//!
//! Ownership: the [`Lanes`] owner (the engine, on the run-loop thread) holds every inbox
//! `Sender` and every `JoinHandle`; lanes hold a clone of the results `Sender`. Lanes never
//! exit on their own while they may still receive work: the owner retires an idle lane by
//! dropping its handle, which closes the inbox first and then joins the thread.

use crate::action::Action;
use crate::cancel::Cancel;
use crate::pve::{Upid, Vmid};
use crossbeam_channel::{Receiver, Sender};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How one action ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: a task finished OK (possibly with warnings), or a synchronous call returned.
    Applied { upid: Option<Upid>, warnings: u32 },
    /// PVE says the guest is already in that state ("already running", "not running").
    Converged(String),
    /// A lock is held or timed out, or the config changed underneath: retried on a later
    /// pass without counting as a failure.
    Blocked(String),
    /// A parameter error (400): it will fail again until the desired state changes.
    Terminal(String),
    /// Anything else: the guest backs off.
    Failed(String),
    /// The agent is shutting down; a task may still be running and stays in the journal.
    Cancelled(String),
    /// The request may have reached Proxmox but its outcome is unknown (no answer, or
    /// its task outlived the wait). The op stays in flight in the journal and the guest
    /// is held until a later pass finds out how it ended.
    InFlight(String),
}

impl Outcome {
    /// Whether the guest's next action may go ahead.
    pub fn proceeds(&self) -> bool {
        matches!(self, Outcome::Applied { .. } | Outcome::Converged(_))
    }

    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "applied",
            Outcome::Converged(_) => "converged",
            Outcome::Blocked(_) => "blocked",
            Outcome::Terminal(_) => "terminal",
            Outcome::Failed(_) => "failed",
            Outcome::Cancelled(_) => "cancelled",
            Outcome::InFlight(_) => "in_flight",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Applied { warnings: 0, .. } => f.write_str("applied"),
            Outcome::Applied { warnings, .. } => write!(f, "applied with {warnings} warnings"),
            Outcome::Converged(m) => write!(f, "already converged ({m})"),
            Outcome::Blocked(m) => write!(f, "blocked: {m}"),
            Outcome::Terminal(m) => write!(f, "failed permanently: {m}"),
            Outcome::Failed(m) => write!(f, "failed: {m}"),
            Outcome::Cancelled(m) => write!(f, "cancelled: {m}"),
            Outcome::InFlight(m) => write!(f, "still in flight: {m}"),
        }
    }
}

/// Carries out one action. Implemented by the engine for the real client and journal, and
/// by tests with fakes.
pub trait Executor: Send + Sync + 'static {
    fn execute(&self, action: &Action, permits: &Permits, cancel: &Cancel) -> Outcome;
}

/// The work for one guest in one pass: its actions in plan order.
#[derive(Clone, Debug)]
pub struct Job {
    pub vmid: Vmid,
    pub actions: Vec<Action>,
    /// The desired spec's fingerprint when planned, so a terminal error can be tied to it.
    pub fingerprint: u64,
}

/// What became of a job: one outcome per action that ran, in order. Actions after the
/// first one that does not proceed are not run.
#[derive(Clone, Debug)]
pub struct JobResult {
    pub vmid: Vmid,
    pub fingerprint: u64,
    pub outcomes: Vec<(Action, Outcome)>,
    /// The actions that were not attempted because an earlier one did not proceed.
    pub not_run: usize,
    /// The lane panicked running this job; its thread has ended and will be replaced.
    pub panicked: bool,
}

impl JobResult {
    /// The outcome that decides what happens to the guest next: the last one.
    pub fn last(&self) -> Option<&Outcome> {
        self.outcomes.last().map(|(_, o)| o)
    }
}

/// A counting semaphore on a channel, so that acquiring can also watch the cancel token.
#[derive(Clone)]
pub struct Permits {
    take: Receiver<()>,
    give: Sender<()>,
}

/// One held permit; dropping it gives it back.
pub struct Permit {
    give: Sender<()>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let _ = self.give.try_send(());
    }
}

impl Permits {
    pub fn new(n: usize) -> Permits {
        let (give, take) = crossbeam_channel::bounded(n.max(1));
        for _ in 0..n.max(1) {
            give.send(()).expect("fresh channel has room");
        }
        Permits { take, give }
    }

    /// Waits for a permit, or returns `None` once `cancel` fires.
    pub fn acquire(&self, cancel: &Cancel) -> Option<Permit> {
        crossbeam_channel::select! {
            recv(self.take) -> r => r.ok().map(|_| Permit { give: self.give.clone() }),
            recv(cancel.receiver()) -> _ => None,
        }
    }
}

/// Drop order is significant: the inbox closes before the thread is joined, so the lane
/// sees its inbox disconnect and the join cannot deadlock.
struct LaneHandle {
    inbox: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    idle_since: Instant,
}

impl Drop for LaneHandle {
    fn drop(&mut self) {
        drop(self.inbox.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The guests the current desired state names, shared with the lanes: a reload that
/// drops a guest stops its queued job before the next action.
pub type Named = std::sync::Arc<std::sync::RwLock<BTreeSet<Vmid>>>;

/// What every lane shares.
#[derive(Clone)]
struct LaneCtx {
    permits: Permits,
    cancel: Cancel,
    named: Named,
}

/// The set of lanes, owned by one thread.
pub struct Lanes<E: Executor> {
    exec: std::sync::Arc<E>,
    ctx: LaneCtx,
    lanes: BTreeMap<Vmid, LaneHandle>,
    busy: BTreeSet<Vmid>,
    results_tx: Sender<JobResult>,
    results_rx: Receiver<JobResult>,
}

impl<E: Executor> Lanes<E> {
    pub fn new(exec: E, max_parallel: usize, cancel: Cancel) -> Lanes<E> {
        let (results_tx, results_rx) = crossbeam_channel::unbounded();
        Lanes {
            exec: std::sync::Arc::new(exec),
            ctx: LaneCtx {
                permits: Permits::new(max_parallel),
                cancel,
                named: Named::default(),
            },
            lanes: BTreeMap::new(),
            busy: BTreeSet::new(),
            results_tx,
            results_rx,
        }
    }

    /// Sets the guests the desired state names. An action whose guest is no longer
    /// named is not started (the job stops there); the first action of a job always
    /// runs, since it was just planned from a state that named the guest.
    pub fn set_named(&self, named: BTreeSet<Vmid>) {
        *self
            .ctx
            .named
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = named;
    }

    /// Guests with a job queued or running.
    pub fn busy(&self) -> &BTreeSet<Vmid> {
        &self.busy
    }

    /// Live lane threads.
    pub fn threads(&self) -> usize {
        self.lanes.len()
    }

    /// The channel results arrive on; pass each result to [`Lanes::complete`].
    pub fn results(&self) -> &Receiver<JobResult> {
        &self.results_rx
    }

    /// Queues a job on its guest's lane, spawning the lane if needed. A guest that is
    /// already busy is not queued again: returns false.
    pub fn dispatch(&mut self, job: Job) -> std::io::Result<bool> {
        let vmid = job.vmid;
        if self.busy.contains(&vmid) {
            return Ok(false);
        }
        if !self.lanes.contains_key(&vmid) {
            let handle = self.spawn(vmid)?;
            self.lanes.insert(vmid, handle);
        }
        let lane = self.lanes.get_mut(&vmid).expect("inserted above");
        let inbox = lane.inbox.as_ref().expect("open while the handle lives");
        if inbox.send(job).is_err() {
            // The thread is gone (it can only end after a panic); replace it once.
            self.lanes.remove(&vmid);
            return Err(std::io::Error::other(format!("lane {vmid} ended")));
        }
        self.busy.insert(vmid);
        Ok(true)
    }

    fn spawn(&self, vmid: Vmid) -> std::io::Result<LaneHandle> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let exec = self.exec.clone();
        let ctx = self.ctx.clone();
        let results = self.results_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("lane {vmid}"))
            .spawn(move || lane_main(rx, &*exec, &ctx, &results))?;
        Ok(LaneHandle {
            inbox: Some(tx),
            thread: Some(thread),
            idle_since: Instant::now(),
        })
    }

    /// Records that a job finished; call with every result taken from [`Lanes::results`].
    pub fn complete(&mut self, result: &JobResult) {
        self.busy.remove(&result.vmid);
        if result.panicked {
            // Joins the ended thread; the next dispatch spawns a fresh lane.
            self.lanes.remove(&result.vmid);
        } else if let Some(lane) = self.lanes.get_mut(&result.vmid) {
            lane.idle_since = Instant::now();
        }
    }

    /// Retires lanes that have been idle for at least `idle`, joining their threads.
    pub fn reap_idle(&mut self, idle: Duration) {
        let now = Instant::now();
        let stale: Vec<Vmid> = self
            .lanes
            .iter()
            .filter(|(v, l)| !self.busy.contains(v) && now.duration_since(l.idle_since) >= idle)
            .map(|(v, _)| *v)
            .collect();
        for v in stale {
            self.lanes.remove(&v);
        }
    }

    /// Waits for busy guests' results until `deadline`, handing each to `on_result`.
    /// Returns true when nothing is busy any more.
    pub fn drain_until(&mut self, deadline: Instant, mut on_result: impl FnMut(JobResult)) -> bool {
        while !self.busy.is_empty() {
            match self.results_rx.recv_deadline(deadline) {
                Ok(r) => {
                    self.complete(&r);
                    on_result(r);
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// Closes every inbox and joins every lane. Call after cancelling (or draining), so
    /// running jobs end promptly; results that arrive meanwhile go to `on_result`.
    pub fn shutdown(&mut self, mut on_result: impl FnMut(JobResult)) {
        for lane in self.lanes.values_mut() {
            drop(lane.inbox.take());
        }
        // Dropping each handle joins its thread; a lane finishing its job first sends its
        // result, which is collected below.
        self.lanes.clear();
        while let Ok(r) = self.results_rx.try_recv() {
            self.busy.remove(&r.vmid);
            on_result(r);
        }
    }
}

/// A lane's loop. States: waiting for a job → running it → reporting → waiting again;
/// it ends when its inbox closes (retired or shutting down) or after a panic.
fn lane_main<E: Executor + ?Sized>(
    inbox: Receiver<Job>,
    exec: &E,
    ctx: &LaneCtx,
    results: &Sender<JobResult>,
) {
    while let Ok(job) = inbox.recv() {
        let (vmid, fingerprint) = (job.vmid, job.fingerprint);
        let first = job.actions.first().cloned();
        let total = job.actions.len();
        let run = catch_unwind(AssertUnwindSafe(|| run_job(exec, job, ctx)));
        match run {
            Ok(result) => {
                let _ = results.send(result);
            }
            Err(panic) => {
                let msg = panic_message(&panic);
                crate::log::error("lane panicked", &[("vmid", &vmid), ("panic", &msg)]);
                let outcomes = first
                    .map(|a| (a, Outcome::Failed(format!("internal error: {msg}"))))
                    .into_iter()
                    .collect::<Vec<_>>();
                let not_run = total.saturating_sub(outcomes.len());
                let _ = results.send(JobResult {
                    vmid,
                    fingerprint,
                    outcomes,
                    not_run,
                    panicked: true,
                });
                // The lane is replaced: this thread ends and the owner spawns a new one.
                return;
            }
        }
    }
}

fn run_job<E: Executor + ?Sized>(exec: &E, job: Job, ctx: &LaneCtx) -> JobResult {
    let total = job.actions.len();
    let mut outcomes = Vec::with_capacity(total);
    for action in job.actions {
        let still_named = || {
            ctx.named
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(&action.vmid)
        };
        if !outcomes.is_empty() && !still_named() {
            crate::log::info(
                "guest left the desired state; its remaining actions are dropped",
                &[("vmid", &action.vmid), ("kind", &action.kind)],
            );
            break;
        }
        let outcome = exec.execute(&action, &ctx.permits, &ctx.cancel);
        let proceeds = outcome.proceeds();
        outcomes.push((action, outcome));
        if !proceeds {
            break;
        }
    }
    JobResult {
        vmid: job.vmid,
        fingerprint: job.fingerprint,
        not_run: total - outcomes.len(),
        outcomes,
        panicked: false,
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

#[cfg(test)]
mod tests;
