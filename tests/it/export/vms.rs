//! `felhom-agent export` of virtual machines beside containers: a drifted mixed fleet
//! with VMs in every state the simulator seeds is adopted without a single action, an
//! edit of one VM field plans exactly that edit, VMs the agent leaves alone and fields
//! pending a restart are noted, only what is needed is read (asserted on the node's
//! request log), and export reads beside a running agent without touching its journal.

use super::super::agent::{poll_until, Agent, SIGTERM};
use super::super::rig::{fast_sim, Rig};
use super::{assert_adopted, assert_one_edit_planned, export, planned, vmids};
use felhom_agent::desired::DesiredState;
use felhom_agent::sim::{fleet, vm_fleet, SimGuest, SimOptions};
use std::path::Path;
use std::time::Duration;

/// The VMs the list shows running (a QEMU process exists): 200 running, 202 running
/// with cores pending, 203 paused, 204 a stopped VM being backed up, 206 running, 208
/// HA-managed and running, 209 in io-error. 201 is stopped, 205 hibernated, 207 a
/// template.
const LISTED_RUNNING: [u32; 7] = [200, 202, 203, 204, 206, 208, 209];

/// Ten varied containers and ten VMs in every state `vm_fleet` seeds, the VMs stored
/// the ways qemu-server may store them: memory as `current=4096`, tags in upper case
/// and repeated, sockets and a balloon, a description with trailing whitespace, no
/// balloon device, and one VM with no cores, sockets, memory or name at all. The
/// desired state wants every container running with 2 GiB and every VM stopped with
/// 3 cores and 1 GiB.
fn mixed_rig(tag: &str, opts: SimOptions, desired: Option<&str>) -> Rig {
    let mut guests = fleet(10, "pve1");
    guests[0].tags = Some("Web;PROD;web".into());
    guests[2].swap = None;
    let mut vms = vm_fleet(10, "pve1", 200);
    vms[0] = vms[0].clone().with_config("memory", "current=4096");
    vms[0].tags = Some("Prod;DB;prod".into());
    vms[1] = vms[1]
        .clone()
        .with_config("sockets", "2")
        .with_config("balloon", "1024")
        .with_config("description", "db replica \t\n\n");
    let bare: &mut SimGuest = &mut vms[6];
    bare.cores = None;
    bare.memory = None;
    bare.other.remove("sockets");
    bare.other.remove("name");
    vms[9] = vms[9].clone().with_config("balloon", "0");
    guests.extend(vms);
    let wanted: Vec<String> =
        (100..110)
            .map(|v| format!(r#"{{"vmid": {v}, "state": "running", "memory": 2048}}"#))
            .chain((200..210).map(|v| {
                format!(r#"{{"vmid": {v}, "state": "stopped", "cores": 3, "memory": 1024}}"#)
            }))
            .collect();
    let drifted = format!(r#"{{"guests": [{}]}}"#, wanted.join(","));
    Rig::new(
        tag,
        opts,
        guests,
        desired.unwrap_or(&drifted),
        serde_json::json!({"drain_timeout_secs": 1}),
    )
}

/// One guest of an export, as JSON.
fn entry(text: &str, vmid: u64) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    doc["guests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["vmid"] == vmid)
        .unwrap_or_else(|| panic!("{vmid} exported\n{text}"))
        .clone()
}

/// The notes an export printed, one per line.
fn notes(err: &str) -> Vec<&str> {
    err.lines()
        .filter_map(|l| l.strip_prefix("felhom-agent export: "))
        .collect()
}

/// The requests the node saw, as `GET path?params` lines, in arrival order.
fn reads(rig: &Rig) -> Vec<String> {
    rig.sim
        .requests()
        .iter()
        .map(|r| {
            let params: Vec<String> = r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{} {}?{}", r.method, r.path, params.join("&"))
        })
        .collect()
}

#[test]
fn adopting_the_export_of_a_drifted_mixed_fleet_plans_nothing() {
    let rig = mixed_rig("export-vm-fleet", fast_sim(), None);
    let drifted = planned(&rig);
    assert!(
        drifted.iter().filter(|a| a.starts_with("20")).count() > 2,
        "the VMs start drifted: {drifted:?}"
    );
    rig.sim.clear_requests();
    let (text, err) = export(&rig, &["--all"]);
    let expected: Vec<u64> = (100..110).chain(200..210).collect();
    assert_eq!(vmids(&text), expected);
    let read_back = DesiredState::parse(&text, Path::new("export")).expect("parses");
    assert_eq!(read_back.to_json(), text, "reads back as written");

    // Every managed VM field, as qemu-server means it.
    assert_eq!(
        entry(&text, 200),
        serde_json::json!({"vmid": 200, "type": "qemu", "name": "vm-web1",
            "state": "running", "cores": 1, "sockets": 1, "memory": 4096,
            "description": "", "onboot": false, "tags": ["db", "prod"]})
    );
    assert_eq!(
        entry(&text, 201),
        serde_json::json!({"vmid": 201, "type": "qemu", "name": "vm-db1",
            "state": "stopped", "cores": 2, "sockets": 2, "memory": 4096, "balloon": 1024,
            "description": "db replica", "onboot": true, "tags": []})
    );
    assert_eq!(
        entry(&text, 206),
        serde_json::json!({"vmid": 206, "type": "qemu", "name": "VM 206",
            "state": "running", "cores": 1, "sockets": 1, "memory": 512,
            "description": "no acpid inside", "onboot": false, "tags": []})
    );
    assert_eq!(entry(&text, 209)["balloon"], 0);
    assert_eq!(entry(&text, 207)["state"], "stopped", "a template");
    assert_eq!(entry(&text, 208)["state"], "running", "HA-managed");
    for vmid in [203, 204, 205, 209] {
        assert_eq!(entry(&text, vmid).get("state"), None, "{vmid}");
    }
    assert_eq!(entry(&text, 202).get("cores"), None);
    assert_eq!(entry(&text, 100).get("type"), None, "a container as before");
    let notes = notes(&err);
    let alone = "no state written (the agent leaves a VM in this state alone)";
    for note in [
        "200: balloon not set (it follows memory): left out (unmanaged)".to_string(),
        "202: cores has a change pending until the next restart: left out (unmanaged)".into(),
        format!("203: the VM is paused: {alone}"),
        format!("204: the VM is stopped and being backed up (prelaunch, lock: backup): {alone}"),
        format!("205: the VM is hibernated (lock: suspended): {alone}"),
        format!("209: the VM is halted on a disk error (io-error): {alone}"),
        "104: cores not set (all host cores): left out (unmanaged)".into(),
    ] {
        assert!(notes.contains(&note.as_str()), "{note}\n{notes:#?}");
    }
    assert!(!notes.iter().any(|n| n.starts_with("209: balloon")));

    // Read only what is needed: the plain lists, each chosen guest's config and pending
    // section, and `status/current` of the VMs the list shows running. Nothing else.
    let mut want = vec![
        "GET /nodes/pve1/lxc?".to_string(),
        "GET /nodes/pve1/qemu?".to_string(),
    ];
    for vmid in 100..110 {
        want.push(format!("GET /nodes/pve1/lxc/{vmid}/config?current=1"));
        want.push(format!("GET /nodes/pve1/lxc/{vmid}/pending?"));
    }
    for vmid in 200..210 {
        want.push(format!("GET /nodes/pve1/qemu/{vmid}/config?current=1"));
        want.push(format!("GET /nodes/pve1/qemu/{vmid}/pending?"));
        if LISTED_RUNNING.contains(&vmid) {
            want.push(format!("GET /nodes/pve1/qemu/{vmid}/status/current?"));
        }
    }
    let mut got = reads(&rig);
    // Each list comes before the reads of its guests; compare as sets after that.
    assert!(got[0].starts_with("GET /nodes/pve1/lxc?"), "{got:#?}");
    let qemu_list = got
        .iter()
        .position(|r| r.starts_with("GET /nodes/pve1/qemu?"));
    let first_vm_read = got.iter().position(|r| r.contains("/qemu/"));
    assert!(qemu_list < first_vm_read, "{got:#?}");
    got.sort();
    want.sort();
    assert_eq!(got, want);

    assert_adopted(&rig, &text);

    // One VM field edited in the export: exactly that change is planned.
    for (vmid, key, value, expected) in [
        (
            201,
            "sockets",
            serde_json::json!(4),
            "201 set_config sockets=4",
        ),
        (
            200,
            "memory",
            serde_json::json!(8192),
            "200 set_config memory=8192",
        ),
        (
            200,
            "balloon",
            serde_json::json!(2048),
            "200 set_config balloon=2048",
        ),
        (201, "cores", serde_json::json!(4), "201 set_config cores=4"),
        (
            206,
            "description",
            serde_json::json!("no acpid"),
            "206 set_config description=no acpid",
        ),
        (
            201,
            "onboot",
            serde_json::json!(false),
            "201 set_config onboot=0",
        ),
        (
            200,
            "tags",
            serde_json::json!(["db"]),
            "200 set_config tags=db",
        ),
        (201, "state", serde_json::json!("running"), "201 start"),
        (
            200,
            "state",
            serde_json::json!("stopped"),
            "200 shutdown forceStop=1 timeout=5",
        ),
    ] {
        assert_one_edit_planned(&rig, &text, vmid, key, value, expected);
    }
    assert!(rig.sim.mutations().is_empty());
}

#[test]
fn a_paused_vm_and_one_with_pending_cores_are_exported_with_notes() {
    let rig = mixed_rig("export-vm-notes", fast_sim(), None);
    rig.sim.clear_requests();
    let (text, err) = export(&rig, &["--vmid", "202,203"]);
    assert_eq!(vmids(&text), [202, 203]);
    assert_eq!(
        notes(&err),
        [
            "202: balloon not set (it follows memory): left out (unmanaged)",
            "202: cores has a change pending until the next restart: left out (unmanaged)",
            "203: the VM is paused: no state written (the agent leaves a VM in this state alone)",
            "203: balloon not set (it follows memory): left out (unmanaged)",
        ]
    );
    // The pending cores are the only field 202 leaves out; its active memory is kept.
    assert_eq!(
        entry(&text, 202),
        serde_json::json!({"vmid": 202, "type": "qemu", "name": "vm-cache1",
            "state": "running", "sockets": 1, "memory": 1024, "description": "",
            "onboot": false, "tags": []})
    );
    assert_eq!(
        entry(&text, 203),
        serde_json::json!({"vmid": 203, "type": "qemu", "name": "vm-mail1",
            "cores": 4, "sockets": 1, "memory": 8192, "description": "",
            "onboot": false, "tags": []})
    );
    // A paused VM's list entry says `running`: only its status tells.
    let status_reads: Vec<String> = reads(&rig)
        .into_iter()
        .filter(|r| r.contains("/status/current"))
        .collect();
    assert_eq!(
        status_reads,
        [
            "GET /nodes/pve1/qemu/202/status/current?",
            "GET /nodes/pve1/qemu/203/status/current?"
        ]
    );
    rig.write_desired(&text);
    assert_eq!(planned(&rig), Vec::<String>::new());
    // Still paused, still pending: adopting them changed nothing.
    let (g202, g203) = (rig.sim.guest(202).unwrap(), rig.sim.guest(203).unwrap());
    assert_eq!(g202.pending.get("cores").map(String::as_str), Some("4"));
    assert_eq!(g203.qmp, felhom_agent::sim::QmpState::Paused);
}

#[test]
fn export_reads_beside_a_running_agent_and_never_writes_its_journal() {
    // The agent starts VM 201 with a task that takes a minute; export runs meanwhile.
    let opts = SimOptions {
        task_duration: Duration::from_secs(60),
        ..fast_sim()
    };
    let desired = r#"{"guests": [{"vmid": 201, "state": "running"}]}"#;
    let rig = mixed_rig("export-vm-beside", opts, Some(desired));
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    let t = Duration::from_secs(20);
    agent.wait_notify("READY=1", t);
    assert!(rig.sim.wait_until(t, |s| s.running_tasks() == 1));
    let journal = felhom_agent::journal::file_in(&rig.state_dir());
    assert!(poll_until(t, || std::fs::read_to_string(&journal)
        .is_ok_and(|j| j.contains("\"task_running\""))));
    let before = std::fs::read(&journal).unwrap();
    let mutations = rig.sim.mutations().len();

    let (text, err) = export(&rig, &["--all"]);
    assert_eq!(vmids(&text).len(), 20);
    let in_flight: Vec<&str> = notes(&err)
        .into_iter()
        .filter(|n| n.contains("in flight"))
        .collect();
    assert_eq!(in_flight.len(), 1, "{err}");
    assert!(
        in_flight[0].starts_with("201: the agent's op ")
            && in_flight[0].ends_with(" start is in flight: it may still change"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        before,
        "journal untouched"
    );
    assert_eq!(
        rig.sim.mutations().len(),
        mutations,
        "export sent no mutation"
    );

    agent.signal(SIGTERM);
    assert!(agent.wait_exit(t).success());
}
