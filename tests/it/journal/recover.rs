//! Recovery against a fake Proxmox task API.

use super::{action, upid, TempDir};
use felhom_agent::action::ActionKind;
use felhom_agent::cancel::{Cancel, CancelSource};
use felhom_agent::journal::{
    read_records, recover, Journal, JournalOptions, OpId, OpState, RecoverError, RecoveryOptions,
    TaskLookup, TaskState,
};
use felhom_agent::pve::{Upid, Vmid};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// Scripted answers: each task's states in turn (the last one repeats), and the
/// task list `find_task` searches.
#[derive(Default)]
struct FakeTasks {
    states: Mutex<HashMap<String, VecDeque<Result<TaskState, String>>>>,
    listed: HashMap<(Vmid, String), Upid>,
    polls: Mutex<Vec<String>>,
    finds: Mutex<Vec<(Vmid, String, i64)>>,
}

impl FakeTasks {
    fn script(&self, upid: &Upid, answers: Vec<Result<TaskState, String>>) {
        self.states
            .lock()
            .unwrap()
            .insert(upid.to_string(), answers.into());
    }

    fn list(&mut self, vmid: u64, task_type: &str, upid: &Upid) {
        self.listed.insert(
            (Vmid::new(vmid).unwrap(), task_type.to_string()),
            upid.clone(),
        );
    }
}

impl TaskLookup for FakeTasks {
    fn task_state(&self, upid: &Upid) -> Result<TaskState, String> {
        self.polls.lock().unwrap().push(upid.to_string());
        let mut states = self.states.lock().unwrap();
        let answers = states
            .get_mut(&upid.to_string())
            .ok_or_else(|| format!("no such task {upid}"))?;
        if answers.len() > 1 {
            answers.pop_front().unwrap()
        } else {
            answers.front().cloned().unwrap()
        }
    }

    fn find_task(&self, vmid: Vmid, task_type: &str, since: i64) -> Result<Option<Upid>, String> {
        self.finds
            .lock()
            .unwrap()
            .push((vmid, task_type.to_string(), since));
        Ok(self.listed.get(&(vmid, task_type.to_string())).cloned())
    }
}

fn ok() -> Result<TaskState, String> {
    Ok(TaskState::Finished {
        ok: true,
        exitstatus: "OK".into(),
    })
}

fn failed(status: &str) -> Result<TaskState, String> {
    Ok(TaskState::Finished {
        ok: false,
        exitstatus: status.into(),
    })
}

fn options(timeout_ms: u64) -> RecoveryOptions {
    RecoveryOptions {
        task_timeout: Duration::from_millis(timeout_ms),
        cancel: Cancel::never(),
    }
}

/// The journal's records as `op state [upid-type] [error]` lines.
fn history(dir: &TempDir) -> Vec<String> {
    read_records(&dir.journal())
        .unwrap()
        .iter()
        .map(|r| {
            let mut s = format!("{} {} {}", r.op, r.vmid, r.state);
            if let Some(u) = &r.upid {
                s += &format!(" {}#{}", u.kind, u.pid);
            }
            if let Some(e) = &r.error {
                s += &format!(" ({e})");
            }
            s
        })
        .collect()
}

#[test]
fn tasks_with_a_upid_are_waited_for_and_resolved() {
    let dir = TempDir::new("recover-upid");
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let tasks = FakeTasks::default();
    let mut ops = Vec::new();
    for (vmid, answers) in [
        (
            101,
            vec![Ok(TaskState::Running), Ok(TaskState::Running), ok()],
        ),
        (102, vec![ok()]),
        (103, vec![failed("CT is locked (backup)")]),
        (104, vec![Err("connection refused".into()), ok()]),
    ] {
        let op = journal.begin(&action(vmid, ActionKind::Start)).unwrap();
        let u = upid(vmid, "vzstart", vmid as u32);
        journal.task_running(op, &u).unwrap();
        tasks.script(&u, answers);
        ops.push(op);
    }
    let report = recover(&journal, &tasks, &options(10_000)).unwrap();
    assert!(journal.in_flight().is_empty());
    assert_eq!(report.waited, 1);
    assert_eq!(report.abandoned, 0);
    let mut resolved = report.resolved.clone();
    resolved.sort();
    assert_eq!(
        resolved,
        [
            (ops[0], OpState::Succeeded),
            (ops[1], OpState::Succeeded),
            (ops[2], OpState::Failed),
            (ops[3], OpState::Succeeded),
        ]
    );
    // 101 was polled three times, 104 twice, the others once.
    assert_eq!(tasks.polls.lock().unwrap().len(), 7);
    journal.close().unwrap();
    let h = history(&dir);
    assert_eq!(
        &h[8..],
        [
            "2 102 succeeded vzstart#102",
            "3 103 failed vzstart#103 (CT is locked (backup))",
            "4 104 succeeded vzstart#104",
            "1 101 succeeded vzstart#101",
        ]
    );
}

