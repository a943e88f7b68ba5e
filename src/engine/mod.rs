//! The reconcile engine: observe, plan, dispatch onto lanes, collect results.
//!
//! One pass: read the node ([`NodeReader`]: settle ops left in flight, then
//! [`observe`]), plan against the desired state with the holds in force at that instant
//! (guests with a job queued or running, or busy while the node was read, or with an op
//! in flight in the journal; backoff; terminal errors), and dispatch each guest's actions
//! as one job on its lane. Results come back on a channel; the caller (the `once`
//! command or the daemon's run loop) feeds each to [`Engine::on_result`], which updates
//! backoff and the pass report.

mod backoff;
pub mod exec;
pub mod observe;
mod precheck;
mod stages;

pub use backoff::Backoff;
pub use exec::{ApiExecutor, Progress};
pub use observe::{observe, Depth, Observation, FULL_READ_EVERY};

use crate::cancel::Cancel;
use crate::desired::DesiredState;
use crate::inflight::{ClientNode, Tracker};
use crate::journal::Journal;
use crate::lanes::{Job, JobResult, Lanes, Outcome};
use crate::plan::{self, Hold, Plan, PlanSettings};
use crate::pve::client::Client;
use crate::pve::error::ApiError;
use crate::pve::Vmid;
use crossbeam_channel::{Receiver, Sender};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long a lane may sit idle before its thread is retired.
pub const LANE_IDLE: Duration = Duration::from_secs(60);

/// What the engine needs besides the client and journal.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub node: String,
    pub max_parallel: usize,
    pub task_timeout: Duration,
    pub plan: PlanSettings,
}

/// One action's result, for reports.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "sim", derive(serde::Deserialize))]
pub struct ActionReport {
    pub vmid: Vmid,
    pub kind: String,
    pub result: String,
    pub message: String,
}

/// A guest skipped in a pass: `class` is stable (for metrics), `reason` is for people.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "sim", derive(serde::Deserialize))]
pub struct SkipReport {
    pub vmid: Vmid,
    pub class: String,
    pub reason: String,
}

/// A guest whose only drift waits in PVE's pending section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "sim", derive(serde::Deserialize))]
pub struct PendingReport {
    pub vmid: Vmid,
    pub keys: Vec<String>,
}

/// The result of one pass, once every job it dispatched has reported.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[cfg_attr(feature = "sim", derive(serde::Deserialize))]
pub struct PassReport {
    pub pass: u64,
    /// Unix seconds when the pass started.
    pub started: i64,
    pub duration_ms: u64,
    /// Actions planned.
    pub planned: usize,
    /// Actions that ran (applied, converged, or ended in an error).
    pub executed: usize,
    pub applied: usize,
    pub converged: usize,
    pub failed: usize,
    pub blocked: usize,
    pub cancelled: usize,
    /// Actions not taken because the guest migrated to another node meanwhile.
    #[serde(default)]
    pub moved: usize,
    /// Actions whose outcome is not known yet: the guest is held until it is.
    pub in_flight: usize,
    pub not_run: usize,
    pub in_sync: Vec<Vmid>,
    pub drifted: Vec<Vmid>,
    pub pending: Vec<PendingReport>,
    pub skipped: Vec<SkipReport>,
    pub actions: Vec<ActionReport>,
    pub errors: Vec<ActionReport>,
    /// Set when the pass could not observe the node; nothing was planned.
    pub observe_error: Option<String>,
}

impl PassReport {
    /// True when nothing failed (skips and blocks are not failures).
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.observe_error.is_none()
    }

    /// One line for logs and sd_notify STATUS.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.observe_error {
            return format!("pass {}: cannot read the node: {e}", self.pass);
        }
        format!(
            "pass {}: {} in sync, {} actions ({} applied, {} converged, {} failed, {} blocked), {} skipped, {} pending",
            self.pass,
            self.in_sync.len(),
            self.planned,
            self.applied,
            self.converged,
            self.failed,
            self.blocked,
            self.skipped.len(),
            self.pending.len(),
        )
    }
}

