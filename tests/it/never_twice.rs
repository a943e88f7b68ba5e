//! The agent's first promise, one regression test per way it was once broken: one intent
//! is never sent twice, and a guest never has two actions in flight, whatever crashes,
//! times out or answers garbage in between. Each test asserts on what the node saw.

use super::agent::{poll_until, Agent, SIGHUP, SIGTERM};
use super::rig::{fast_sim, guest, mutations_of, Rig};
use felhom_agent::cancel::Cancel;
use felhom_agent::sim::{Effect, FaultRule, Faults, Match, PowerState, SimOptions};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn running(rig: &Rig, vmid: u32) -> bool {
    rig.sim.guest(vmid).unwrap().status == PowerState::Running
}

/// Defect 1: a lane that ends with an unknown outcome after the node was read (but
/// before the plan) was held by nothing, and the plan started the guest again.
#[test]
fn a_lane_that_ends_in_flight_during_an_observation_still_holds_its_guest() {
    let opts = SimOptions {
        task_duration: Duration::from_millis(400),
        ..fast_sim()
    };
    let rig = Rig::new(
        "twice-observe",
        opts,
        vec![guest(101, false)],
        r#"{"guests": [{"vmid": 101, "state": "running"}]}"#,
        serde_json::json!({}),
    );
    // The start is carried out, but its answer is lost (596) after 300 ms.
    let start = || Match::post("status/start");
    rig.sim.set_faults(
        Faults::rule(FaultRule::new(
            start(),
            Effect::Delay(Duration::from_millis(300)),
        ))
        .with(FaultRule::new(start(), Effect::StatusAfter(596))),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let desired = rig.desired();
    let (_plan, done) = engine.start_pass(&desired);
    assert!(done.is_none(), "the start is under way");
    // The daemon's observer reads the node while the lane still waits for its answer...
    let started = (Instant::now(), felhom_agent::time::unix_now());
    let held = engine.read_holds(&desired);
    let settings = engine.plan_settings().clone();
    let obs = engine
        .reader()
        .read(&desired, &held, &settings, &Cancel::never());
    // ...then the lane ends with its outcome unknown, before the run loop plans.
    let result = engine.results().recv_timeout(T).expect("the lane reports");
    let report = engine.on_result(result).expect("pass 1 completes");
    assert_eq!(report.in_flight, 1, "{report:?}");
    let (plan, _) = engine.start_observed_pass(&desired, obs, started);
    let plan = plan.expect("the node was read");
    assert!(plan.actions.is_empty(), "{plan:?}");
    assert_eq!(plan.skipped.len(), 1);
    rig.sim.set_faults(Faults::default());
    // Later passes settle the op from the node's task list; nothing is sent again.
    let deadline = Instant::now() + T;
    while !journal.in_flight().is_empty() {
        assert!(Instant::now() < deadline, "{:?}", journal.in_flight());
        let report = super::rig::pass(&mut engine, &desired);
        assert_eq!(report.planned, 0, "{report:?}");
        rig.sim
            .wait_until(Duration::from_millis(100), |s| s.running_tasks() == 0);
    }
    let report = super::rig::pass(&mut engine, &desired);
    assert_eq!(report.planned, 0, "{report:?}");
    assert!(running(&rig, 101));
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);
    assert_eq!(rig.sim.tasks_started(101).len(), 1);
    engine.shutdown(Instant::now(), || cancel.cancel());
    journal.close().unwrap();
}

/// Defect 2: start-up recovery abandoned an unanswered start at once when the node had
/// not forked its task yet, and the first pass sent a second start.
#[test]
fn recovery_waits_for_a_task_the_node_forks_late() {
    let rig = Rig::one_stopped_guest("twice-late-fork");
    // pvedaemon takes 4 s to get to the request (busy workers), then carries it out,
    // although the client is long gone.
    rig.sim.set_faults(Faults::rule(FaultRule::new(
        Match::post("status/start"),
        Effect::Delay(Duration::from_secs(4)),
    )));
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    let journal = felhom_agent::journal::file_in(&rig.state_dir());
    // The request is at the node, waiting for a worker.
    assert!(rig.sim.wait_until(T, |s| s.max_concurrent_mutations() == 1));
    assert!(std::fs::read_to_string(&journal)
        .unwrap()
        .contains("\"started\""));
    agent.kill9();
    assert!(
        rig.sim.tasks_started(101).is_empty(),
        "killed before the fork"
    );

    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    agent.wait_notify("STATUS=pass 1:", T);
    assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 0));
    assert!(running(&rig, 101));
    assert_eq!(
        mutations_of(&rig.sim, 101),
        ["POST start"],
        "a second start"
    );
    assert_eq!(rig.sim.tasks_started(101).len(), 1);
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.contains("\"succeeded\""), "{text}");
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
}

/// Defect 4: a reload did not stop a queued job's first action: a guest dropped by
/// SIGHUP was still started, and one flipped to stopped was started, then shut down.
#[test]
fn a_reload_stops_queued_jobs_before_their_first_action() {
    let opts = SimOptions {
        task_duration: Duration::from_millis(800),
        ..fast_sim()
    };
    let all_running = serde_json::json!({"guests": (101..=104)
        .map(|v| serde_json::json!({"vmid": v, "state": "running"}))
        .collect::<Vec<_>>()});
    let rig = Rig::new(
        "twice-reload",
        opts,
        (101..=104).map(|v| guest(v, false)).collect(),
        &all_running.to_string(),
        serde_json::json!({"max_parallel": 1}),
    );
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    // One start runs; the other three wait for the only worker.
    assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 1));
    rig.write_desired(
        r#"{"guests": [{"vmid": 101, "state": "running"}, {"vmid": 102, "state": "running"},
                       {"vmid": 104, "state": "stopped"}]}"#,
    );
    agent.signal(SIGHUP);
    agent.wait_line("msg=reloaded", T);
    // Pass 1 reports once every job it queued has ended, run or not.
    agent.wait_line("summary=\"pass 1:", T);
    assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 0));
    assert!(running(&rig, 101) && running(&rig, 102));
    for vmid in [103, 104] {
        assert_eq!(mutations_of(&rig.sim, vmid), Vec::<String>::new(), "{vmid}");
        assert!(!running(&rig, vmid));
    }
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
}

