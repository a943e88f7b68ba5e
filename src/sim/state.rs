//! Everything the simulated node knows, behind one `Mutex`, plus the `Condvar` that is
//! notified on every change (tests wait on it, so do the clock and lock waiters): guests,
//! worker tasks, HA requests, the request log and the injected faults.
//!
//! The bottom layer of the node: it imports only leaves (`conf`, `faults`, `model`,
//! `persist`, `reply`, `upid`); the handlers, routes, router and server build on it.

use super::conf;
use super::faults::{Faults, RuleCount};
use super::model::{
    BulkTask, ErrorStyle, PowerState, RequestRecord, SimGuest, SimKind, SimOptions,
};
use super::persist;
use super::reply::Fail;
use super::upid::SimUpid;
use crate::cancel::Cancel;
use crate::rng::XorShift;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Oldest request records are dropped beyond this, so a long `felhom-agent sim` run
/// does not grow without bound.
const MAX_REQUESTS: usize = 200_000;
/// Finished tasks kept for the task list.
const MAX_FINISHED_TASKS: usize = 20_000;

/// What the server threads share.
pub(crate) struct Shared {
    pub opts: SimOptions,
    pub state: Mutex<State>,
    pub cond: Condvar,
    /// Cancelled at shutdown; latency and 401 delays sleep on it.
    pub cancel: Cancel,
    pub started: Instant,
}

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskKind {
    Start,
    Stop,
    /// A graceful shutdown whose end was decided when it started: `stops` says whether
    /// the guest is off when the task ends (it went down, or was killed with
    /// `forceStop`), `fails` is the task's error text when it fails (`container did not
    /// stop`, `VM quit/powerdown failed - got timeout`).
    Shutdown {
        stops: bool,
        fails: Option<&'static str>,
    },
    /// A VM's asynchronous config update; its parameters are in [`Task::update`].
    Config,
    HaStart,
    HaStop,
    /// The node's own `startall` or `stopall`: about no guest (its `vmid` is 0, the id in
    /// its UPID empty), and it changes none; it only runs, so that the task list shows it.
    Bulk(BulkTask),
}

impl TaskKind {
    /// The worker type in the UPID, for a task on a guest of `guest`'s kind.
    pub(crate) fn type_name(self, guest: SimKind) -> &'static str {
        match (guest, self) {
            (_, TaskKind::Bulk(b)) => b.type_name(),
            (_, TaskKind::HaStart) => "hastart",
            (_, TaskKind::HaStop) => "hastop",
            (SimKind::Lxc, TaskKind::Start) => "vzstart",
            (SimKind::Lxc, TaskKind::Stop) => "vzstop",
            (SimKind::Lxc, TaskKind::Shutdown { .. }) => "vzshutdown",
            // Containers have no asynchronous config update.
            (SimKind::Lxc, TaskKind::Config) => "vzconfig",
            (SimKind::Qemu, TaskKind::Start) => "qmstart",
            (SimKind::Qemu, TaskKind::Stop) => "qmstop",
            (SimKind::Qemu, TaskKind::Shutdown { .. }) => "qmshutdown",
            (SimKind::Qemu, TaskKind::Config) => "qmconfig",
        }
    }

    /// Whether the task holds the guest's config lock while it runs: a container's
    /// shutdown (pve-container `vm_shutdown`), and every VM task but the HA ones
    /// (qemu-server `vm_start`, `vm_stop`, `$update_vm_api` take `lock_config`).
    pub(crate) fn holds_lock(self, guest: SimKind) -> bool {
        match (guest, self) {
            (_, TaskKind::HaStart | TaskKind::HaStop | TaskKind::Bulk(_)) => false,
            (SimKind::Lxc, k) => matches!(k, TaskKind::Shutdown { .. }),
            (SimKind::Qemu, _) => true,
        }
    }
}

/// One worker task.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub upid: SimUpid,
    pub vmid: u32,
    /// The kind of guest it is about.
    pub guest: SimKind,
    pub kind: TaskKind,
    /// When the task finishes (unless its guest is in `hang_tasks`); while it waits for
    /// the config lock, when it gives up waiting.
    pub due: Instant,
    /// How long it runs once it has the config lock.
    pub run_for: Duration,
    /// The exit status once finished: `OK` or the error text.
    pub exit: Option<String>,
    /// Unix seconds, once finished.
    pub endtime: Option<i64>,
    /// When it finished.
    pub ended: Option<Instant>,
    /// It holds the guest's config lock while it runs ([`TaskKind::holds_lock`]).
    pub holds_lock: bool,
    /// It waits for the config lock, held by another task (a VM task takes the lock in
    /// the worker, waiting up to `lock_wait`, and fails if it cannot).
    pub waits_for_lock: bool,
    /// The parameters of a config update task.
    pub update: Option<BTreeMap<String, String>>,
}