/// A pass whose jobs are still running.
struct OpenPass {
    report: PassReport,
    started_at: Instant,
    /// Guests whose job has not reported yet, dispatched or still staged.
    outstanding: BTreeSet<Vmid>,
    /// The jobs not dispatched yet, in PVE's start and stop order.
    stages: stages::Stages,
}

/// The engine. Owned by one thread; lanes run the actions.
pub struct Engine {
    reader: NodeReader,
    journal: Journal,
    tracker: Tracker,
    quarantine: crate::quarantine::Quarantine,
    settings: EngineSettings,
    lanes: Lanes<ApiExecutor>,
    backoff: Backoff,
    fingerprints: BTreeMap<Vmid, u64>,
    /// The generation of `settings.plan`: one more at each change.
    settings_gen: u64,
    passes: u64,
    /// Passes whose jobs are still running. Passes may overlap: a later pass skips the
    /// guests an earlier one is still working on, so each guest is outstanding in at
    /// most one pass.
    open: Vec<OpenPass>,
    /// Passes completed and not yet handed to the caller.
    finished: Vec<PassReport>,
    fatal: Receiver<String>,
}

/// Reads what a pass needs from the node: first it settles the journal's ops left in
/// flight ([`crate::inflight::settle`]), then it observes the guests. Cheap to clone, so
/// that the daemon can read on its `observer` thread while the run loop serves events.
#[derive(Clone)]
pub struct NodeReader {
    client: Client,
    node: String,
    journal: Journal,
    tracker: Tracker,
    fatal: Sender<String>,
    /// Reads made, for the periodic full read.
    reads: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl NodeReader {
    /// `held`: the guests held as the read begins ([`Engine::read_holds`]). Settling
    /// leaves the ops of busy guests to their lanes; held guests get no config read, and
    /// the observation carries the holds so that a plan made from it keeps them (what
    /// was read of them may predate their last action), except for an op in flight that
    /// settling has just resolved. `cancel` ends the read between requests.
    pub fn read(
        &self,
        desired: &DesiredState,
        held: &BTreeMap<Vmid, Hold>,
        settings: &PlanSettings,
        cancel: &Cancel,
    ) -> Result<Observation, ApiError> {
        let node = ClientNode {
            client: &self.client,
            node: &self.node,
        };
        let token = self.client.token_id();
        let busy: BTreeSet<Vmid> = held
            .iter()
            .filter(|(_, h)| **h == Hold::Busy)
            .map(|(v, _)| *v)
            .collect();
        if let Err(e) =
            crate::inflight::settle(&self.journal, &node, token, &self.tracker, &busy, cancel)
        {
            crate::log::error(
                "journal write failed while settling ops in flight",
                &[("error", &crate::log::Chain(&e))],
            );
            if e.is_fatal() {
                let _ = self.fatal.try_send(e.to_string());
            }
        }
        let still: BTreeSet<Vmid> = self.journal.in_flight().iter().map(|o| o.vmid).collect();
        let held: BTreeMap<Vmid, Hold> = held
            .iter()
            .filter(|(v, h)| !matches!(h, Hold::InFlight { .. }) || still.contains(v))
            .map(|(v, h)| (*v, h.clone()))
            .collect();
        let n = self
            .reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let depth = if n % FULL_READ_EVERY == 0 {
            Depth::Full
        } else {
            Depth::Needed
        };
        let spent = crate::journal::spent_by_guest(&self.journal.keys());
        observe(
            &self.client,
            &self.node,
            desired,
            &held,
            &spent,
            settings,
            depth,
            cancel,
        )
    }
}

impl Engine {
    /// `tracker` is the one start-up recovery used, so that an op's grace goes on
    /// counting from recovery's first look.
    pub fn new(
        client: Client,
        journal: Journal,
        tracker: Tracker,
        quarantine: crate::quarantine::Quarantine,
        settings: EngineSettings,
        cancel: Cancel,
        progress: Option<Sender<crate::engine::exec::Progress>>,
    ) -> Engine {
        let (fatal_tx, fatal) = crossbeam_channel::bounded(1);
        let exec = ApiExecutor {
            client: client.clone(),
            node: settings.node.clone(),
            journal: journal.clone(),
            task_timeout: settings.task_timeout,
            tracker: tracker.clone(),
            fatal: fatal_tx.clone(),
            progress,
        };
        let seed = crate::time::unix_now() as u64 ^ u64::from(std::process::id());
        Engine {
            reader: NodeReader {
                client,
                node: settings.node.clone(),
                journal: journal.clone(),
                tracker: tracker.clone(),
                fatal: fatal_tx,
                reads: Default::default(),
            },
            journal,
            tracker,
            quarantine,
            lanes: Lanes::new(exec, settings.max_parallel, cancel),
            settings,
            backoff: Backoff::new(seed),
            fingerprints: BTreeMap::new(),
            settings_gen: 0,
            passes: 0,
            open: Vec::new(),
            finished: Vec::new(),
            fatal,
        }
    }

