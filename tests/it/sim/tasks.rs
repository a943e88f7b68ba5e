//! Power calls and their tasks: lifecycle, task status and list, sync errors, locks,
//! templates, HA, the shutdown lock and quorum.

use super::*;
use felhom_agent::sim::PowerState;

/// The fields of a UPID, read by hand here (not with either side's parser):
/// `UPID:node:pid:pstart:starttime:type:id:user:`, numbers in 8 upper-case hex digits.
struct Fields {
    node: String,
    pid: u64,
    starttime: i64,
    kind: String,
    id: String,
    user: String,
}

fn fields(upid: &str) -> Fields {
    let f: Vec<&str> = upid.split(':').collect();
    assert_eq!((f.len(), f[0], f[8]), (9, "UPID", ""), "{upid}");
    for hex in &f[2..5] {
        assert!(
            hex.len() == 8
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
            "{upid}"
        );
    }
    let num = |s: &str| u64::from_str_radix(s, 16).unwrap();
    Fields {
        node: f[1].into(),
        pid: num(f[2]),
        starttime: num(f[4]) as i64,
        kind: f[5].into(),
        id: f[6].into(),
        user: f[7].into(),
    }
}

#[test]
fn start_task_lifecycle_status_and_list() {
    let mut g = guest(101, false);
    g.other.insert("nameserver".into(), "1.1.1.1".into());
    g.pending.insert("nameserver".into(), "9.9.9.9".into());
    // Long enough to look at the running task even on a busy machine.
    let sim = start_with(|o| o.task_duration = Duration::from_millis(800));
    sim.add_guest(g);
    let upid = upid_of(&post(&sim, "/nodes/pve1/lxc/101/status/start", ""));
    let parsed = fields(&upid);
    assert_eq!(
        (
            parsed.node.as_str(),
            parsed.kind.as_str(),
            parsed.id.as_str()
        ),
        ("pve1", "vzstart", "101")
    );
    assert_eq!(parsed.user, "agent@pve!reconciler");
    // Right after the POST the task is running and the guest is not up yet.
    let s = task_status(&sim, &upid);
    assert_eq!(s["status"], "running");
    assert!(s.get("exitstatus").is_none());
    assert_eq!(s["user"], "agent@pve");
    assert_eq!(s["tokenid"], "reconciler");
    assert_eq!(s["type"], "vzstart");
    assert_eq!(s["id"], "101");
    assert_eq!(s["pid"], parsed.pid);
    assert_eq!(s["starttime"], parsed.starttime);
    assert_eq!(sim.guest(101).unwrap().status, PowerState::Stopped);
    let active = get(&sim, "/nodes/pve1/tasks?source=active").data();
    assert_eq!(active[0]["status"], "RUNNING");
    assert!(active[0].get("endtime").is_none());
    assert_eq!(
        get(&sim, "/nodes/pve1/tasks")
            .data()
            .as_array()
            .unwrap()
            .len(),
        0,
        "the default source is the archive: finished tasks"
    );

    let s = finished(&sim, &upid);
    assert_eq!(
        (s["status"].as_str(), s["exitstatus"].as_str()),
        (Some("stopped"), Some("OK"))
    );
    let g = sim.guest(101).unwrap();
    assert_eq!(g.status, PowerState::Running);
    assert_eq!(
        g.other["nameserver"], "9.9.9.9",
        "a start applies pending changes"
    );
    assert!(g.pending.is_empty());
    let list = get(&sim, "/nodes/pve1/tasks?vmid=101&typefilter=vzstart").json();
    assert_eq!(list["total"], 1);
    let t = &list["data"][0];
    assert_eq!(t["upid"], upid.as_str());
    assert_eq!(t["status"], "OK");
    assert!(t["endtime"].as_i64().unwrap() >= parsed.starttime);
    assert_eq!(t["user"], "agent@pve!reconciler");
    assert_eq!(sim.tasks_started(101), vec![upid]);
}

