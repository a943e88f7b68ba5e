//! `felhom-agent plan --cluster`, the real binary, run from one node: every node's plan
//! through the API's proxying, the guests on no node, the guests named twice. Asserted
//! against the simulated cluster's state, and read-only.

use super::*;
use felhom_agent::sim::{BulkTask, Effect, FaultRule, Faults, Match, SimOptions};

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// One guest in every state `plan` tells apart, spread over the nodes.
fn cluster(tag: &str) -> Cluster {
    let mut web = ct(101, "pve1", false);
    web.hostname = Some("web".into());
    let mut held = ct(102, "pve1", false);
    held.tags = Some("felhom-hold".into());
    let desired = r#"{"guests": [
        {"vmid": 101, "name": "web", "state": "running"},
        {"vmid": 102, "state": "running"},
        {"vmid": 201, "state": "stopped"},
        {"vmid": 202, "state": "running"},
        {"vmid": 205, "name": "WEB", "state": "running"},
        {"vmid": 301, "state": "running", "cores": 2},
        {"vmid": 999, "state": "running"}]}"#;
    Cluster::new(
        tag,
        three_nodes(),
        vec![
            web,
            held,
            ct(201, "pve2", true).ha("started"),
            ct(202, "pve2", true),
            ct(301, "pve3", false),
        ],
        desired,
        serde_json::json!({}),
    )
}

