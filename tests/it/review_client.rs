//! The review's findings about the client's reading of a power call's answer (defect
//! D5): PVE answers a start, shutdown or stop with the UPID of the task it started,
//! always (docs/proxmox-api.md §5.1). A `null`, or a UPID of another node, guest or
//! task type, is garbage whose outcome is unknown: the op stays in flight, its guest is
//! held until the node explains it, and the bad UPID is neither journaled nor polled.
//! A rewriting proxy ([`super::proxy`]) says what the simulator's faults cannot. The
//! node's audit and request log, and the journal, are the evidence.

use super::proxy::{Proxy, Rewrite};
use super::rig::{
    assert_audit_clean, fast_sim, guest, mutations_of, pass, point_config_at, running, Rig,
};
use felhom_agent::journal::{file_in, read_records};
use felhom_agent::sim::SimOptions;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// Defect: a power call answered `{"data": null}` is taken as a synchronous success
/// (`exec::ApiExecutor::run`, `Ok(None)`), journaled `succeeded`, and the guest is
/// free again while the node's start task still runs; the next pass starts it again.
/// PVE answers a start, shutdown or stop with its task's UPID, always: a null there is
/// garbage, and its outcome is unknown. (A proxy swaps the UPID for null.)
#[test]
fn a_power_call_answered_with_null_is_not_taken_as_done() {
    let opts = SimOptions {
        task_duration: Duration::from_millis(1500),
        ..fast_sim()
    };
    let rig = Rig::new(
        "review-null-start",
        opts,
        vec![guest(101, false)],
        r#"{"guests": [{"vmid": 101, "state": "running"}]}"#,
        serde_json::json!({}),
    );
    let rewritten = Arc::new(AtomicBool::new(false));
    let rewrite: Arc<Rewrite> = {
        let rewritten = rewritten.clone();
        Arc::new(move |method, path, _body| {
            let first = method == "POST"
                && path.ends_with("/status/start")
                && !rewritten.swap(true, Ordering::SeqCst);
            first.then(|| br#"{"data":null}"#.to_vec())
        })
    };
    let proxy = Proxy::start(rig.sim.addr(), rewrite);
    point_config_at(&rig, &proxy.url());
    let (mut engine, journal, mut cancel) = rig.engine();
    let desired = rig.desired();
    let first = pass(&mut engine, &desired);
    let second = pass(&mut engine, &desired);
    assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 0));
    engine.shutdown(Instant::now(), || cancel.cancel());
    journal.close().unwrap();
    drop(proxy);
    assert!(running(&rig.sim, 101));
    // The node saw a start arrive while a start task of 101 ran.
    assert_audit_clean(&rig.sim);
    assert_eq!(
        mutations_of(&rig.sim, 101),
        ["POST start"],
        "a second start while the first task ran: {first:?}\n{second:?}"
    );
}

/// The UPID in a power call's answer with one field replaced: `(index, value)`, the
/// index counted from the `UPID` prefix (1 node, 5 task type, 6 id).
fn with_field(upid: &str, index: usize, value: &str) -> String {
    let mut fields: Vec<&str> = upid.split(':').collect();
    fields[index] = value;
    fields.join(":")
}

