//! The controls across the cluster: HA-managed guests (left to ha-manager, or driven
//! through HA requests with `ha_mode: "request"`), the hold tag, PVE's startup order,
//! and the node's own start-all and stop-all, each seen from the request log.

use super::*;
use felhom_agent::sim::BulkTask;

#[test]
fn ha_guests_are_untouched_by_default_and_driven_and_verified_on_request() {
    let desired = r#"{"guests": [
        {"vmid": 101, "state": "running", "memory": 1024},
        {"vmid": 201, "state": "stopped"},
        {"vmid": 301, "state": "running"}]}"#;
    // HA carries a request out well after its task has ended: a pass that returns
    // with the guest changed has waited for it.
    let opts = SimOptions {
        ha_apply_delay: Duration::from_millis(400),
        ..three_nodes()
    };
    let c = Cluster::new(
        "cluster-ha",
        opts,
        vec![
            ct(101, "pve1", false).ha("stopped"),
            ct(201, "pve2", true).ha("started"),
            ct(301, "pve3", false),
        ],
        desired,
        serde_json::json!({}),
    );
    let desired = c.desired();
    let mut agents = c.agents();
    let reports = passes(&mut agents, &desired);
    assert!(skips(&reports[0]).contains(&(101, "ha".to_string())));
    assert!(skips(&reports[1]).contains(&(201, "ha".to_string())));
    assert_eq!(reports[2].applied, 1, "{:?}", reports[2]);
    // Not a read, not an action: only the lists saw them.
    assert_eq!(requests_for(&c.sim, 101), Vec::<String>::new());
    assert_eq!(requests_for(&c.sim, 201), Vec::<String>::new());
    for a in agents {
        a.stop();
    }

    // The operator hands them to the agents: each owner files HA requests and counts
    // them done only once the guest has changed state.
    c.write_configs(serde_json::json!({"ha_mode": "request"}));
    let mut agents = c.agents();
    let reports = passes(&mut agents, &desired);
    assert_eq!(
        (reports[0].applied, reports[1].applied, reports[2].planned),
        (2, 1, 0),
        "{reports:#?}"
    );
    assert_eq!(
        mutations_for(&c.sim, 101),
        [
            "PUT /nodes/pve1/lxc/101/config",
            "POST /nodes/pve1/lxc/101/status/start",
        ]
    );
    assert_eq!(
        mutations_for(&c.sim, 201),
        ["POST /nodes/pve2/lxc/201/status/shutdown"]
    );
    let kind = |vmid| {
        let tasks = c.sim.tasks_started(vmid);
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        tasks[0].split(':').nth(5).unwrap().to_string()
    };
    assert_eq!((kind(101), kind(201)), ("hastart".into(), "hastop".into()));
    let g = c.sim.guest(101).unwrap();
    assert_eq!((running(&c.sim, 101), g.memory), (true, Some(1024)));
    assert!(!running(&c.sim, 201));
    assert_eq!(c.sim.guest(201).unwrap().ha.as_deref(), Some("stopped"));
    let mutations = c.sim.mutations().len();
    for r in passes(&mut agents, &desired) {
        assert_eq!(r.planned, 0, "{r:?}");
    }
    assert_eq!(c.sim.mutations().len(), mutations);
    for a in agents {
        a.stop();
    }
}

#[test]
fn a_held_guest_gets_no_request_beyond_the_lists_until_the_tag_goes() {
    let mut held = ct(201, "pve2", false);
    held.tags = Some("felhom-hold;web".into());
    let c = Cluster::new(
        "cluster-hold",
        three_nodes(),
        vec![held, ct(101, "pve1", true), ct(301, "pve3", true)],
        r#"{"guests": [{"vmid": 101, "state": "running"},
                       {"vmid": 201, "state": "running", "cores": 2, "tags": ["web"]},
                       {"vmid": 301, "state": "running"}]}"#,
        serde_json::json!({}),
    );
    let desired = c.desired();
    let mut agents = c.agents();
    for _ in 0..3 {
        let reports = passes(&mut agents, &desired);
        assert!(
            skips(&reports[1]).contains(&(201, "hold_tag".to_string())),
            "{:?}",
            reports[1]
        );
    }
    assert_eq!(requests_for(&c.sim, 201), Vec::<String>::new());
    assert!(c.sim.mutations().is_empty());

    // Taken off in the GUI: pve2's next pass converges it, and leaves the tag off.
    c.sim.update_guest(201, |g| g.tags = Some("web".into()));
    let reports = passes(&mut agents, &desired);
    assert_eq!(reports[1].applied, 2, "{:?}", reports[1]);
    assert_eq!(
        mutations_for(&c.sim, 201),
        [
            "PUT /nodes/pve2/lxc/201/config",
            "POST /nodes/pve2/lxc/201/status/start",
        ]
    );
    let g = c.sim.guest(201).unwrap();
    assert_eq!((g.cores, g.tags.as_deref()), (Some(2), Some("web")));
    assert!(running(&c.sim, 201));
    for a in agents {
        a.stop();
    }
}

