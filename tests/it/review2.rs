//! An independent adversarial review of the agent's first promise (one intent is never
//! sent to Proxmox twice; a guest never has two actions in flight; a guest the agent is
//! told to leave alone gets nothing) as it stands after one-shot actions (`once`), the
//! last look before a power action, max_parallel counting ops of unknown outcome, the
//! HA request decision and the task search bounded by the guest's last task landed.
//!
//! Each test here is one defect: it failed on main for that defect and no other reason
//! (the file:line references are main's as the review found it), and its doc comment
//! says what broke and how it was fixed. The evidence is the simulated node's own
//! request log, task list and audit.
//! Nothing waits with a sleep: every wait is on a condition with a deadline.

use super::agent::{poll_until, Agent, SIGHUP, SIGTERM};
use super::rig::{fast_sim, finish_pass, guest, mutations_of, pass, running, Rig};
use felhom_agent::action::ActionKind;
use felhom_agent::cancel::CancelSource;
use felhom_agent::journal::{Journal, JournalOptions};
use felhom_agent::sim::{Effect, FaultRule, Faults, Match, PowerState, SimOptions};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

mod notify;
mod support;

use support::{run_until, upid_at};

const T: Duration = Duration::from_secs(30);

/// Defect 1: a one-shot action filed with HA is carried out a second time when HA's
/// state no longer follows the request.
///
/// With `ha_mode: "request"`, a one-shot `shutdown` of an HA guest is filed as an
/// `hastop` task, which ends OK at once. Before ha-manager acts, the operator changes
/// their mind (`ha-manager set ct:101 --state started`). `request_outcome` decides
/// that something else was asked since (src/inflight/ha.rs:126-141: `Against`, or
/// `NotYet` past the grace, both end in `Ending::Settled`), and
/// `ApiExecutor::verify_ha` journals the op `abandoned` (src/engine/exec.rs:367-368;
/// `inflight::apply` does the same after a restart, src/inflight/mod.rs:314). `KeyUse::is_spent` takes every abandoned op as
/// "did not happen" (src/journal/keys.rs:35), so the key is free again and the next
/// pass files the same maintenance shutdown a second time, against the operator's
/// explicit wish: exactly what the README says `once` prevents ("a maintenance script
/// that re-runs ... shuts a guest down a second time"), and against its own rule that
/// a key whose task ran is used up. The node's request log shows two
/// `POST .../status/shutdown` (two `hastop` tasks) for the one key.
///
/// Fixed: an op whose request reached the node (it has a UPID) spends its key whatever
/// its ending, and compaction keeps such keyed ops: one rule,
/// `journal::keys::spends_key`, for both.
#[test]
fn a_one_shot_filed_with_ha_is_not_filed_again_when_ha_is_told_otherwise() {
    let mut g = guest(101, true);
    g.ha = Some("started".into());
    let opts = SimOptions {
        // ha-manager does not get to the request while the test runs.
        ha_apply_delay: Duration::from_secs(600),
        ..fast_sim()
    };
    let rig = Rig::new(
        "review2-ha-once",
        opts,
        vec![g],
        r#"{"guests": [{"vmid": 101, "once": [{"key": "maint", "action": "shutdown"}]}]}"#,
        serde_json::json!({"ha_mode": "request", "unanswered_grace_secs": 5}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let desired = rig.desired();
    let (_plan, done) = engine.start_pass(&desired);
    assert!(done.is_none(), "the one-shot shutdown was planned");
    // The request is filed: the node records HA's requested state.
    assert!(rig
        .sim
        .wait_until(T, |s| s.guest(101).unwrap().ha.as_deref()
            == Some("stopped")));
    // The operator overrides it before ha-manager acts.
    rig.sim.update_guest(101, |g| g.ha = Some("started".into()));
    let first = finish_pass(&mut engine);
    assert_eq!(first.executed, 1, "{first:?}");
    assert_eq!(mutations_of(&rig.sim, 101), ["POST shutdown"]);

    // The next pass: the key was used, so there is nothing to do.
    let (_plan, done) = engine.start_pass(&desired);
    if done.is_none() {
        // Something was dispatched: until it reaches the node, or its pass ends.
        run_until(&mut engine, || mutations_of(&rig.sim, 101).len() >= 2);
    }
    engine.shutdown(Instant::now(), || cancel.cancel());
    journal.close().unwrap();
    let hastops = rig
        .sim
        .tasks_started(101)
        .iter()
        .filter(|u| u.contains(":hastop:"))
        .count();
    assert_eq!(
        mutations_of(&rig.sim, 101),
        ["POST shutdown"],
        "one-shot key \"maint\" was carried out {hastops} times (hastop tasks)"
    );
}

/// Defect 2: a reload that changes `hold_tag` does not reach a power action already
/// queued, so a guest the operator just put on hold is started.
///
/// The last look checks the `Guard` the action was planned with (src/plan/mod.rs:173,
/// built into every power action at src/plan/guest.rs:224), not the settings in force:
/// a reload swaps the plan settings (src/daemon/reload.rs:214) and the desired state,
/// but the lanes stop a queued job only when its guest's desired *spec* fingerprint
/// changed (src/lanes.rs:434-449), and config settings are not part of it. So with
/// `hold_tag` changed to `maint` and guest 102 tagged `maint` (the operator's "leave
/// it alone"), 102's start, queued behind 101's long task, is sent anyway. The same
/// holds for `identity_guard` turned on (a renamed guest is started) and for `ha_mode`
/// turned from `"request"` to `"skip"` (an HA guest is sent a request).
///
/// Fixed: the lanes know the generation of the plan settings in force
/// (`Lanes::set_wanted`), and a job planned under other settings goes no further,
/// not even to its first action; the next pass plans under the new ones.
#[test]
fn a_queued_start_is_not_sent_to_a_guest_on_hold_under_a_reloaded_hold_tag() {
    let rig = Rig::new(
        "review2-reload-hold-tag",
        fast_sim(),
        vec![guest(101, false), guest(102, false)],
        r#"{"guests": [{"vmid": 101, "state": "running"}, {"vmid": 102, "state": "running"}]}"#,
        serde_json::json!({"max_parallel": 1}),
    );
    // 101's start task runs until the test lets it end; 102's start waits behind it.
    rig.sim.set_faults(Faults {
        hang_tasks: BTreeSet::from([101]),
        ..Faults::default()
    });
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 1
        && mutations_of(s, 101).len() == 1));
    assert!(mutations_of(&rig.sim, 102).is_empty(), "102 did not wait");

    // The operator switches to their own hold tag, puts 102 on hold with it, reloads.
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rig.config_path).unwrap()).unwrap();
    config["hold_tag"] = "maint".into();
    rig.dir.write("config.json", config.to_string(), 0o644);
    rig.sim.update_guest(102, |g| g.tags = Some("maint".into()));
    agent.signal(SIGHUP);
    agent.wait_line("msg=reloaded", T);

    // 101's task ends; 102's job comes up.
    rig.sim.set_faults(Faults::default());
    agent.wait_notify("STATUS=pass 1:", T);
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
    assert_eq!(
        mutations_of(&rig.sim, 102),
        Vec::<String>::new(),
        "102 carries the hold tag in force and was sent a start; stderr:\n{}",
        agent.seen.join("\n")
    );
}