#[test]
fn a_power_op_without_upid_is_found_in_the_task_list_or_abandoned() {
    let dir = TempDir::new("recover-find");
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let found = journal.begin(&action(101, ActionKind::Shutdown)).unwrap();
    let lost = journal.begin(&action(102, ActionKind::Stop)).unwrap();
    let config = journal.begin(&action(103, ActionKind::SetConfig)).unwrap();
    let started_at = journal.in_flight()[0].started_at;
    let mut tasks = FakeTasks::default();
    let u = upid(101, "vzshutdown", 9);
    tasks.list(101, "vzshutdown", &u);
    tasks.script(&u, vec![failed("container did not stop")]);

    let report = recover(&journal, &tasks, &options(10_000)).unwrap();
    assert!(journal.in_flight().is_empty());
    assert_eq!(report.abandoned, 2);
    assert_eq!(report.waited, 0);
    let mut resolved = report.resolved.clone();
    resolved.sort();
    assert_eq!(
        resolved,
        [
            (found, OpState::Failed),
            (lost, OpState::Abandoned),
            (config, OpState::Abandoned)
        ]
    );
    // set_config leaves no task, so it is never looked for.
    let mut finds = tasks.finds.lock().unwrap().clone();
    finds.sort();
    assert_eq!(
        finds,
        [
            (Vmid::new(101).unwrap(), "vzshutdown".into(), started_at - 5),
            (Vmid::new(102).unwrap(), "vzstop".into(), started_at - 5),
        ]
    );
    journal.close().unwrap();
    let h = history(&dir);
    assert_eq!(h[..3], ["1 101 started", "2 102 started", "3 103 started"]);
    let mut rest = h[3..].to_vec();
    rest.sort();
    let since = felhom_agent::time::rfc3339(started_at - 5);
    assert_eq!(rest, [
        "1 101 failed vzshutdown#9 (container did not stop)".to_string(),
        "1 101 task_running vzshutdown#9".into(),
        format!("2 102 abandoned (no vzstop task for vmid 102 since {since}; the next pass re-plans from the live state)"),
        "3 103 abandoned (set_config was in flight with no answer; the next pass re-plans from the live state)".into(),
    ]);
}

#[test]
fn a_task_that_never_finishes_is_an_error_naming_the_guest() {
    let dir = TempDir::new("recover-stuck");
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let tasks = FakeTasks::default();
    let stuck = journal.begin(&action(105, ActionKind::Shutdown)).unwrap();
    let u = upid(105, "vzshutdown", 5);
    journal.task_running(stuck, &u).unwrap();
    tasks.script(&u, vec![Ok(TaskState::Running)]);
    let broken = journal.begin(&action(106, ActionKind::Start)).unwrap();
    let b = upid(106, "vzstart", 6);
    journal.task_running(broken, &b).unwrap();
    tasks.script(&b, vec![Err("596 connection timed out".into())]);
    let done = journal.begin(&action(107, ActionKind::Start)).unwrap();
    let d = upid(107, "vzstart", 7);
    journal.task_running(done, &d).unwrap();
    tasks.script(&d, vec![ok()]);

    let err = recover(&journal, &tasks, &options(300)).unwrap_err();
    assert_eq!(
        err.vmids(),
        [Vmid::new(105).unwrap(), Vmid::new(106).unwrap()]
    );
    assert_eq!(
        err.to_string(),
        format!(
            "recovery left ops in flight: op {stuck} vmid 105: task {u} still running after 0.3 s; \
             op {broken} vmid 106: task lookup kept failing: 596 connection timed out"
        )
    );
    // What could be resolved was; the rest stays in flight for the daemon to avoid.
    let left: Vec<OpId> = journal.in_flight().iter().map(|o| o.op).collect();
    assert_eq!(left, [stuck, broken]);
    journal.close().unwrap();
}

#[test]
fn cancellation_stops_recovery_at_once() {
    let dir = TempDir::new("recover-cancel");
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let tasks = FakeTasks::default();
    let op = journal.begin(&action(108, ActionKind::Start)).unwrap();
    let u = upid(108, "vzstart", 8);
    journal.task_running(op, &u).unwrap();
    tasks.script(&u, vec![Ok(TaskState::Running)]);
    let mut source = CancelSource::new();
    source.cancel();
    let opts = RecoveryOptions {
        task_timeout: Duration::from_secs(600),
        cancel: source.token(),
    };
    let started = std::time::Instant::now();
    let err = recover(&journal, &tasks, &opts).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, RecoverError::Cancelled(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "recovery cancelled with ops in flight for vmids 108"
    );
    assert_eq!(tasks.polls.lock().unwrap().len(), 1);
    assert_eq!(journal.in_flight().len(), 1);
    journal.close().unwrap();
}

#[test]
fn recovery_with_nothing_in_flight_does_nothing() {
    let dir = TempDir::new("recover-none");
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let op = journal.begin(&action(101, ActionKind::Start)).unwrap();
    journal.succeeded(op).unwrap();
    let tasks = FakeTasks::default();
    let report = recover(&journal, &tasks, &options(100)).unwrap();
    assert_eq!(report, Default::default());
    assert!(tasks.polls.lock().unwrap().is_empty());
    journal.close().unwrap();
}
