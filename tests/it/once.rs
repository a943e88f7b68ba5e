//! One-shot actions (`once` with idempotency keys), end to end through the real binary:
//! a key is carried out exactly once per guest, over passes, reloads, a hand stop,
//! compaction and a SIGKILL at each point of its life; a new key runs again. Proved
//! from the node's own request log and task list.

use super::agent::{poll_until, Agent, SIGHUP, SIGTERM};
use super::rig::{busy_day, fast_sim, guest, mutations_of, Rig};
use felhom_agent::journal::JournalOptions;
use felhom_agent::sim::{Effect, FaultRule, Faults, Match, PowerState, SimOptions};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

const BOOT_ONCE: &str =
    r#"{"guests": [{"vmid": 101, "once": [{"key": "boot-1", "action": "start"}]}]}"#;

fn running(rig: &Rig) -> bool {
    rig.sim.guest(101).unwrap().status == PowerState::Running
}

/// Waits until the agent reports a pass numbered at least `n`; returns its number.
fn wait_pass(agent: &mut Agent, n: u64) -> u64 {
    loop {
        let msg = agent.wait_notify("STATUS=pass ", T);
        let k: u64 = msg
            .split("STATUS=pass ")
            .nth(1)
            .and_then(|s| s.split(':').next())
            .and_then(|s| s.parse().ok())
            .expect("a pass number");
        if k >= n {
            return k;
        }
    }
}

fn journal_text(rig: &Rig) -> String {
    std::fs::read_to_string(felhom_agent::journal::file_in(&rig.state_dir())).unwrap_or_default()
}

#[test]
fn a_one_shot_start_runs_once_whatever_happens_and_a_new_key_runs_again() {
    let rig = Rig::new(
        "once-life",
        fast_sim(),
        vec![guest(101, false)],
        BOOT_ONCE,
        serde_json::json!({"interval_secs": 1}),
    );
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    let n = wait_pass(&mut agent, 1);
    assert!(running(&rig));
    // Many passes: still the one start.
    let n = wait_pass(&mut agent, n + 3);
    assert_eq!(rig.sim.tasks_started(101).len(), 1);

    // Stopped by hand: the key is spent and the entry has no `state`, so it stays so,
    // over passes and over a reload.
    rig.sim
        .update_guest(101, |g| g.status = PowerState::Stopped);
    let n = wait_pass(&mut agent, n + 3);
    agent.signal(SIGHUP);
    agent.wait_line("reload", T);
    wait_pass(&mut agent, n + 3);
    assert!(!running(&rig));
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());

    // A busy day compacts the journal many times over; the key's op survives it, and
    // a restart (which compacts again at open) does not start the guest.
    let small = JournalOptions {
        compact_bytes: 4096,
        keep_finished: 20,
    };
    assert!(busy_day(&rig.state_dir(), small, 600) > 5);
    assert!(journal_text(&rig).contains("\"boot-1\""));
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    wait_pass(&mut agent, 3);
    assert!(!running(&rig));
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);

    // A new key is a new intent: it runs, once.
    rig.write_desired(
        r#"{"guests": [{"vmid": 101, "once": [{"key": "boot-1", "action": "start"},
                                              {"key": "boot-2", "action": "start"}]}]}"#,
    );
    agent.signal(SIGHUP);
    assert!(rig.sim.wait_until(T, |_| running(&rig)));
    let n = wait_pass(&mut agent, 1);
    wait_pass(&mut agent, n + 2);
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start", "POST start"]);
    let tasks = rig.sim.tasks_started(101);
    assert_eq!(tasks.len(), 2);

    // `status` and `journal` say when each key was carried out, by which task.
    let status = String::from_utf8(rig.bin(&["status"]).stdout).unwrap();
    for (key, task) in [("boot-1", &tasks[0]), ("boot-2", &tasks[1])] {
        let line = status
            .lines()
            .find(|l| l.contains(&format!("{key:?}")))
            .unwrap_or_else(|| panic!("no {key} in:\n{status}"));
        assert!(line.contains("start: succeeded"), "{line}");
        assert!(line.contains(&format!("task {task}")), "{line}");
    }
    let journal = String::from_utf8(rig.bin(&["journal"]).stdout).unwrap();
    assert!(journal.contains(r#"once="boot-2""#), "{journal}");
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
}

/// Where the agent is killed in the life of a one-shot start.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// Its op is on disk; the request was never sent.
    BeforeTheCall,
    /// The request is at the node; its answer never comes back.
    AfterTheCall,
    /// Its task runs; the UPID is on disk.
    DuringTheTask,
}

#[test]
fn a_one_shot_start_killed_at_each_point_runs_once_after_a_restart() {
    for at in [
        KillAt::BeforeTheCall,
        KillAt::AfterTheCall,
        KillAt::DuringTheTask,
    ] {
        let opts = SimOptions {
            task_duration: Duration::from_millis(1500),
            ..fast_sim()
        };
        let rig = Rig::new(
            &format!("once-kill-{at:?}"),
            opts,
            vec![guest(101, false)],
            BOOT_ONCE,
            serde_json::json!({"unanswered_grace_secs": 5}),
        );
        let env: &[(&str, &str)] = match at {
            KillAt::BeforeTheCall => &[("FELHOM_FAILPOINT", "action-before-call")],
            _ => &[],
        };
        if let KillAt::AfterTheCall = at {
            rig.sim.set_faults(Faults::rule(FaultRule::new(
                Match::post("status/start"),
                Effect::Delay(Duration::from_millis(700)),
            )));
        }
        let mut agent = Agent::run(&rig.config_path, rig.dir.path(), env);
        match at {
            KillAt::BeforeTheCall => {
                agent.wait_line("failpoint action-before-call reached", T);
            }
            KillAt::AfterTheCall => {
                assert!(rig.sim.wait_until(T, |s| s.max_concurrent_mutations() == 1));
            }
            KillAt::DuringTheTask => {
                assert!(poll_until(T, || journal_text(&rig).contains("task_running")));
                assert_eq!(rig.sim.running_tasks(), 1, "{at:?}");
            }
        }
        assert!(journal_text(&rig).contains("\"boot-1\""), "{at:?}");
        agent.kill9();
        if let KillAt::AfterTheCall = at {
            // The node carries on with the request the dead agent sent.
            assert!(rig.sim.wait_until(T, |s| s.mutations().len() == 1));
        }
        rig.sim.set_faults(Faults::default());
        let sent = match at {
            KillAt::BeforeTheCall => 0,
            _ => 1,
        };
        assert_eq!(mutations_of(&rig.sim, 101).len(), sent, "{at:?}");

        // Restarted: recovery resolves the op from the node (its task, or none after
        // the grace), and the start happens exactly once in all.
        let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
        wait_pass(&mut agent, 1);
        assert!(rig.sim.wait_until(T, |_| running(&rig)), "{at:?}");
        agent.signal(SIGTERM);
        assert!(agent.wait_exit(T).success());
        assert_eq!(mutations_of(&rig.sim, 101), ["POST start"], "{at:?}");
        assert_eq!(rig.sim.tasks_started(101).len(), 1, "{at:?}");
        let status = String::from_utf8(rig.bin(&["status"]).stdout).unwrap();
        assert!(
            status.contains(r#"101 "boot-1" start: succeeded"#),
            "{at:?}: {status}"
        );
    }
}
