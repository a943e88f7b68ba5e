//! Three agents, one desired state: each acts only on the guests its node holds, all
//! converge, and a guest that migrates while its start waits at the node is started
//! once, by its new node's agent.

use super::*;
use felhom_agent::sim::{Effect, FaultRule, Faults, Match};

/// Guests on every node, some to start, stop or reconfigure, some in sync, one missing.
const DESIRED: &str = r#"{"guests": [
    {"vmid": 101, "state": "running"},
    {"vmid": 102, "state": "running", "memory": 1024},
    {"vmid": 103, "state": "stopped"},
    {"vmid": 201, "state": "running", "cores": 2},
    {"vmid": 202, "state": "stopped"},
    {"vmid": 203, "state": "running"},
    {"vmid": 301, "type": "qemu", "state": "running", "memory": 4096},
    {"vmid": 302, "state": "stopped"},
    {"vmid": 303, "state": "stopped"},
    {"vmid": 999, "state": "running"}]}"#;

fn spread() -> Vec<SimGuest> {
    vec![
        ct(101, "pve1", false),
        ct(102, "pve1", true),
        ct(103, "pve1", true),
        ct(201, "pve2", false),
        ct(202, "pve2", true),
        ct(203, "pve2", true),
        SimGuest::vm(301, "pve3"),
        ct(302, "pve3", false),
        ct(303, "pve3", true),
    ]
}

#[test]
fn every_guest_is_acted_on_only_by_its_owners_agent_and_all_converge() {
    let c = Cluster::new(
        "cluster-owner",
        three_nodes(),
        spread(),
        DESIRED,
        serde_json::json!({}),
    );
    let desired = c.desired();
    let mut agents = c.agents();
    let reports = passes(&mut agents, &desired);

    let applied: Vec<usize> = reports.iter().map(|r| r.applied).collect();
    assert_eq!(applied, [3, 3, 3], "{reports:#?}");
    assert!(reports.iter().all(|r| r.failed == 0 && r.moved == 0));
    // Each agent leaves the others' guests to them, and finds 999 nowhere.
    let elsewhere = |own: u32| -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = [101, 102, 103, 201, 202, 203, 301, 302, 303]
            .into_iter()
            .filter(|vmid| vmid / 100 != own)
            .map(|vmid| (vmid, "elsewhere".to_string()))
            .collect();
        v.push((999, "missing".to_string()));
        v
    };
    for (own, report) in [1, 2, 3].into_iter().zip(&reports) {
        assert_eq!(skips(report), elsewhere(own), "pve{own}");
    }

    let expected: [(u32, &[&str]); 10] = [
        (101, &["POST /nodes/pve1/lxc/101/status/start"]),
        (102, &["PUT /nodes/pve1/lxc/102/config"]),
        (103, &["POST /nodes/pve1/lxc/103/status/shutdown"]),
        (
            201,
            &[
                "PUT /nodes/pve2/lxc/201/config",
                "POST /nodes/pve2/lxc/201/status/start",
            ],
        ),
        (202, &["POST /nodes/pve2/lxc/202/status/shutdown"]),
        (203, &[]),
        (
            301,
            &[
                "PUT /nodes/pve3/qemu/301/config",
                "POST /nodes/pve3/qemu/301/status/start",
            ],
        ),
        (302, &[]),
        (303, &["POST /nodes/pve3/lxc/303/status/shutdown"]),
        (999, &[]),
    ];
    for (vmid, want) in expected {
        assert_eq!(mutations_for(&c.sim, vmid), want, "guest {vmid}");
    }
    // Not even a read of a guest went to a node other than its own.
    for r in c.sim.requests() {
        if let Some(vmid) = r.vmid {
            assert_eq!(r.node, Some(c.home(vmid)), "{} {}", r.method, r.path);
        }
    }
    let up: Vec<u32> = c
        .sim
        .guests()
        .iter()
        .filter(|g| g.status == PowerState::Running)
        .map(|g| g.vmid)
        .collect();
    assert_eq!(up, [101, 102, 201, 203, 301]);
    assert_eq!(c.sim.guest(102).unwrap().memory, Some(1024));
    assert_eq!(c.sim.guest(201).unwrap().cores, Some(2));
    assert_eq!(c.sim.guest(301).unwrap().memory, Some(4096));

    // Converged: the next round sends nothing anywhere.
    let mutations = c.sim.mutations().len();
    for r in passes(&mut agents, &desired) {
        assert_eq!((r.planned, r.failed), (0, 0), "{r:?}");
    }
    assert_eq!(c.sim.mutations().len(), mutations);
    for a in agents {
        assert!(a.journal.in_flight().is_empty(), "{}", a.node);
        a.stop();
    }
}

#[test]
fn a_guest_that_migrates_while_its_start_waits_is_started_once_by_its_new_node() {
    let c = Cluster::new(
        "cluster-migrate",
        three_nodes(),
        vec![
            ct(101, "pve1", false),
            ct(102, "pve1", true),
            ct(201, "pve2", true),
        ],
        r#"{"guests": [{"vmid": 101, "state": "running"},
                       {"vmid": 102, "state": "running"},
                       {"vmid": 201, "state": "running"}]}"#,
        serde_json::json!({}),
    );
    let desired = c.desired();
    let mut agents = c.agents();
    // pve1's start of 101 waits at the node while 101 migrates to pve2.
    c.sim.set_faults(Faults::rule(FaultRule::new(
        Match::post("status/start").vmid(101),
        Effect::Delay(Duration::from_millis(400)),
    )));
    let (_plan, done) = agents[0].engine.start_pass(&desired);
    assert!(done.is_none(), "the pass waits for its start");
    assert!(c
        .sim
        .wait_until(Duration::from_secs(10), |s| s.max_concurrent_mutations()
            == 1));
    c.sim.update_guest(101, |g| g.node = "pve2".into());
    let result = agents[0]
        .engine
        .results()
        .recv_timeout(Duration::from_secs(10))
        .expect("pve1's start ends");
    let report = agents[0].engine.on_result(result).expect("the pass ends");
    assert_eq!(
        (
            report.moved,
            report.failed,
            report.in_flight,
            report.applied
        ),
        (1, 0, 0, 0),
        "{report:?}"
    );
    assert!(agents[0].journal.in_flight().is_empty());
    assert!(!running(&c.sim, 101));

    // Every agent's next pass: pve2's starts it, the others leave it alone.
    c.sim.set_faults(Faults::default());
    let reports = passes(&mut agents, &desired);
    assert_eq!(reports[1].applied, 1, "{:?}", reports[1]);
    assert_eq!(
        skips(&reports[0]),
        [
            (101, "elsewhere".to_string()),
            (201, "elsewhere".to_string())
        ]
    );
    assert!(running(&c.sim, 101));
    assert_eq!(
        mutations_for(&c.sim, 101),
        [
            "POST /nodes/pve1/lxc/101/status/start",
            "POST /nodes/pve2/lxc/101/status/start",
        ]
    );
    // The first was refused: the guest was not on pve1 any more. One task ran.
    let first = &c.sim.mutations()[0];
    assert_eq!((first.status, &first.task), (500, &None), "{first:?}");
    assert_eq!(c.sim.tasks_started(101).len(), 1);
    // And then nothing more.
    for r in passes(&mut agents, &desired) {
        assert_eq!(r.planned, 0, "{r:?}");
    }
    assert_eq!(c.sim.mutations().len(), 2);
    for a in agents {
        assert!(a.journal.in_flight().is_empty(), "{}", a.node);
        a.stop();
    }
}