impl Task {
    pub(crate) fn running(&self) -> bool {
        self.exit.is_none()
    }

    /// The worker type in the UPID (`vzstart`, `qmshutdown`, ...).
    pub(crate) fn type_name(&self) -> &'static str {
        self.kind.type_name(self.guest)
    }

    /// Ends the task with this exit status.
    pub(crate) fn finish(&mut self, exit: String) {
        self.exit = Some(exit);
        self.endtime = Some(crate::time::unix_now());
        self.ended = Some(Instant::now());
    }
}

/// An HA request the cluster resource manager carries out later.
#[derive(Debug, Clone)]
pub(crate) struct HaEvent {
    pub due: Instant,
    pub vmid: u32,
    pub start: bool,
}

/// One guest and what PVE would keep outside its config.
#[derive(Debug, Clone)]
pub(crate) struct GuestRec {
    pub g: SimGuest,
    /// Counts writes to the config; part of the digest.
    pub generation: u64,
    pub running_since: Option<Instant>,
}

impl GuestRec {
    pub(crate) fn new(g: SimGuest) -> GuestRec {
        let running_since = (g.status == PowerState::Running).then(Instant::now);
        GuestRec {
            g,
            generation: 0,
            running_since,
        }
    }

    pub(crate) fn digest(&self) -> String {
        conf::digest(&self.g, self.generation)
    }

    pub(crate) fn set_status(&mut self, s: PowerState) {
        if self.g.status != s {
            self.running_since = (s == PowerState::Running).then(Instant::now);
        }
        self.g.status = s;
    }

    pub(crate) fn running(&self) -> bool {
        self.g.status == PowerState::Running
    }
}

/// The mutable state.
pub(crate) struct State {
    pub guests: BTreeMap<u32, GuestRec>,
    /// Every task in start order (finished ones are trimmed to a bound).
    pub tasks: Vec<Task>,
    pub ha_events: Vec<HaEvent>,
    /// Every request in arrival order, including those still being processed (trimmed to
    /// a bound).
    pub requests: Vec<RequestRecord>,
    /// `Sim::requests` shows the requests from this seq on (`Sim::clear_requests`); the
    /// audit sees them all.
    pub shown_from: u64,
    pub next_seq: u64,
    pub faults: Faults,
    /// One per rule of `faults`, reset with them.
    pub rule_counts: Vec<RuleCount>,
    pub quorate: bool,
    pub error_style: ErrorStyle,
    pub rng: XorShift,
    pub tasks_started: BTreeMap<u32, Vec<String>>,
    pub max_tasks: usize,
    pub inflight_mutations: usize,
    pub max_inflight_mutations: usize,
    /// Bumped on every change; lets waiters tell a missed notification from none.
    pub epoch: u64,
    pub shutting_down: bool,
    pub next_pid: u32,
    /// Guests changed since the state file was last written.
    pub dirty: bool,
    /// Nodes of the cluster that are down: listed `offline`, and pveproxy cannot reach
    /// them to proxy a call.
    pub offline: BTreeSet<String>,
}

impl State {
    pub(crate) fn new(opts: &SimOptions, guests: Vec<SimGuest>) -> State {
        let mut rng = XorShift::new(opts.seed);
        let next_pid = 0x0001_0000 + (rng.next_u64() % 0x8_0000) as u32;
        State {
            guests: guests
                .into_iter()
                .map(|g| (g.vmid, GuestRec::new(g)))
                .collect(),
            tasks: Vec::new(),
            ha_events: Vec::new(),
            requests: Vec::new(),
            shown_from: 0,
            next_seq: 0,
            faults: Faults::default(),
            rule_counts: Vec::new(),
            quorate: opts.quorate,
            error_style: opts.error_style,
            rng,
            tasks_started: BTreeMap::new(),
            max_tasks: 0,
            inflight_mutations: 0,
            max_inflight_mutations: 0,
            epoch: 0,
            shutting_down: false,
            next_pid,
            dirty: false,
            offline: BTreeSet::new(),
        }
    }

