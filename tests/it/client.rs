//! The real client against the simulated node: every call and every error class.
//!
//! This file holds the shared helpers and the happy paths; the error classes, task
//! waiting and HTTPS are in the submodules.

mod errors;
mod raw;
mod tls;
mod vm;
mod wait;

use felhom_agent::action::Params;
use felhom_agent::cancel::Cancel;
use felhom_agent::log::Chain;
use felhom_agent::pve::{
    ApiError, Client, ClientOptions, PowerOp, PowerState as Status, TaskFailure, TaskOutcome,
    TaskQuery, Vmid, WaitOptions,
};
use felhom_agent::secret::Secret;
use felhom_agent::sim::{Faults, PowerState, Sim, SimGuest, SimOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn vmid(n: u32) -> Vmid {
    Vmid::new(n.into()).unwrap()
}

fn start(opts: SimOptions) -> Sim {
    Sim::start(opts).expect("the simulator starts")
}

fn two_nodes() -> SimOptions {
    SimOptions {
        nodes: vec!["pve1".into(), "pve2".into()],
        ..SimOptions::default()
    }
}

fn client_with(url: &str, token_id: &str, secret: &str, timeout: Duration) -> Client {
    let mut opts = ClientOptions::new(url, token_id, Secret::new(secret));
    opts.timeout = timeout;
    Client::new(opts).expect("valid client options")
}

fn client(sim: &Sim) -> Client {
    client_with(
        &sim.url(),
        sim.token_id(),
        sim.token_secret(),
        Duration::from_secs(5),
    )
}

fn guest(vmid: u32, node: &str, status: PowerState) -> SimGuest {
    let mut g = SimGuest::new(vmid, node);
    g.status = status;
    g
}

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn no_params() -> Params {
    Params::new()
}

fn within(secs: u64) -> WaitOptions {
    WaitOptions {
        deadline: Instant::now() + Duration::from_secs(secs),
        cancel: Cancel::never(),
    }
}

/// Starts a power action and waits for its task.
fn power_and_wait(c: &Client, node: &str, id: u32, op: PowerOp, p: &Params) -> TaskOutcome {
    let upid = c
        .lxc_power(node, vmid(id), op, p)
        .unwrap_or_else(|e| panic!("{op} {id}: {}", Chain(&e)));
    c.wait_task(&upid, &within(10))
        .unwrap_or_else(|e| panic!("waiting for {upid}: {}", Chain(&e)))
}

fn http_err<T: std::fmt::Debug>(r: Result<T, ApiError>) -> ApiError {
    match r {
        Err(e @ ApiError::Http { .. }) => e,
        other => panic!("expected an http error, got {other:?}"),
    }
}

#[test]
fn reads() {
    let sim = start(two_nodes());
    let mut web = guest(101, "pve1", PowerState::Running);
    web.hostname = Some("web1".into());
    web.cores = Some(2);
    web.memory = Some(1024);
    web.swap = Some(256);
    web.onboot = Some(true);
    web.description = Some("front end\n".into());
    web.tags = Some("prod;web".into());
    web.pending.insert("nameserver".into(), "192.0.2.53".into());
    sim.add_guest(web);
    let mut tpl = guest(102, "pve1", PowerState::Stopped);
    tpl.template = true;
    tpl.swap = None;
    sim.add_guest(tpl);
    let mut ha = guest(201, "pve2", PowerState::Running);
    ha.ha = Some("started".into());
    sim.add_guest(ha);
    let c = client(&sim);

    assert!(!c.version().unwrap().version.is_empty());
    assert!(c.get_raw("/version").unwrap().is_object());

    let mut list = c.list_lxc("pve1").unwrap();
    list.sort_by_key(|g| g.vmid);
    assert_eq!(list.len(), 2, "only pve1's guests: {list:?}");
    assert_eq!(list[0].vmid, vmid(101));
    assert_eq!(list[0].status, Status::Running);
    assert_eq!(list[0].tags.as_deref(), Some("prod;web"));
    assert_eq!(list[0].maxmem, Some(1024 << 20));
    assert_eq!(list[0].maxswap, Some(256 << 20));
    assert_eq!(list[1].status, Status::Stopped);
    assert!(list[1].template);

    let cfg = c.lxc_config("pve1", vmid(101), false).unwrap();
    assert_eq!(cfg.cores, Some(2));
    assert_eq!(cfg.memory, Some(1024));
    assert_eq!(cfg.effective_swap(), 256);
    assert_eq!(cfg.onboot, Some(true));
    assert_eq!(cfg.description.as_deref(), Some("front end\n"));
    assert_eq!(cfg.hostname.as_deref(), Some("web1"));
    assert_eq!(cfg.digest.len(), 40);
    assert_eq!(
        cfg.other.get("nameserver").and_then(|v| v.as_str()),
        Some("192.0.2.53"),
        "pending values are merged in by default"
    );
    let current = c.lxc_config("pve1", vmid(101), true).unwrap();
    assert!(!current.other.contains_key("nameserver"), "{current:?}");
    let tpl_cfg = c.lxc_config("pve1", vmid(102), true).unwrap();
    assert!(tpl_cfg.template);
    assert_eq!(tpl_cfg.effective_swap(), 0);

    let pending = c.lxc_pending("pve1", vmid(101)).unwrap();
    let ns = pending.iter().find(|p| p.key == "nameserver").unwrap();
    assert!(ns.is_pending());
    assert!(!pending
        .iter()
        .find(|p| p.key == "cores")
        .unwrap()
        .is_pending());

    let st = c.lxc_status("pve1", vmid(101)).unwrap();
    assert_eq!((st.vmid, st.status.clone()), (vmid(101), Status::Running));
    assert!(!st.ha_managed);
    let st = c.lxc_status("pve2", vmid(201)).unwrap();
    assert!(st.ha_managed);
    assert_eq!(st.ha_state.as_deref(), Some("started"));

    let mut res = c.cluster_resources().unwrap();
    res.sort_by_key(|r| r.vmid);
    let nodes: Vec<_> = res
        .iter()
        .map(|r| (r.vmid.get(), r.node.as_str()))
        .collect();
    assert_eq!(nodes, [(101, "pve1"), (102, "pve1"), (201, "pve2")]);
    assert_eq!(res[0].kind, "lxc");
    assert_eq!(res[0].id, "lxc/101");
    assert_eq!(res[2].hastate.as_deref(), Some("started"));
}

#[test]
fn power_actions_and_the_task_list() {
    let sim = start(SimOptions::default());
    sim.add_guest(guest(101, "pve1", PowerState::Stopped));
    let c = client(&sim);

    let upid = c
        .lxc_power("pve1", vmid(101), PowerOp::Start, &no_params())
        .unwrap();
    assert_eq!(
        (upid.node.as_str(), upid.kind.as_str(), upid.vmid()),
        ("pve1", "vzstart", Some(101))
    );
    assert_eq!(c.wait_task(&upid, &within(10)), Ok(TaskOutcome::Ok));
    assert_eq!(
        c.lxc_status("pve1", vmid(101)).unwrap().status,
        Status::Running
    );

    let q = TaskQuery {
        vmid: Some(vmid(101)),
        typefilter: Some("vzstart".into()),
        source: Some("all".into()),
        ..TaskQuery::default()
    };
    let tasks = c.tasks("pve1", &q).unwrap();
    let entry = tasks.iter().find(|t| t.upid == upid).expect("task listed");
    assert_eq!(entry.status.as_deref(), Some("OK"));
    assert!(entry.endtime.is_some());

    let shutdown = params(&[("timeout", "30"), ("forceStop", "1")]);
    let outcome = power_and_wait(&c, "pve1", 101, PowerOp::Shutdown, &shutdown);
    assert_eq!(outcome, TaskOutcome::Ok);
    assert_eq!(
        c.lxc_status("pve1", vmid(101)).unwrap().status,
        Status::Stopped
    );
    let shutdown_req = sim
        .mutations()
        .into_iter()
        .find(|r| r.path.ends_with("/status/shutdown"))
        .unwrap();
    assert_eq!(
        shutdown_req.params.get("forceStop").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        shutdown_req.params.get("timeout").map(String::as_str),
        Some("30")
    );

    assert_eq!(
        power_and_wait(&c, "pve1", 101, PowerOp::Start, &no_params()),
        TaskOutcome::Ok
    );
    assert_eq!(
        power_and_wait(&c, "pve1", 101, PowerOp::Stop, &no_params()),
        TaskOutcome::Ok
    );
    assert_eq!(sim.guest(101).unwrap().status, PowerState::Stopped);
}

#[test]
fn failed_tasks_are_outcomes_with_a_classification() {
    let sim = start(SimOptions::default());
    sim.add_guest(guest(101, "pve1", PowerState::Stopped));
    let mut locked = guest(102, "pve1", PowerState::Stopped);
    locked.lock = Some("backup".into());
    sim.add_guest(locked);
    let mut tpl = guest(103, "pve1", PowerState::Stopped);
    tpl.template = true;
    sim.add_guest(tpl);
    sim.set_faults(Faults {
        fail_tasks: BTreeMap::from([(101, "something broke".to_string())]),
        ..Faults::default()
    });
    let c = client(&sim);

    let out = power_and_wait(&c, "pve1", 101, PowerOp::Start, &no_params());
    assert_eq!(out, TaskOutcome::Failed("something broke".into()));
    assert_eq!(out.failure(), Some(TaskFailure::Other));

    let out = power_and_wait(&c, "pve1", 102, PowerOp::Start, &no_params());
    assert_eq!(
        out.failure(),
        Some(TaskFailure::Locked("backup".into())),
        "{out}"
    );

    let out = power_and_wait(&c, "pve1", 103, PowerOp::Start, &no_params());
    assert_eq!(out.failure(), Some(TaskFailure::Template), "{out}");
}
