//! Lane tests with a fake executor: ordering, the global cap, busy guests, panics,
//! idle retirement, cancellation, the desired state checked before each action, and the
//! thread bound. Nothing sleeps: executors block on a gate channel
//! that the test opens, and the test waits on conditions with deadlines.

use super::*;
use crate::action::{ActionKind, Params};
use crate::cancel::CancelSource;
use std::sync::{Arc, Condvar, Mutex};

const DEADLINE: Duration = Duration::from_secs(10);

fn vmid(n: u32) -> Vmid {
    Vmid::new(n.into()).unwrap()
}

fn action(n: u32, kind: ActionKind, reason: &str) -> Action {
    Action {
        vmid: vmid(n),
        kind,
        guest: crate::pve::GuestKind::Lxc,
        via_task: false,
        key: None,
        guard: None,
        params: Params::new(),
        reason: reason.into(),
    }
}

#[derive(Default)]
struct Seen {
    log: Vec<(Vmid, String)>,
    in_flight: usize,
    max_in_flight: usize,
}

/// Holds each action until the test sends a token on `gate`; fails or panics on request
/// (by the action's reason).
struct Fake {
    seen: Arc<(Mutex<Seen>, Condvar)>,
    gate: Receiver<()>,
}

impl Executor for Fake {
    fn execute(&self, a: &Action, cancel: &Cancel) -> Outcome {
        {
            let mut s = self.seen.0.lock().unwrap();
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
            s.log.push((a.vmid, a.reason.clone()));
            self.seen.1.notify_all();
        }
        let gated = crossbeam_channel::select! {
            recv(self.gate) -> r => r.is_ok(),
            recv(cancel.receiver()) -> _ => false,
            default(DEADLINE) => false,
        };
        self.seen.0.lock().unwrap().in_flight -= 1;
        if !gated {
            return Outcome::Cancelled("cancelled".into());
        }
        match a.reason.as_str() {
            "fail" => Outcome::Failed("boom".into()),
            "panic" => panic!("fake executor panics"),
            _ => Outcome::Applied {
                upid: None,
                warnings: 0,
            },
        }
    }
}

struct Rig {
    lanes: Lanes<Fake>,
    seen: Arc<(Mutex<Seen>, Condvar)>,
    open: Sender<()>,
    cancel: CancelSource,
}

fn rig(max_parallel: usize) -> Rig {
    let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
    let (open, gate) = crossbeam_channel::unbounded();
    let cancel = CancelSource::new();
    let fake = Fake {
        seen: seen.clone(),
        gate,
    };
    let lanes = Lanes::new(fake, max_parallel, cancel.token());
    lanes.set_wanted((100..2000).map(|n| (vmid(n), 0)).collect(), 0);
    Rig {
        lanes,
        seen,
        open,
        cancel,
    }
}

impl Rig {
    /// Dispatches one `start` job per guest.
    fn start_each(&mut self, guests: &[u32]) {
        for &g in guests {
            let job = Job {
                vmid: vmid(g),
                actions: vec![action(g, ActionKind::Start, "ok")],
                fingerprint: 0,
                settings: 0,
            };
            assert!(self.lanes.dispatch(job).unwrap());
        }
    }

    fn wait_seen(&self, pred: impl Fn(&Seen) -> bool) {
        let (lock, cv) = &*self.seen;
        let guard = lock.lock().unwrap();
        let (guard, timeout) = cv
            .wait_timeout_while(guard, DEADLINE, |s| !pred(s))
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "condition not reached; log {:?}",
            guard.log
        );
    }

    fn collect(&mut self, n: usize) -> Vec<JobResult> {
        let mut out = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        while out.len() < n {
            let r = self
                .lanes
                .results()
                .recv_deadline(deadline)
                .expect("result in time");
            self.lanes.complete(&r);
            out.push(r);
        }
        out
    }
}

#[test]
fn order_per_guest_and_global_cap() {
    let mut rig = rig(3);
    let guests: Vec<u32> = (100..120).collect();
    for &g in &guests {
        let job = Job {
            vmid: vmid(g),
            actions: vec![
                action(g, ActionKind::Shutdown, "1"),
                action(g, ActionKind::SetConfig, "2"),
            ],
            fingerprint: 0,
            settings: 0,
        };
        assert!(rig.lanes.dispatch(job).unwrap());
    }
    // Exactly the cap is in flight before anything is released.
    rig.wait_seen(|s| s.in_flight == 3);
    for _ in 0..guests.len() * 2 {
        rig.open.send(()).unwrap();
    }
    let results = rig.collect(guests.len());
    assert!(results
        .iter()
        .all(|r| r.outcomes.len() == 2 && r.not_run == 0));
    let seen = rig.seen.0.lock().unwrap();
    assert_eq!(seen.max_in_flight, 3);
    for &g in &guests {
        let order: Vec<&str> = seen
            .log
            .iter()
            .filter(|(v, _)| *v == vmid(g))
            .map(|(_, r)| r.as_str())
            .collect();
        assert_eq!(order, ["1", "2"], "guest {g}");
    }
    drop(seen);
    assert!(rig.lanes.busy().is_empty());
    rig.lanes.shutdown(|_| {});
}

