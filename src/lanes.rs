//! Lanes: each guest's actions run serially, in plan order, as one job; jobs of
//! different guests run in parallel, at most `max_parallel` at once.
//!
//! A guest has at most one job queued or running, so two actions for one guest never
//! run at once. A job waits in the owner's queue, which costs no thread, until one of at
//! most `max_parallel` workers is free; the worker then runs the whole job, one action
//! after another, each checked against the desired state in force at that moment (a
//! reload that drops the guest or changes what it should be stops the job before its
//! next action). The pool size is the global cap: at most `max_parallel` mutating calls
//! or task waits are in flight, across guests.
//!
//! Ownership: the [`Lanes`] owner (the engine, on the run-loop thread) holds the queue,
//! every worker's inbox `Sender` and `JoinHandle`, and decides which worker runs which
//! job; workers hold a clone of the results `Sender`. A worker never exits on its own
//! while it may still receive work: the owner retires an idle worker by dropping its
//! handle, which closes the inbox first and then joins the thread. A panic inside a job
//! is caught and reported as that job's failure; the worker goes on.

use crate::action::Action;
use crate::cancel::Cancel;
use crate::pve::{Upid, Vmid};
use crossbeam_channel::{Receiver, Sender};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
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
    /// The guest's config is no longer on this node: it migrated between the read and
    /// the action. Nothing is in flight and nothing failed; its new node's agent takes
    /// it from here.
    Moved(String),
    /// The request may have reached Proxmox but its outcome is unknown (no answer, an
    /// answer that cannot be read, or a task that outlived the wait). The op stays in
    /// flight in the journal and the guest is held until the node says how it ended.
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
            Outcome::Moved(_) => "moved",
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
            Outcome::Moved(m) => write!(f, "moved to another node: {m}"),
            Outcome::InFlight(m) => write!(f, "still in flight: {m}"),
        }
    }
}

/// Carries out one action. Implemented by the engine for the real client and journal, and
/// by tests with fakes. `cancel` fires on shutdown: waits end at once.
pub trait Executor: Send + Sync + 'static {
    fn execute(&self, action: &Action, cancel: &Cancel) -> Outcome;
}

/// The work for one guest in one pass: its actions in plan order.
#[derive(Clone, Debug)]
pub struct Job {
    pub vmid: Vmid,
    pub actions: Vec<Action>,
    /// The fingerprint of the desired spec the actions were planned from. An action
    /// runs only while the desired state in force still has this fingerprint for the
    /// guest.
    pub fingerprint: u64,
    /// The generation of the plan settings (hold tag, name guard, HA mode, stop mode)
    /// the actions were planned under. An action runs only while they are in force:
    /// what the last look checks was decided under them.
    pub settings: u64,
}

/// What became of a job: one outcome per action that ran, in order. Actions after the
/// first one that does not proceed are not run, nor are those after the desired state
/// changed.
#[derive(Clone, Debug)]
pub struct JobResult {
    pub vmid: Vmid,
    pub fingerprint: u64,
    pub outcomes: Vec<(Action, Outcome)>,
    /// The actions that were not attempted.
    pub not_run: usize,
    /// The job panicked; the panic is its last outcome, as a failure.
    pub panicked: bool,
}

impl JobResult {
    /// The outcome that decides what happens to the guest next: the last one.
    pub fn last(&self) -> Option<&Outcome> {
        self.outcomes.last().map(|(_, o)| o)
    }
}

/// The desired state in force, as each guest's spec fingerprint; shared with the
/// workers, which check it before every action.
pub type Wanted = Arc<RwLock<InForce>>;

/// What is in force now: each named guest's desired spec fingerprint, and the
/// generation of the plan settings.
#[derive(Debug, Default)]
pub struct InForce {
    pub guests: BTreeMap<Vmid, u64>,
    pub settings: u64,
}

/// What every worker shares.
#[derive(Clone)]
struct LaneCtx {
    cancel: Cancel,
    /// Set when the agent stops: no action starts any more; running ones finish.
    stopping: Arc<AtomicBool>,
    wanted: Wanted,
}

