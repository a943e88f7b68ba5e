//! Authentication, routing and the read endpoints.

use super::*;
use felhom_agent::sim::{ErrorStyle, PowerState};
use serde_json::json;

#[test]
fn missing_or_wrong_token_is_401_with_an_empty_body() {
    let sim = start(vec![]);
    let r = send(sim.addr(), "GET", "/api2/json/version", "", "").unwrap();
    assert_eq!((r.status, r.reason.as_str()), (401, "No ticket"));
    assert!(r.body.is_empty());
    assert!(r.closes());
    let bad = format!("Authorization: PVEAPIToken={}=wrong\r\n", sim.token_id());
    let r = send(sim.addr(), "GET", "/api2/json/version", &bad, "").unwrap();
    assert_eq!(
        (r.status, r.reason.as_str()),
        (401, "Authentication failed!")
    );
    assert!(r.body.is_empty());
    let other = "Authorization: Bearer x\r\n";
    let r = send(sim.addr(), "GET", "/api2/json/version", other, "").unwrap();
    assert_eq!(r.status, 401);
    // A space instead of the first `=` is accepted too.
    let spaced = format!(
        "Authorization: PVEAPIToken {}={}\r\n",
        sim.token_id(),
        sim.token_secret()
    );
    let r = send(sim.addr(), "GET", "/api2/json/version", &spaced, "").unwrap();
    assert_eq!(r.data()["version"], "8.4.1");
    assert_eq!(sim.requests().iter().filter(|r| r.status == 401).count(), 3);
}

