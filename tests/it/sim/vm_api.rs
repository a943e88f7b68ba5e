//! The VM read endpoints over raw HTTP: the list with and without `full`, status/current
//! with `qmpstatus`, `ha` and `agent`, config with memory as a string, pending, and the
//! cluster's resources with both kinds.

use super::*;
use felhom_agent::sim::QmpState;
use serde_json::json;

/// A VM on pve1.
pub(crate) fn vm(vmid: u32) -> SimGuest {
    SimGuest::vm(vmid, "pve1")
}

#[test]
fn the_vm_list_serves_only_vms_and_qmpstatus_only_with_full() {
    let sim = start_with(|o| o.nodes = vec!["pve1".into(), "pve2".into()]);
    sim.add_guest(guest(101, true));
    sim.add_guest(
        vm(100)
            .running()
            .with_config("name", "db1")
            .with_config("sockets", "2")
            .with_config("cores", "2")
            .with_config("tags", "prod")
            .with_pending("memory", "8192"),
    );
    sim.add_guest(vm(102).paused().with_config("balloon", "1024"));
    sim.add_guest(vm(103).with_config("vcpus", "1").with_config("cores", "16"));
    sim.add_guest(SimGuest::vm(201, "pve2"));
    let list = get(&sim, "/nodes/pve1/qemu").data();
    let list = list.as_array().unwrap();
    let ids: Vec<u64> = list.iter().map(|e| e["vmid"].as_u64().unwrap()).collect();
    assert_eq!(ids, [100, 102, 103], "only pve1's VMs, no container");
    let db = &list[0];
    assert_eq!(db["name"], "db1");
    assert_eq!(db["status"], "running");
    assert_eq!(db["cpus"], 4, "sockets x cores");
    assert_eq!(
        db["maxmem"],
        2048u64 << 20,
        "the active memory, not the pending one"
    );
    assert_eq!(db["tags"], "prod");
    assert!(db.get("pid").is_some());
    for e in list {
        assert!(
            e.get("qmpstatus").is_none(),
            "no QMP query without full: {e}"
        );
        assert!(e.get("diskread").is_none());
    }
    assert_eq!(list[1]["status"], "running", "a paused VM's process runs");
    assert_eq!(list[1]["balloon_min"], 1024u64 << 20);
    assert_eq!(list[1]["shares"], 1000);
    assert_eq!(list[2]["name"], "VM 103");
    assert_eq!(list[2]["status"], "stopped");
    assert_eq!(list[2]["cpus"], 1, "vcpus wins");
    assert_eq!(list[2]["mem"], 0);
    let full = get(&sim, "/nodes/pve1/qemu?full=1").data();
    let qmp: Vec<&str> = full
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["qmpstatus"].as_str().unwrap())
        .collect();
    assert_eq!(qmp, ["running", "paused", "stopped"]);
    assert!(full[0].get("diskread").is_some());
    // The container list does not show VMs.
    let lxc = get(&sim, "/nodes/pve1/lxc").data();
    assert_eq!(lxc.as_array().unwrap().len(), 1);
    assert_eq!(get(&sim, "/nodes/pve2/qemu").data()[0]["vmid"], 201);
    assert_eq!(get(&sim, "/nodes/pve1/qemu?full=yes").status, 400);
}

#[test]
fn status_current_tells_the_states_apart() {
    let sim = start(vec![
        vm(100).running().with_config("agent", "1"),
        vm(101).paused(),
        vm(102).backup_of_stopped(),
        vm(103).hibernated(),
        vm(104).with_qmp(QmpState::IoError),
        vm(105).running().ha("started"),
        vm(106).with_config("template", "1"),
    ]);
    let status = |id: u32| get(&sim, &format!("/nodes/pve1/qemu/{id}/status/current")).data();
    let s = status(100);
    assert_eq!(
        (s["status"].as_str(), s["qmpstatus"].as_str()),
        (Some("running"), Some("running"))
    );
    assert_eq!(s["agent"], 1, "enabled in the config");
    assert_eq!(s["ha"], json!({"managed": 0}));
    assert_eq!(status(101)["qmpstatus"], "paused");
    assert_eq!(status(101)["status"], "running");
    let b = status(102);
    assert_eq!(
        (b["qmpstatus"].as_str(), b["lock"].as_str()),
        (Some("prelaunch"), Some("backup"))
    );
    let h = status(103);
    assert_eq!(
        (h["status"].as_str(), h["qmpstatus"].as_str()),
        (Some("stopped"), Some("stopped"))
    );
    assert_eq!(h["lock"], "suspended");
    assert!(h.get("agent").is_none());
    assert_eq!(status(104)["qmpstatus"], "io-error");
    assert_eq!(status(105)["ha"], json!({"managed": 1, "state": "started"}));
    assert_eq!(status(106)["template"], 1);
    // A VM is not a container and the reverse: each kind's path names its own config.
    let r = get(&sim, "/nodes/pve1/lxc/100/status/current");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (
            500,
            "Configuration file 'nodes/pve1/lxc/100.conf' does not exist"
        )
    );
    sim.add_guest(guest(120, false));
    let r = get(&sim, "/nodes/pve1/qemu/120/config");
    assert_eq!(
        r.reason,
        "Configuration file 'nodes/pve1/qemu-server/120.conf' does not exist"
    );
}

