//! The last look before a power action: a job that waited in the queue, or for its
//! startup stage, reads its guest again right before the call, and is not sent when
//! the guest was put on hold, renamed, locked, handed to HA or already changed state,
//! or while the node runs its own start-all. Asserted on the node's request log.

use super::rig::{fast_sim, finish_pass, guest, mutations_of, Rig};
use felhom_agent::engine::PassReport;
use felhom_agent::sim::{BulkTask, PowerState, SimOptions};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// Two guests to start with one worker: 102's start waits in the queue while 101's
/// task runs, and meanwhile `change` happens to 102.
fn queued_start(tag: &str, change: impl FnOnce(&Rig)) -> (Rig, PassReport) {
    let opts = SimOptions {
        task_duration: Duration::from_millis(800),
        ..fast_sim()
    };
    let rig = Rig::new(
        tag,
        opts,
        vec![guest(101, false), guest(102, false)],
        r#"{"guests": [{"vmid": 101, "state": "running"},
                       {"vmid": 102, "state": "running", "name": "ct102"}]}"#,
        serde_json::json!({"max_parallel": 1}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let (_plan, done) = engine.start_pass(&rig.desired());
    assert!(done.is_none());
    assert!(rig.sim.wait_until(T, |s| s.running_tasks() == 1));
    assert!(mutations_of(&rig.sim, 102).is_empty(), "102 did not wait");
    change(&rig);
    let report = finish_pass(&mut engine);
    engine.shutdown(Instant::now(), || cancel.cancel());
    journal.close().unwrap();
    (rig, report)
}

#[test]
fn a_queued_start_is_not_sent_to_a_guest_put_on_hold_renamed_or_locked_meanwhile() {
    type Change = fn(&Rig);
    let changes: [(&str, Change, &str); 4] = [
        (
            "last-look-hold",
            |rig| {
                rig.sim
                    .update_guest(102, |g| g.tags = Some("felhom-hold".into()))
            },
            "held by tag",
        ),
        (
            "last-look-name",
            |rig| {
                rig.sim
                    .update_guest(102, |g| g.hostname = Some("scratch".into()))
            },
            "identity mismatch",
        ),
        (
            "last-look-lock",
            |rig| {
                rig.sim
                    .update_guest(102, |g| g.lock = Some("backup".into()))
            },
            "locked (backup)",
        ),
        (
            "last-look-ha",
            |rig| rig.sim.update_guest(102, |g| g.ha = Some("started".into())),
            "handed to HA",
        ),
    ];
    for (tag, change, why) in changes {
        let (rig, report) = queued_start(tag, change);
        assert_eq!(mutations_of(&rig.sim, 102), Vec::<String>::new(), "{tag}");
        assert_eq!(mutations_of(&rig.sim, 101), ["POST start"], "{tag}");
        let not_sent = report.actions.iter().find(|a| a.vmid.get() == 102);
        let not_sent = not_sent.unwrap_or_else(|| panic!("{tag}: {report:?}"));
        assert_eq!(not_sent.result, "blocked", "{tag}: {not_sent:?}");
        assert!(not_sent.message.contains(why), "{tag}: {not_sent:?}");
        // It read the guest right before: the last request about it is that read.
        let last = rig
            .sim
            .requests()
            .into_iter()
            .rfind(|r| r.vmid == Some(102));
        assert!(last.unwrap().path.ends_with("/102/status/current"), "{tag}");
    }
}

/// A guest whose HA resource is `ignored` is not HA's: the plan acts on it directly,
/// and so does the last look (`status/current` still says `managed` for it).
#[test]
fn a_guest_whose_ha_resource_is_ignored_is_started() {
    let (rig, report) = queued_start("last-look-ha-ignored", |rig| {
        rig.sim.update_guest(102, |g| g.ha = Some("ignored".into()))
    });
    assert_eq!(mutations_of(&rig.sim, 102), ["POST start"], "{report:?}");
    assert!(rig
        .sim
        .wait_until(T, |s| s.guest(102).unwrap().status == PowerState::Running));
}

#[test]
fn a_queued_start_of_a_guest_started_by_hand_meanwhile_is_not_sent() {
    let (rig, report) = queued_start("last-look-started", |rig| {
        rig.sim
            .update_guest(102, |g| g.status = PowerState::Running)
    });
    assert_eq!(mutations_of(&rig.sim, 102), Vec::<String>::new());
    let r = report.actions.iter().find(|a| a.vmid.get() == 102).unwrap();
    assert_eq!(r.result, "converged", "{r:?}");
    assert_eq!((report.applied, report.converged), (1, 1), "{report:?}");
}

#[test]
fn a_staged_start_waits_while_the_node_runs_start_all() {
    let mut first = guest(101, false);
    first.other.insert("startup".into(), "order=1,up=1".into());
    let mut second = guest(102, false);
    second.other.insert("startup".into(), "order=2".into());
    let rig = Rig::new(
        "last-look-startall",
        fast_sim(),
        vec![first, second],
        r#"{"guests": [{"vmid": 101, "state": "running"}, {"vmid": 102, "state": "running"}]}"#,
        serde_json::json!({}),
    );
    let (mut engine, journal, mut cancel) = rig.engine();
    let (_plan, done) = engine.start_pass(&rig.desired());
    assert!(done.is_none());
    // Order 1 is under way; now the node begins its own start-all.
    assert!(rig.sim.wait_until(T, |s| !s.tasks_started(101).is_empty()));
    let startall = rig
        .sim
        .run_bulk_task("pve1", BulkTask::StartAll, Duration::from_secs(20));
    let report = finish_pass(&mut engine);
    assert!(
        rig.sim.task_ended_at(&startall).is_none(),
        "the pass outlasted the start-all: the test proves nothing"
    );
    engine.shutdown(Instant::now(), || cancel.cancel());
    journal.close().unwrap();
    assert_eq!(
        mutations_of(&rig.sim, 102),
        Vec::<String>::new(),
        "{report:?}"
    );
    let r = report.actions.iter().find(|a| a.vmid.get() == 102).unwrap();
    assert!(r.message.contains("startall"), "{r:?}");
}
