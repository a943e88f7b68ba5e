//! The one decision about an HA request of ours whose task ended OK: as a table over
//! what the guest and HA show, and through `settle` for an op whose answer was lost.

use super::tests::{finished, http503, tracker, typed_upid, Fake, Scratch, TOKEN};
use super::*;
use crate::journal::OpState;
use crate::pve::PowerState;

fn guest(status: PowerState, ha: Option<&str>) -> Result<Option<GuestNow>, ApiError> {
    Ok(Some(GuestNow {
        status,
        ha_managed: ha.is_some(),
        ha_state: ha.map(str::to_string),
    }))
}

/// The verdict for `kind`, as `held`, `succeeded`, `moved`, `failed` or `settled`.
fn class(kind: ActionKind, now: Result<Option<GuestNow>, ApiError>, tracker: &Tracker) -> String {
    let upid = typed_upid(1000, "hastart", TOKEN);
    match request_outcome(OpId(1), kind, &upid, now, tracker) {
        Verdict::Held(_) => "held",
        Verdict::TaskFound(_) => "found",
        Verdict::Ended(Ending::Succeeded) => "succeeded",
        Verdict::Ended(Ending::Moved(_)) => "moved",
        Verdict::Ended(Ending::Failed(_)) => "failed",
        Verdict::Ended(Ending::Settled(_)) => "settled",
    }
    .to_string()
}

#[test]
fn an_ha_request_ends_only_when_the_guest_or_ha_says_so() {
    use PowerState::{Running, Stopped};
    let start = ActionKind::Start;
    let stop = ActionKind::Shutdown;
    // (kind, guest's status, HA's state, with the grace running, once it is over)
    let table: &[(ActionKind, PowerState, Option<&str>, &str, &str)] = &[
        // Where we asked: done, whatever HA says.
        (start, Running, Some("started"), "succeeded", "succeeded"),
        (stop, Stopped, Some("stopped"), "succeeded", "succeeded"),
        (
            start,
            Running,
            Some("request_stop"),
            "succeeded",
            "succeeded",
        ),
        // HA is carrying it out, or busy with the guest: held, however long.
        (start, Stopped, Some("started"), "held", "held"),
        (start, Stopped, Some("request_start"), "held", "held"),
        (stop, Running, Some("stopped"), "held", "held"),
        (stop, Running, Some("request_stop"), "held", "held"),
        (stop, Running, Some("disabled"), "held", "held"),
        (start, Stopped, Some("migrate"), "held", "held"),
        (stop, Running, Some("freeze"), "held", "held"),
        // HA's state from before the request (its CRM has not picked it up yet), or
        // one not known here: held through the grace, then settled.
        (start, Stopped, Some("stopped"), "held", "settled"),
        (stop, Running, Some("started"), "held", "settled"),
        (start, Stopped, Some("something new"), "held", "settled"),
        (start, Stopped, None, "settled", "settled"),
        // Something else asked since, or no longer HA's: settled at once.
        (start, Stopped, Some("request_stop"), "settled", "settled"),
        (start, Stopped, Some("disabled"), "settled", "settled"),
        (stop, Running, Some("request_start"), "settled", "settled"),
        (stop, Running, Some("ignored"), "settled", "settled"),
        // HA's error state: failed.
        (start, Stopped, Some("error"), "failed", "failed"),
        (stop, Running, Some("error"), "failed", "failed"),
    ];
    let mut got = String::new();
    let mut want = String::new();
    for (kind, status, ha, during, after) in table {
        let line = |c: &str, d: &str| format!("{kind} {status} {ha:?}: {c} / {d}\n");
        let during_grace = class(*kind, guest(status.clone(), *ha), &tracker());
        let after_grace = class(
            *kind,
            guest(status.clone(), *ha),
            &Tracker::new(Duration::ZERO),
        );
        got += &line(&during_grace, &after_grace);
        want += &line(during, after);
    }
    assert_eq!(got, want);
    // The guest left the node; its status cannot be read.
    assert_eq!(class(start, Ok(None), &tracker()), "moved");
    assert_eq!(class(stop, Err(http503()), &tracker()), "held");
    // A config update never goes through HA.
    assert_eq!(
        class(ActionKind::SetConfig, guest(Stopped, None), &tracker()),
        "succeeded"
    );
}

#[test]
fn the_grace_for_ha_counts_on_the_monotonic_clock_from_the_first_look() {
    let tracker = Tracker::new(Duration::from_millis(200));
    let upid = typed_upid(1000, "hastop", TOKEN);
    let look = || {
        let now = guest(PowerState::Running, Some("started"));
        request_outcome(OpId(3), ActionKind::Stop, &upid, now, &tracker)
    };
    let first = Instant::now();
    assert!(matches!(look(), Verdict::Held(w) if w.contains("not taken it up yet")));
    let deadline = first + Duration::from_secs(10);
    let ended = loop {
        assert!(Instant::now() < deadline, "never settled");
        match look() {
            Verdict::Held(_) => Cancel::never().wait(Duration::from_millis(20)),
            verdict => break verdict,
        };
    };
    assert!(first.elapsed() >= Duration::from_millis(200));
    assert!(
        matches!(&ended, Verdict::Ended(Ending::Settled(w)) if w.contains("did not take it up")),
        "{ended:?}"
    );
}

#[test]
fn a_lost_answer_to_an_ha_start_is_held_until_the_guest_runs() {
    let s = Scratch::new();
    let op = s.op(ActionKind::Start, None);
    let started = s.j().op(op).unwrap().started_at;
    let task = typed_upid(started, "hastart", TOKEN);
    // The request was filed (its task ended OK); HA has not started the guest yet.
    let mut node = Fake {
        tasks: Ok(vec![task.clone()]),
        state: finished(true, "OK"),
        guest: guest(PowerState::Stopped, Some("started")),
        ..Fake::default()
    };
    let why = s.settle(&node, &tracker()).unwrap();
    assert!(why.contains("HA is carrying it out"), "{why}");
    let summary = s.j().op(op).unwrap();
    assert_eq!(
        (summary.state, summary.upid),
        (OpState::TaskRunning, Some(task))
    );
    // `plan` sees the same hold, and journals nothing.
    let ops = s.j().in_flight();
    let (owned, last_tasks) = (s.j().upids(), s.j().last_tasks());
    let known = Known {
        token_id: TOKEN,
        owned: &owned,
        last_tasks: &last_tasks,
    };
    let holds = preview(&ops, &known, &node, &tracker());
    assert!(holds[&Vmid::new(101).unwrap()].contains("HA is carrying it out"));
    // HA started it.
    node.guest = guest(PowerState::Running, Some("started"));
    assert_eq!(s.settle(&node, &tracker()), None);
    assert_eq!(s.state(op), OpState::Succeeded);
}

#[test]
fn an_ha_request_ends_as_the_node_says() {
    let cases = [
        (guest(PowerState::Running, Some("error")), OpState::Failed),
        (
            guest(PowerState::Running, Some("request_start")),
            OpState::Abandoned,
        ),
        (Ok(None), OpState::Succeeded),
        (Err(http503()), OpState::TaskRunning),
    ];
    for (now, after) in cases {
        let s = Scratch::new();
        let op = s.op(
            ActionKind::Shutdown,
            Some(typed_upid(1000, "hastop", TOKEN)),
        );
        let node = Fake {
            state: finished(true, "OK"),
            guest: now,
            ..Fake::default()
        };
        s.settle(&node, &tracker());
        assert_eq!(s.state(op), after);
    }
}
