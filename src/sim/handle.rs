//! [`Sim`]: the running simulated node, and what tests use to seed it, break it, see
//! what it was asked and audit the agent's promise on it.
//!
//! The top of the simulator: it starts the server and the clock.

use super::audit::{self, Audit};
use super::faults::Faults;
use super::model::{BulkTask, ErrorStyle, RequestRecord, SimGuest, SimOptions};
use super::state::{GuestRec, Shared, State};
use super::{clock, persist, server, tasks, tls};
use crate::cancel::CancelSource;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The running server. Dropping it (or [`Sim::shutdown`]) stops it and joins its threads,
/// then, with `SimOptions::audit_on_drop`, panics if [`Sim::audit`] finds a violation.
pub struct Sim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: bool,
    cancel: CancelSource,
    stop: Arc<AtomicBool>,
    /// Set by [`Sim::allow_violations`].
    violations_allowed: AtomicBool,
    accept: Option<JoinHandle<()>>,
    clock: Option<JoinHandle<()>>,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("url", &self.url())
            .field("token_id", &self.shared.opts.token_id)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Binds the listener, loads the state file if there is one, and starts the threads.
    pub fn start(opts: SimOptions) -> io::Result<Sim> {
        if opts.nodes.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the simulated cluster needs at least one node",
            ));
        }
        let tls_cfg = opts.tls.as_ref().map(tls::server_config).transpose()?;
        let guests = match &opts.state_file {
            Some(path) => persist::load(path)?.unwrap_or_default(),
            None => Vec::new(),
        };
        let listener = TcpListener::bind(opts.listen)?;
        let addr = listener.local_addr()?;
        let cancel = CancelSource::new();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(&opts, guests)),
            cond: Condvar::new(),
            cancel: cancel.token(),
            started: Instant::now(),
            opts,
        });
        let mut sim = Sim {
            tls: tls_cfg.is_some(),
            shared: shared.clone(),
            addr,
            cancel,
            stop: Arc::new(AtomicBool::new(false)),
            violations_allowed: AtomicBool::new(false),
            accept: None,
            clock: None,
        };
        // If a spawn fails, dropping `sim` stops whatever did start.
        let s = shared.clone();
        sim.clock = Some(
            thread::Builder::new()
                .name("sim clock".into())
                .spawn(move || clock::run(s))?,
        );
        let stop = sim.stop.clone();
        sim.accept = Some(
            thread::Builder::new()
                .name("sim accept".into())
                .spawn(move || server::accept_loop(shared, listener, tls_cfg, stop))?,
        );
        Ok(sim)
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS (the test
    /// certificate's names).
    pub fn url(&self) -> String {
        let port = self.addr.port();
        if self.tls {
            return format!("https://localhost:{port}");
        }
        match self.wake_addr().ip() {
            IpAddr::V4(ip) => format!("http://{ip}:{port}"),
            IpAddr::V6(ip) => format!("http://[{ip}]:{port}"),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn token_id(&self) -> &str {
        &self.shared.opts.token_id
    }

    pub fn token_secret(&self) -> &str {
        &self.shared.opts.token_secret
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.shared.lock();
        let r = f(&mut st);
        self.shared.changed(&mut st);
        r
    }

    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.shared.lock())
    }

    /// Adds a guest, or replaces the one with the same vmid.
    pub fn add_guest(&self, g: SimGuest) {
        self.with(|st| {
            let vmid = g.vmid;
            let generation = st.guests.get(&vmid).map_or(0, |r| r.generation + 1);
            let mut rec = GuestRec::new(g);
            rec.generation = generation;
            st.guests.insert(vmid, rec);
            st.dirty = true;
        })
    }

    pub fn guest(&self, vmid: u32) -> Option<SimGuest> {
        self.read(|st| st.guests.get(&vmid).map(|r| r.g.clone()))
    }

    /// All guests, by vmid.
    pub fn guests(&self) -> Vec<SimGuest> {
        self.read(|st| st.guests.values().map(|r| r.g.clone()).collect())
    }

    /// Edits a guest the way a human (or a backup job) would: the change is written to
    /// its config, so the digest changes even if `f` changes nothing.
    ///
    /// # Panics
    /// When there is no guest `vmid`: that is a mistake in the test.
    pub fn update_guest(&self, vmid: u32, f: impl FnOnce(&mut SimGuest)) {
        let found = self.with(|st| {
            // Edit a copy, so that a panic in `f` leaves the guest as it was.
            let Some(mut rec) = st.guests.get(&vmid).cloned() else {
                return false;
            };
            let before = rec.g.status;
            f(&mut rec.g);
            let after = rec.g.status;
            rec.g.status = before;
            rec.set_status(after);
            let new_vmid = rec.g.vmid;
            st.guests.remove(&vmid);
            st.guests.insert(new_vmid, rec);
            st.wrote(new_vmid);
            true
        });
        assert!(found, "sim: update_guest: there is no guest {vmid}");
    }

    /// Replaces the injected faults and restarts the rules' counts; takes effect for the
    /// next request to arrive (and releases tasks of guests no longer in `hang_tasks`).
    pub fn set_faults(&self, f: Faults) {
        self.with(|st| {
            st.rule_counts = vec![Default::default(); f.rules.len()];
            st.faults = f;
        })
    }

    /// How many times each rule of the current faults has hit, in rule order.
    pub fn fault_hits(&self) -> Vec<u64> {
        self.read(|st| {
            (0..st.faults.rules.len())
                .map(|i| st.rule_counts.get(i).map_or(0, |c| c.hits))
                .collect()
        })
    }

    pub fn faults(&self) -> Faults {
        self.read(|st| st.faults.clone())
    }

    /// Takes node `node` down (`false`) or brings it back: while down, the cluster lists
    /// it `offline` and every call for it answers 595 `No route to host`, as pveproxy
    /// does when it cannot reach the node to proxy to. Its guests stay where they are.
    ///
    /// # Panics
    /// When `node` is not a node of the simulated cluster: that is a mistake in the test.
    pub fn set_node_online(&self, node: &str, online: bool) {
        assert!(
            self.shared.opts.nodes.iter().any(|n| n == node),
            "sim: set_node_online: there is no node {node:?}"
        );
        self.with(|st| {
            if online {
                st.offline.remove(node);
            } else {
                st.offline.insert(node.to_string());
            }
        })
    }

    pub fn set_quorate(&self, q: bool) {
        self.with(|st| st.quorate = q)
    }

    pub fn set_error_style(&self, s: ErrorStyle) {
        self.with(|st| st.error_style = s)
    }

    /// The requests the node is done with (since [`Sim::clear_requests`]), in arrival
    /// order. A request still being processed (a delayed one, say) shows once it is done.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.read(|st| shown(st).cloned().collect())
    }

    /// Hides the requests so far from [`Sim::requests`] and [`Sim::mutations`]; the audit
    /// still sees them.
    pub fn clear_requests(&self) {
        self.with(|st| st.shown_from = st.next_seq)
    }

    /// The POST/PUT/DELETE requests the node is done with, whatever their outcome, in
    /// arrival order.
    pub fn mutations(&self) -> Vec<RequestRecord> {
        self.read(|st| shown(st).filter(|r| r.mutating).cloned().collect())
    }

    /// The vmids named in the path of any mutating request.
    pub fn mutated_vmids(&self) -> BTreeSet<u32> {
        self.read(|st| {
            shown(st)
                .filter(|r| r.mutating)
                .filter_map(|r| r.vmid)
                .collect()
        })
    }

    /// Checks the agent's first promise against the node's own records: no guest with
    /// two actions in flight, no intent sent twice (the rules are in [`Audit`]'s module
    /// doc). Requests still being processed count as in flight; a very long run keeps
    /// only its last 100,000 or more requests, and the audit sees only those.
    pub fn audit(&self) -> Audit {
        self.read(|st| {
            let ends: BTreeMap<String, Option<Instant>> = st
                .tasks
                .iter()
                .map(|t| (t.upid.to_string(), t.ended))
                .collect();
            audit::check(&st.requests, &ends, self.shared.started)
        })
    }

    /// For a test that races on purpose (a hand edit against the agent, requests sent
    /// twice to see the node's answer): dropping this `Sim` does not panic on violations.
    pub fn allow_violations(&self) {
        self.violations_allowed.store(true, Ordering::SeqCst);
    }

    /// The UPIDs of tasks started for guest `vmid` (since [`Sim::reset_counters`]),
    /// oldest first.
    pub fn tasks_started(&self, vmid: u32) -> Vec<String> {
        self.read(|st| st.tasks_started.get(&vmid).cloned().unwrap_or_default())
    }

    /// Runs the node's own `startall` or `stopall` task on `node` for `run_for`, as
    /// `pve-guests.service` does at boot and at shutdown, and returns its UPID. While it
    /// runs, `GET /nodes/{node}/tasks?source=active` lists it as PVE does (type
    /// `startall`/`stopall`, an empty id, user `root@pam`, status `RUNNING`); then it
    /// ends `OK`. It starts and stops no guest itself: it stands for the node's bulk run.
    ///
    /// # Panics
    /// When `node` is not a node of the simulated cluster: that is a mistake in the test.
    pub fn run_bulk_task(&self, node: &str, kind: BulkTask, run_for: Duration) -> String {
        assert!(
            self.shared.opts.nodes.iter().any(|n| n == node),
            "sim: run_bulk_task: there is no node {node:?}"
        );
        self.with(|st| tasks::spawn_bulk(&self.shared, st, node, kind, run_for).to_string())
    }

    /// When the task `upid` ended, if it has.
    pub fn task_ended_at(&self, upid: &str) -> Option<Instant> {
        self.read(|st| {
            st.tasks
                .iter()
                .find(|t| t.upid.to_string() == upid)
                .and_then(|t| t.ended)
        })
    }

    /// Tasks running now, over all guests.
    pub fn running_tasks(&self) -> usize {
        self.read(State::running_tasks)
    }

    /// The most tasks that ran at once.
    pub fn max_concurrent_tasks(&self) -> usize {
        self.read(|st| st.max_tasks)
    }

    /// The most mutating requests in flight at once.
    pub fn max_concurrent_mutations(&self) -> usize {
        self.read(|st| st.max_inflight_mutations)
    }

    /// Forgets tasks started; the maxima restart from what runs now.
    pub fn reset_counters(&self) {
        self.with(|st| {
            st.tasks_started.clear();
            st.max_tasks = st.running_tasks();
            st.max_inflight_mutations = st.inflight_mutations;
        })
    }

    /// Waits until `pred` holds or `timeout` passes; returns whether it holds. `pred` is
    /// re-checked after every state change (requests, tasks, guests), never by polling.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&Sim) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.shared.lock().epoch;
            if pred(self) {
                return true;
            }
            let mut st = self.shared.lock();
            while st.epoch == seen {
                let now = Instant::now();
                if now >= deadline {
                    drop(st);
                    return pred(self);
                }
                st = self
                    .shared
                    .cond
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }

    /// Stops the server and joins its threads (then audits, as a drop does).
    pub fn shutdown(self) {}

    fn wake_addr(&self) -> SocketAddr {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.addr.port())
    }
}