    /// Job results arrive here; hand each to [`Engine::on_result`].
    pub fn results(&self) -> &Receiver<JobResult> {
        self.lanes.results()
    }

    /// A fatal journal error (fsync failed): the process must exit and recover.
    pub fn fatal(&self) -> &Receiver<String> {
        &self.fatal
    }

    /// Guests with a job queued or running.
    pub fn busy(&self) -> usize {
        self.lanes.busy().len()
    }

    /// The holds in force now, from live state: guests with a job queued or running
    /// (busy), guests with an op in flight in the journal, backoff, terminal errors.
    pub fn read_holds(&self, desired: &DesiredState) -> BTreeMap<Vmid, Hold> {
        let now = Instant::now();
        let mut holds = BTreeMap::new();
        for op in self.journal.in_flight() {
            let what = self
                .tracker
                .why(op.op)
                .unwrap_or_else(|| format!("op {} {} is still in flight", op.op, op.kind));
            holds.insert(op.vmid, Hold::InFlight { what });
        }
        let fingerprints = desired
            .guests
            .iter()
            .map(|(v, s)| (*v, s.fingerprint()))
            .collect();
        for (vmid, e) in self.quarantine.holds(&fingerprints) {
            holds.insert(
                vmid,
                Hold::Quarantined {
                    panic: e.panic,
                    at: e.at,
                },
            );
        }
        // Queued, running, or staged behind an earlier startup order.
        let staged = self.open.iter().flat_map(|p| &p.outstanding);
        for vmid in self.lanes.busy().iter().chain(staged) {
            holds.insert(*vmid, Hold::Busy);
        }
        for (vmid, spec) in &desired.guests {
            if !holds.contains_key(vmid) {
                if let Some(h) = self.backoff.hold(*vmid, spec.fingerprint(), now) {
                    holds.insert(*vmid, h);
                }
            }
        }
        holds
    }

    /// Holds for a plan made now from `obs`: the live ones at this instant (never an
    /// earlier snapshot), plus those in force when the node was read.
    fn holds(&self, desired: &DesiredState, obs: &Observation) -> BTreeMap<Vmid, Hold> {
        let mut holds = self.read_holds(desired);
        for (vmid, hold) in &obs.held {
            holds.entry(*vmid).or_insert_with(|| hold.clone());
        }
        holds
    }

    /// Reads the node and plans, without acting.
    pub fn plan(&self, desired: &DesiredState) -> Result<(Plan, Observation), ApiError> {
        let mut obs = self.reader.read(
            desired,
            &self.read_holds(desired),
            &self.settings.plan,
            &Cancel::never(),
        )?;
        obs.actual.spent_keys = crate::journal::spent_by_guest(&self.journal.keys());
        let holds = self.holds(desired, &obs);
        Ok((
            plan::plan(desired, &obs.actual, &holds, &self.settings.plan),
            obs,
        ))
    }

