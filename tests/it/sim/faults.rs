//! Fault injection over raw HTTP: each effect, whether it executes the request, how
//! rules pick requests, reproducibility from the seed, and the concurrency counters.

use super::*;
use felhom_agent::sim::{Effect, FaultRule, Faults, Garble, Match, PowerState};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Shutdown;
use std::thread;

const START: &str = "/nodes/pve1/lxc/101/status/start";

fn one(when: Match, effect: Effect) -> Faults {
    Faults::rule(FaultRule::new(when, effect))
}

/// Sends a request and returns the status, the announced `Content-Length` and the body
/// as read until the server closed the connection.
fn until_close(sim: &Sim, method: &str, path: &str) -> (u16, usize, Vec<u8>) {
    let mut s = connect(sim.addr());
    let req = format!(
        "{method} /api2/json{path} HTTP/1.1\r\nHost: localhost\r\n{}Content-Length: 0\r\n\r\n",
        auth(sim)
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let (mut status, mut len) = (0, 0);
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.trim_end().is_empty() {
            break;
        }
        if let Some(rest) = line.strip_prefix("HTTP/1.1 ") {
            status = rest[..3].parse().unwrap();
        }
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = Vec::new();
    r.read_to_end(&mut body).unwrap();
    (status, len, body)
}

/// The record of the last request whose path contains `path`.
fn record(sim: &Sim, path: &str) -> felhom_agent::sim::RequestRecord {
    sim.requests()
        .into_iter()
        .rev()
        .find(|r| r.path.contains(path))
        .expect("a recorded request")
}

#[test]
fn a_delayed_request_runs_after_its_client_left_and_its_task_is_listed() {
    let sim = start(vec![guest(101, false)]);
    let delay = Duration::from_millis(400);
    sim.set_faults(one(Match::post("/status/start"), Effect::Delay(delay)));
    let mut s = connect(sim.addr());
    let req = format!(
        "POST /api2/json{START} HTTP/1.1\r\nHost: localhost\r\n{}Content-Length: 0\r\n\r\n",
        auth(&sim)
    );
    s.write_all(req.as_bytes()).unwrap();
    // The client gives up at once and goes away.
    s.shutdown(Shutdown::Both).unwrap();
    drop(s);
    assert!(sim.wait_until(DEADLINE, |s| s.requests().len() == 1));
    let r = record(&sim, START);
    assert!(r.executed);
    assert!(
        r.done.unwrap() - r.at >= delay,
        "executed only after the delay"
    );
    let upid = r.task.clone().expect("the request started a task");
    assert_eq!(sim.tasks_started(101), vec![upid.clone()]);
    let list = get(&sim, "/nodes/pve1/tasks?source=all&vmid=101").data();
    assert_eq!(list[0]["upid"], upid.as_str());
    assert_eq!(list[0]["type"], "vzstart");
    assert!(sim.wait_until(DEADLINE, |s| s.guest(101).unwrap().status
        == PowerState::Running));
    assert_eq!(sim.fault_hits(), [1]);
}

#[test]
fn latency_can_be_aimed_at_the_gets_of_one_guest() {
    let sim = start(vec![guest(101, false), guest(102, false)]);
    let delay = Duration::from_millis(600);
    sim.set_faults(one(Match::method("GET").vmid(101), Effect::Delay(delay)));
    // A client whose timeout is shorter than the delay gets no answer in time.
    let mut s = connect(sim.addr());
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let req = format!(
        "GET /api2/json/nodes/pve1/lxc/101/status/current HTTP/1.1\r\nHost: x\r\n{}\r\n",
        auth(&sim)
    );
    s.write_all(req.as_bytes()).unwrap();
    let err = read_response(&mut BufReader::new(&s)).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    drop(s);
    assert_eq!(get(&sim, "/nodes/pve1/lxc/102/status/current").status, 200);
    assert_eq!(post(&sim, START, "").status, 200);
    assert!(sim.wait_until(DEADLINE, |s| s.requests().len() == 3));
    let took = |path: &str| {
        let r = record(&sim, path);
        r.done.unwrap() - r.at
    };
    assert!(took("/lxc/101/status/current") >= delay);
    assert!(took("/lxc/102/status/current") < delay, "another guest");
    assert!(took(START) < delay, "not a GET");
    assert_eq!(sim.fault_hits(), [1]);
    sim.set_faults(Faults::default());
    assert!(sim.wait_until(DEADLINE, |s| s.running_tasks() == 0));
}

#[test]
fn statuses_before_execution_do_not_run_the_request() {
    let sim = start(vec![guest(101, false)]);
    for status in [500, 502, 503, 504, 596] {
        sim.set_faults(one(Match::post(START), Effect::StatusBefore(status)));
        let r = post(&sim, START, "");
        assert_eq!(r.status, status);
        assert!(r.closes());
        assert!(!record(&sim, START).executed);
        if (502..=504).contains(&status) {
            assert!(r.header("content-type").unwrap().starts_with("text/html"));
            assert!(String::from_utf8_lossy(&r.body).contains(&format!("<h1>{status} ")));
        }
    }
    assert!(sim.tasks_started(101).is_empty());
    assert_eq!(sim.guest(101).unwrap().status, PowerState::Stopped);
}

#[test]
fn statuses_after_execution_lose_the_answer_of_a_call_that_went_ahead() {
    let sim = start(vec![guest(101, false), guest(102, false)]);
    sim.set_faults(one(Match::post("/status/start"), Effect::StatusAfter(504)));
    let r = post(&sim, START, "");
    assert_eq!((r.status, r.reason.as_str()), (504, "Gateway Time-out"));
    assert!(record(&sim, START).executed);
    assert_eq!(sim.tasks_started(101).len(), 1, "the start went ahead");
    sim.set_faults(one(Match::post("/status/start"), Effect::StatusAfter(596)));
    let r = post(&sim, "/nodes/pve1/lxc/102/status/start", "");
    assert_eq!((r.status, r.reason.as_str()), (596, "Connection timed out"));
    assert!(r.body.is_empty());
    assert_eq!(sim.tasks_started(102).len(), 1);
    assert!(sim.wait_until(DEADLINE, |s| s
        .guests()
        .iter()
        .all(|g| g.status == PowerState::Running)));
}

#[test]
fn a_truncated_body_announces_its_full_length() {
    let sim = start(vec![guest(101, false), guest(102, true)]);
    let full = get(&sim, "/nodes/pve1/lxc").body;
    sim.set_faults(one(Match::any(), Effect::Truncate(10)));
    let (status, len, body) = until_close(&sim, "GET", "/nodes/pve1/lxc");
    assert_eq!((status, len), (200, full.len()));
    assert_eq!(body, full[..10]);
    // Executed: a truncated answer to a start still started the guest.
    let (status, len, body) = until_close(&sim, "POST", START);
    assert_eq!((status, body.len()), (200, 10));
    assert!(len > 10, "{len}");
    assert_eq!(sim.tasks_started(101).len(), 1);
    assert!(sim.wait_until(DEADLINE, |s| s.running_tasks() == 0));
}

#[test]
fn garbled_bodies_after_execution() {
    let sim = start(vec![guest(101, false), guest(102, true)]);
    let garbled = |effect: Effect, path: &str| {
        sim.set_faults(one(Match::any(), effect));
        let r = get(&sim, path);
        sim.set_faults(Faults::default());
        r
    };
    let html = garbled(Effect::Html, "/nodes/pve1/lxc");
    assert_eq!(html.status, 200);
    assert!(html
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8_lossy(&html.body).starts_with("<!DOCTYPE html>"));
    let list = garbled(Effect::Garble(Garble::WrongType), "/nodes/pve1/lxc").data();
    assert!(list.is_string(), "{list}");
    let list = garbled(
        Effect::Garble(Garble::SwapType("vmid".into())),
        "/nodes/pve1/lxc",
    );
    assert_eq!(list.data()[0]["vmid"], "101");
    let status = garbled(
        Effect::Garble(Garble::Missing("status".into())),
        "/nodes/pve1/lxc/102/status/current",
    );
    assert!(status.data().get("status").is_none());
    assert_eq!(status.data()["vmid"], 102);
    // An error answer has no data to garble.
    let missing = garbled(
        Effect::Garble(Garble::WrongType),
        "/nodes/pve1/lxc/999/config",
    );
    assert_eq!(missing.status, 500);
    // An invalid UPID for a start that did start.
    sim.set_faults(one(Match::post(START), Effect::Garble(Garble::BadUpid)));
    let upid = post(&sim, START, "").data();
    let upid = upid.as_str().unwrap();
    assert_eq!(upid.split(':').nth(2), Some("ZZZZZZZZ"), "{upid}");
    assert_eq!(sim.tasks_started(101).len(), 1);
    assert_ne!(sim.tasks_started(101)[0], upid);
    assert!(sim.wait_until(DEADLINE, |s| s.running_tasks() == 0));
}

#[test]
fn a_huge_body_is_streamed_in_full() {
    let sim = start(vec![guest(101, false)]);
    let size: u64 = 80 << 20;
    sim.set_faults(one(Match::get("/lxc"), Effect::Huge(size)));
    let mut s = connect(sim.addr());
    let req = format!(
        "GET /api2/json/nodes/pve1/lxc HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        auth(&sim)
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        assert!(r.read_line(&mut head).unwrap() > 0);
    }
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {size}\r\n")),
        "{head}"
    );
    let mut first = [0u8; 10];
    r.read_exact(&mut first).unwrap();
    assert_eq!(&first, br#"{"data":[{"#);
    let (mut total, mut last) = (10u64, Vec::new());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        last = buf[..n].to_vec();
    }
    assert_eq!(total, size);
    assert!(last.ends_with(b"xxx\"}"));
    // A client that stops reading early does not keep the node from answering others.
    let mut s = connect(sim.addr());
    s.write_all(req.as_bytes()).unwrap();
    let mut some = vec![0u8; 1 << 20];
    s.read_exact(&mut some).unwrap();
    drop(s);
    assert_eq!(get(&sim, "/version").status, 200);
}

