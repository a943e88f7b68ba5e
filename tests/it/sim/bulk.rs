//! The node's own `startall` and `stopall` tasks (`Sim::run_bulk_task`): listed while
//! they run as PVE lists them, on their own node only, then finished.

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
