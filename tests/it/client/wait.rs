//! Waiting for tasks: transient errors retried, unknown tasks refused, deadlines
//! and cancellation honoured.

use super::{client, guest, no_params, start, vmid, within};
use felhom_agent::cancel::{Cancel, CancelSource};
use felhom_agent::pve::{PowerOp, TaskOutcome, Upid, WaitError, WaitOptions};
use felhom_agent::sim::{Effect, FaultRule, Faults, Match, PowerState, SimOptions};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[test]
fn waiting_retries_transient_errors() {
    let sim = start(SimOptions::default());
    sim.add_guest(guest(101, "pve1", PowerState::Stopped));
    let c = client(&sim);
    let upid = c
        .lxc_power("pve1", vmid(101), PowerOp::Start, &no_params())
        .unwrap();
    sim.set_faults(Faults::rule(FaultRule::new(
        Match::any(),
        Effect::StatusAfter(596),
    )));
    std::thread::scope(|s| {
        let healer = std::thread::Builder::new()
            .name("fault healer".into())
            .spawn_scoped(s, || {
                let saw_596 = sim.wait_until(Duration::from_secs(5), |sim| {
                    sim.requests()
                        .iter()
                        .any(|r| r.status == 596 && r.path.contains("/tasks/"))
                });
                sim.set_faults(Faults::default());
                saw_596
            })
            .unwrap();
        assert_eq!(c.wait_task(&upid, &within(10)), Ok(TaskOutcome::Ok));
        assert!(healer.join().unwrap(), "a status poll got a 596");
    });
}

#[test]
fn an_unknown_task_ends_the_wait_at_once() {
    let sim = start(SimOptions::default());
    let upid: Upid = "UPID:pve1:00001234:00005678:65000000:vzstart:101:agent@pve!reconciler:"
        .parse()
        .unwrap();
    let started = Instant::now();
    match client(&sim).wait_task(&upid, &within(10)) {
        Err(WaitError::Api(e)) => {
            assert_eq!(e.status(), Some(400), "{e}");
            assert!(!e.is_retryable_read());
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_hanging_task_hits_the_wait_deadline() {
    let sim = start(SimOptions::default());
    sim.add_guest(guest(101, "pve1", PowerState::Stopped));
    sim.set_faults(Faults {
        hang_tasks: BTreeSet::from([101]),
        ..Faults::default()
    });
    let c = client(&sim);
    let upid = c
        .lxc_power("pve1", vmid(101), PowerOp::Start, &no_params())
        .unwrap();
    let started = Instant::now();
    let opts = WaitOptions {
        deadline: started + Duration::from_millis(700),
        cancel: Cancel::never(),
    };
    assert_eq!(c.wait_task(&upid, &opts), Err(WaitError::Timeout));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    let polls = sim
        .requests()
        .iter()
        .filter(|r| r.path.contains("/tasks/"))
        .count();
    // vzstart is expected to take 1 s at first: polls at 75 ms, 125 ms, 333 ms and the
    // deadline.
    assert_eq!(polls, 4, "polls at 75 ms, 125 ms, 333 ms, 0.7 s");
}

#[test]
fn waits_learn_how_long_tasks_take() {
    let sim = start(SimOptions {
        task_duration: Duration::from_millis(300),
        ..SimOptions::default()
    });
    sim.add_guest(guest(101, "pve1", PowerState::Stopped));
    let c = client(&sim);
    let mut polls = Vec::new();
    for i in 0..8 {
        let op = if i % 2 == 0 {
            PowerOp::Start
        } else {
            PowerOp::Stop
        };
        sim.clear_requests();
        let upid = c.lxc_power("pve1", vmid(101), op, &no_params()).unwrap();
        assert_eq!(c.wait_task(&upid, &within(10)), Ok(TaskOutcome::Ok));
        polls.push(
            sim.requests()
                .iter()
                .filter(|r| r.path.contains("/tasks/"))
                .count(),
        );
    }
    // Each type learns from its own tasks; after two of each the polls are few.
    assert!(polls[4..].iter().all(|n| *n <= 6), "{polls:?}");
    for kind in ["vzstart", "vzstop"] {
        let e = c.task_times().expected(kind);
        let ms = e.duration.as_millis();
        assert!((250..=400).contains(&ms), "{kind}: {e:?} ({polls:?})");
    }
}

#[test]
fn cancelling_a_wait_returns_at_once() {
    let sim = start(SimOptions::default());
    sim.add_guest(guest(101, "pve1", PowerState::Stopped));
    sim.set_faults(Faults {
        hang_tasks: BTreeSet::from([101]),
        ..Faults::default()
    });
    let c = client(&sim);
    let upid = c
        .lxc_power("pve1", vmid(101), PowerOp::Start, &no_params())
        .unwrap();
    let mut source = CancelSource::new();
    let opts = WaitOptions {
        deadline: Instant::now() + Duration::from_secs(30),
        cancel: source.token(),
    };
    let started = Instant::now();
    std::thread::scope(|s| {
        let canceller = std::thread::Builder::new()
            .name("canceller".into())
            .spawn_scoped(s, || {
                let polled = sim.wait_until(Duration::from_secs(5), |sim| {
                    sim.requests().iter().any(|r| r.path.contains("/tasks/"))
                });
                source.cancel();
                polled
            })
            .unwrap();
        assert_eq!(c.wait_task(&upid, &opts), Err(WaitError::Cancelled));
        assert!(
            canceller.join().unwrap(),
            "the wait polled before the cancel"
        );
    });
    assert!(started.elapsed() < Duration::from_secs(3));
}