/// Drop order is significant: the inbox closes before the thread is joined, so the
/// worker sees its inbox disconnect and the join cannot deadlock.
struct Worker {
    inbox: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// The guest whose job it runs.
    running: Option<Vmid>,
    idle_since: Instant,
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.inbox.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The lanes, owned by one thread.
pub struct Lanes<E: Executor> {
    exec: Arc<E>,
    ctx: LaneCtx,
    max_workers: usize,
    workers: Vec<Worker>,
    spawned: usize,
    queue: VecDeque<Job>,
    busy: BTreeSet<Vmid>,
    /// Tasks that may still run on the node though no worker waits on them (ops whose
    /// outcome is unknown): they count against the cap like running jobs.
    outside: usize,
    results_tx: Sender<JobResult>,
    results_rx: Receiver<JobResult>,
}

impl<E: Executor> Lanes<E> {
    pub fn new(exec: E, max_parallel: usize, cancel: Cancel) -> Lanes<E> {
        let (results_tx, results_rx) = crossbeam_channel::unbounded();
        Lanes {
            exec: Arc::new(exec),
            ctx: LaneCtx {
                cancel,
                stopping: Arc::default(),
                wanted: Wanted::default(),
            },
            max_workers: max_parallel.max(1),
            workers: Vec::new(),
            spawned: 0,
            queue: VecDeque::new(),
            busy: BTreeSet::new(),
            outside: 0,
            results_tx,
            results_rx,
        }
    }

    /// Sets the desired state and plan settings in force (each pass, and at once on a
    /// reload). An action runs only while its guest's fingerprint here equals its
    /// job's, and the settings generation too.
    pub fn set_wanted(&self, guests: BTreeMap<Vmid, u64>, settings: u64) {
        *self
            .ctx
            .wanted
            .write()
            .unwrap_or_else(PoisonError::into_inner) = InForce { guests, settings };
    }

    /// Guests with a job queued or running.
    pub fn busy(&self) -> &BTreeSet<Vmid> {
        &self.busy
    }

    /// Live worker threads.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// The channel results arrive on; pass each result to [`Lanes::complete`].
    pub fn results(&self) -> &Receiver<JobResult> {
        &self.results_rx
    }

    /// Queues a job for its guest. A guest that already has a job queued or running is
    /// not queued again: returns false. Fails only when no worker can be started at all.
    pub fn dispatch(&mut self, job: Job) -> std::io::Result<bool> {
        if self.busy.contains(&job.vmid) {
            return Ok(false);
        }
        if self.ctx.stopping.load(Ordering::SeqCst) {
            self.not_started(job);
            return Ok(true);
        }
        self.busy.insert(job.vmid);
        self.queue.push_back(job);
        self.pump()?;
        Ok(true)
    }

    /// Sets how many tasks may still run on the node outside the lanes (ops in flight
    /// whose outcome is unknown). They count against `max_parallel`, so the node never
    /// runs more of the agent's tasks at once than the cap. Takes effect before the next
    /// job is handed out.
    pub fn set_outside(&mut self, n: usize) {
        self.outside = n;
    }

    /// Hands queued jobs to free workers, starting workers up to the cap (less the
    /// tasks still running outside the lanes). When those alone fill the cap, the
    /// queued jobs end unrun: they are planned again on a later pass, once the node
    /// has said how the earlier ops ended.
    fn pump(&mut self) -> std::io::Result<()> {
        while !self.queue.is_empty() {
            let running = self.workers.iter().filter(|w| w.running.is_some()).count();
            if running + self.outside >= self.max_workers {
                if running == 0 {
                    crate::log::info(
                        "jobs not run: tasks of earlier ops may still run and fill max_parallel",
                        &[
                            ("tasks", &self.outside),
                            ("max_parallel", &self.max_workers),
                            ("jobs", &self.queue.len()),
                        ],
                    );
                    for job in std::mem::take(&mut self.queue) {
                        self.not_started(job);
                    }
                }
                return Ok(());
            }
            let free = match self.workers.iter().position(|w| w.running.is_none()) {
                Some(i) => i,
                None if self.workers.len() < self.max_workers => match self.spawn() {
                    Ok(w) => {
                        self.workers.push(w);
                        self.workers.len() - 1
                    }
                    // Queued jobs wait for a running worker; with none, nothing would
                    // ever run them.
                    Err(e) if self.workers.is_empty() => {
                        for job in std::mem::take(&mut self.queue) {
                            self.busy.remove(&job.vmid);
                        }
                        return Err(e);
                    }
                    Err(_) => return Ok(()),
                },
                None => return Ok(()),
            };
            let job = self.queue.pop_front().expect("queue not empty");
            let worker = &mut self.workers[free];
            worker.running = Some(job.vmid);
            let inbox = worker.inbox.as_ref().expect("open while the worker lives");
            if let Err(crossbeam_channel::SendError(job)) = inbox.send(job) {
                // The worker is gone (it cannot end while its inbox is open, short of
                // an abort); replace it and try the job again.
                self.workers.remove(free);
                self.queue.push_front(job);
            }
        }
        Ok(())
    }

    fn spawn(&mut self) -> std::io::Result<Worker> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let exec = self.exec.clone();
        let ctx = self.ctx.clone();
        let results = self.results_tx.clone();
        self.spawned += 1;
        let thread = std::thread::Builder::new()
            .name(format!("lane worker {}", self.spawned))
            .spawn(move || worker_main(rx, &*exec, &ctx, &results))?;
        Ok(Worker {
            inbox: Some(tx),
            thread: Some(thread),
            running: None,
            idle_since: Instant::now(),
        })
    }

