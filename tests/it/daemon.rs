//! `felhom-agent run` as a real process against the simulated node: reload, a rejected
//! reload, SIGTERM during a long task, sd_notify, and the metrics file.

use super::agent::{agent_with_a_long_task, Agent, SIGHUP, SIGTERM};
use super::prom::parse_prometheus;
use super::rig::{fast_sim, guest, mutations_of, Rig};
use felhom_agent::sim::PowerState;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

#[test]
fn desired_change_and_sighup_converge_without_a_restart() {
    let desired =
        r#"{"guests": [{"vmid": 101, "state": "running"}, {"vmid": 102, "state": "stopped"}]}"#;
    let rig = Rig::new(
        "daemon-reload",
        fast_sim(),
        vec![guest(101, false), guest(102, false)],
        desired,
        serde_json::json!({}),
    );
    let metrics = rig.dir.path().join("metrics.prom");
    let rig = {
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&rig.config_path).unwrap()).unwrap();
        cfg["metrics_file"] = serde_json::json!(metrics);
        std::fs::write(&rig.config_path, cfg.to_string()).unwrap();
        rig
    };
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    agent.wait_notify("STATUS=pass 1:", T);
    assert_eq!(rig.sim.guest(101).unwrap().status, PowerState::Running);
    // logfmt, with a timestamp when journald is not the receiver.
    let line = agent.wait_line("msg=\"action applied\" vmid=101 kind=start", T);
    assert!(
        line.starts_with("ts=") && line.contains(" upid=UPID:pve1:"),
        "{line}"
    );

    // The metrics file is valid Prometheus text and says what happened.
    let text = std::fs::read_to_string(&metrics).unwrap();
    let samples = parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let value = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .map(|s| s.value)
    };
    assert_eq!(value("felhom_passes_total", &[]), Some(1.0));
    assert_eq!(
        value(
            "felhom_actions_total",
            &[("kind", "start"), ("result", "applied")]
        ),
        Some(1.0)
    );
    assert_eq!(value("felhom_in_flight_ops", &[]), Some(0.0));
    assert!(value("felhom_journal_size_bytes", &[]).unwrap() > 0.0);
    assert!(value("felhom_last_pass_duration_seconds", &[]).is_some());

    // A new desired state and SIGHUP: the agent converges to it, same process.
    rig.write_desired(r#"{"guests": [{"vmid": 101, "state": "stopped"}, {"vmid": 102, "state": "running", "cores": 3}]}"#);
    agent.signal(SIGHUP);
    agent.wait_notify("RELOADING=1", T);
    agent.wait_notify("READY=1", T);
    agent.wait_notify("STATUS=pass 2:", T);
    let (g1, g2) = (rig.sim.guest(101).unwrap(), rig.sim.guest(102).unwrap());
    assert_eq!(g1.status, PowerState::Stopped);
    assert_eq!((g2.status, g2.cores), (PowerState::Running, Some(3)));
    assert_eq!(mutations_of(&rig.sim, 102), ["PUT config", "POST start"]);

    agent.signal(SIGTERM);
    agent.wait_notify("STOPPING=1", T);
    assert!(agent.wait_exit(T).success());
}

#[test]
fn a_broken_desired_file_on_sighup_keeps_the_old_state_and_shows_in_status() {
    let desired = r#"{"guests": [{"vmid": 101, "state": "running"}]}"#;
    let rig = Rig::new(
        "daemon-bad-reload",
        fast_sim(),
        vec![guest(101, false), guest(102, false)],
        desired,
        serde_json::json!({}),
    );
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    agent.wait_notify("STATUS=pass 1:", T);
    let before = rig.sim.mutations().len();

    // Broken: a syntax error that would also name guest 102.
    rig.write_desired("{\"guests\": [{\"vmid\": 102, \"state\": \"running\",}]}");
    agent.signal(SIGHUP);
    agent.wait_notify("RELOADING=1", T);
    agent.wait_notify("READY=1", T);
    agent.wait_line("reload failed", T);
    // The pass after the reload runs with the old desired state: nothing to do.
    agent.wait_notify("STATUS=pass 2:", T);
    assert_eq!(
        rig.sim.mutations().len(),
        before,
        "a bad reload caused an action"
    );
    assert_eq!(rig.sim.guest(102).unwrap().status, PowerState::Stopped);

    let out = rig.bin(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("reload error"), "{text}");
    assert!(text.contains("desired.json:1:"), "{text}");

    // The old desired state is still enforced: drift on 101 is repaired.
    rig.sim
        .update_guest(101, |g| g.status = PowerState::Stopped);
    agent.signal(super::agent::SIGUSR1);
    agent.wait_notify("STATUS=pass 3:", T);
    assert_eq!(rig.sim.guest(101).unwrap().status, PowerState::Running);

    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
}