/// Defect 3: after the clock was stepped back, an unanswered shutdown's own task is
/// never found, the op is taken as not carried out, and a second shutdown is sent while
/// the first one's task runs.
///
/// `look_for_task` searches only tasks that started no earlier than the guest's last
/// journaled task (src/inflight/mod.rs:224-227, filtered again at :241). Task start
/// times are the node's clock, and the agent runs on the node: when that clock is
/// stepped back (an RTC an hour fast until chrony stepped it, a restored snapshot),
/// every task started since has a start time *before* the last one the journal
/// knows, so the op's own task is never taken. The op goes unexplained through
/// `unanswered_grace_secs` and is ended as "not carried out"
/// (src/inflight/mod.rs:273-279), and the next pass sends the shutdown again while
/// the first shutdown's task still runs: the node's audit sees two actions of guest
/// 101 in flight at once, and the request log two shutdowns. The README promises that
/// a clock step changes nothing here ("both start times are the node's clock").
///
/// Fixed: when the guest's last task started after the op's own record (beyond the
/// skew), the clock went back since: the search starts at the op's record (less the
/// skew; the record is written before the call, so the op's task cannot be older),
/// and if nothing is found the op stays held rather than end after the grace
/// (`inflight::search_from`).
#[test]
fn an_unanswered_shutdown_after_the_clock_went_back_is_not_sent_again() {
    let opts = SimOptions {
        // A guest that takes its time to shut down cleanly.
        shutdown_duration: Duration::from_secs(20),
        ..fast_sim()
    };
    let rig = Rig::new(
        "review2-clock-back",
        opts,
        vec![guest(101, true)],
        r#"{"guests": [{"vmid": 101, "state": "stopped"}]}"#,
        serde_json::json!({
            "unanswered_grace_secs": 5,
            "shutdown_timeout_secs": 30,
            "task_timeout_secs": 120,
        }),
    );
    // Last week the node's clock ran an hour fast: the agent started 101 then, and the
    // journal keeps that task as 101's last. The clock has been stepped back since.
    let journal = Journal::open(&rig.state_dir(), JournalOptions::default()).unwrap();
    let start = super::journal::action(101, ActionKind::Start);
    let op = journal.begin(&start).unwrap();
    let ahead = felhom_agent::time::unix_now() + 3600;
    journal
        .task_running(op, &upid_at(&rig.sim, "vzstart", 101, ahead))
        .unwrap();
    journal.succeeded(op).unwrap();
    journal.close().unwrap();

    // Today: the shutdown is carried out, its answer lost (pveproxy gave up: 596).
    rig.sim.set_faults(Faults::rule(
        FaultRule::new(Match::post("status/shutdown"), Effect::StatusAfter(596)).times(1),
    ));
    let loaded = felhom_agent::agent::load(&rig.config_path).expect("config loads");
    let mut cancel = CancelSource::new();
    let built = felhom_agent::agent::Agent::start(&loaded, &cancel.token()).expect("starts");
    let mut engine = built.engine(&loaded.config.live, cancel.token(), None);
    let desired = rig.desired();
    let report = pass(&mut engine, &desired);
    assert_eq!(report.in_flight, 1, "{report:?}");
    assert_eq!(rig.sim.running_tasks(), 1, "the shutdown task runs");
    let op = built.journal.in_flight()[0].op;
    let since = built.tracker.unanswered_since(op).expect("unanswered");
    // The grace has passed; the shutdown task still runs (it takes 20 s).
    assert!(poll_until(T, || since.elapsed() >= Duration::from_secs(5)));
    let report = pass(&mut engine, &desired);
    engine.shutdown(Instant::now(), || cancel.cancel());
    built.journal.close().unwrap();
    let audit = rig.sim.audit();
    rig.sim.allow_violations();
    assert_eq!(
        mutations_of(&rig.sim, 101),
        ["POST shutdown"],
        "second pass: {report:?}\n{audit}"
    );
    assert!(audit.is_clean(), "{audit}");
}