#[test]
fn busy_guest_is_not_queued_again_and_failure_stops_the_sequence() {
    let mut rig = rig(2);
    let job = Job {
        vmid: vmid(101),
        actions: vec![
            action(101, ActionKind::SetConfig, "fail"),
            action(101, ActionKind::Start, "never"),
        ],
        fingerprint: 7,
        settings: 0,
    };
    rig.lanes.set_wanted(BTreeMap::from([(vmid(101), 7)]), 0);
    assert!(rig.lanes.dispatch(job.clone()).unwrap());
    assert!(
        !rig.lanes.dispatch(job.clone()).unwrap(),
        "busy guest queued twice"
    );
    rig.open.send(()).unwrap();
    let r = rig.collect(1).pop().unwrap();
    assert_eq!(r.fingerprint, 7);
    assert_eq!(r.outcomes.len(), 1);
    assert_eq!(r.last(), Some(&Outcome::Failed("boom".into())));
    assert_eq!(r.not_run, 1);
    // No longer busy: it can be queued again.
    assert!(rig.lanes.dispatch(job).unwrap());
    rig.open.send(()).unwrap();
    rig.collect(1);
    rig.lanes.shutdown(|_| {});
}

#[test]
fn a_panicking_job_reports_failure_and_its_worker_goes_on() {
    let mut rig = rig(2);
    let job = |reason| Job {
        vmid: vmid(101),
        actions: vec![action(101, ActionKind::Start, reason)],
        fingerprint: 0,
        settings: 0,
    };
    assert!(rig.lanes.dispatch(job("panic")).unwrap());
    rig.open.send(()).unwrap();
    let r = rig.collect(1).pop().unwrap();
    assert!(r.panicked);
    assert!(
        matches!(r.last(), Some(Outcome::Failed(m)) if m.contains("fake executor panics")),
        "{r:?}"
    );
    assert_eq!(rig.lanes.threads(), 1, "the worker survives the panic");
    assert!(rig.lanes.dispatch(job("ok")).unwrap());
    rig.open.send(()).unwrap();
    let r = rig.collect(1).pop().unwrap();
    assert!(r.last().unwrap().proceeds());
    rig.lanes.shutdown(|_| {});
}

#[test]
fn idle_lanes_are_retired() {
    let mut rig = rig(4);
    rig.start_each(&[101, 102]);
    assert_eq!(rig.lanes.threads(), 2);
    // Busy lanes are never retired.
    rig.lanes.reap_idle(Duration::ZERO);
    assert_eq!(rig.lanes.threads(), 2);
    rig.open.send(()).unwrap();
    rig.open.send(()).unwrap();
    rig.collect(2);
    rig.lanes.reap_idle(Duration::from_secs(3600));
    assert_eq!(rig.lanes.threads(), 2);
    rig.lanes.reap_idle(Duration::ZERO);
    assert_eq!(rig.lanes.threads(), 0);
    rig.lanes.shutdown(|_| {});
}

#[test]
fn cancel_ends_running_and_waiting_jobs_and_shutdown_joins() {
    let mut rig = rig(1);
    rig.start_each(&[101, 102]);
    rig.wait_seen(|s| s.in_flight == 1);
    let drained = rig
        .lanes
        .drain_until(Instant::now() + Duration::from_millis(50), |_| {});
    assert!(!drained, "nothing was released, so nothing drains");
    rig.cancel.cancel();
    let mut results = Vec::new();
    rig.lanes.shutdown(|r| results.push(r));
    results.sort_by_key(|r| r.vmid);
    assert_eq!(results.len(), 2);
    assert!(matches!(results[0].last(), Some(Outcome::Cancelled(_))));
    assert_eq!((results[1].outcomes.len(), results[1].not_run), (0, 1));
}

#[test]
fn a_guest_dropped_from_the_desired_state_gets_no_further_action() {
    let mut rig = rig(2);
    let job = Job {
        vmid: vmid(101),
        actions: vec![
            action(101, ActionKind::Shutdown, "1"),
            action(101, ActionKind::SetConfig, "2"),
        ],
        fingerprint: 0,
        settings: 0,
    };
    assert!(rig.lanes.dispatch(job).unwrap());
    rig.wait_seen(|s| s.in_flight == 1);
    // A reload drops guest 101 while its first action runs.
    rig.lanes
        .set_wanted((102..200).map(|n| (vmid(n), 0)).collect(), 0);
    rig.open.send(()).unwrap();
    rig.open.send(()).unwrap();
    let r = rig.collect(1).pop().unwrap();
    assert_eq!(r.outcomes.len(), 1);
    assert_eq!(r.not_run, 1);
    let seen = rig.seen.0.lock().unwrap();
    assert_eq!(seen.log, [(vmid(101), "1".to_string())]);
    drop(seen);
    rig.lanes.shutdown(|_| {});
}

