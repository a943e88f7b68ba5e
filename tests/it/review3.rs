//! A third independent adversarial review of the agent's first promise (one intent is
//! never sent to Proxmox twice; a guest never has two actions in flight; a guest the
//! agent is told to leave alone gets nothing), after one-shot keys with a `node`, the
//! plan-settings generation, the last look, the clock-step search and the checked
//! power answers landed.
//!
//! Each test here is one defect: it failed on main for that defect and no other reason
//! (the file:line references are main's as the review found it), and its doc comment
//! says what broke and how it was fixed. The evidence is the simulated node's own
//! request log, task list and audit. Nothing waits with a sleep: every wait is on a
//! condition with a deadline.

use super::agent::{Agent, SIGHUP, SIGTERM};
use super::rig::{fast_sim, guest, mutations_of, Rig};
use felhom_agent::sim::Faults;
use std::collections::BTreeSet;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Defect 1: a reload that hands a queued one-shot key to another node does not stop
/// it: this node's agent carries out a key that now names another node.
///
/// A one-shot entry's `node` says which node's agent carries the key out; "on the other
/// nodes it waits" (README, `once`). The lanes stop a queued job when its guest's
/// desired fingerprint changed (src/lanes.rs:447-458, `stop_reason`), but
/// `GuestSpec::fingerprint` hashes each `once` entry's key and action only, not its
/// `node` (src/desired/mod.rs:222-227), and the last look does not know the entry at
/// all (src/engine/precheck.rs:52-90, `look`); only the planner filters on it
/// (src/plan/guest.rs:85-89). So an operator who moves key `boot-1` of guest 102
/// from pve1 to pve2 (say, to carry it out after a planned migration) and reloads,
/// while 102's start waits in pve1's queue behind another guest's task, gets the start
/// sent by pve1 anyway: the node's request log shows `POST .../102/status/start` from
/// an agent whose desired state in force says the key is not its own. Once 102 is on
/// pve2, pve2's agent (whose journal never saw the key) carries it out a second time.
///
/// Fixed: each entry's `node` is hashed into the fingerprint (only when given, as
/// `name` is, so existing fingerprints keep their values), so the reload stops the job
/// before its first action and the next pass plans the key as waiting.
#[test]
fn a_queued_one_shot_moved_to_another_node_by_a_reload_is_not_sent() {
    let rig = Rig::new(
        "review3-once-node-reload",
        fast_sim(),
        vec![guest(101, false), guest(102, false)],
        r#"{"guests": [{"vmid": 101, "state": "running"},
                       {"vmid": 102, "once": [{"key": "boot-1", "action": "start", "node": "pve1"}]}]}"#,
        serde_json::json!({"max_parallel": 1}),
    );
    // 101's start task runs until the test lets it end; 102's one-shot waits behind it.
    rig.sim.set_faults(Faults {
        hang_tasks: BTreeSet::from([101]),
        ..Faults::default()
    });
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("READY=1", T);
    assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 1
        && mutations_of(s, 101).len() == 1));
    assert!(mutations_of(&rig.sim, 102).is_empty(), "102 did not wait");

    // The operator hands the key to pve2 and reloads.
    rig.write_desired(
        r#"{"guests": [{"vmid": 101, "state": "running"},
                       {"vmid": 102, "once": [{"key": "boot-1", "action": "start", "node": "pve2"}]}]}"#,
    );
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
        "one-shot \"boot-1\" names pve2 in the desired state in force and pve1's agent \
         sent it; stderr:\n{}",
        agent.seen.join("\n")
    );
}