#[test]
fn plan_cluster_shows_every_nodes_plan_the_missing_and_the_named_twice() {
    let c = cluster("cluster-plan");
    // pve3 shuts down: its start waits, its config change does not.
    let stopall = c
        .sim
        .run_bulk_task("pve3", BulkTask::StopAll, Duration::from_secs(60));
    let text = stdout(&c.bin("pve2", &["plan", "--cluster"]));
    assert_eq!(
        text,
        format!(
            "\
pve1
  101 web  state stopped -> running
  102 ct102  skipped: held by tag \"felhom-hold\": remove the tag to hand it back
pve2 (this node)
  201 ct201  skipped: ha-managed (ha state started): ha-manager owns it
  in sync: 202
pve3
  301 ct301  cores 1 -> 2
  301 ct301  skipped: power action waits: the node runs stopall ({stopall})
missing: on no node of the cluster
  205 WEB  (named so: 101 on pve1)
  999 -
named twice
  name \"web\": desired for 101 and 205, carried by 101 on pve1
3 nodes, 3 read; 2 missing, 1 named twice; other nodes' journals are not read
"
        )
    );

    // What it cost: the two cluster-wide lists, then per node what `plan` there costs:
    // the cluster's list, the node's lists (both kinds, as 205 and 999 have no type),
    // the active tasks where a power action may follow, the config of each guest the
    // plan could act on, and the pending list of one that drifts.
    let asked: Vec<String> = c
        .sim
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(r.method, "GET");
            match r.params.get("type").or(r.params.get("source")) {
                Some(p) => format!("{}?{p}", r.path),
                None => r.path.clone(),
            }
        })
        .collect();
    assert_eq!(
        asked,
        [
            "/cluster/resources?node",
            "/cluster/resources?vm",
            "/cluster/resources?vm",
            "/nodes/pve1/lxc",
            "/nodes/pve1/qemu",
            "/nodes/pve1/tasks?active",
            "/nodes/pve1/lxc/101/config",
            "/cluster/resources?vm",
            "/nodes/pve2/lxc",
            "/nodes/pve2/qemu",
            "/nodes/pve2/lxc/202/config",
            "/cluster/resources?vm",
            "/nodes/pve3/lxc",
            "/nodes/pve3/qemu",
            "/nodes/pve3/tasks?active",
            "/nodes/pve3/lxc/301/config",
            "/nodes/pve3/lxc/301/pending",
        ]
    );

    let v: serde_json::Value =
        serde_json::from_str(&stdout(&c.bin("pve2", &["plan", "--cluster", "--json"]))).unwrap();
    let nodes = v["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(names, NODES);
    // Every desired guest on a node is in that node's `guests`, as the cluster has it.
    for n in nodes {
        let on: Vec<u32> = n["guests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_u64().unwrap() as u32)
            .collect();
        let want: Vec<u32> = c
            .sim
            .guests()
            .iter()
            .filter(|g| g.node == n["node"].as_str().unwrap())
            .map(|g| g.vmid)
            .collect();
        assert_eq!(on, want, "{n}");
        assert_eq!(n["status"], "online");
        assert_eq!(n["local"], n["node"] == "pve2");
    }
    let pve1 = &nodes[0]["plan"];
    assert_eq!(pve1["actions"][0]["vmid"], 101);
    assert_eq!(pve1["actions"][0]["kind"], "start");
    assert_eq!(pve1["skipped"][0]["vmid"], 102);
    assert_eq!(nodes[1]["in_sync"], serde_json::json!([202]));
    assert_eq!(nodes[1]["plan"]["actions"], serde_json::json!([]));
    let pve3 = &nodes[2]["plan"];
    assert_eq!(pve3["actions"][0]["kind"], "set_config");
    assert_eq!(pve3["actions"][0]["params"]["cores"], "2");
    assert!(pve3["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains(&stopall));
    assert_eq!(
        v["missing"],
        serde_json::json!([
            {"vmid": 205, "name": "WEB", "named": [{"vmid": 101, "node": "pve1"}]},
            {"vmid": 999, "name": null, "named": []},
        ])
    );
    assert_eq!(
        v["named_twice"],
        serde_json::json!([{"name": "web", "entries": [101, 205],
                            "guests": [{"vmid": 101, "node": "pve1"}]}])
    );

    // Read-only, and through this node's API only: nothing was changed anywhere.
    assert!(c.sim.mutations().is_empty());
    // The held guest and the HA-managed one were not read beyond the lists.
    assert_eq!(requests_for(&c.sim, 102), Vec::<String>::new());
    assert_eq!(requests_for(&c.sim, 201), Vec::<String>::new());
}

#[test]
fn a_guest_that_migrates_during_the_read_is_named_twice_and_unread_nodes_say_why() {
    let c = Cluster::new(
        "cluster-plan-twice",
        SimOptions {
            nodes: ["pve1", "pve2", "pve3", "pve4"].map(String::from).to_vec(),
            ..three_nodes()
        },
        vec![
            ct(101, "pve1", true),
            ct(102, "pve1", true),
            ct(201, "pve2", true),
            ct(301, "pve3", true),
            ct(401, "pve4", true),
        ],
        r#"{"guests": [{"vmid": 101, "state": "running"}, {"vmid": 102, "state": "running"},
                       {"vmid": 201, "state": "running"}, {"vmid": 301, "state": "running"},
                       {"vmid": 401, "state": "running"}]}"#,
        serde_json::json!({}),
    );
    // pve3 is down; pve4 answers its list with an error; pve2's list is slow, and 102
    // migrates from pve1 to pve2 after pve1 was read and before pve2's list is made.
    c.sim.set_node_online("pve3", false);
    c.sim.set_faults(
        Faults::rule(FaultRule::new(
            Match::get("/nodes/pve2/lxc"),
            Effect::Delay(Duration::from_millis(800)),
        ))
        .with(FaultRule::new(
            Match::get("/nodes/pve4/lxc"),
            Effect::StatusBefore(500),
        )),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
        .args(["plan", "--cluster", "--config"])
        .arg(c.config("pve1"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    // Two cluster-wide reads, then pve1's, then pve2's own: pve1's list is done.
    assert!(c.sim.wait_until(Duration::from_secs(20), |s| {
        s.requests()
            .iter()
            .filter(|r| r.path == "/cluster/resources")
            .count()
            >= 4
    }));
    c.sim.update_guest(102, |g| g.node = "pve2".into());
    let text = stdout(&child.wait_with_output().expect("binary ends"));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "pve1 (this node)",
            "  in sync: 101, 102",
            "pve2",
            "  in sync: 102, 201",
            "pve3: offline: not read (desired guests there: 301)",
            "pve4: not read: http 500: simulated internal server error (desired guests \
             there: 401)",
            "named twice",
            "  vmid 102: listed by pve1 and pve2",
            "4 nodes, 2 read; 0 missing, 1 named twice; other nodes' journals are not read",
        ],
        "{text}"
    );
    // Nothing was asked of the node that is down.
    assert!(c
        .sim
        .requests()
        .iter()
        .all(|r| r.node.as_deref() != Some("pve3")));
}

#[test]
fn this_nodes_ops_in_flight_hold_their_guests_other_nodes_journals_are_not_read() {
    let c = Cluster::new(
        "cluster-plan-journal",
        three_nodes(),
        vec![ct(101, "pve1", false), ct(201, "pve2", true)],
        r#"{"guests": [{"vmid": 101, "state": "running"}, {"vmid": 201, "state": "running"}]}"#,
        serde_json::json!({}),
    );
    // pve1's agent starts 101 and is stopped while the task still runs: the op stays in
    // flight in pve1's journal.
    c.sim.set_faults(Faults {
        hang_tasks: [101].into(),
        ..Faults::default()
    });
    let mut agent = c.agent("pve1");
    let (_plan, done) = agent.engine.start_pass(&c.desired());
    assert!(done.is_none());
    assert!(c
        .sim
        .wait_until(Duration::from_secs(10), |s| s.running_tasks() == 1));
    agent.stop();
    let upid = c.sim.tasks_started(101).remove(0);

    let from_pve1 = stdout(&c.bin("pve1", &["plan", "--cluster"]));
    assert!(
        from_pve1.starts_with(&format!(
            "pve1 (this node)\n  101 ct101  skipped: in flight: task {upid} still running\n"
        )),
        "{from_pve1}"
    );
    // From pve2, pve1's journal is out of sight: 101 shows what a pass would do.
    let from_pve2 = stdout(&c.bin("pve2", &["plan", "--cluster"]));
    assert!(
        from_pve2.starts_with("pve1\n  101 ct101  state stopped -> running\npve2 (this node)\n"),
        "{from_pve2}"
    );
    assert_eq!(c.sim.mutations().len(), 1, "only the agent's start");
    c.sim.set_faults(Faults::default());
}