    /// Starts a pass: observe, plan, dispatch. Returns the plan. The pass report is
    /// complete once every dispatched job has reported ([`Engine::on_result`] returns it).
    /// A pass that dispatches nothing completes at once and is returned as the second value.
    pub fn start_pass(&mut self, desired: &DesiredState) -> (Option<Plan>, Option<PassReport>) {
        let started = (Instant::now(), crate::time::unix_now());
        let obs = self.reader.read(
            desired,
            &self.read_holds(desired),
            &self.settings.plan,
            &Cancel::never(),
        );
        self.start_observed_pass(desired, obs, started)
    }

    /// What the daemon's `observer` thread reads the node with, off the run loop.
    pub fn reader(&self) -> NodeReader {
        self.reader.clone()
    }

    /// Starts a pass from an observation made elsewhere (the daemon reads the node on
    /// another thread, so that signals and the watchdog are served meanwhile). `started`
    /// is when the observation began, as an instant and as Unix seconds.
    pub fn start_observed_pass(
        &mut self,
        desired: &DesiredState,
        obs: Result<Observation, ApiError>,
        started: (Instant, i64),
    ) -> (Option<Plan>, Option<PassReport>) {
        self.lanes.reap_idle(LANE_IDLE);
        self.passes += 1;
        let (started_at, started_unix) = started;
        let mut report = PassReport {
            pass: self.passes,
            started: started_unix,
            ..PassReport::default()
        };
        let obs = match obs {
            Ok(obs) => obs,
            Err(e) => {
                report.observe_error = Some(e.to_string());
                report.duration_ms = started_at.elapsed().as_millis() as u64;
                return (None, Some(report));
            }
        };
        self.set_wanted(desired);
        // A guest whose config could not be read backs off (it costs that guest, not
        // the pass); one read well again is free.
        let now = Instant::now();
        for (vmid, guest) in &obs.actual.local {
            match &guest.spec {
                Ok(_) => self.backoff.record_read(*vmid, Ok(()), now),
                Err(e) if !e.starts_with(crate::engine::observe::NOT_READ) => {
                    self.backoff.record_read(*vmid, Err(e), now)
                }
                Err(_) => {}
            }
        }
        let holds = self.holds(desired, &obs);
        let mut obs = obs;
        obs.actual.spent_keys = crate::journal::spent_by_guest(&self.journal.keys());
        let plan = plan::plan(desired, &obs.actual, &holds, &self.settings.plan);
        self.fingerprints = desired
            .guests
            .iter()
            .map(|(v, s)| (*v, s.fingerprint()))
            .collect();
        report.planned = plan.actions.len();
        report.in_sync = plan.in_sync.clone();
        report.drifted = plan.guests();
        report.pending = plan
            .pending
            .iter()
            .map(|(v, f)| PendingReport {
                vmid: *v,
                keys: f.iter().map(|f| f.name().to_string()).collect(),
            })
            .collect();
        report.skipped = plan
            .skipped
            .iter()
            .map(|s| SkipReport {
                vmid: s.vmid,
                class: s.reason.class().to_string(),
                reason: s.reason.to_string(),
            })
            .collect();
        let jobs = plan
            .guests()
            .into_iter()
            .map(|vmid| {
                let job = Job {
                    vmid,
                    actions: plan.for_guest(vmid).cloned().collect(),
                    fingerprint: self.fingerprints.get(&vmid).copied().unwrap_or(0),
                    settings: self.settings_gen,
                };
                let guest = obs.actual.local.get(&vmid);
                let startup = guest
                    .and_then(|g| g.spec.as_ref().ok())
                    .and_then(|s| s.startup);
                // PVE's start-all waits 3 s after a VM without an `up` of its own.
                let default_up = match guest.map(|g| g.kind) {
                    Some(crate::pve::GuestKind::Qemu) => std::time::Duration::from_secs(3),
                    _ => std::time::Duration::ZERO,
                };
                (job, startup, default_up)
            })
            .collect::<Vec<_>>();
        self.lanes.set_outside(self.outside_tasks(None));
        let open = OpenPass {
            report,
            started_at,
            outstanding: jobs.iter().map(|(j, _, _)| j.vmid).collect(),
            stages: stages::Stages::new(jobs, Instant::now()),
        };
        self.open.push(open);
        self.dispatch_due();
        (Some(plan), self.finished.pop())
    }