/// Defect 5: with a slow API the observer went on reading after SIGTERM, and the agent
/// took longer to stop than the unit allows; a second signal did not cut it short.
#[test]
fn sigterm_while_the_node_answers_slowly_stops_within_one_request() {
    let desired = serde_json::json!({"guests": (101..=120)
        .map(|v| serde_json::json!({"vmid": v, "state": "running"}))
        .collect::<Vec<_>>()});
    let rig = Rig::new(
        "twice-slow-stop",
        fast_sim(),
        (101..=120).map(|v| guest(v, true)).collect(),
        &desired.to_string(),
        serde_json::json!({}),
    );
    // Every read takes 2 s: a whole observation takes over 40 s.
    rig.sim.set_faults(Faults::rule(FaultRule::new(
        Match::method("GET"),
        Effect::Delay(Duration::from_secs(2)),
    )));
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    assert!(rig.sim.wait_until(T, |s| s.requests().len() >= 3));
    let t0 = Instant::now();
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
    // One request under way (2 s) and the joins; not the rest of the observation.
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());

    // A second signal exits at once, even while a request is under way.
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    let seen = rig.sim.requests().len();
    assert!(rig.sim.wait_until(T, |s| s.requests().len() > seen));
    let t0 = Instant::now();
    agent.signal(SIGTERM);
    agent.wait_notify("STOPPING=1", T);
    agent.signal(SIGTERM);
    let status = agent.wait_exit(T);
    assert_eq!(status.code(), Some(1));
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert!(rig.sim.mutations().is_empty());
}

/// Defect 6: when the observer thread died, the run loop spun on the closed channel,
/// no pass ran again, and the watchdog kept being pinged.
#[test]
fn a_dead_internal_thread_ends_the_agent_with_exit_5() {
    let rig = Rig::one_stopped_guest("twice-dead-observer");
    let mut agent = Agent::run(
        &rig.config_path,
        rig.dir.path(),
        &[
            ("FELHOM_FAILPOINT", "observer-panic"),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    agent.wait_notify("READY=1", T);
    let status = agent.wait_exit(T);
    assert_eq!(status.code(), Some(5), "{:?}", agent.seen);
    assert!(agent
        .seen
        .iter()
        .any(|l| l.contains("an internal thread ended") && l.contains("thread=observer")));
    assert!(rig.sim.mutations().is_empty());
}

/// `plan` decides an op left in flight exactly as a pass would, and journals nothing:
/// an unanswered start whose task the node has not forked yet holds its guest; once
/// the task has run, nothing is left to do.
#[test]
fn plan_beside_a_held_op_shows_it_held_and_changes_nothing() {
    let rig = Rig::one_stopped_guest("twice-plan");
    rig.sim.set_faults(Faults::rule(FaultRule::new(
        Match::post("status/start"),
        Effect::Delay(Duration::from_secs(3)),
    )));
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    // The request is at the node, waiting for a worker.
    assert!(rig.sim.wait_until(T, |s| s.max_concurrent_mutations() == 1));
    agent.kill9();
    // `plan` beside no agent: the unanswered start holds the guest.
    let out = rig.bin(&["plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("skipped: in flight:")
            && text.contains("no vzstart/qmstart/hastart task listed yet"),
        "{text}"
    );
    assert!(poll_until(T, || !rig.sim.tasks_started(101).is_empty()));
    assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 0));
    let out = rig.bin(&["plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "nothing to do\n");
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);
}

/// Defect 7 (review D4): a lane that ends with its op in flight (the answer lost) freed
/// its worker for the next guest while the task still ran: with `max_parallel` 1 two
/// tasks ran at once. Ops in flight now count against the cap; jobs that find it full
/// of them wait for a later pass.
#[test]
fn max_parallel_counts_a_task_whose_answer_was_lost() {
    let opts = SimOptions {
        task_duration: Duration::from_millis(1000),
        ..fast_sim()
    };
    let rig = Rig::new(
        "twice-cap-lost",
        opts,
        vec![guest(101, false), guest(102, false)],
        r#"{"guests": [{"vmid": 101, "state": "running"}, {"vmid": 102, "state": "running"}]}"#,
        serde_json::json!({"max_parallel": 1, "unanswered_grace_secs": 5}),
    );
    rig.sim.set_faults(Faults::rule(
        FaultRule::new(Match::post("status/start"), Effect::StatusAfter(596)).nth(1),
    ));
    let (mut engine, journal, mut cancel) = rig.engine();
    let report = super::rig::pass(&mut engine, &rig.desired());
    assert_eq!((report.in_flight, report.not_run), (1, 1), "{report:?}");
    assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 0));
    assert_eq!(rig.sim.max_concurrent_tasks(), 1, "{report:?}");
    // Once the node has said how the first ended, the other starts.
    let report = super::rig::pass(&mut engine, &rig.desired());
    assert_eq!(report.applied, 1, "{report:?}");
    engine.shutdown(Instant::now(), || cancel.cancel());
    journal.close().unwrap();
    assert!(running(&rig, 101) && running(&rig, 102));
    assert_eq!(rig.sim.max_concurrent_tasks(), 1);
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);
    assert_eq!(mutations_of(&rig.sim, 102), ["POST start"]);
}
