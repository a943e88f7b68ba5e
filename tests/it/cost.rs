//! What a pass costs, in counts the node and the kernel can see: requests for a pass
//! with nothing to do, config reads skipped for guests the plan cannot act on, and the
//! agent's live threads while many guests wait for a worker. Counts, not timings.

use super::agent::{poll_until, Agent, SIGTERM};
use super::rig::{fast_sim, guest, pass, Rig};
use felhom_agent::sim::{PowerState, SimOptions};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// `n` managed guests in sync for state, memory, swap and tags, plus `n` unmanaged.
fn synced_fleet(n: u32) -> (Vec<felhom_agent::sim::SimGuest>, String) {
    let mut guests = Vec::new();
    let mut desired = Vec::new();
    for i in 0..n {
        let vmid = 1000 + i;
        let mut g = guest(vmid, i % 2 == 0);
        g.tags = Some("prod".into());
        guests.push(g);
        guests.push(guest(5000 + i, i % 3 == 0));
        desired.push(serde_json::json!({
            "vmid": vmid,
            "state": if i % 2 == 0 { "running" } else { "stopped" },
            "memory": 512, "swap": 512, "tags": ["prod"]
        }));
    }
    (guests, serde_json::json!({ "guests": desired }).to_string())
}

#[test]
fn a_pass_with_nothing_to_do_costs_the_two_lists() {
    let (guests, desired) = synced_fleet(1000);
    let rig = Rig::new(
        "cost-nodrift",
        fast_sim(),
        guests,
        &desired,
        serde_json::json!({}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let desired = rig.desired();
    // The first pass reads every managed config (the periodic full read).
    let report = pass(&mut engine, &desired);
    assert_eq!(
        (report.planned, report.in_sync.len()),
        (0, 1000),
        "{report:?}"
    );
    assert_eq!(rig.sim.requests().len(), 2 + 1000);
    // Later passes trust the list for what it shows.
    for _ in 0..3 {
        rig.sim.clear_requests();
        let report = pass(&mut engine, &desired);
        assert_eq!((report.planned, report.in_sync.len()), (0, 1000));
        let paths: Vec<String> = rig.sim.requests().iter().map(|r| r.path.clone()).collect();
        assert_eq!(
            paths,
            ["/cluster/resources", "/nodes/pve1/lxc"],
            "{paths:?}"
        );
    }
    // A difference the list shows costs that guest's config read, and is repaired.
    rig.sim.update_guest(1001, |g| g.memory = Some(1024));
    rig.sim.clear_requests();
    let report = pass(&mut engine, &desired);
    assert_eq!(report.applied, 1, "{report:?}");
    let reads = rig
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/config"))
        .count();
    assert_eq!(reads, 1);
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

#[test]
fn guests_the_plan_cannot_act_on_get_no_config_read() {
    let mut locked = guest(101, false);
    locked.lock = Some("backup".into());
    let mut template = guest(102, false);
    template.template = true;
    let mut ha = guest(103, false);
    ha.ha = Some("started".into());
    let desired = r#"{"guests": [
        {"vmid": 101, "state": "running", "description": "x"},
        {"vmid": 102, "state": "running", "description": "x"},
        {"vmid": 103, "state": "running", "description": "x"},
        {"vmid": 104, "state": "running", "description": "x"}]}"#;
    let rig = Rig::new(
        "cost-skip",
        fast_sim(),
        vec![locked, template, ha, guest(104, true)],
        desired,
        serde_json::json!({}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let report = pass(&mut engine, &rig.desired());
    let read: Vec<String> = rig
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/config") || r.path.ends_with("/pending"))
        .map(|r| r.path.clone())
        .collect();
    // Only 104, whose description is not in the list, is read (and then updated).
    assert!(read.iter().all(|p| p.contains("/104/")), "{read:?}");
    assert_eq!(report.applied, 1, "{report:?}");
    let classes: Vec<&str> = report.skipped.iter().map(|s| s.class.as_str()).collect();
    assert_eq!(classes, ["locked", "template", "ha"]);
    engine.shutdown(std::time::Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

/// Live threads of a process, from /proc.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

#[test]
fn guests_waiting_for_a_worker_cost_no_thread() {
    let n = 300;
    let guests: Vec<_> = (0..n).map(|i| guest(2000 + i, false)).collect();
    let desired = serde_json::json!({"guests": (0..n)
        .map(|i| serde_json::json!({"vmid": 2000 + i, "state": "running"}))
        .collect::<Vec<_>>()});
    let opts = SimOptions {
        task_duration: Duration::from_millis(20),
        ..fast_sim()
    };
    let rig = Rig::new(
        "cost-threads",
        opts,
        guests,
        &desired.to_string(),
        serde_json::json!({"max_parallel": 4}),
    );
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    // Sample the thread count while the fleet is being started.
    let mut most = 0;
    assert!(poll_until(T, || {
        most = most.max(threads(agent.pid));
        rig.sim
            .guests()
            .iter()
            .all(|g| g.status == PowerState::Running)
    }));
    // main, signals, journal, observer, up to 4 lane workers, minreq's helper per
    // request in flight (at most one per worker and one for the observer), and up to
    // three config readers.
    assert!(most <= 4 + 4 + 5 + 3, "{most} threads");
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
}