#[test]
fn stop_and_shutdown_tasks_stop_the_guest() {
    let sim = start(vec![guest(101, true), guest(102, true)]);
    let stop = upid_of(&post(&sim, "/nodes/pve1/lxc/101/status/stop", ""));
    let shut = upid_of(&post(
        &sim,
        "/nodes/pve1/lxc/102/status/shutdown",
        "timeout=30&forceStop=1",
    ));
    assert!(stop.contains(":vzstop:101:"));
    assert!(shut.contains(":vzshutdown:102:"));
    assert_eq!(finished(&sim, &stop)["exitstatus"], "OK");
    assert_eq!(finished(&sim, &shut)["exitstatus"], "OK");
    assert!(sim.guests().iter().all(|g| g.status == PowerState::Stopped));
    let list = get(&sim, "/nodes/pve1/tasks?source=all&limit=1").json();
    assert_eq!(list["total"], 2);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["upid"], shut.as_str(), "newest first");
    let older = get(&sim, "/nodes/pve1/tasks?source=all&start=1").json();
    assert_eq!(older["data"][0]["upid"], stop.as_str());
    let since = stop
        .split(':')
        .nth(4)
        .map(|h| i64::from_str_radix(h, 16).unwrap());
    let later = format!("/nodes/pve1/tasks?since={}", since.unwrap() + 3600);
    assert_eq!(get(&sim, &later).json()["total"], 0);
    let by_type = get(&sim, "/nodes/pve1/tasks?typefilter=vzstop").json();
    assert_eq!(by_type["total"], 1);
}

#[test]
fn a_shutdown_that_times_out_fails_unless_forced() {
    let sim = start_with(|o| o.shutdown_duration = Duration::from_secs(3));
    sim.add_guest(guest(101, true));
    sim.add_guest(guest(102, true));
    let gives_up = upid_of(&post(
        &sim,
        "/nodes/pve1/lxc/101/status/shutdown",
        "timeout=0",
    ));
    let forced = upid_of(&post(
        &sim,
        "/nodes/pve1/lxc/102/status/shutdown",
        "timeout=0&forceStop=1",
    ));
    assert_eq!(
        finished(&sim, &gives_up)["exitstatus"],
        "container did not stop"
    );
    assert_eq!(finished(&sim, &forced)["exitstatus"], "OK");
    assert_eq!(sim.guest(101).unwrap().status, PowerState::Running);
    assert_eq!(sim.guest(102).unwrap().status, PowerState::Stopped);
}

#[test]
fn already_running_and_not_running_are_sync_500s() {
    let sim = start(vec![guest(101, true), guest(102, false)]);
    // Sends intents the guests already meet, to see the node refuse them.
    sim.allow_violations();
    let r = post(&sim, "/nodes/pve1/lxc/101/status/start", "");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "CT 101 already running")
    );
    assert!(r.closes());
    for op in ["stop", "shutdown"] {
        let r = post(&sim, &format!("/nodes/pve1/lxc/102/status/{op}"), "");
        assert_eq!((r.status, r.reason.as_str()), (500, "CT 102 not running"));
        assert_eq!(r.json()["message"], "CT 102 not running\n");
    }
    assert_eq!(sim.running_tasks(), 0);
    assert!(sim.tasks_started(101).is_empty() && sim.tasks_started(102).is_empty());
}