    /// Records that a job finished and starts the next queued one; call with every
    /// result taken from [`Lanes::results`].
    pub fn complete(&mut self, result: &JobResult) {
        self.busy.remove(&result.vmid);
        if let Some(w) = self
            .workers
            .iter_mut()
            .find(|w| w.running == Some(result.vmid))
        {
            w.running = None;
            w.idle_since = Instant::now();
        }
        if let Err(e) = self.pump() {
            crate::log::error("cannot start a lane worker", &[("error", &e)]);
        }
    }

    /// Retires workers that have been idle for at least `idle`, joining their threads.
    pub fn reap_idle(&mut self, idle: Duration) {
        let now = Instant::now();
        self.workers
            .retain(|w| w.running.is_some() || now.duration_since(w.idle_since) < idle);
    }

    /// No action starts from now on: queued jobs end at once, unrun, and running jobs
    /// stop before their next action (the one under way finishes).
    pub fn stop_new(&mut self) {
        self.ctx.stopping.store(true, Ordering::SeqCst);
        for job in std::mem::take(&mut self.queue) {
            self.not_started(job);
        }
    }

    /// Reports a job that never ran (and frees its guest once the result is taken).
    fn not_started(&mut self, job: Job) {
        self.busy.insert(job.vmid);
        let _ = self.results_tx.send(JobResult {
            vmid: job.vmid,
            fingerprint: job.fingerprint,
            outcomes: Vec::new(),
            not_run: job.actions.len(),
            panicked: false,
        });
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

    /// Stops new actions, closes every inbox and joins every worker. Call after
    /// cancelling (or draining), so running jobs end promptly; results that arrive
    /// meanwhile go to `on_result`.
    pub fn shutdown(&mut self, mut on_result: impl FnMut(JobResult)) {
        self.stop_new();
        // Dropping each worker joins its thread; one finishing its job first sends its
        // result, which is collected below.
        self.workers.clear();
        while let Ok(r) = self.results_rx.try_recv() {
            self.busy.remove(&r.vmid);
            on_result(r);
        }
    }
}

/// A worker's loop. States: waiting for a job → running it → reporting → waiting again;
/// it ends when its inbox closes (retired or shutting down).
fn worker_main<E: Executor + ?Sized>(
    inbox: Receiver<Job>,
    exec: &E,
    ctx: &LaneCtx,
    results: &Sender<JobResult>,
) {
    for job in inbox {
        let (vmid, fingerprint) = (job.vmid, job.fingerprint);
        let first = job.actions.first().cloned();
        let total = job.actions.len();
        let result = match catch_unwind(AssertUnwindSafe(|| run_job(exec, job, ctx))) {
            Ok(result) => result,
            Err(panic) => {
                let msg = panic_message(&panic);
                crate::log::error("lane job panicked", &[("vmid", &vmid), ("panic", &msg)]);
                let outcomes: Vec<(Action, Outcome)> = first
                    .map(|a| (a, Outcome::Failed(format!("internal error: {msg}"))))
                    .into_iter()
                    .collect();
                JobResult {
                    vmid,
                    fingerprint,
                    not_run: total.saturating_sub(outcomes.len()),
                    outcomes,
                    panicked: true,
                }
            }
        };
        if results.send(result).is_err() {
            return;
        }
    }
}

/// Why a job's next action is not started.
fn stop_reason(ctx: &LaneCtx, job: &Job) -> Option<&'static str> {
    if ctx.stopping.load(Ordering::SeqCst) || ctx.cancel.is_cancelled() {
        return Some("shutting down");
    }
    let in_force = ctx.wanted.read().unwrap_or_else(PoisonError::into_inner);
    match in_force.guests.get(&job.vmid) {
        None => Some("guest left the desired state"),
        Some(f) if *f != job.fingerprint => Some("desired state changed since planned"),
        Some(_) if in_force.settings != job.settings => Some("plan settings changed since planned"),
        Some(_) => None,
    }
}

fn run_job<E: Executor + ?Sized>(exec: &E, job: Job, ctx: &LaneCtx) -> JobResult {
    let total = job.actions.len();
    let mut outcomes = Vec::with_capacity(total);
    for action in &job.actions {
        if let Some(why) = stop_reason(ctx, &job) {
            crate::log::info(
                "remaining actions dropped",
                &[("vmid", &job.vmid), ("next", &action.kind), ("why", &why)],
            );
            break;
        }
        let outcome = {
            let _acting = crate::quarantine::acting_on(job.vmid, job.fingerprint);
            exec.execute(action, &ctx.cancel)
        };
        let proceeds = outcome.proceeds();
        outcomes.push((action.clone(), outcome));
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