#[test]
fn config_has_memory_as_a_string_and_merges_pending_unless_current() {
    let sim = start(vec![vm(100)
        .running()
        .with_config("description", "db server\n\n")
        .with_config("balloon", "1024")
        .with_config("onboot", "1")
        .with_pending("cores", "4")
        .with_pending("memory", "4096")
        .with_pending_delete("balloon")]);
    let merged = get(&sim, "/nodes/pve1/qemu/100/config").data();
    let current = get(&sim, "/nodes/pve1/qemu/100/config?current=1").data();
    assert_eq!(merged["digest"], current["digest"]);
    assert_eq!(
        current["memory"], "2048",
        "a string since qemu-server 8.0.8"
    );
    assert_eq!(merged["memory"], "4096");
    assert_eq!(
        (current["cores"].as_u64(), merged["cores"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(current["sockets"], 1);
    assert_eq!(current["balloon"], 1024);
    assert!(merged.get("balloon").is_none(), "pending delete");
    assert_eq!(
        current["description"], "db server",
        "trailing whitespace stripped"
    );
    assert_eq!(current["onboot"], 1);
    assert_eq!(current["numa"], 0);
    assert!(current.get("swap").is_none() && current.get("hostname").is_none());
    sim.update_guest(100, |g| {
        g.memory = Some(3072);
        g.memory_raw = Some("current=3072".into());
    });
    let c = get(&sim, "/nodes/pve1/qemu/100/config?current=1").data();
    assert_eq!(c["memory"], "current=3072", "as it was written");
}

#[test]
fn pending_lists_each_key_with_its_digest() {
    let sim = start(vec![vm(100)
        .running()
        .with_config("vcpus", "1")
        .with_pending("cores", "4")
        .with_pending("memory", "8192")
        .with_pending_delete("vcpus")]);
    let items = get(&sim, "/nodes/pve1/qemu/100/pending").data();
    let find = |k: &str| {
        items
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == k)
            .cloned()
    };
    let by_key = |k: &str| find(k).unwrap_or_else(|| panic!("no {k} in {items}"));
    assert_eq!(
        by_key("cores"),
        json!({"key": "cores", "value": 1, "pending": 4})
    );
    assert_eq!(
        by_key("memory"),
        json!({"key": "memory", "value": "2048", "pending": "8192"})
    );
    assert_eq!(
        by_key("vcpus"),
        json!({"key": "vcpus", "value": 1, "delete": 1})
    );
    assert_eq!(find("onboot"), None, "not set: not listed");
    let digest = by_key("digest");
    assert_eq!(digest["value"].as_str().unwrap().len(), 40);
}

#[test]
fn cluster_resources_list_both_kinds() {
    let sim = start(vec![
        guest(101, true),
        vm(100).paused().ha("started").with_config("tags", "db"),
        vm(102).backup_of_stopped(),
        vm(103),
    ]);
    let res = get(&sim, "/cluster/resources?type=vm").data();
    let res = res.as_array().unwrap();
    assert_eq!(res.len(), 4);
    let find = |id: &str| res.iter().find(|r| r["id"] == id).unwrap();
    let v = find("qemu/100");
    assert_eq!(
        (v["type"].as_str(), v["vmid"].as_u64()),
        (Some("qemu"), Some(100))
    );
    assert_eq!(
        v["status"], "paused",
        "a VM's status there is its QMP state"
    );
    assert_eq!(v["hastate"], "started");
    assert_eq!(v["tags"], "db");
    assert_eq!(v["maxcpu"], 1);
    assert_eq!(find("qemu/102")["status"], "prelaunch");
    assert_eq!(find("qemu/102")["lock"], "backup");
    assert_eq!(find("qemu/103")["status"], "stopped");
    assert_eq!(find("lxc/101")["type"], "lxc");
}