#[test]
fn one_pass_starts_by_startup_order_with_the_up_delays_unordered_last() {
    let c = Cluster::new(
        "cluster-order",
        three_nodes(),
        vec![
            ct(204, "pve2", false),
            ct(203, "pve2", false),
            ct(202, "pve2", false).with_config("startup", "order=2,up=1"),
            ct(201, "pve2", false).with_config("startup", "order=1,up=1"),
        ],
        r#"{"guests": [{"vmid": 201, "state": "running"}, {"vmid": 202, "state": "running"},
                       {"vmid": 203, "state": "running"}, {"vmid": 204, "state": "running"}]}"#,
        serde_json::json!({}),
    );
    let desired = c.desired();
    let mut agent = c.agent("pve2");
    let report = agent.pass(&desired);
    assert_eq!(report.applied, 4, "{report:?}");
    let starts: Vec<RequestRecord> = c
        .sim
        .mutations()
        .into_iter()
        .filter(|r| r.path.ends_with("/status/start"))
        .collect();
    let order: Vec<Option<u32>> = starts.iter().map(|r| r.vmid).collect();
    assert_eq!(order[..2], [Some(201), Some(202)]);
    let at = |vmid: u32| starts.iter().find(|r| r.vmid == Some(vmid)).unwrap().at;
    let ended = |vmid: u32| {
        let r = starts.iter().find(|r| r.vmid == Some(vmid)).unwrap();
        c.sim
            .task_ended_at(r.task.as_deref().expect("a task"))
            .expect("its task ended")
    };
    let up = Duration::from_secs(1);
    // Each order begins once the one before has ended and its `up` has passed; not
    // much later (the slack is the agent's poll of the task).
    for (before, next) in [(201, 202), (202, 203), (202, 204)] {
        let gap = at(next).duration_since(ended(before));
        assert!(
            gap >= up && gap < up + Duration::from_millis(1500),
            "{next} started {gap:?} after {before} ended"
        );
    }
    // The two without an order go last, together.
    let apart = at(204).max(at(203)).duration_since(at(204).min(at(203)));
    assert!(apart < Duration::from_millis(500), "{apart:?}");
    assert!((201..=204).all(|v| running(&c.sim, v)));
    agent.stop();
}