#[test]
fn unauthorized_delay_is_applied() {
    let sim = start_with(|o| o.unauthorized_delay = Duration::from_millis(300));
    let t = std::time::Instant::now();
    let r = send(sim.addr(), "GET", "/api2/json/version", "", "").unwrap();
    assert_eq!(r.status, 401);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[test]
fn unknown_calls_are_501() {
    let sim = start(vec![guest(101, false)]);
    let r = get(&sim, "/nodes/pve1/foo");
    assert_eq!(r.status, 501);
    assert_eq!(r.reason, "Method 'GET /nodes/pve1/foo' not implemented");
    assert_eq!(
        r.json()["message"],
        "Method 'GET /nodes/pve1/foo' not implemented\n"
    );
    assert!(r.closes());
    // HA state is read from /cluster/resources; the node does not serve the HA list.
    assert_eq!(get(&sim, "/cluster/ha/resources").status, 501);
    let r = call(&sim, "DELETE", "/nodes/pve1/lxc/101/config", "");
    assert_eq!(r.status, 501);
    assert_eq!(
        r.reason,
        "Method 'DELETE /nodes/pve1/lxc/101/config' not implemented"
    );
}

#[test]
fn lxc_list_shows_the_nodes_own_guests_with_pve_fields() {
    let sim = start_with(|o| o.nodes = vec!["pve1".into(), "pve2".into()]);
    let mut a = guest(101, true);
    a.cores = Some(2);
    a.memory = Some(1024);
    a.hostname = Some("web1".into());
    a.tags = Some("prod;web".into());
    sim.add_guest(a);
    let mut b = guest(102, false);
    b.swap = None;
    b.lock = Some("backup".into());
    b.template = true;
    sim.add_guest(b);
    sim.add_guest(SimGuest::new(201, "pve2"));
    let list = get(&sim, "/nodes/pve1/lxc").data();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let a = &list[0];
    assert_eq!(a["vmid"], 101);
    assert_eq!(a["status"], "running");
    assert_eq!(a["name"], "web1");
    assert_eq!(a["type"], "lxc");
    assert_eq!(a["cpus"], 2);
    assert_eq!(a["maxmem"], 1024u64 << 20);
    assert_eq!(a["maxswap"], 512u64 << 20);
    assert_eq!(a["tags"], "prod;web");
    assert!(a.get("pid").is_some() && a.get("lock").is_none() && a.get("template").is_none());
    let b = &list[1];
    assert_eq!(b["name"], "CT102");
    assert_eq!(b["cpus"], 8, "no cores: the host's cpu count");
    assert_eq!(b["maxswap"], 0);
    assert_eq!(b["mem"], 0);
    assert_eq!(b["uptime"], 0);
    assert_eq!(b["lock"], "backup");
    assert_eq!(b["template"], 1);
    assert!(b.get("pid").is_none() && b.get("tags").is_none());
    let other = get(&sim, "/nodes/pve2/lxc").data();
    assert_eq!(other.as_array().unwrap().len(), 1);
}

#[test]
fn vmid_as_string_like_old_pve() {
    let sim = start_with(|o| o.vmid_as_string = true);
    sim.add_guest(guest(101, false));
    assert_eq!(get(&sim, "/nodes/pve1/lxc").data()[0]["vmid"], "101");
    assert_eq!(
        get(&sim, "/nodes/pve1/lxc/101/status/current").data()["vmid"],
        "101"
    );
    assert_eq!(
        get(&sim, "/cluster/resources?type=vm").data()[0]["vmid"],
        101
    );
}

#[test]
fn config_returns_only_set_keys_and_a_digest() {
    let mut g = guest(101, false);
    g.cores = Some(2);
    g.onboot = Some(false);
    g.description = Some("hello\n".into());
    g.other.insert("cpulimit".into(), "0.5".into());
    g.other.insert("ostype".into(), "debian".into());
    let sim = start(vec![g]);
    let c = get(&sim, "/nodes/pve1/lxc/101/config").data();
    let digest = c["digest"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 40);
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut expect = json!({"cores": 2, "memory": 512, "swap": 512, "onboot": 0,
        "description": "hello\n", "cpulimit": "0.5", "ostype": "debian"});
    expect["digest"] = digest.clone().into();
    assert_eq!(c, expect);
    // Reading does not change the digest; a human edit does.
    assert_eq!(
        get(&sim, "/nodes/pve1/lxc/101/config").data()["digest"],
        digest
    );
    sim.update_guest(101, |_| {});
    assert_ne!(
        get(&sim, "/nodes/pve1/lxc/101/config").data()["digest"],
        digest
    );
}

#[test]
fn status_current_carries_ha() {
    let mut g = guest(101, true);
    g.ha = Some("started".into());
    let sim = start(vec![g, guest(102, false)]);
    let s = get(&sim, "/nodes/pve1/lxc/101/status/current").data();
    assert_eq!(s["status"], "running");
    assert_eq!(s["ha"], json!({"managed": 1, "state": "started"}));
    let s = get(&sim, "/nodes/pve1/lxc/102/status/current").data();
    assert_eq!(s["status"], "stopped");
    assert_eq!(s["ha"], json!({"managed": 0}));
}

#[test]
fn cluster_resources_cover_every_node_with_their_ha_state() {
    let sim = start_with(|o| o.nodes = vec!["pve1".into(), "pve2".into()]);
    let mut a = guest(101, true);
    a.ha = Some("started".into());
    a.tags = Some("x".into());
    sim.add_guest(a);
    sim.add_guest(SimGuest::new(201, "pve2"));
    let res = get(&sim, "/cluster/resources?type=vm").data();
    assert_eq!(
        res.as_array().unwrap().len(),
        2,
        "type=vm lists guests only"
    );
    let a = &res[0];
    assert_eq!(a["id"], "lxc/101");
    assert_eq!(a["node"], "pve1");
    assert_eq!(a["type"], "lxc");
    assert_eq!(a["status"], "running");
    assert_eq!(a["template"], 0);
    assert_eq!(a["hastate"], "started");
    assert_eq!(a["tags"], "x");
    assert_eq!(res[1]["node"], "pve2");
    assert!(res[1].get("hastate").is_none());
    let all = get(&sim, "/cluster/resources").data();
    assert_eq!(all.as_array().unwrap().len(), 4, "guests and nodes");
}

#[test]
fn other_nodes_guests_and_unknown_nodes_are_500() {
    let sim = start_with(|o| o.nodes = vec!["pve1".into(), "pve2".into()]);
    sim.add_guest(SimGuest::new(201, "pve2"));
    let missing = "Configuration file 'nodes/pve1/lxc/201.conf' does not exist";
    for r in [
        get(&sim, "/nodes/pve1/lxc/201/config"),
        get(&sim, "/nodes/pve1/lxc/201/status/current"),
        get(&sim, "/nodes/pve1/lxc/201/pending"),
        post(&sim, "/nodes/pve1/lxc/201/status/start", ""),
        post(&sim, "/nodes/pve1/lxc/201/status/stop", ""),
        put(&sim, "/nodes/pve1/lxc/201/config", "cores=1"),
        get(&sim, "/nodes/pve1/lxc/999/config"),
    ] {
        assert_eq!(r.status, 500);
        assert!(r.reason.starts_with("Configuration file 'nodes/pve1/lxc/"));
    }
    assert_eq!(get(&sim, "/nodes/pve1/lxc/201/config").reason, missing);
    assert_eq!(get(&sim, "/nodes/pve2/lxc/201/config").status, 200);
    let r = get(&sim, "/nodes/pve9/lxc");
    assert_eq!(r.status, 500);
    assert!(
        r.reason.starts_with("hostname lookup 'pve9' failed"),
        "{}",
        r.reason
    );
    assert!(sim.tasks_started(201).is_empty());
}

#[test]
fn legacy_error_bodies_have_no_message() {
    let sim = start(vec![guest(101, true)]);
    // Starts a running guest, to see the node's error body.
    sim.allow_violations();
    sim.set_error_style(ErrorStyle::Legacy);
    let r = post(&sim, "/nodes/pve1/lxc/101/status/start", "");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "CT 101 already running")
    );
    assert_eq!(r.json(), json!({"data": null}));
    let r = put(&sim, "/nodes/pve1/lxc/101/config", "onboot=yes");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"data": null, "errors": {"onboot": "type check ('boolean') failed - got 'yes'"}})
    );
    sim.set_error_style(ErrorStyle::Modern);
    let r = post(&sim, "/nodes/pve1/lxc/101/status/start", "");
    assert_eq!(
        r.json(),
        json!({"data": null, "message": "CT 101 already running\n"})
    );
    assert_eq!(sim.guest(101).unwrap().status, PowerState::Running);
}