#[test]
fn locks_and_templates_fail_inside_the_task() {
    let mut locked = guest(101, false);
    locked.lock = Some("backup".into());
    let mut mounted = guest(102, false);
    mounted.lock = Some("mounted".into());
    let mut template = guest(103, false);
    template.template = true;
    let mut mounted_running = guest(104, true);
    mounted_running.lock = Some("mounted".into());
    let sim = start(vec![locked, mounted, template, mounted_running]);
    let a = upid_of(&post(&sim, "/nodes/pve1/lxc/101/status/start", ""));
    let b = upid_of(&post(&sim, "/nodes/pve1/lxc/102/status/start", ""));
    let c = upid_of(&post(&sim, "/nodes/pve1/lxc/103/status/start", ""));
    let d = upid_of(&post(&sim, "/nodes/pve1/lxc/104/status/shutdown", ""));
    assert_eq!(finished(&sim, &a)["exitstatus"], "CT is locked (backup)");
    assert_eq!(
        finished(&sim, &b)["exitstatus"],
        "OK",
        "start ignores `mounted`"
    );
    assert_eq!(
        finished(&sim, &c)["exitstatus"],
        "you can't start a CT if it's a template"
    );
    assert_eq!(
        finished(&sim, &d)["exitstatus"],
        "CT is locked (mounted)",
        "shutdown does not ignore `mounted`"
    );
    let status = |v| sim.guest(v).unwrap().status;
    assert_eq!(
        [status(101), status(102), status(103), status(104)],
        [
            PowerState::Stopped,
            PowerState::Running,
            PowerState::Stopped,
            PowerState::Running
        ]
    );
    let errors = get(&sim, "/nodes/pve1/tasks?errors=1").json();
    assert_eq!(errors["total"], 3);
}

