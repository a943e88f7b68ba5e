//! The real binary's one-shot commands against the simulated node.

use super::rig::{fast_sim, guest, mutations_of, Rig};
use felhom_agent::sim::{Faults, PowerState};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn plan_is_read_only_and_prints_a_diff() {
    let mut web = guest(101, false);
    web.hostname = Some("web".into());
    let desired = r#"{"guests": [{"vmid": 101, "state": "running", "memory": 1024},
                                 {"vmid": 999, "state": "running"}]}"#;
    let rig = Rig::new(
        "cmd-plan",
        fast_sim(),
        vec![web, guest(102, true)],
        desired,
        serde_json::json!({}),
    );
    let out = rig.bin(&["plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "101 web  memory 512 -> 1024, state stopped -> running\n999 -  skipped: missing: on no node of the cluster\n"
    );
    let out = rig.bin(&["plan", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["actions"][0]["vmid"], 101);
    assert_eq!(v["actions"][0]["kind"], "set_config");
    assert_eq!(v["actions"][0]["params"]["memory"], "1024");
    assert!(v["actions"][0]["params"]["digest"].is_string());
    assert_eq!(v["actions"][1]["kind"], "start");
    assert_eq!(v["skipped"][0]["vmid"], 999);
    assert!(rig.sim.mutations().is_empty(), "plan must not mutate");
    // The unnamed guest was not read beyond the list.
    assert!(rig.sim.requests().iter().all(|r| r.vmid != Some(102)));
}

#[test]
fn once_converges_and_reports_json() {
    let desired = r#"{"guests": [{"vmid": 101, "state": "running", "cores": 2}]}"#;
    let rig = Rig::new(
        "cmd-once",
        fast_sim(),
        vec![guest(101, false)],
        desired,
        serde_json::json!({}),
    );
    let out = rig.bin(&["once", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["planned"], 2);
    assert_eq!(v["executed"], 2);
    assert_eq!(v["failed"], 0);
    assert_eq!(mutations_of(&rig.sim, 101), ["PUT config", "POST start"]);
    let g = rig.sim.guest(101).unwrap();
    assert_eq!((g.status, g.cores), (PowerState::Running, Some(2)));
    // The status file is there for `status`.
    let out = rig.bin(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 applied") || stdout(&out).contains("2 applied"),
        "{}",
        stdout(&out)
    );
    // The journal shows both ops finished.
    let out = rig.bin(&["journal", "--in-flight", "--json"]);
    assert_eq!(stdout(&out).trim(), "[]");
}

#[test]
fn once_exits_1_when_an_action_fails() {
    let rig = Rig::one_stopped_guest("cmd-once-fail");
    rig.sim.set_faults(Faults {
        fail_tasks: [(101, "startup for container '101' failed".to_string())].into(),
        ..Faults::default()
    });
    let out = rig.bin(&["once", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["failed"], 1);
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("startup for container '101' failed"));
}

#[test]
fn a_bad_desired_state_causes_no_action_and_exit_2() {
    let rig = Rig::new(
        "cmd-bad",
        fast_sim(),
        vec![guest(101, false)],
        "{}",
        serde_json::json!({}),
    );
    rig.write_desired("{\"guests\": [\n  {\"vmid\": 101, \"state\": \"runing\"}\n]}\n");
    for cmd in ["check", "plan", "once"] {
        let out = rig.bin(&[cmd]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("desired.json:2:"), "{cmd}: {err}");
        assert!(err.contains("guest 101"), "{cmd}: {err}");
    }
    assert!(rig.sim.requests().is_empty(), "nothing was even read");
}

#[test]
fn check_accepts_a_good_config() {
    let desired = r#"{"guests": [{"vmid": 101, "state": "running"}]}"#;
    let rig = Rig::new(
        "cmd-check",
        fast_sim(),
        vec![],
        desired,
        serde_json::json!({}),
    );
    let out = rig.bin(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("ok: "));
    assert!(rig.sim.requests().is_empty());
}

#[test]
fn the_secret_never_reaches_logs_output_or_state_files() {
    let desired = r#"{"guests": [{"vmid": 101, "state": "running", "cores": 2}]}"#;
    let rig = Rig::new(
        "cmd-secret",
        fast_sim(),
        vec![guest(101, false)],
        desired,
        serde_json::json!({}),
    );
    let secret = rig.sim.token_secret().to_string();
    let mut seen = String::new();
    for args in [
        &["once", "--log-level", "debug"][..],
        &["plan", "--json", "--log-level", "debug"],
        &["status", "--json"],
        &["journal", "--json"],
    ] {
        let out = rig.bin(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        seen += &stdout(&out);
        seen += &stderr(&out);
    }
    assert!(seen.contains("level=debug"), "debug logging was on");
    for entry in std::fs::read_dir(rig.state_dir()).unwrap() {
        seen += &std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
    }
    assert!(!seen.contains(&secret), "the token secret leaked");
    // It did authenticate with it: the guest was started.
    assert_eq!(rig.sim.guest(101).unwrap().status, PowerState::Running);
}

#[test]
fn the_demo_runs_end_to_end() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
        .arg("demo")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    for needle in [
        "pass 1: 1 in sync, 9 actions (9 applied, 0 converged, 0 failed, 0 blocked), 3 skipped",
        "mutations the node saw: 9 before this pass, 9 after",
        "201 app  pending: cores (waits for a restart; not re-sent)",
        "203 lab  skipped: paused: left as it is",
        "103 db  memory 256 -> 4096, state stopped -> running",
        "pass 3: 6 in sync, 2 actions (2 applied",
        "0 on guest 108 (unmanaged)",
        "no guest ever had two actions in flight, no intent was sent twice",
        "nothing in flight: true",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn with_no_desired_source_a_pass_plans_and_mutates_nothing() {
    let rig = Rig::new(
        "cmd-no-desired",
        fast_sim(),
        vec![guest(101, false), guest(102, true)],
        "{}",
        serde_json::json!({"desired_file": null}),
    );
    let out = rig.bin(&["once", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["planned"], 0);
    assert!(rig.sim.mutations().is_empty());
    assert!(rig.sim.requests().is_empty(), "nothing named, nothing read");
    let out = rig.bin(&["check"]);
    assert!(
        stdout(&out).contains("0 guests desired, source none"),
        "{}",
        stdout(&out)
    );
}

/// `journal --abandon OP` ends an op held for good (here one whose request never
/// reached the node): refused while another process holds the state directory, refused
/// for an op not in flight, and afterwards the guest is planned afresh and started once.
#[test]
fn journal_abandon_releases_an_op_held_for_good() {
    use felhom_agent::action::{Action, ActionKind};
    use felhom_agent::journal::{Journal, JournalOptions};
    use felhom_agent::pve::Vmid;
    let rig = Rig::new(
        "cmd-abandon",
        fast_sim(),
        vec![guest(101, false)],
        r#"{"guests": [{"vmid": 101, "state": "running"}]}"#,
        serde_json::json!({}),
    );
    // An op whose start never reached the node: in flight, no UPID.
    let journal = Journal::open(&rig.state_dir(), JournalOptions::default()).unwrap();
    let start = super::journal::action(101, ActionKind::Start);
    let op = journal.begin(&start).unwrap();
    // While another process holds the state directory: refused, nothing changed.
    let out = rig.bin(&["journal", "--abandon", &op.0.to_string()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is in use by another felhom-agent process"),
        "{}",
        stderr(&out)
    );
    journal.close().unwrap();

    // An op with a task is the node's to explain: refused.
    let journal = Journal::open(&rig.state_dir(), JournalOptions::default()).unwrap();
    let with_task = journal
        .begin(&Action {
            vmid: Vmid::new(102).unwrap(),
            ..start.clone()
        })
        .unwrap();
    let upid = "UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:102:agent@pve!reconciler:";
    journal
        .task_running(with_task, &upid.parse().unwrap())
        .unwrap();
    journal.close().unwrap();
    let out = rig.bin(&["journal", "--abandon", &with_task.0.to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("has a task"), "{}", stderr(&out));

    let out = rig.bin(&["journal", "--abandon", "99"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("op 99 is not in flight"),
        "{}",
        stderr(&out)
    );

    let out = rig.bin(&["journal", "--abandon", &op.0.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("op {op} (start of 101) abandoned: the agent may act on guest 101 again from its next pass\n")
    );
    let out = rig.bin(&["journal", "--in-flight"]);
    assert_eq!(
        stdout(&out),
        format!("op {with_task} vmid 102 start task_running {upid}\n")
    );
    // (That task is made up: end it, so that the pass below does not wait on it.)
    let journal = Journal::open(&rig.state_dir(), JournalOptions::default()).unwrap();
    journal.succeeded(with_task).unwrap();
    journal.close().unwrap();
    let out = rig.bin(&["journal"]);
    assert!(
        stdout(&out).contains("abandoned error=\"abandoned by the operator (journal --abandon)\""),
        "{}",
        stdout(&out)
    );
    // Nothing was sent so far; the next pass starts the guest, once.
    assert!(mutations_of(&rig.sim, 101).is_empty());
    let out = rig.bin(&["once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);
    assert_eq!(rig.sim.guest(101).unwrap().status, PowerState::Running);
}
