//! A fourth independent adversarial review of the agent's first promise (one intent is
//! never sent to Proxmox twice; a guest never has two actions in flight; a garbage
//! answer never causes an action), after the request path became non-generic (a
//! decoding callback) and answers began to decode only straight from bytes.
//!
//! Each test here is one defect: it failed on main for that defect and no other reason
//! (the file:line references are main's as the review found it), and says how it was
//! fixed. The evidence is the
//! simulated node's own request log, task list and audit. Nothing waits with a sleep:
//! every wait is on a condition with a deadline.

use super::proxy::{Proxy, Rewrite};
use super::rig::{fast_sim, guest, mutations_of, pass, point_config_at, Rig};
use felhom_agent::sim::{SimGuest, SimOptions};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// Defect 1: a VM config update answered with the UPID of another guest's task is
/// journaled, waited on and taken as done, while the update's real `qmconfig` task
/// still runs; the next pass sends the same update again.
///
/// A power call's answer is checked against the call (node, guest, task type:
/// src/pve/client/power.rs:92-126, `power_task`), but a config update's is not:
/// `Client::mutate` (src/pve/client.rs:300-313) takes any parseable UPID through
/// `task_id` (src/pve/client.rs:318-331), and `ApiExecutor::run`
/// (src/engine/exec.rs:213-256) journals it as the op's task, polls it, and on its
/// `OK` journals the op `succeeded`. So an answer naming a task the call cannot have
/// started (here 102's finished `vzstart`, swapped in by a proxy) frees VM 201 while
/// its own `qmconfig` runs; the config is unchanged yet, the digest still matches, and
/// the next pass POSTs the same cores change: one intent sent twice, two config tasks of
/// one guest in flight. A garbage answer caused an action.
///
/// Fixed: a config update's UPID is checked as `power_task` checks a power call's (on
/// the node asked, its id the guest's vmid, its type `qmconfig`; the synchronous `PUT`s
/// start no task, so any UPID there is garbage); anything else is `ApiError::Decode`,
/// outcome unknown, so the op stays in flight until `crate::inflight` reads how it
/// ended (its digest) (`pve::client::task_id`).
#[test]
fn a_config_update_answered_with_another_guests_task_is_not_taken_as_done() {
    let opts = SimOptions {
        config_task_duration: Duration::from_millis(2500),
        ..fast_sim()
    };
    let mut vm = SimGuest::vm(201, "pve1").running();
    vm.other
        .insert("hotplug".into(), "network,disk,usb,cpu".into());
    vm.cores = Some(1);
    let rig = Rig::new(
        "review4-config-upid",
        opts,
        vec![guest(102, false), vm],
        r#"{"guests": [{"vmid": 102, "state": "running"}]}"#,
        serde_json::json!({}),
    );
    // 102's start answer is remembered; 201's config update is answered with it.
    let start_102: Arc<Mutex<Option<String>>> = Arc::default();
    let swapped: Arc<Mutex<bool>> = Arc::default();
    let rewrite: Arc<Rewrite> = {
        let (start_102, swapped) = (start_102.clone(), swapped.clone());
        Arc::new(move |method, path, body| {
            if method == "POST" && path.ends_with("/lxc/102/status/start") {
                let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
                *start_102.lock().unwrap() = answer["data"].as_str().map(String::from);
                return None;
            }
            if method != "POST" || !path.ends_with("/qemu/201/config") {
                return None;
            }
            let mut swapped = swapped.lock().unwrap();
            if *swapped {
                return None;
            }
            let other = start_102.lock().unwrap().clone()?;
            *swapped = true;
            Some(
                serde_json::json!({ "data": other })
                    .to_string()
                    .into_bytes(),
            )
        })
    };
    let proxy = Proxy::start(rig.sim.addr(), rewrite);
    point_config_at(&rig, &proxy.url());
    let (mut engine, journal, mut cancel) = rig.engine();
    // 102 starts; its task ends OK.
    let first = pass(&mut engine, &rig.desired());
    assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 0));
    assert!(start_102.lock().unwrap().is_some(), "{first:?}");
    rig.write_desired(
        r#"{"guests": [{"vmid": 102, "state": "running"},
                       {"vmid": 201, "type": "qemu", "state": "running", "cores": 2}]}"#,
    );
    let desired = rig.desired();
    let second = pass(&mut engine, &desired);
    // 201's own qmconfig task still runs (2.5 s): the guest must be held.
    let third = pass(&mut engine, &desired);
    assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 0));
    engine.shutdown(Instant::now(), || cancel.cancel());
    journal.close().unwrap();
    drop(proxy);
    assert!(
        *swapped.lock().unwrap(),
        "the proxy swapped the config answer"
    );
    assert_eq!(
        mutations_of(&rig.sim, 201),
        ["POST config"],
        "the cores update sent twice\n{second:?}\n{third:?}"
    );
    let audit = rig.sim.audit();
    assert!(audit.is_clean(), "{audit}");
}
