//! The first promise (one intent is never sent to Proxmox twice) for an op whose answer
//! was lost: an unanswered start is never matched to an older task of the agent's that
//! the journal no longer ties to an op, and a lost answer to an HA-managed guest's start
//! or shutdown is not settled by its `hastart`/`hastop` task alone, so the request is not
//! filed again before ha-manager acts. Each of these broke the promise before the fix
//! (found by an independent review). And the grace of a call that got no answer counts
//! from the call, so a request lost on the way costs one pass, not two. The simulated
//! node's audit and request log are the evidence.

use super::agent::{poll_until, Agent, SIGTERM};
use super::rig::{assert_audit_clean, fast_sim, guest, mutations_of, pass, running, Rig};
use felhom_agent::cancel::CancelSource;
use felhom_agent::journal::JournalOptions;
use felhom_agent::sim::{Effect, FaultRule, Faults, Match, PowerState, SimOptions};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// Defect: an unanswered start is matched to an old task of the agent's own that the
/// journal no longer ties to an op. `inflight::look_for_task` takes any task of the
/// agent's token for the guest from the last day that no op in the journal owns, and
/// falls back to the latest one started *before* the op (meant for a clock step). The
/// journal keeps only the last 1000 finished ops, so yesterday's start of the same
/// guest is such a task: recovery takes its success for this op's, and the first pass
/// starts the guest again while the node still holds the first start.
#[test]
fn an_unanswered_start_is_not_matched_to_an_old_task_the_journal_forgot() {
    let rig = Rig::one_stopped_guest("review-old-task");
    // Yesterday: the agent started 101.
    let out = rig.bin(&["once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(running(&rig.sim, 101));
    // Since then someone stopped it by hand, and the agent had a busy day elsewhere.
    rig.sim
        .update_guest(101, |g| g.status = PowerState::Stopped);
    super::rig::busy_day(&rig.state_dir(), JournalOptions::default(), 1000);
    rig.sim.clear_requests();
    rig.sim.reset_counters();
    // pvedaemon gets to the next start 4 s late (busy workers); the agent is killed
    // while it waits for the answer, before the node has forked the task.
    rig.sim.set_faults(Faults::rule(
        FaultRule::new(
            Match::post("status/start"),
            Effect::Delay(Duration::from_secs(4)),
        )
        .nth(1),
    ));
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    assert!(rig.sim.wait_until(T, |s| s.max_concurrent_mutations() == 1));
    agent.kill9();
    assert!(
        rig.sim.tasks_started(101).is_empty(),
        "killed before the fork"
    );

    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    agent.wait_notify("STATUS=pass 1:", T);
    // The delayed start is done at the node by now (it waits 4 s there).
    assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 0
        && s.mutations().iter().any(|r| r
            .done
            .is_some_and(|d| d.duration_since(r.at) >= Duration::from_millis(3500)))));
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
    assert!(running(&rig.sim, 101));
    // The node saw two starts of 101 in flight at once.
    assert_audit_clean(&rig.sim);
    assert_eq!(
        mutations_of(&rig.sim, 101),
        ["POST start"],
        "a second start while the first waited at the node; stderr:\n{}",
        agent.seen.join("\n")
    );
}

/// Defect: a lost answer to an HA-managed guest's start is settled by its `hastart`
/// task alone. `inflight::look` finds the task and takes its `OK` as the op's success,
/// while the executing lane (`ApiExecutor::verify_ha`) rightly waits for the guest's
/// state, because `hastart` only files a request with ha-manager. The next pass sees
/// the guest still stopped and files the same request again. (The node's audit does not
/// count a repeated HA request as a second intent, so the request log is the evidence.)
#[test]
fn a_lost_answer_to_an_ha_start_is_not_sent_again_before_ha_acts() {
    let mut g = guest(101, false);
    g.ha = Some("stopped".into());
    let opts = SimOptions {
        ha_apply_delay: Duration::from_secs(3),
        ..fast_sim()
    };
    let rig = Rig::new(
        "review-ha-lost",
        opts,
        vec![g],
        r#"{"guests": [{"vmid": 101, "state": "running"}]}"#,
        serde_json::json!({"ha_mode": "request"}),
    );
    // The request is filed (its hastart task runs), the answer is lost.
    rig.sim.set_faults(Faults::rule(
        FaultRule::new(Match::post("status/start"), Effect::StatusAfter(596)).times(1),
    ));
    let (mut engine, journal, mut cancel) = rig.engine();
    let desired = rig.desired();
    let report = pass(&mut engine, &desired);
    assert_eq!(report.in_flight, 1, "{report:?}");
    // The next pass comes while ha-manager has not acted on the request yet.
    assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 0));
    let report = pass(&mut engine, &desired);
    assert!(rig.sim.wait_until(T, |s| running(s, 101)));
    engine.shutdown(Instant::now(), || cancel.cancel());
    journal.close().unwrap();
    assert_eq!(
        mutations_of(&rig.sim, 101),
        ["POST start"],
        "the HA request was filed twice; second pass: {report:?}"
    );
}