#[test]
fn a_queued_job_checks_the_desired_state_before_its_first_action() {
    // One worker: 102's job waits in the queue behind 101's.
    let mut rig = rig(1);
    rig.start_each(&[101, 102, 103]);
    rig.wait_seen(|s| s.in_flight == 1);
    // A reload while they wait: 102 is dropped, 103 is now asked something else.
    let mut wanted: BTreeMap<Vmid, u64> = (100..200).map(|n| (vmid(n), 0)).collect();
    wanted.remove(&vmid(102));
    wanted.insert(vmid(103), 99);
    rig.lanes.set_wanted(wanted, 0);
    rig.open.send(()).unwrap();
    let mut results = rig.collect(3);
    results.sort_by_key(|r| r.vmid);
    let ran: Vec<(u32, usize, usize)> = results
        .iter()
        .map(|r| (r.vmid.get(), r.outcomes.len(), r.not_run))
        .collect();
    assert_eq!(ran, [(101, 1, 0), (102, 0, 1), (103, 0, 1)]);
    let seen = rig.seen.0.lock().unwrap();
    assert_eq!(seen.log, [(vmid(101), "ok".to_string())]);
    drop(seen);
    rig.lanes.shutdown(|_| {});
}

#[test]
fn a_queued_job_checks_the_plan_settings_before_its_first_action() {
    // One worker: 102's job waits behind 101's; then a reload changes the settings
    // (a new hold tag, say) but no guest's desired spec.
    let mut rig = rig(1);
    rig.start_each(&[101, 102]);
    rig.wait_seen(|s| s.in_flight == 1);
    rig.lanes
        .set_wanted((100..200).map(|n| (vmid(n), 0)).collect(), 1);
    rig.open.send(()).unwrap();
    let mut results = rig.collect(2);
    results.sort_by_key(|r| r.vmid);
    let ran: Vec<(u32, usize, usize)> = results
        .iter()
        .map(|r| (r.vmid.get(), r.outcomes.len(), r.not_run))
        .collect();
    assert_eq!(ran, [(101, 1, 0), (102, 0, 1)]);
    rig.lanes.shutdown(|_| {});
}

#[test]
fn stop_new_ends_queued_jobs_unrun_and_lets_the_running_one_finish() {
    let mut rig = rig(1);
    let job = Job {
        vmid: vmid(101),
        actions: vec![
            action(101, ActionKind::SetConfig, "1"),
            action(101, ActionKind::Start, "2"),
        ],
        fingerprint: 0,
        settings: 0,
    };
    assert!(rig.lanes.dispatch(job).unwrap());
    rig.start_each(&[102]);
    rig.wait_seen(|s| s.in_flight == 1);
    rig.lanes.stop_new();
    rig.open.send(()).unwrap();
    let mut results = rig.collect(2);
    results.sort_by_key(|r| r.vmid);
    assert_eq!(
        (results[0].outcomes.len(), results[0].not_run),
        (1, 1),
        "101 finishes its running action and starts no other"
    );
    assert_eq!((results[1].outcomes.len(), results[1].not_run), (0, 1));
    assert!(rig.lanes.busy().is_empty());
    rig.lanes.shutdown(|_| {});
}

#[test]
fn waiting_jobs_cost_no_thread() {
    let mut rig = rig(4);
    let guests: Vec<u32> = (100..1100).collect();
    rig.start_each(&guests);
    rig.wait_seen(|s| s.in_flight == 4);
    assert_eq!(rig.lanes.threads(), 4);
    assert_eq!(rig.lanes.busy().len(), 1000);
    for _ in &guests {
        rig.open.send(()).unwrap();
    }
    let results = rig.collect(guests.len());
    assert!(results.iter().all(|r| r.outcomes.len() == 1));
    assert_eq!(rig.seen.0.lock().unwrap().max_in_flight, 4);
    assert!(rig.lanes.threads() <= 4);
    rig.lanes.shutdown(|_| {});
}

#[test]
fn tasks_running_outside_the_lanes_count_against_the_cap() {
    let mut rig = rig(3);
    // Two earlier ops may still run at the node: one job at a time, not three.
    rig.lanes.set_outside(2);
    rig.start_each(&[101, 102, 103]);
    rig.wait_seen(|s| s.in_flight == 1);
    for _ in 0..3 {
        rig.open.send(()).unwrap();
    }
    let results = rig.collect(3);
    assert!(results.iter().all(|r| r.not_run == 0));
    assert_eq!(rig.seen.0.lock().unwrap().max_in_flight, 1);

    // When they fill the cap, queued jobs end unrun rather than wait for ever.
    rig.lanes.set_outside(3);
    rig.start_each(&[104, 105]);
    let results = rig.collect(2);
    assert!(results
        .iter()
        .all(|r| r.not_run == 1 && r.outcomes.is_empty()));
    assert_eq!(rig.seen.0.lock().unwrap().log.len(), 3);
    assert!(rig.lanes.busy().is_empty());
    rig.lanes.shutdown(|_| {});
}