#[test]
fn reset_closes_without_answer_and_without_executing() {
    let sim = start(vec![guest(101, false)]);
    sim.set_faults(one(Match::any(), Effect::Reset));
    let target = format!("/api2/json{START}");
    let err = send(sim.addr(), "POST", &target, &auth(&sim), "").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(sim.tasks_started(101).is_empty());
    let reqs = sim.requests();
    assert_eq!(
        (reqs.len(), reqs[0].status, reqs[0].executed),
        (1, 0, false)
    );
    assert_eq!(reqs[0].path, START);
    sim.set_faults(Faults::default());
    assert_eq!(post(&sim, START, "").status, 200);
}

#[test]
fn rules_pick_the_nth_request_at_most_n_times() {
    let sim = start(vec![]);
    let statuses = |rule: FaultRule| {
        sim.set_faults(Faults::rule(rule));
        let s: Vec<u16> = (0..4).map(|_| get(&sim, "/version").status).collect();
        (s, sim.fault_hits())
    };
    let busy = || FaultRule::new(Match::get("/version"), Effect::StatusBefore(503));
    assert_eq!(statuses(busy().nth(2)), (vec![200, 503, 200, 200], vec![1]));
    assert_eq!(
        statuses(busy().times(2)),
        (vec![503, 503, 200, 200], vec![2])
    );
    assert_eq!(
        statuses(FaultRule::new(Match::post("/version"), Effect::Reset)),
        (vec![200; 4], vec![0]),
        "another method"
    );
}

