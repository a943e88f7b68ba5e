//! VM config updates over raw HTTP: PUT (synchronous) and POST (a `qmconfig` task),
//! what a running VM takes at once and what waits, the balloon, digest and lock checks,
//! and memory hotplug.

use super::vm_api::vm;
use super::*;
use felhom_agent::sim::PowerState;

const CONFIG: &str = "/nodes/pve1/qemu/100/config";

fn current(sim: &Sim) -> Value {
    get(sim, &format!("{CONFIG}?current=1")).data()
}

#[test]
fn a_running_vm_takes_options_at_once_and_cpu_and_memory_at_the_next_start() {
    let sim = start(vec![vm(100).running()]);
    let r = put(
        &sim,
        CONFIG,
        "cores=4&sockets=2&memory=4096&description=db%0A%0A&onboot=1&tags=Prod%3Bdb",
    );
    assert_eq!(r.data(), Value::Null);
    let c = current(&sim);
    assert_eq!(c["description"], "db");
    assert_eq!(c["onboot"], 1);
    assert_eq!(c["tags"], "db;prod");
    assert_eq!(
        (c["cores"].as_u64(), c["memory"].as_str()),
        (Some(1), Some("2048"))
    );
    let merged = get(&sim, CONFIG).data();
    assert_eq!(
        (merged["cores"].as_u64(), merged["sockets"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(merged["memory"], "4096");
    let pending = get(&sim, "/nodes/pve1/qemu/100/pending").data();
    let waiting: Vec<&str> = pending
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i.get("pending").is_some())
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(waiting, ["cores", "memory", "sockets"]);
    // A stop through the API applies them.
    let upid = upid_of(&post(&sim, "/nodes/pve1/qemu/100/status/stop", ""));
    assert_eq!(finished(&sim, &upid)["exitstatus"], "OK");
    let c = current(&sim);
    assert_eq!(
        (c["cores"].as_u64(), c["sockets"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(c["memory"], "4096");
    assert!(sim.guest(100).unwrap().pending.is_empty());
}

#[test]
fn a_stopped_vm_takes_everything_at_once() {
    let sim = start(vec![vm(100)]);
    assert_eq!(
        put(&sim, CONFIG, "cores=2&memory=1024&delete=numa").status,
        200
    );
    let c = current(&sim);
    assert_eq!(
        (c["cores"].as_u64(), c["memory"].as_str()),
        (Some(2), Some("1024"))
    );
    assert!(c.get("numa").is_none());
    assert!(sim.guest(100).unwrap().pending.is_empty());
}

#[test]
fn memory_below_the_balloon_needs_a_new_balloon_in_the_same_request() {
    let sim = start(vec![vm(100)
        .with_config("balloon", "2048")
        .with_config("memory", "4096")]);
    let too_large = "balloon value too large (must be smaller than assigned memory)";
    let r = put(&sim, CONFIG, "memory=1024");
    assert_eq!((r.status, r.reason.as_str()), (500, too_large));
    let r = put(&sim, CONFIG, "memory=1024&delete=balloon");
    assert_eq!(r.reason, too_large, "a delete does not count");
    let r = post(&sim, CONFIG, "memory=1024");
    assert_eq!(r.reason, too_large, "checked before the task");
    assert!(sim.tasks_started(100).is_empty());
    assert_eq!(put(&sim, CONFIG, "memory=1024&balloon=512").status, 200);
    let c = current(&sim);
    assert_eq!(
        (c["memory"].as_str(), c["balloon"].as_u64()),
        (Some("1024"), Some(512))
    );
}

#[test]
fn digest_lock_and_parameter_checks() {
    let sim = start(vec![vm(100), vm(101).hibernated()]);
    let digest = current(&sim)["digest"].as_str().unwrap().to_string();
    assert_eq!(
        put(&sim, CONFIG, &format!("onboot=1&digest={digest}")).status,
        200
    );
    let r = put(&sim, CONFIG, &format!("onboot=0&digest={digest}"));
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "checksum mismatch (file change by other user?)")
    );
    assert_eq!(current(&sim)["onboot"], 1);
    sim.update_guest(100, |g| g.lock = Some("backup".into()));
    let r = put(&sim, CONFIG, "onboot=0");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "VM is locked (backup)")
    );
    let r = put(&sim, CONFIG, "digest=abc");
    assert_eq!((r.status, r.reason.as_str()), (500, "no options specified"));
    let r = put(&sim, CONFIG, "swap=512");
    assert_eq!(r.status, 400, "not a VM key");
    assert!(r.param_error("swap").contains("not defined in schema"));
    let r = put(&sim, CONFIG, "memory=8G");
    assert!(r.param_error("memory").starts_with("invalid format"));
    let r = put(&sim, CONFIG, "cores=2&skiplock=1");
    assert_eq!(r.param_error("skiplock"), "Only root may use this option.");
    // A hibernated VM refuses changes but may drop its saved state, which unlocks it.
    let vm101 = "/nodes/pve1/qemu/101/config";
    assert_eq!(
        put(&sim, vm101, "cores=2").reason,
        "VM is locked (suspended)"
    );
    assert_eq!(put(&sim, vm101, "delete=vmstate").status, 200);
    let g = sim.guest(101).unwrap();
    assert_eq!((g.lock, g.status), (None, PowerState::Stopped));
    assert!(!g.other.contains_key("vmstate"));
}

#[test]
fn post_runs_the_update_as_a_qmconfig_task() {
    let sim = start(vec![vm(100)
        .running()
        .with_config("hotplug", "disk,network,memory")]);
    let upid = upid_of(&post(&sim, CONFIG, "onboot=1&cores=2"));
    assert_eq!(upid.split(':').nth(5), Some("qmconfig"));
    assert_eq!(finished(&sim, &upid)["exitstatus"], "OK");
    let g = sim.guest(100).unwrap();
    assert_eq!((g.onboot, g.pending["cores"].as_str()), (Some(true), "2"));
    // A hotplug that fails fails the task; the other keys of the request stay applied.
    let upid = upid_of(&post(&sim, CONFIG, "memory=512&description=x"));
    let exit = finished(&sim, &upid)["exitstatus"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        exit.starts_with(
            "400 Parameter verification failed. memory: hotplug problem - memory can't be \
             lower than 1024 MB"
        ),
        "{exit}"
    );
    let g = sim.guest(100).unwrap();
    assert_eq!(
        (g.description.as_deref(), g.pending["memory"].as_str()),
        (Some("x"), "512")
    );
    // With background_delay the call waits for a quick task and answers null.
    let r = post(&sim, CONFIG, "onboot=0&background_delay=5");
    assert_eq!(r.data(), Value::Null);
    assert_eq!(sim.guest(100).unwrap().onboot, Some(false));
    let r = post(&sim, CONFIG, "background_delay=31&onboot=1");
    assert_eq!(r.status, 400);
}

#[test]
fn memory_hotplug_rounds_to_dimms_and_reports_problems_per_key() {
    let sim = start(vec![vm(100)
        .running()
        .with_config("hotplug", "network,disk,cpu,memory")
        .with_config("numa", "1")
        .with_config("sockets", "2")
        .with_config("cores", "2")]);
    assert_eq!(put(&sim, CONFIG, "memory=3000&vcpus=3").status, 200);
    let c = current(&sim);
    assert_eq!(
        (c["memory"].as_str(), c["vcpus"].as_u64()),
        (Some("3072"), Some(3))
    );
    let r = put(&sim, CONFIG, "vcpus=5&onboot=1");
    assert_eq!(
        r.param_error("vcpus"),
        "hotplug problem - you can't add more vcpus than maxcpus"
    );
    assert_eq!(current(&sim)["onboot"], 1, "what could be applied was");
    assert_eq!(sim.guest(100).unwrap().pending["vcpus"], "5");
}

#[test]
fn config_writes_wait_for_a_running_task_and_need_quorum() {
    let sim = start_with(|o| o.task_duration = Duration::from_millis(300));
    sim.add_guest(vm(100));
    // Writes while the start runs, on purpose: the write waits for the task's lock.
    sim.allow_violations();
    let upid = upid_of(&post(&sim, "/nodes/pve1/qemu/100/status/start", ""));
    assert_eq!(put(&sim, CONFIG, "cores=2").status, 200);
    assert_eq!(
        task_status(&sim, &upid)["exitstatus"],
        "OK",
        "the start ended first"
    );
    assert_eq!(
        sim.guest(100).unwrap().pending["cores"],
        "2",
        "the VM ran by then"
    );
    sim.set_quorate(false);
    let r = put(&sim, CONFIG, "onboot=1");
    assert_eq!(r.status, 500);
    assert!(r
        .reason
        .starts_with("unable to open file '/etc/pve/nodes/pve1/qemu-server/100.conf.tmp."));
}