impl Sim {
    /// Stops the server and joins its threads; a second call does nothing.
    fn stop(&mut self) {
        self.with(|st| st.shutting_down = true);
        self.cancel.cancel();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            // The accept thread blocks in accept(): one connection wakes it to see `stop`.
            let _ = TcpStream::connect_timeout(&self.wake_addr(), Duration::from_secs(2));
            let _ = h.join();
        }
        if let Some(h) = self.clock.take() {
            let _ = h.join();
        }
    }

    /// Stops the server, joins its threads and returns the audit of everything it was
    /// asked, without panicking on violations.
    pub fn finish(mut self) -> Audit {
        self.stop();
        self.allow_violations();
        self.audit()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
        let audit_wanted = self.shared.opts.audit_on_drop
            && !self.violations_allowed.load(Ordering::SeqCst)
            && !thread::panicking();
        if audit_wanted {
            let audit = self.audit();
            assert!(
                audit.is_clean(),
                "sim: {audit}\n(a test that races on purpose calls Sim::allow_violations)"
            );
        }
    }
}

/// The logged requests [`Sim::requests`] shows: done, and not cleared.
fn shown(st: &State) -> impl Iterator<Item = &RequestRecord> {
    st.requests
        .iter()
        .filter(move |r| r.seq >= st.shown_from && r.done.is_some())
}