/// Defect 4: a one-shot action is carried out again after its guest migrates, though
/// the README promises each key "at most once per guest, ever".
///
/// Spent keys live only in the journal of the node whose agent carried them out. In a
/// cluster every node's agent has the same desired state (README "A cluster"), so once
/// guest 101 migrates, the agent of its new node would find the key unused and carry
/// it out again: here, a one-shot start of a guest the operator has since stopped and
/// migrated offline.
///
/// Fixed: a one-shot entry names the node whose agent carries it out (`"node"`); an
/// agent carries out a key that names no node only on a node alone, and in a cluster
/// skips its guest with `once_node` until the entry names one (src/plan/guest.rs,
/// the node count read by src/engine/observe.rs only while such a key is due). The
/// test proves both halves from the node's request log.
#[test]
fn a_one_shot_start_is_not_carried_out_again_after_its_guest_migrates() {
    let opts = SimOptions {
        nodes: vec!["pve1".into(), "pve2".into()],
        ..fast_sim()
    };
    let rig = Rig::new(
        "review2-once-migrated",
        opts,
        vec![guest(101, false)],
        r#"{"guests": [{"vmid": 101, "once": [{"key": "boot-1", "action": "start"}]}]}"#,
        serde_json::json!({}),
    );
    // pve2's agent: the same desired state, its own state directory.
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rig.config_path).unwrap()).unwrap();
    config["node"] = "pve2".into();
    config["state_dir"] = rig
        .dir
        .path()
        .join("state-pve2")
        .display()
        .to_string()
        .into();
    let pve2 = rig.dir.write("config-pve2.json", config.to_string(), 0o644);
    let run = |command: &str, config: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
            .arg(command)
            .arg("--config")
            .arg(config)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .expect("binary runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A key that names no node: in a cluster of two, neither agent carries it out, and
    // `plan` says what to do about it.
    run("once", &rig.config_path);
    run("once", &pve2);
    assert_eq!(mutations_of(&rig.sim, 101), Vec::<String>::new());
    let plan = run("plan", &rig.config_path);
    assert!(
        plan.contains("one-shot \"boot-1\" names no node, and this node is one of 2 in its cluster: add \"node\""),
        "{plan}"
    );

    // The operator names pve1; both agents reload it and pass; pve1's carries it out.
    rig.dir.write(
        "desired.json",
        r#"{"guests": [{"vmid": 101, "once": [{"key": "boot-1", "action": "start", "node": "pve1"}]}]}"#,
        0o644,
    );
    run("once", &rig.config_path);
    run("once", &pve2);
    assert!(running(&rig.sim, 101));
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);

    // The operator stops 101 and migrates it to pve2 (offline); both agents pass again.
    rig.sim.update_guest(101, |g| {
        g.status = PowerState::Stopped;
        g.node = "pve2".into();
    });
    run("once", &rig.config_path);
    run("once", &pve2);
    // pve2's plan shows the key waiting for its node.
    let plan = run("plan", &pve2);
    assert!(
        plan.contains("101 ct101  once \"boot-1\" (start) waits for node pve1"),
        "{plan}"
    );
    let starts: Vec<String> = rig
        .sim
        .mutations()
        .iter()
        .filter(|r| r.vmid == Some(101))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        starts,
        ["/nodes/pve1/lxc/101/status/start"],
        "one-shot key \"boot-1\" of 101 was carried out once per node"
    );
    assert!(!running(&rig.sim, 101));
}