#[test]
fn power_actions_wait_while_the_node_runs_its_own_startall_or_stopall() {
    let c = Cluster::new(
        "cluster-bulk",
        three_nodes(),
        vec![
            ct(101, "pve1", false),
            ct(201, "pve2", false),
            ct(301, "pve3", true),
        ],
        r#"{"guests": [{"vmid": 101, "state": "running"},
                       {"vmid": 201, "state": "running", "memory": 1024},
                       {"vmid": 301, "state": "stopped"}]}"#,
        serde_json::json!({}),
    );
    let desired = c.desired();
    let mut agents = c.agents();
    let run_for = Duration::from_millis(1500);
    let stopall = c.sim.run_bulk_task("pve2", BulkTask::StopAll, run_for);
    let startall = c.sim.run_bulk_task("pve3", BulkTask::StartAll, run_for);
    let reports = passes(&mut agents, &desired);
    assert!(
        c.sim.task_ended_at(&stopall).is_none() && c.sim.task_ended_at(&startall).is_none(),
        "the passes outlasted the bulk tasks: the test proves nothing"
    );
    // pve1 has none and goes on; pve2 writes the config but does not start; pve3 does
    // not stop.
    assert_eq!(reports[0].applied, 1, "{:?}", reports[0]);
    assert_eq!(
        skips(&reports[1]),
        [
            (101, "elsewhere".into()),
            (201, "bulk_task".into()),
            (301, "elsewhere".into())
        ]
    );
    assert!(
        reports[1].skipped[1].reason.contains(&stopall),
        "{:?}",
        reports[1].skipped[1]
    );
    assert!(skips(&reports[2]).contains(&(301, "bulk_task".to_string())));
    assert_eq!(
        mutations_for(&c.sim, 201),
        ["PUT /nodes/pve2/lxc/201/config"]
    );
    assert_eq!(mutations_for(&c.sim, 301), Vec::<String>::new());
    // They asked their own node's active tasks.
    for node in ["pve2", "pve3"] {
        let asked = c.sim.requests().iter().any(|r| {
            r.path == format!("/nodes/{node}/tasks")
                && r.params.get("source").map(String::as_str) == Some("active")
        });
        assert!(asked, "{node}");
    }

    assert!(c.sim.wait_until(Duration::from_secs(10), |s| {
        s.task_ended_at(&stopall).is_some() && s.task_ended_at(&startall).is_some()
    }));
    let reports = passes(&mut agents, &desired);
    assert_eq!((reports[1].applied, reports[2].applied), (1, 1));
    assert_eq!(
        mutations_for(&c.sim, 201),
        [
            "PUT /nodes/pve2/lxc/201/config",
            "POST /nodes/pve2/lxc/201/status/start",
        ]
    );
    assert_eq!(
        mutations_for(&c.sim, 301),
        ["POST /nodes/pve3/lxc/301/status/shutdown"]
    );
    // No power action reached a node while its bulk task ran.
    for r in c
        .sim
        .mutations()
        .iter()
        .filter(|r| r.path.contains("/status/"))
    {
        let bulk = match r.node.as_deref() {
            Some("pve2") => &stopall,
            Some("pve3") => &startall,
            _ => continue,
        };
        assert!(
            r.at >= c.sim.task_ended_at(bulk).unwrap(),
            "{} {}",
            r.method,
            r.path
        );
    }
    assert!(running(&c.sim, 201) && !running(&c.sim, 301));
    for a in agents {
        a.stop();
    }
}

#[test]
fn an_ha_request_whose_guest_ha_relocates_is_counted_moved_and_not_repeated() {
    let opts = SimOptions {
        ha_apply_delay: Duration::from_millis(600),
        ..three_nodes()
    };
    let c = Cluster::new(
        "cluster-ha-relocate",
        opts,
        vec![ct(101, "pve1", false).ha("stopped")],
        r#"{"guests": [{"vmid": 101, "state": "running"}]}"#,
        serde_json::json!({"ha_mode": "request"}),
    );
    let desired = c.desired();
    let mut agents = c.agents();
    // pve1 files the request; while it waits for the guest to start, HA moves the
    // guest to pve2 and starts it there.
    let (_plan, done) = agents[0].engine.start_pass(&desired);
    assert!(done.is_none(), "the pass waits for its request");
    // The request is filed (its task has ended) and not carried out yet.
    let filed = |s: &Sim| s.guest(101).unwrap().ha.as_deref() == Some("started");
    assert!(c.sim.wait_until(Duration::from_secs(10), filed));
    assert!(!running(&c.sim, 101));
    c.sim.update_guest(101, |g| g.node = "pve2".into());
    let result = agents[0]
        .engine
        .results()
        .recv_timeout(Duration::from_secs(10))
        .expect("pve1's request ends");
    let report = agents[0].engine.on_result(result).expect("the pass ends");
    assert_eq!(
        (report.moved, report.failed, report.in_flight),
        (1, 0, 0),
        "{report:?}"
    );
    assert!(agents[0].journal.in_flight().is_empty());
    assert!(c
        .sim
        .wait_until(Duration::from_secs(10), |_| running(&c.sim, 101)));
    // Nobody asks again: the guest is where HA put it, as desired.
    for r in passes(&mut agents, &desired) {
        assert_eq!(r.planned, 0, "{r:?}");
    }
    assert_eq!(
        mutations_for(&c.sim, 101),
        ["POST /nodes/pve1/lxc/101/status/start"]
    );
    for a in agents {
        a.stop();
    }
}