/// The same defect for a stop, where the node's audit sees it: the lost answer to an
/// HA guest's shutdown is settled by its `hastop` task, the next pass reads the guest
/// still running (ha-manager has not acted yet) and, by the time its shutdown arrives,
/// ha-manager has stopped the guest: the same request reaches a stopped guest. (The
/// config read of the second pass is slowed so that the order is certain.) Found by a
/// crash soak with HA guests: a kill during `verify_ha` ends the same way after
/// recovery.
#[test]
fn a_lost_answer_to_an_ha_shutdown_is_not_sent_again_before_ha_acts() {
    let mut g = guest(101, true);
    g.ha = Some("started".into());
    let opts = SimOptions {
        ha_apply_delay: Duration::from_millis(800),
        ..fast_sim()
    };
    let rig = Rig::new(
        "review-ha-stop-lost",
        opts,
        vec![g],
        r#"{"guests": [{"vmid": 101, "state": "stopped"}]}"#,
        serde_json::json!({"ha_mode": "request"}),
    );
    rig.sim.set_faults(Faults::rule(
        FaultRule::new(Match::post("status/shutdown"), Effect::StatusAfter(596)).times(1),
    ));
    let (mut engine, journal, mut cancel) = rig.engine();
    let desired = rig.desired();
    let report = pass(&mut engine, &desired);
    assert_eq!(report.in_flight, 1, "{report:?}");
    assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 0));
    rig.sim.set_faults(Faults::rule(
        FaultRule::new(
            Match::get("/lxc/101/config"),
            Effect::Delay(Duration::from_millis(1500)),
        )
        .times(1),
    ));
    let report = pass(&mut engine, &desired);
    engine.shutdown(Instant::now(), || cancel.cancel());
    journal.close().unwrap();
    // Held while ha-manager acts, the second pass reads nothing of 101 and ends before
    // the guest stops: wait for ha-manager.
    assert!(rig.sim.wait_until(T, |s| !running(s, 101)));
    assert_audit_clean(&rig.sim);
    assert_eq!(
        mutations_of(&rig.sim, 101),
        ["POST shutdown"],
        "the HA request was filed twice; second pass: {report:?}"
    );
}

/// A start whose request was lost on the way (the connection reset before the node
/// acted: no task) is held for the grace, which counts from the instant the executor got
/// no answer. So the first pass after the grace (5 s, the least the config allows) has
/// abandoned it and starts the guest in that same pass; before, that pass only started
/// the count and the start waited for one more pass.
#[test]
fn the_grace_of_a_lost_start_counts_from_the_call() {
    let rig = Rig::new(
        "inflight-grace-from-call",
        fast_sim(),
        vec![guest(101, false)],
        r#"{"guests": [{"vmid": 101, "state": "running"}]}"#,
        serde_json::json!({"unanswered_grace_secs": 5}),
    );
    rig.sim.set_faults(Faults::rule(
        FaultRule::new(Match::post("status/start"), Effect::Reset).times(1),
    ));
    let loaded = felhom_agent::agent::load(&rig.config_path).expect("config loads");
    let mut cancel = CancelSource::new();
    let built = felhom_agent::agent::Agent::start(&loaded, &cancel.token()).expect("starts");
    let mut engine = built.engine(&loaded.config.live, cancel.token(), None);
    let desired = rig.desired();
    let before = Instant::now();
    let report = pass(&mut engine, &desired);
    assert_eq!(report.in_flight, 1, "{report:?}");
    let op = built.journal.in_flight()[0].op;
    let since = built
        .tracker
        .unanswered_since(op)
        .expect("the executor told the tracker");
    assert!(before <= since && since <= Instant::now());
    assert!(
        rig.sim.tasks_started(101).is_empty(),
        "the request was lost"
    );
    let grace = Duration::from_secs(5);
    assert!(poll_until(T, || since.elapsed() >= grace));
    let report = pass(&mut engine, &desired);
    assert_eq!(
        report.applied, 1,
        "started in the first pass after the grace: {report:?}"
    );
    engine.shutdown(Instant::now(), || cancel.cancel());
    built.journal.close().unwrap();
    assert!(running(&rig.sim, 101));
    assert_audit_clean(&rig.sim);
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start", "POST start"]);
    assert_eq!(
        rig.sim.tasks_started(101).len(),
        1,
        "the first never reached the node"
    );
}