    /// Ops in flight in the journal that no lane waits on (`done`'s lane has just
    /// ended): their tasks may still run on the node, so they count against the cap.
    fn outside_tasks(&self, done: Option<Vmid>) -> usize {
        let busy = self.lanes.busy();
        self.journal
            .in_flight()
            .iter()
            .filter(|op| Some(op.vmid) == done || !busy.contains(&op.vmid))
            .count()
    }

    /// Dispatches every staged job that is due now, and moves every pass with nothing
    /// outstanding to `finished`.
    fn dispatch_due(&mut self) {
        let now = Instant::now();
        let mut unstarted = Vec::new();
        for open in &mut self.open {
            for job in open.stages.due(now) {
                let (vmid, n) = (job.vmid, job.actions.len());
                match self.lanes.dispatch(job) {
                    Ok(true) => {}
                    // Busy already: not this pass's to run (it cannot be, since a pass
                    // holds its busy guests); it ends here.
                    Ok(false) => unstarted.push((vmid, 0)),
                    Err(e) => {
                        crate::log::error("cannot start lane", &[("vmid", &vmid), ("error", &e)]);
                        open.report.failed += n;
                        unstarted.push((vmid, 0));
                    }
                }
            }
        }
        for (vmid, _) in unstarted {
            if let Some(open) = self.open.iter_mut().find(|p| p.outstanding.contains(&vmid)) {
                open.outstanding.remove(&vmid);
                open.stages.ended(vmid, now);
            }
        }
        let (finished, open): (Vec<OpenPass>, Vec<OpenPass>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|p| p.outstanding.is_empty());
        self.open = open;
        self.finished.extend(finished.into_iter().map(finish));
    }

    /// When a staged job next falls due (an `up` delay), for the caller's timer.
    pub fn next_wake(&self) -> Option<Instant> {
        self.open.iter().filter_map(|p| p.stages.next_wake()).min()
    }

    /// The caller's timer fired: dispatch what is due. Returns completed passes.
    pub fn on_wake(&mut self) -> Vec<PassReport> {
        self.dispatch_due();
        std::mem::take(&mut self.finished)
    }

    /// Takes one job result: updates backoff and the open pass. Returns the pass report
    /// when this was the pass's last outstanding job.
    pub fn on_result(&mut self, r: JobResult) -> Option<PassReport> {
        self.lanes.set_outside(self.outside_tasks(Some(r.vmid)));
        self.lanes.complete(&r);
        if let Some(last) = r.last() {
            self.backoff
                .record(r.vmid, r.fingerprint, last, Instant::now());
        }
        let idx = self
            .open
            .iter()
            .position(|p| p.outstanding.contains(&r.vmid))?;
        let open = &mut self.open[idx];
        open.outstanding.remove(&r.vmid);
        open.stages.ended(r.vmid, Instant::now());
        let rep = &mut open.report;
        rep.not_run += r.not_run;
        for (action, outcome) in &r.outcomes {
            rep.executed += 1;
            match outcome {
                Outcome::Applied { .. } => rep.applied += 1,
                Outcome::Converged(_) => rep.converged += 1,
                Outcome::Blocked(_) => rep.blocked += 1,
                Outcome::Cancelled(_) => rep.cancelled += 1,
                Outcome::Moved(_) => rep.moved += 1,
                Outcome::InFlight(_) => rep.in_flight += 1,
                Outcome::Terminal(_) | Outcome::Failed(_) => rep.failed += 1,
            }
            let entry = ActionReport {
                vmid: action.vmid,
                kind: action.kind.to_string(),
                result: outcome.class().to_string(),
                message: outcome.to_string(),
            };
            if matches!(outcome, Outcome::Terminal(_) | Outcome::Failed(_)) {
                rep.errors.push(entry.clone());
            }
            rep.actions.push(entry);
        }
        // The next stage may be due at once; passes with nothing left complete.
        self.dispatch_due();
        self.finished.pop()
    }