    /// The guest `vmid` if it is of `kind` and its config is on `node`, else PVE's 500
    /// (a VM asked for under `/lxc/` has no container config, and the reverse).
    pub(crate) fn guest_on(
        &mut self,
        node: &str,
        vmid: u32,
        kind: SimKind,
    ) -> Result<&mut GuestRec, Fail> {
        match self.guests.get_mut(&vmid) {
            Some(rec) if rec.g.node == node && rec.g.kind == kind => Ok(rec),
            _ => Err(Fail::server(match kind {
                SimKind::Lxc => {
                    format!("Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist")
                }
                SimKind::Qemu => format!(
                    "Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
                ),
            })),
        }
    }

    /// Records a write of guest `vmid`'s config: the digest changes, the file is saved.
    pub(crate) fn wrote(&mut self, vmid: u32) {
        if let Some(rec) = self.guests.get_mut(&vmid) {
            rec.generation += 1;
        }
        self.dirty = true;
    }

    pub(crate) fn running_tasks(&self) -> usize {
        self.tasks.iter().filter(|t| t.running()).count()
    }

    /// Whether a running task holds guest `vmid`'s config lock.
    pub(crate) fn flock_held(&self, vmid: u32) -> bool {
        self.tasks
            .iter()
            .any(|t| t.running() && t.holds_lock && !t.waits_for_lock && t.vmid == vmid)
    }

    /// Logs a request as it arrives (requests arrive in seq order, under the lock).
    pub(crate) fn push_request(&mut self, r: RequestRecord) {
        if self.requests.len() >= MAX_REQUESTS {
            self.requests.drain(..MAX_REQUESTS / 2);
        }
        self.requests.push(r);
    }

    /// The logged request `seq`, unless it was trimmed.
    pub(crate) fn request_mut(&mut self, seq: u64) -> Option<&mut RequestRecord> {
        let i = self.requests.binary_search_by_key(&seq, |r| r.seq).ok()?;
        self.requests.get_mut(i)
    }

    pub(crate) fn trim_tasks(&mut self) {
        let finished = self.tasks.iter().filter(|t| !t.running()).count();
        if finished > MAX_FINISHED_TASKS {
            let mut drop = finished - MAX_FINISHED_TASKS / 2;
            self.tasks.retain(|t| {
                if drop > 0 && !t.running() {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }
}

impl Shared {
    /// Locks the state. A panic in another thread does not make the state unusable: every
    /// change is applied under the lock in one step.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Call after changing the state (with the lock held): bumps the epoch, saves the
    /// state file if guests changed, wakes every waiter.
    pub(crate) fn changed(&self, st: &mut State) {
        st.epoch += 1;
        if st.dirty {
            st.dirty = false;
            if let Some(path) = &self.opts.state_file {
                let guests: Vec<&SimGuest> = st.guests.values().map(|r| &r.g).collect();
                if let Err(e) = persist::save(path, &guests) {
                    crate::log::warn(
                        "sim: cannot write state file",
                        &[("path", &path.display()), ("err", &e)],
                    );
                }
            }
        }
        self.cond.notify_all();
    }

    /// Waits up to `lock_wait` for guest `vmid`'s config lock, as `lock_config` does.
    pub(crate) fn wait_flock<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        vmid: u32,
        kind: SimKind,
    ) -> Result<MutexGuard<'a, State>, Fail> {
        let deadline = Instant::now() + self.opts.lock_wait;
        while st.flock_held(vmid) && !st.shutting_down {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if st.flock_held(vmid) || st.shutting_down {
            return Err(Fail::server(lock_timeout(kind, vmid)));
        }
        Ok(st)
    }
}

/// The error of a config lock that could not be had in time (pve-common `Tools.pm`
/// `lock_file_full`; the lock files of pve-container `LXC/Config.pm` and qemu-server
/// `QemuConfig.pm` `config_file_lock`).
pub(crate) fn lock_timeout(kind: SimKind, vmid: u32) -> String {
    match kind {
        SimKind::Lxc => {
            format!("can't lock file '/run/lock/lxc/pve-config-{vmid}.lock' - got timeout")
        }
        SimKind::Qemu => {
            format!("can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout")
        }
    }
}