/// Defect 5 (the README promises what the code does not do): a one-shot refused for a
/// lock is used up, and never runs once the lock clears.
///
/// The README: "One the node refuses outright (a lock, say: no task ran) is not used
/// up and runs when the refusal clears". But PVE checks a guest's lock inside the
/// power task, not before it (pve-container src/PVE/API2/LXC/Status.pm `vm_start`:
/// `check_lock` runs in the `vzstart` worker; likewise `vm_shutdown`, and qemu-server's
/// `vm_start`; the repo's own docs/proxmox-api.md §5 says so and the simulated node
/// does the same). So a lock taken between the last look and the call (a backup
/// starting: the only way a lock reaches the call, since the plan and the last look
/// skip locked guests) makes the task fail with `CT is locked (backup)`, the op is
/// journaled `failed` with its UPID, and `KeyUse::is_spent` counts a failed op with a
/// task as spent (src/journal/keys.rs:36). The one-shot start never happens, though
/// nothing was carried out and the executor itself calls the outcome `blocked`
/// (src/engine/exec.rs:459-460), not failed.
///
/// Fixed: "used up" is decided from what the task did: a task that failed on the
/// guest's lock or a lock timeout (the messages `classify_task_error` takes as
/// `Outcome::Blocked`) leaves the key unused (`journal::keys::is_refusal`).
#[test]
fn a_one_shot_start_refused_for_a_lock_runs_once_the_lock_clears() {
    let rig = Rig::new(
        "review2-once-lock",
        fast_sim(),
        vec![guest(101, false)],
        r#"{"guests": [{"vmid": 101, "once": [{"key": "boot-1", "action": "start"}]}]}"#,
        serde_json::json!({}),
    );
    // The start reaches pvedaemon, which forks its worker two seconds later.
    rig.sim.set_faults(Faults::rule(
        FaultRule::new(
            Match::post("status/start"),
            Effect::Delay(Duration::from_secs(2)),
        )
        .times(1),
    ));
    let (mut engine, journal, mut cancel) = rig.engine();
    let desired = rig.desired();
    let (_plan, done) = engine.start_pass(&desired);
    assert!(done.is_none(), "the one-shot start was planned");
    // After the last look, while the request waits at the node, a backup locks 101.
    assert!(rig.sim.wait_until(T, |s| s.max_concurrent_mutations() == 1));
    rig.sim
        .update_guest(101, |g| g.lock = Some("backup".into()));
    let first = finish_pass(&mut engine);
    assert_eq!(first.blocked, 1, "refused for the lock: {first:?}");
    assert_eq!(rig.sim.tasks_started(101).len(), 1);
    assert!(!running(&rig.sim, 101));

    // The backup ends: the refusal has cleared, so the one-shot start runs now.
    rig.sim.update_guest(101, |g| g.lock = None);
    let second = pass(&mut engine, &desired);
    engine.shutdown(Instant::now(), || cancel.cancel());
    journal.close().unwrap();
    assert_eq!(
        mutations_of(&rig.sim, 101),
        ["POST start", "POST start"],
        "the one-shot start refused for a lock never ran; second pass: {second:?}"
    );
    assert!(running(&rig.sim, 101));
}