#[test]
fn requests_are_recorded_with_params_node_and_vmid() {
    let sim = start(vec![guest(101, false)]);
    let r = call(
        &sim,
        "PUT",
        "/nodes/pve1/lxc/101/config?cores=3",
        "cores=2&tags=a%3Bb;onboot=1",
    );
    assert_eq!(r.status, 200);
    get(&sim, "/version");
    let reqs = sim.requests();
    assert_eq!(reqs.len(), 2);
    let put = &reqs[0];
    assert_eq!(put.seq + 1, reqs[1].seq);
    assert_eq!(put.method, "PUT");
    assert_eq!(put.path, "/nodes/pve1/lxc/101/config");
    assert_eq!(put.params["cores"], "3", "query wins over body");
    assert_eq!(put.params["tags"], "a;b");
    assert_eq!(put.params["onboot"], "1", "`;` separates pairs too");
    assert_eq!((put.node.as_deref(), put.vmid), (Some("pve1"), Some(101)));
    assert!(put.mutating && !reqs[1].mutating);
    assert_eq!(sim.guest(101).unwrap().cores, Some(3));
    assert_eq!(sim.mutations().len(), 1);
    assert_eq!(sim.mutated_vmids().into_iter().collect::<Vec<_>>(), [101]);
    sim.clear_requests();
    assert!(sim.requests().is_empty());
}

#[test]
fn json_bodies_are_accepted() {
    let sim = start(vec![guest(101, false)]);
    let headers = format!("{}Content-Type: application/json\r\n", auth(&sim));
    let r = send(
        sim.addr(),
        "PUT",
        "/api2/json/nodes/pve1/lxc/101/config",
        &headers,
        r#"{"onboot": true, "cores": 4}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.reason);
    let g = sim.guest(101).unwrap();
    assert_eq!((g.onboot, g.cores), (Some(true), Some(4)));
}
