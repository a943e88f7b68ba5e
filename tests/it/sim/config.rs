//! `PUT .../config`: checks, their order, normalisation and pending changes.

use super::*;
use serde_json::json;

fn cfg(sim: &Sim, vmid: u32) -> Value {
    get(sim, &format!("/nodes/pve1/lxc/{vmid}/config")).data()
}

fn errors(r: &Resp) -> Value {
    assert_eq!(r.status, 400, "{} {}", r.status, r.reason);
    assert_eq!(r.reason, "Parameter verification failed.");
    r.json()["errors"].clone()
}

#[test]
fn put_applies_and_normalises_description_and_tags() {
    let sim = start(vec![guest(101, true)]);
    let digest = cfg(&sim, 101)["digest"].as_str().unwrap().to_string();
    let form = format!(
        "cores=2&memory=2048&swap=0&onboot=1&tags=Web%2Cprod%3Bweb&\
         description=managed%20by%20felhom%0A%0Aline%203%0A%0A&digest={digest}"
    );
    let r = put(&sim, "/nodes/pve1/lxc/101/config", &form);
    assert_eq!(r.data(), Value::Null);
    let c = cfg(&sim, 101);
    assert_eq!(c["cores"], 2);
    assert_eq!(c["memory"], 2048);
    assert_eq!(c["swap"], 0);
    assert_eq!(c["onboot"], 1);
    assert_eq!(c["tags"], "prod;web");
    assert_eq!(c["description"], "managed by felhom\n\nline 3\n");
    assert_ne!(
        c["digest"],
        digest.as_str(),
        "every write changes the digest"
    );
    let g = sim.guest(101).unwrap();
    assert!(
        g.pending.is_empty(),
        "the agent's fields apply at once on a running CT"
    );
    // delete= clears keys; an empty description deletes it too.
    let r = put(
        &sim,
        "/nodes/pve1/lxc/101/config",
        "delete=cores%3Btags&description=",
    );
    assert_eq!(r.status, 200);
    let c = cfg(&sim, 101);
    for k in ["cores", "tags", "description"] {
        assert!(c.get(k).is_none(), "{k} still set: {c}");
    }
    // An unescaped `;` splits the form: `delete=onboot;tags` deletes onboot and sets
    // `tags` to empty, which reads back as a single space.
    let r = put(&sim, "/nodes/pve1/lxc/101/config", "delete=onboot;tags");
    assert_eq!(r.status, 200);
    let c = cfg(&sim, 101);
    assert_eq!((c["tags"].as_str(), c.get("onboot")), (Some(" "), None));
}

#[test]
fn digest_mismatch_is_a_500() {
    let sim = start(vec![guest(101, false)]);
    let old = cfg(&sim, 101)["digest"].as_str().unwrap().to_string();
    sim.update_guest(101, |g| g.hostname = Some("edited".into()));
    let r = put(
        &sim,
        "/nodes/pve1/lxc/101/config",
        &format!("cores=2&digest={old}"),
    );
    assert_eq!(r.status, 500);
    assert_eq!(
        r.reason,
        "detected modified configuration - file changed by other user? Try again."
    );
    assert_eq!(sim.guest(101).unwrap().cores, None);
}

#[test]
fn unknown_params_bad_types_and_ranges_are_400s_with_every_error() {
    let sim = start(vec![guest(101, false)]);
    let r = put(
        &sim,
        "/nodes/pve1/lxc/101/config",
        "bogus=1&onboot=true&cores=0&memory=8&swap=-1&tags=ok,%2Fbad",
    );
    let e = errors(&r);
    assert_eq!(
        e,
        json!({
            "bogus": "property is not defined in schema and the schema does not allow additional properties",
            "onboot": "type check ('boolean') failed - got 'true'",
            "cores": "value must have a minimum value of 1",
            "memory": "value must have a minimum value of 16",
            "swap": "value must have a minimum value of 0",
            "tags": "invalid format - invalid characters in tag\n",
        })
    );
    assert_eq!(r.json()["message"], "Parameter verification failed.\n");
    let e = errors(&put(
        &sim,
        "/nodes/pve1/lxc/101/config",
        "cores=8193&cpulimit=x",
    ));
    assert_eq!(e["cores"], "value must have a maximum value of 8192");
    assert_eq!(e["cpulimit"], "type check ('number') failed - got 'x'");
    // GET endpoints reject unknown parameters too.
    let e = errors(&get(&sim, "/nodes/pve1/lxc?full=1"));
    assert!(e["full"]
        .as_str()
        .unwrap()
        .starts_with("property is not defined"));
    assert!(sim.guest(101).unwrap().cores.is_none());
}