#[test]
fn sigterm_during_a_long_task_exits_0_within_the_drain_bound() {
    let (rig, mut agent) =
        agent_with_a_long_task("daemon-term", serde_json::json!({"drain_timeout_secs": 1}));

    let t0 = Instant::now();
    agent.signal(SIGTERM);
    agent.wait_notify("STOPPING=1", T);
    let status = agent.wait_exit(T);
    let took = t0.elapsed();
    assert!(status.success(), "{status:?}");
    // Drain bound 1 s, plus the time to cancel the wait and join the threads.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        agent.seen.iter().any(|l| l.contains("drain bound reached")),
        "{:?}",
        agent.seen
    );
    assert!(
        agent.seen.iter().any(|l| l.contains("agent stopped")),
        "{:?}",
        agent.seen
    );

    // The journal is consistent and still has the running task in flight, with its UPID.
    let out = rig.bin(&["journal", "--in-flight", "--json"]);
    assert!(out.status.success());
    let ops: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ops.as_array().unwrap().len(), 1, "{ops}");
    assert_eq!(ops[0]["state"], "task_running");
    assert!(ops[0]["upid"].as_str().unwrap().contains(":vzstart:101:"));
    assert_eq!(rig.sim.tasks_started(101).len(), 1);
}

#[test]
fn notify_sequence_and_thread_hygiene() {
    let rig = Rig::new(
        "daemon-notify",
        fast_sim(),
        vec![],
        r#"{"guests": []}"#,
        serde_json::json!({}),
    );
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    agent.signal(SIGHUP);
    let msg = agent.wait_notify("RELOADING=1", T);
    assert!(msg.contains("MONOTONIC_USEC="), "{msg}");
    agent.wait_notify("READY=1", T);
    agent.signal(SIGTERM);
    agent.wait_notify("STOPPING=1", T);
    assert!(agent.wait_exit(T).success());
    assert!(rig.sim.mutations().is_empty());
}

#[test]
fn watchdog_pings_when_systemd_asks_for_them() {
    let rig = Rig::new(
        "daemon-watchdog",
        fast_sim(),
        vec![],
        r#"{"guests": []}"#,
        serde_json::json!({}),
    );
    let mut agent = Agent::run(
        &rig.config_path,
        rig.dir.path(),
        &[("WATCHDOG_USEC", "200000")],
    );
    agent.wait_notify("READY=1", T);
    // Half the watchdog interval: pings every 100 ms, so two arrive well within T.
    agent.wait_notify("WATCHDOG=1", T);
    agent.wait_notify("WATCHDOG=1", T);
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
}

#[test]
fn a_second_agent_on_the_same_state_dir_is_refused() {
    let rig = Rig::one_stopped_guest("daemon-lock");
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("STATUS=pass 1:", T);
    let before = rig.sim.requests().len();
    let out = rig.bin(&["once"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another felhom-agent process"),
        "{err}"
    );
    assert_eq!(
        rig.sim.requests().len(),
        before,
        "the refused agent talked to the node"
    );
    // Reading the journal needs no lock.
    assert!(rig.bin(&["journal"]).status.success());
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
    // Released at exit: the next agent runs.
    assert!(rig.bin(&["once"]).status.success());
}

#[test]
fn a_slow_api_does_not_stall_the_watchdog_or_a_stop() {
    let rig = Rig::one_stopped_guest("daemon-slow");
    // Every read of the guest list takes 3 s.
    rig.sim.set_faults(felhom_agent::sim::Faults::rule(
        felhom_agent::sim::FaultRule::new(
            felhom_agent::sim::Match::get("/lxc"),
            felhom_agent::sim::Effect::Delay(Duration::from_secs(3)),
        ),
    ));
    let mut agent = Agent::run(
        &rig.config_path,
        rig.dir.path(),
        &[("WATCHDOG_USEC", "400000")],
    );
    agent.wait_notify("READY=1", T);
    // The first pass is stuck reading the node; the run loop still pings and listens.
    agent.wait_notify("WATCHDOG=1", T);
    agent.wait_notify("WATCHDOG=1", T);
    let t0 = Instant::now();
    agent.signal(SIGTERM);
    agent.wait_notify("STOPPING=1", T);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert!(agent.wait_exit(T).success());
    assert!(
        rig.sim.mutations().is_empty(),
        "no pass completed, so nothing was done"
    );
}

#[test]
fn a_fifo_named_as_the_desired_file_is_refused_at_once_and_the_watchdog_goes_on() {
    let rig = Rig::one_stopped_guest("daemon-fifo");
    let mut agent = Agent::run(
        &rig.config_path,
        rig.dir.path(),
        &[("WATCHDOG_USEC", "400000")],
    );
    agent.wait_notify("READY=1", T);
    agent.wait_notify("STATUS=pass 1:", T);
    // The desired file is replaced by a FIFO nobody writes to.
    let desired = rig.dir.path().join("desired.json");
    std::fs::remove_file(&desired).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&desired)
        .status()
        .unwrap();
    assert!(made.success());
    agent.signal(SIGHUP);
    let line = agent.wait_line("reload failed", T);
    assert!(line.contains("a FIFO, not a regular file"), "{line}");
    agent.wait_notify("WATCHDOG=1", T);
    // `check` says the same at once.
    let out = rig.bin(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("desired.json") && err.contains("a FIFO"),
        "{err}"
    );
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
}
