//! The cluster's nodes: their own `startall` and `stopall` tasks (`Sim::run_bulk_task`),
//! listed while they run as PVE lists them, on their own node only, then finished; and a
//! node that is down (`Sim::set_node_online`).

use super::*;
use felhom_agent::sim::BulkTask;

#[test]
fn a_bulk_task_shows_in_the_active_list_of_its_node_then_ends() {
    let sim = start_with(|o| o.nodes = vec!["pve1".into(), "pve2".into()]);
    // Long enough to look at the running task even on a busy machine.
    let upid = sim.run_bulk_task("pve2", BulkTask::StopAll, Duration::from_millis(600));
    let f: Vec<&str> = upid.split(':').collect();
    assert_eq!(
        (f[0], f[1], f[5], f[6], f[7], f[8]),
        ("UPID", "pve2", "stopall", "", "root@pam", ""),
        "{upid}"
    );

    let active = get(&sim, "/nodes/pve2/tasks?source=active").data();
    let list = active.as_array().unwrap();
    assert_eq!(list.len(), 1, "{active}");
    let t = &list[0];
    assert_eq!(t["upid"], upid.as_str());
    assert_eq!(t["type"], "stopall");
    assert_eq!(t["id"], "");
    assert_eq!(t["user"], "root@pam");
    assert_eq!(t["node"], "pve2");
    assert_eq!(t["status"], "RUNNING");
    assert!(t.get("endtime").is_none(), "{t}");
    // Not another node's task, not finished, and no guest's.
    let other = get(&sim, "/nodes/pve1/tasks?source=active").data();
    assert_eq!(other, serde_json::json!([]));
    let archive = get(&sim, "/nodes/pve2/tasks").data();
    assert_eq!(archive, serde_json::json!([]));
    let by_guest = get(&sim, "/nodes/pve2/tasks?source=all&vmid=101").data();
    assert_eq!(by_guest, serde_json::json!([]));
    let status = task_status(&sim, &upid);
    assert_eq!(status["status"], "running");
    assert_eq!(status["user"], "root@pam");
    assert!(sim.task_ended_at(&upid).is_none());

    let status = finished(&sim, &upid);
    assert_eq!(
        (&status["status"], &status["exitstatus"]),
        (&"stopped".into(), &"OK".into())
    );
    assert!(sim.task_ended_at(&upid).is_some());
    let active = get(&sim, "/nodes/pve2/tasks?source=active").data();
    assert_eq!(active, serde_json::json!([]));
    let archive = get(&sim, "/nodes/pve2/tasks?typefilter=stopall").data();
    assert_eq!(archive[0]["upid"], upid.as_str());
    assert_eq!(archive[0]["status"], "OK");
    assert!(archive[0]["endtime"].as_i64().is_some());
}

#[test]
fn a_startall_changes_no_guest_and_each_kind_has_its_type() {
    let sim = start(vec![guest(101, false), guest(102, true)]);
    let upid = sim.run_bulk_task("pve1", BulkTask::StartAll, Duration::from_millis(50));
    assert_eq!(upid.split(':').nth(5), Some("startall"));
    let status = finished(&sim, &upid);
    assert_eq!(status["exitstatus"], "OK");
    let running: Vec<bool> = sim
        .guests()
        .iter()
        .map(|g| g.status == felhom_agent::sim::PowerState::Running)
        .collect();
    assert_eq!(running, [false, true]);
    assert!(sim.tasks_started(101).is_empty());
    assert_eq!(BulkTask::StopAll.type_name(), "stopall");
}

#[test]
fn a_node_that_is_down_is_listed_offline_and_its_calls_fail_as_pveproxy_fails_them() {
    let sim = start_with(|o| o.nodes = vec!["pve1".into(), "pve2".into()]);
    let mut g = guest(201, true);
    g.node = "pve2".into();
    sim.add_guest(g);
    sim.set_node_online("pve2", false);
    let nodes = get(&sim, "/cluster/resources?type=node").data();
    let status: Vec<(&str, &str)> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node"].as_str().unwrap(), n["status"].as_str().unwrap()))
        .collect();
    assert_eq!(status, [("pve1", "online"), ("pve2", "offline")]);
    // Its guests are still in the cluster's list; calls for the node are not answered.
    let vms = get(&sim, "/cluster/resources?type=vm").data();
    assert_eq!(vms[0]["node"], "pve2");
    let r = get(&sim, "/nodes/pve2/lxc");
    assert_eq!(
        (r.status, r.reason.as_str(), r.body.len()),
        (595, "No route to host", 0)
    );
    let r = post(&sim, "/nodes/pve2/lxc/201/status/shutdown", "");
    assert_eq!(r.status, 595);
    assert!(
        !sim.mutations()[0].executed,
        "answered by the proxy, not carried out"
    );
    assert!(sim.guest(201).unwrap().status == felhom_agent::sim::PowerState::Running);
    assert_eq!(get(&sim, "/nodes/pve1/lxc").status, 200);
    sim.set_node_online("pve2", true);
    assert_eq!(get(&sim, "/nodes/pve2/lxc").data()[0]["vmid"], 201);
}