#[test]
fn delete_lists_are_checked() {
    let sim = start(vec![guest(101, false)]);
    // Deletes a key that is not set, to see the node only warn.
    sim.allow_violations();
    let e = errors(&put(&sim, "/nodes/pve1/lxc/101/config", "delete=nope"));
    assert_eq!(e["delete"], "unknown option 'nope'");
    let e = errors(&put(
        &sim,
        "/nodes/pve1/lxc/101/config",
        "cores=2&delete=cores",
    ));
    assert_eq!(
        e["delete"],
        "you can't use '-cores' and -delete cores' at the same time"
    );
    let r = put(&sim, "/nodes/pve1/lxc/101/config", "delete=memory");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "unable to delete required option 'memory'")
    );
    // Deleting a key that is not set only warns.
    assert_eq!(
        put(&sim, "/nodes/pve1/lxc/101/config", "delete=cores").status,
        200
    );
    let r = put(&sim, "/nodes/pve1/lxc/101/config", "delete=swap onboot");
    assert_eq!(r.status, 200);
    assert_eq!(sim.guest(101).unwrap().swap, None);
}

#[test]
fn only_a_digest_is_no_options() {
    let sim = start(vec![guest(101, false)]);
    let d = cfg(&sim, 101)["digest"].as_str().unwrap().to_string();
    let r = put(&sim, "/nodes/pve1/lxc/101/config", &format!("digest={d}"));
    assert_eq!((r.status, r.reason.as_str()), (500, "no options specified"));
}

#[test]
fn a_locked_guest_refuses_config_writes() {
    let mut g = guest(101, false);
    g.lock = Some("backup".into());
    let sim = start(vec![g]);
    let r = put(&sim, "/nodes/pve1/lxc/101/config", "cores=2&digest=0000");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "CT is locked (backup)"),
        "the lock is checked before the digest"
    );
}

#[test]
fn other_keys_on_a_running_guest_go_pending() {
    let mut g = guest(101, true);
    g.other.insert("searchdomain".into(), "example.org".into());
    let sim = start(vec![g]);
    let r = put(
        &sim,
        "/nodes/pve1/lxc/101/config",
        "nameserver=9.9.9.9&cpuunits=200&hostname=web1&delete=searchdomain",
    );
    assert_eq!(r.status, 200);
    let merged = cfg(&sim, 101);
    assert_eq!(merged["nameserver"], "9.9.9.9");
    assert!(merged.get("searchdomain").is_none());
    assert_eq!(merged["cpuunits"], 200);
    assert_eq!(merged["hostname"], "web1");
    let current = get(&sim, "/nodes/pve1/lxc/101/config?current=1").data();
    assert!(current.get("nameserver").is_none());
    assert_eq!(current["searchdomain"], "example.org");
    assert_eq!(current["cpuunits"], 200, "hot-plugged");
    let pending = get(&sim, "/nodes/pve1/lxc/101/pending").data();
    let item = |k: &str| {
        pending
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == k)
            .cloned()
            .unwrap_or_else(|| panic!("no pending entry for {k}: {pending}"))
    };
    assert_eq!(
        item("nameserver"),
        json!({"key": "nameserver", "pending": "9.9.9.9"})
    );
    assert_eq!(
        item("searchdomain"),
        json!({"key": "searchdomain", "value": "example.org", "delete": 1})
    );
    assert_eq!(item("memory"), json!({"key": "memory", "value": 512}));
    assert!(item("digest")["value"].is_string());
    let g = sim.guest(101).unwrap();
    assert_eq!(g.pending["nameserver"], "9.9.9.9");
    assert_eq!(g.pending["delete"], "searchdomain");
    // A stop applies the pending section.
    let stop = upid_of(&post(&sim, "/nodes/pve1/lxc/101/status/stop", ""));
    assert_eq!(finished(&sim, &stop)["exitstatus"], "OK");
    let g = sim.guest(101).unwrap();
    assert!(g.pending.is_empty());
    assert_eq!(g.other["nameserver"], "9.9.9.9");
    assert!(!g.other.contains_key("searchdomain"));
}

#[test]
fn read_only_and_path_conflicts() {
    let sim = start(vec![guest(101, false)]);
    let r = put(&sim, "/nodes/pve1/lxc/101/config", "unprivileged=0");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "unable to modify read-only option: 'unprivileged'")
    );
    let e = errors(&put(&sim, "/nodes/pve1/lxc/101/config", "vmid=102&cores=1"));
    assert_eq!(
        e["vmid"],
        "duplicate parameter (already defined in URI) with conflicting values!"
    );
    let e = errors(&get(&sim, "/nodes/pve1/lxc/abc/config"));
    assert_eq!(e["vmid"], "type check ('integer') failed - got 'abc'");
}