    /// Tells the lanes the desired state and plan settings in force now (each pass, and
    /// at once on a reload): a job whose guest is no longer named, or named with a
    /// different spec, or planned under other settings, goes no further, not even to
    /// its first action.
    pub fn set_wanted(&self, desired: &DesiredState) {
        self.lanes.set_wanted(
            desired
                .guests
                .iter()
                .map(|(v, s)| (*v, s.fingerprint()))
                .collect(),
            self.settings_gen,
        );
    }

    /// No action starts from now on (shutdown): queued jobs end unrun, running ones stop
    /// before their next action.
    pub fn stop_new(&mut self) {
        self.lanes.stop_new();
        for open in &mut self.open {
            for job in open.stages.take_waiting() {
                open.outstanding.remove(&job.vmid);
                open.report.not_run += job.actions.len();
            }
        }
        self.dispatch_due();
    }

    /// How passes plan now.
    pub fn plan_settings(&self) -> &PlanSettings {
        &self.settings.plan
    }

    /// Changes how later passes plan (a reload).
    /// The plan settings for the next pass. Changed ones (a reload) end the queued
    /// and remaining actions planned under the old ones, once [`Engine::set_wanted`]
    /// tells the lanes: the hold tag, name guard and HA mode they were checked against
    /// are no longer the operator's.
    pub fn set_plan_settings(&mut self, plan: PlanSettings) {
        if plan != self.settings.plan {
            self.settings_gen += 1;
        }
        self.settings.plan = plan;
    }

    /// Closes every lane and joins its thread; results that arrive meanwhile (jobs
    /// ending because the cancel token fired) go to `on_result` first.
    pub fn close_lanes(&mut self, mut on_report: impl FnMut(PassReport)) {
        let mut late = Vec::new();
        self.lanes.shutdown(|r| late.push(r));
        for r in late {
            if let Some(report) = self.on_result(r) {
                on_report(report);
            }
        }
    }

    /// Runs one whole pass and waits for it (the `once` command), up to `deadline`.
    pub fn run_pass(
        &mut self,
        desired: &DesiredState,
        deadline: Instant,
    ) -> (Option<Plan>, PassReport) {
        let (plan, done) = self.start_pass(desired);
        if let Some(report) = done {
            return (plan, report);
        }
        loop {
            let wake = self.next_wake().map_or(deadline, |w| w.min(deadline));
            match self.lanes.results().recv_deadline(wake) {
                Ok(r) => {
                    if let Some(report) = self.on_result(r) {
                        return (plan, report);
                    }
                }
                Err(_) if Instant::now() < deadline => {
                    if let Some(report) = self.on_wake().pop() {
                        return (plan, report);
                    }
                }
                Err(_) => {
                    let open = self.open.pop().expect("an open pass while waiting");
                    let mut report = finish(open);
                    report.observe_error = Some("pass did not finish before its deadline".into());
                    return (plan, report);
                }
            }
        }
    }

    /// Stops: waits for busy lanes until `drain_deadline`, then calls `cancel` (which
    /// must fire the lanes' cancel token) and joins every lane. Returns the report of the
    /// pass that was still open, if any.
    pub fn shutdown(
        mut self,
        drain_deadline: Instant,
        cancel: impl FnOnce(),
    ) -> Option<PassReport> {
        self.stop_new();
        let mut done = self.finished.pop();
        let mut results = Vec::new();
        self.lanes.drain_until(drain_deadline, |r| results.push(r));
        for r in results {
            done = self.on_result(r).or(done);
        }
        cancel();
        self.close_lanes(|r| done = Some(r));
        done
    }
}

fn finish(open: OpenPass) -> PassReport {
    let mut report = open.report;
    report.duration_ms = open.started_at.elapsed().as_millis() as u64;
    report
}