#[test]
fn faults_are_reproducible_from_the_seed() {
    let run = |seed: u64| {
        let sim = start_with(|o| o.seed = seed);
        sim.add_guest(guest(101, false));
        sim.set_faults(
            Faults::rule(
                FaultRule::new(Match::any(), Effect::StatusBefore(503))
                    .rate(0.4)
                    .times(8),
            )
            .with(FaultRule::new(Match::any(), Effect::StatusAfter(502)).rate(0.3)),
        );
        let out: Vec<u16> = (0..24)
            .map(|i| {
                if i % 2 == 0 {
                    get(&sim, "/version").status
                } else {
                    get(&sim, "/nodes/pve1/lxc/101/status/current").status
                }
            })
            .collect();
        (out, sim.fault_hits())
    };
    let a = run(7);
    assert_eq!(a, run(7));
    assert!(
        a.0.contains(&200) && a.0.contains(&503) && a.0.contains(&502),
        "{a:?}"
    );
    assert!(a.1[0] <= 8);
    assert_ne!(a, run(8));
}

#[test]
fn failing_and_hanging_tasks() {
    let sim = start(vec![guest(101, false), guest(102, false)]);
    sim.set_faults(Faults {
        fail_tasks: BTreeMap::from([(101, "startup for container '101' failed".to_string())]),
        hang_tasks: BTreeSet::from([102]),
        ..Faults::default()
    });
    let failing = upid_of(&post(&sim, START, ""));
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
    sim.set_faults(one(
        Match::post("/status/start"),
        Effect::Delay(Duration::from_millis(300)),
    ));
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
