//! A real agent killed with SIGKILL at three points, then restarted: recovery leaves
//! nothing in flight, and the node never sees a duplicate start of a guest whose task
//! was still running.

use super::agent::{agent_with_a_long_task, poll_until, Agent};
use super::rig::{fast_sim, guest, mutations_of, Rig};
use felhom_agent::sim::{Effect, FaultRule, Faults, Match, PowerState, SimOptions};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn in_flight(rig: &Rig) -> serde_json::Value {
    let out = rig.bin(&["journal", "--in-flight", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn journal_has(rig: &Rig, needle: &str) -> bool {
    std::fs::read_to_string(felhom_agent::journal::file_in(&rig.state_dir()))
        .is_ok_and(|j| j.contains(needle))
}

/// Restarts the agent, waits for recovery and the first pass, and stops it cleanly.
fn restart_and_settle(rig: &Rig) -> Agent {
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    agent.wait_notify("STATUS=pass 1:", T);
    agent
}

#[test]
fn killed_after_started_is_durable_but_before_the_call_returns() {
    let rig = Rig::one_stopped_guest("crash-started");
    // The start request reaches the node but its answer takes a while.
    rig.sim.set_faults(Faults::rule(FaultRule::new(
        Match::post("status/start"),
        Effect::Delay(Duration::from_millis(700)),
    )));
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    // The request is at the node, so `started` is already on disk.
    assert!(rig.sim.wait_until(T, |s| s.max_concurrent_mutations() == 1));
    assert!(journal_has(&rig, "\"started\""));
    agent.kill9();
    assert_eq!(in_flight(&rig)[0]["state"], "started");

    // The node carries on with the request the dead agent sent.
    assert!(rig.sim.wait_until(T, |s| s.tasks_started(101).len() == 1));
    rig.sim.set_faults(Faults::default());

    let mut agent = restart_and_settle(&rig);
    // Recovery found the task in the node's task list and resolved the op from it.
    assert_eq!(in_flight(&rig), serde_json::json!([]));
    assert!(rig
        .sim
        .wait_until(T, |s| s.guest(101).unwrap().status == PowerState::Running));
    assert_eq!(rig.sim.tasks_started(101).len(), 1, "a duplicate start");
    assert_eq!(
        mutations_of(&rig.sim, 101),
        ["POST start"],
        "the restart sent another"
    );
    let out = rig.bin(&["journal", "--json"]);
    let states: Vec<String> = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, ["started", "task_running", "succeeded"]);
    agent.signal(super::agent::SIGTERM);
    assert!(agent.wait_exit(T).success());
}

#[test]
fn killed_after_task_running_while_the_task_runs() {
    let opts = SimOptions {
        task_duration: Duration::from_millis(1500),
        ..fast_sim()
    };
    let desired =
        r#"{"guests": [{"vmid": 101, "state": "running"}, {"vmid": 102, "state": "running"}]}"#;
    let rig = Rig::new(
        "crash-task",
        opts,
        vec![guest(101, false), guest(102, false)],
        desired,
        serde_json::json!({}),
    );
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    assert!(poll_until(T, || {
        std::fs::read_to_string(felhom_agent::journal::file_in(&rig.state_dir()))
            .is_ok_and(|j| j.matches("\"task_running\"").count() == 2)
    }));
    assert_eq!(rig.sim.running_tasks(), 2, "killed while the tasks run");
    agent.kill9();
    let ops = in_flight(&rig);
    assert_eq!(ops.as_array().unwrap().len(), 2);
    assert!(ops
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["state"] == "task_running"));
    // `plan` (read-only, beside no agent) holds both guests for their ops in flight.
    let out = rig.bin(&["plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("skipped: in flight: task").count(),
        2,
        "{text}"
    );

    // Restarted while the tasks still run: recovery waits for them, and no new start
    // is issued for either guest.
    let mut agent = restart_and_settle(&rig);
    assert_eq!(in_flight(&rig), serde_json::json!([]));
    for vmid in [101, 102] {
        assert_eq!(mutations_of(&rig.sim, vmid), ["POST start"], "guest {vmid}");
        assert_eq!(rig.sim.guest(vmid).unwrap().status, PowerState::Running);
    }
    let out = rig.bin(&["journal", "--json"]);
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let succeeded = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "succeeded")
        .count();
    assert_eq!(succeeded, 2, "{records}");
    agent.signal(super::agent::SIGTERM);
    assert!(agent.wait_exit(T).success());
}

#[test]
fn killed_during_compaction() {
    // Ten guests to start: twenty-odd records pass the smallest compaction bound.
    let guests: Vec<_> = (101..=110).map(|v| guest(v, false)).collect();
    let desired = serde_json::json!({"guests": (101..=110)
        .map(|v| serde_json::json!({"vmid": v, "state": "running"}))
        .collect::<Vec<_>>()})
    .to_string();
    let rig = Rig::new(
        "crash-compact",
        fast_sim(),
        guests,
        &desired,
        serde_json::json!({"journal_compact_bytes": 4096}),
    );
    let mut agent = Agent::run(
        &rig.config_path,
        rig.dir.path(),
        &[("FELHOM_FAILPOINT", "compact-before-rename")],
    );
    agent.wait_line("failpoint compact-before-rename reached", T);
    assert!(rig.state_dir().join("journal.tmp").exists());
    agent.kill9();

    // The journal opens (the old file, whole), and a restart converges everything.
    let _ = in_flight(&rig);
    let mut agent = restart_and_settle(&rig);
    assert!(rig.sim.wait_until(T, |s| (101..=110)
        .all(|v| s.guest(v).unwrap().status == PowerState::Running)));
    agent.signal(super::agent::SIGTERM);
    assert!(agent.wait_exit(T).success());
    assert_eq!(in_flight(&rig), serde_json::json!([]));
    for vmid in 101..=110 {
        assert_eq!(
            rig.sim.tasks_started(vmid).len(),
            1,
            "guest {vmid} started twice"
        );
    }
    assert!(!rig.state_dir().join("journal.tmp").exists());
}

#[test]
fn a_corrupt_journal_stops_the_agent_with_exit_3() {
    let desired = r#"{"guests": [{"vmid": 101, "state": "running", "cores": 2}]}"#;
    let rig = Rig::new(
        "crash-corrupt",
        fast_sim(),
        vec![guest(101, false)],
        desired,
        serde_json::json!({}),
    );
    assert!(rig.bin(&["once"]).status.success());
    let path = felhom_agent::journal::file_in(&rig.state_dir());
    let mut bytes = std::fs::read(&path).unwrap();
    let lines: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
        .collect();
    assert!(lines.len() >= 3, "a middle record exists");
    // One flipped byte inside the second record, with good records after it.
    bytes[lines[0] + 20] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    rig.sim
        .update_guest(101, |g| g.status = PowerState::Stopped);
    let before = rig.sim.mutations().len();

    for cmd in [
        &["once"][..],
        &["journal"],
        &["journal", "--in-flight", "--json"],
    ] {
        let out = rig.bin(cmd);
        assert_eq!(out.status.code(), Some(3), "{cmd:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("corrupt at line 2"), "{cmd:?}: {err}");
    }
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    assert_eq!(agent.wait_exit(T).code(), Some(3));
    assert!(
        agent.seen.iter().any(|l| l.contains("corrupt")),
        "{:?}",
        agent.seen
    );
    assert_eq!(
        rig.sim.mutations().len(),
        before,
        "a corrupt journal caused an action"
    );
    // Nothing was repaired or rewritten behind the operator's back.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn sigterm_during_recovery_stops_at_once_and_keeps_the_op_in_flight() {
    let (rig, mut agent) = agent_with_a_long_task("crash-recovery-term", serde_json::json!({}));
    agent.kill9();

    // The restart waits for the 60 s task before it is ready; a stop must not wait.
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_line("recovering in-flight ops", T);
    let t0 = std::time::Instant::now();
    agent.signal(super::agent::SIGTERM);
    agent.wait_notify("STOPPING=1", T);
    assert!(agent.wait_exit(T).success());
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    assert!(agent.seen.iter().all(|l| !l.contains("agent ready")));
    let ops = in_flight(&rig);
    assert_eq!(ops[0]["state"], "task_running", "{ops}");
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);
}
