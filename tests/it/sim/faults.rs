//! Fault injection and the concurrency counters.

use super::*;
use felhom_agent::sim::{Faults, PowerState};
use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::Instant;

#[test]
fn latency_slows_every_request_or_only_matching_ones() {
    let sim = start(vec![guest(101, false)]);
    let latency = Duration::from_millis(500);
    sim.set_faults(Faults {
        latency,
        ..Faults::default()
    });
    let t = Instant::now();
    assert_eq!(get(&sim, "/version").status, 200);
    assert!(t.elapsed() >= latency);
    sim.set_faults(Faults {
        latency,
        latency_for: Some(("POST".into(), "/status/".into())),
        ..Faults::default()
    });
    let t = Instant::now();
    assert_eq!(get(&sim, "/nodes/pve1/lxc/101/status/current").status, 200);
    assert!(t.elapsed() < latency, "a GET does not match POST");
    let t = Instant::now();
    assert_eq!(
        post(&sim, "/nodes/pve1/lxc/101/status/start", "").status,
        200
    );
    assert!(t.elapsed() >= latency);
}

#[test]
fn injected_500_is_not_executed() {
    let sim = start(vec![guest(101, false)]);
    sim.set_faults(Faults {
        rate_500: 1.0,
        ..Faults::default()
    });
    let r = post(&sim, "/nodes/pve1/lxc/101/status/start", "");
    assert_eq!(r.status, 500);
    assert!(r.closes());
    assert!(sim.tasks_started(101).is_empty());
    assert_eq!(sim.requests()[0].status, 500);
}

#[test]
fn injected_596_is_executed_but_the_answer_is_lost() {
    let sim = start(vec![guest(101, false)]);
    sim.set_faults(Faults {
        rate_596: 1.0,
        ..Faults::default()
    });
    let r = post(&sim, "/nodes/pve1/lxc/101/status/start", "");
    assert_eq!((r.status, r.reason.as_str()), (596, "Connection timed out"));
    assert!(r.body.is_empty());
    assert_eq!(sim.tasks_started(101).len(), 1, "the start went ahead");
    assert!(sim.wait_until(DEADLINE, |s| s.guest(101).unwrap().status
        == PowerState::Running));
}

#[test]
fn reset_closes_without_answer_and_without_executing() {
    let sim = start(vec![guest(101, false)]);
    sim.set_faults(Faults {
        reset_rate: 1.0,
        ..Faults::default()
    });
    let target = "/api2/json/nodes/pve1/lxc/101/status/start";
    let err = send(sim.addr(), "POST", target, &auth(&sim), "").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(sim.tasks_started(101).is_empty());
    let reqs = sim.requests();
    assert_eq!((reqs.len(), reqs[0].status), (1, 0));
    assert_eq!(reqs[0].path, "/nodes/pve1/lxc/101/status/start");
    sim.set_faults(Faults::default());
    assert_eq!(
        post(&sim, "/nodes/pve1/lxc/101/status/start", "").status,
        200
    );
}

#[test]
fn faults_are_reproducible_from_the_seed() {
    let statuses = |seed: u64| {
        let sim = start_with(|o| o.seed = seed);
        sim.set_faults(Faults {
            rate_500: 0.5,
            ..Faults::default()
        });
        (0..24)
            .map(|_| get(&sim, "/version").status)
            .collect::<Vec<_>>()
    };
    let a = statuses(7);
    assert_eq!(a, statuses(7));
    assert!(a.contains(&200) && a.contains(&500), "{a:?}");
    assert_ne!(a, statuses(8));
}

#[test]
fn failing_and_hanging_tasks() {
    let sim = start(vec![guest(101, false), guest(102, false)]);
    sim.set_faults(Faults {
        fail_tasks: BTreeMap::from([(101, "startup for container '101' failed".to_string())]),
        hang_tasks: BTreeSet::from([102]),
        ..Faults::default()
    });
    let failing = upid_of(&post(&sim, "/nodes/pve1/lxc/101/status/start", ""));
    let hanging = upid_of(&post(&sim, "/nodes/pve1/lxc/102/status/start", ""));
    assert!(sim.wait_until(DEADLINE, |s| s.running_tasks() == 1));
    assert_eq!(
        task_status(&sim, &failing)["exitstatus"],
        "startup for container '101' failed"
    );
    assert_eq!(sim.guest(101).unwrap().status, PowerState::Stopped);
    // Well past the task duration, the hanging task still runs.
    assert!(!sim.wait_until(Duration::from_millis(600), |s| s.running_tasks() == 0));
    assert_eq!(task_status(&sim, &hanging)["status"], "running");
    // Clearing the fault releases it.
    sim.set_faults(Faults::default());
    assert_eq!(finished(&sim, &hanging)["exitstatus"], "OK");
    assert_eq!(sim.guest(102).unwrap().status, PowerState::Running);
}

#[test]
fn concurrency_counters() {
    let sim = start_with(|o| o.task_duration = Duration::from_secs(1));
    for v in 101..=103 {
        sim.add_guest(guest(v, false));
    }
    sim.set_faults(Faults {
        latency: Duration::from_millis(300),
        latency_for: Some(("POST".into(), "/status/start".into())),
        ..Faults::default()
    });
    thread::scope(|s| {
        let handles: Vec<_> = (101..=103)
            .map(|v| {
                let sim = &sim;
                thread::Builder::new()
                    .name(format!("client {v}"))
                    .spawn_scoped(s, move || {
                        post(sim, &format!("/nodes/pve1/lxc/{v}/status/start"), "").status
                    })
                    .unwrap()
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 200);
        }
    });
    assert_eq!(sim.max_concurrent_mutations(), 3);
    assert_eq!(sim.running_tasks(), 3);
    assert_eq!(sim.max_concurrent_tasks(), 3);
    sim.reset_counters();
    assert!(sim.tasks_started(101).is_empty());
    assert_eq!(sim.max_concurrent_tasks(), 3, "restarts from what runs now");
    assert_eq!(sim.max_concurrent_mutations(), 0);
    assert!(sim.wait_until(DEADLINE, |s| s.running_tasks() == 0));
    sim.reset_counters();
    assert_eq!(sim.max_concurrent_tasks(), 0);
}