#[test]
fn task_status_errors() {
    let sim = start(vec![guest(101, false)]);
    let r = get(&sim, "/nodes/pve1/tasks/not-a-upid/status");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"]["upid"], "unable to parse worker upid");
    let unknown = "UPID:pve1:00001234:00005678:6650F1C2:vzstart:101:agent@pve!reconciler:";
    let r = get(
        &sim,
        &format!("/nodes/pve1/tasks/{}/status", unknown.replace(':', "%3A")),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"]["upid"], "no such task");
    // Asking the wrong node for a real task finds no log there.
    let sim2 = start_with(|o| o.nodes = vec!["pve1".into(), "pve2".into()]);
    sim2.add_guest(guest(101, false));
    let upid = upid_of(&post(&sim2, "/nodes/pve1/lxc/101/status/start", ""));
    let r = get(
        &sim2,
        &format!("/nodes/pve2/tasks/{}/status", upid.replace(':', "%3A")),
    );
    assert_eq!(r.json()["errors"]["upid"], "no such task");
}

#[test]
fn ha_guests_get_quick_ha_tasks_and_change_state_later() {
    let sim = start_with(|o| {
        o.ha_task_duration = Duration::from_millis(10);
        o.ha_apply_delay = Duration::from_millis(500);
    });
    let mut g = guest(101, false);
    g.ha = Some("stopped".into());
    sim.add_guest(g);
    let upid = upid_of(&post(&sim, "/nodes/pve1/lxc/101/status/start", ""));
    assert!(upid.contains(":hastart:101:"), "{upid}");
    assert_eq!(finished(&sim, &upid)["exitstatus"], "OK");
    // The task is done, the guest is not up yet; HA says started.
    let g = sim.guest(101).unwrap();
    assert_eq!(
        (g.status, g.ha.as_deref()),
        (PowerState::Stopped, Some("started"))
    );
    assert!(sim.wait_until(DEADLINE, |s| s.guest(101).unwrap().status
        == PowerState::Running));

    let r = post(
        &sim,
        "/nodes/pve1/lxc/101/status/stop",
        "overrule-shutdown=1",
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["errors"]["overrule-shutdown"],
        "Not applicable for HA resources."
    );
    let upid = upid_of(&post(&sim, "/nodes/pve1/lxc/101/status/shutdown", ""));
    assert!(upid.contains(":hastop:101:"));
    assert_eq!(finished(&sim, &upid)["exitstatus"], "OK");
    assert_eq!(sim.guest(101).unwrap().ha.as_deref(), Some("stopped"));
    assert_eq!(
        get(&sim, "/nodes/pve1/lxc/101/status/current").data()["ha"]["state"],
        "stopped"
    );
    assert!(sim.wait_until(DEADLINE, |s| s.guest(101).unwrap().status
        == PowerState::Stopped));
}

#[test]
fn a_running_shutdown_holds_the_config_lock() {
    let sim = start_with(|o| {
        o.shutdown_duration = Duration::from_secs(3);
        o.lock_wait = Duration::from_millis(150);
    });
    // Races the shutdown on purpose, to see its config lock.
    sim.allow_violations();
    sim.add_guest(guest(101, true));
    let shut = upid_of(&post(&sim, "/nodes/pve1/lxc/101/status/shutdown", ""));
    let timeout = "can't lock file '/run/lock/lxc/pve-config-101.lock' - got timeout";
    let t = std::time::Instant::now();
    let r = put(&sim, "/nodes/pve1/lxc/101/config", "cores=2");
    assert_eq!((r.status, r.reason.as_str()), (500, timeout));
    assert!(t.elapsed() >= Duration::from_millis(150));
    let r = post(&sim, "/nodes/pve1/lxc/101/status/stop", "");
    assert_eq!((r.status, r.reason.as_str()), (500, timeout));
    assert_eq!(sim.guest(101).unwrap().cores, None);
    // overrule-shutdown aborts the shutdown and stops at once.
    let stop = upid_of(&post(
        &sim,
        "/nodes/pve1/lxc/101/status/stop",
        "overrule-shutdown=1",
    ));
    assert_eq!(task_status(&sim, &shut)["exitstatus"], "received interrupt");
    assert_eq!(finished(&sim, &stop)["exitstatus"], "OK");
    assert_eq!(sim.guest(101).unwrap().status, PowerState::Stopped);
    assert_eq!(
        put(&sim, "/nodes/pve1/lxc/101/config", "cores=2").status,
        200
    );
}

#[test]
fn a_config_write_waits_for_a_short_shutdown() {
    let sim = start_with(|o| {
        o.shutdown_duration = Duration::from_millis(100);
        o.lock_wait = Duration::from_secs(3);
    });
    // Races the shutdown on purpose, to see the write wait for its config lock.
    sim.allow_violations();
    sim.add_guest(guest(101, true));
    let shut = upid_of(&post(&sim, "/nodes/pve1/lxc/101/status/shutdown", ""));
    assert_eq!(
        put(&sim, "/nodes/pve1/lxc/101/config", "cores=2").status,
        200
    );
    assert_eq!(task_status(&sim, &shut)["exitstatus"], "OK");
    let g = sim.guest(101).unwrap();
    assert_eq!((g.status, g.cores), (PowerState::Stopped, Some(2)));
}

#[test]
fn without_quorum_starts_and_config_writes_fail() {
    let sim = start(vec![guest(101, false), guest(102, true)]);
    sim.set_quorate(false);
    let r = post(&sim, "/nodes/pve1/lxc/101/status/start", "");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "cluster not ready - no quorum?")
    );
    let r = put(&sim, "/nodes/pve1/lxc/101/config", "cores=2");
    assert_eq!(r.status, 500);
    assert!(r.reason.contains("Permission denied"), "{}", r.reason);
    assert_eq!(sim.guest(101).unwrap().cores, None);
    // Reads and stops still work.
    assert_eq!(get(&sim, "/nodes/pve1/lxc").status, 200);
    let stop = upid_of(&post(&sim, "/nodes/pve1/lxc/102/status/stop", ""));
    assert_eq!(finished(&sim, &stop)["exitstatus"], "OK");
    sim.set_quorate(true);
    assert_eq!(
        put(&sim, "/nodes/pve1/lxc/101/config", "cores=2").status,
        200
    );
}

#[test]
fn skiplock_is_for_root_only() {
    let mut g = guest(101, false);
    g.lock = Some("backup".into());
    let sim = start(vec![g]);
    let r = post(&sim, "/nodes/pve1/lxc/101/status/start", "skiplock=1");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["errors"]["skiplock"],
        "Only root may use this option."
    );
}