/// A power call answered with a well-formed UPID that is not of the task the call
/// starts (another node's, another guest's, or another type's) is not journaled, not
/// polled, and not taken as the op's task: the op stays in flight with its outcome
/// unknown, the guest is held (no second start while the real task runs), and once the
/// real task has ended the node's task list explains the op.
#[test]
fn a_power_call_answered_with_another_task_is_neither_journaled_nor_waited_on() {
    for (what, index, value) in [
        ("another node", 1, "pve2"),
        ("another task type", 5, "vzstop"),
        ("another guest", 6, "102"),
    ] {
        let opts = SimOptions {
            task_duration: Duration::from_millis(1500),
            ..fast_sim()
        };
        let rig = Rig::new(
            "review-wrong-upid",
            opts,
            vec![guest(101, false), guest(102, false)],
            r#"{"guests": [{"vmid": 101, "state": "running"}]}"#,
            serde_json::json!({}),
        );
        let swapped: Arc<Mutex<Option<String>>> = Arc::default();
        let rewrite: Arc<Rewrite> = {
            let swapped = swapped.clone();
            Arc::new(move |method, path, body| {
                if method != "POST" || !path.ends_with("/status/start") {
                    return None;
                }
                let mut swapped = swapped.lock().unwrap();
                if swapped.is_some() {
                    return None;
                }
                let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
                let bad = with_field(answer["data"].as_str()?, index, value);
                *swapped = Some(bad.clone());
                Some(serde_json::json!({ "data": bad }).to_string().into_bytes())
            })
        };
        let proxy = Proxy::start(rig.sim.addr(), rewrite);
        point_config_at(&rig, &proxy.url());
        let (mut engine, journal, mut cancel) = rig.engine();
        let desired = rig.desired();
        let first = pass(&mut engine, &desired);
        // The real task still runs: the guest is held.
        let second = pass(&mut engine, &desired);
        assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 0));
        // The task has ended: the node's task list explains the op.
        let third = pass(&mut engine, &desired);
        let left = journal.in_flight();
        engine.shutdown(Instant::now(), || cancel.cancel());
        journal.close().unwrap();
        drop(proxy);
        let bad = swapped
            .lock()
            .unwrap()
            .clone()
            .expect("the proxy swapped the start's UPID");
        assert_eq!(first.in_flight, 1, "{what}: {first:?}");
        assert!(running(&rig.sim, 101), "{what}");
        assert_audit_clean(&rig.sim);
        assert_eq!(
            mutations_of(&rig.sim, 101),
            ["POST start"],
            "{what}: a second start\n{first:?}\n{second:?}\n{third:?}"
        );
        assert!(mutations_of(&rig.sim, 102).is_empty(), "{what}");
        // The bad UPID was never polled, nor any task status of another node read.
        let polled: Vec<String> = rig
            .sim
            .requests()
            .into_iter()
            .filter(|r| r.path.contains("/tasks/") && r.path.ends_with("/status"))
            .map(|r| r.path)
            .collect();
        assert!(
            polled
                .iter()
                .all(|p| !p.contains(&bad) && p.starts_with("/nodes/pve1/")),
            "{what}: polled {polled:?}"
        );
        // Nor journaled; the op ended by the real task, which the journal names.
        let records = read_records(&file_in(&rig.state_dir())).unwrap();
        let upids: Vec<String> = records
            .iter()
            .filter_map(|r| r.upid.as_ref().map(|u| u.to_string()))
            .collect();
        assert!(!upids.contains(&bad), "{what}: journaled {upids:?}");
        assert!(
            upids.iter().any(|u| u.contains(":vzstart:101:")),
            "{what}: the real task is not in the journal: {upids:?}"
        );
        assert!(
            left.is_empty(),
            "{what}: still in flight: {left:?}\n{third:?}"
        );
    }
}

/// Review D6: a guest listed with a status the agent does not know was taken as
/// stopped, and a desired running guest was started although it ran. PVE lists guests
/// as `running` or `stopped` only; anything else leaves the guest's power unknown: it
/// is skipped (`status_unknown`) and gets no request beyond the list. (A proxy
/// rewrites the status in the node's list.)
#[test]
fn a_guest_listed_with_an_unknown_status_is_not_started() {
    let rig = Rig::new(
        "review-unknown-status",
        fast_sim(),
        vec![guest(101, true)],
        r#"{"guests": [{"vmid": 101, "state": "running"}]}"#,
        serde_json::json!({}),
    );
    let rewrite: Arc<Rewrite> = Arc::new(|method, path, body| {
        if method != "GET" || !path.ends_with("/nodes/pve1/lxc") {
            return None;
        }
        let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
        for g in v["data"].as_array_mut()? {
            g["status"] = "unknown".into();
        }
        Some(v.to_string().into_bytes())
    });
    let proxy = Proxy::start(rig.sim.addr(), rewrite);
    point_config_at(&rig, &proxy.url());
    let (mut engine, journal, mut cancel) = rig.engine();
    let report = pass(&mut engine, &rig.desired());
    engine.shutdown(Instant::now(), || cancel.cancel());
    journal.close().unwrap();
    drop(proxy);
    assert_eq!(
        mutations_of(&rig.sim, 101),
        Vec::<String>::new(),
        "a running guest was started: {report:?}"
    );
    let classes: Vec<&str> = report.skipped.iter().map(|s| s.class.as_str()).collect();
    assert_eq!(classes, ["status_unknown"], "{report:?}");
    let config_reads = rig
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.contains("/lxc/101/"))
        .count();
    assert_eq!(config_reads, 0, "no request for 101 beyond the list");
}
