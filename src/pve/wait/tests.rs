//! The poll schedule as a pure function, and the schedule and the estimator together
//! on simulated tasks (polls answered instantly: the task is stopped at a poll at or
//! after its true end).

use super::*;
use crate::pve::times::TaskTimes;
use crate::rng::XorShift;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn expected(d: Duration, settled: bool) -> Expected {
    Expected {
        duration: d,
        settled,
        prior: false,
        within: None,
    }
}

/// What a wait expects of a type it has seen no task of.
fn prior(d: Duration) -> Expected {
    Expected {
        duration: d,
        settled: false,
        prior: true,
        within: None,
    }
}

/// The polls up to and including the first one that sees a task ending at `end`.
fn polls_until(e: Expected, end: Duration) -> Vec<Duration> {
    let mut out = Vec::new();
    for t in schedule(e) {
        out.push(t);
        if t >= end || out.len() > 1000 {
            return out;
        }
    }
    unreachable!("the schedule is endless")
}

#[test]
fn the_schedule_polls_early_then_around_the_expected_end() {
    let first: Vec<u128> = schedule(expected(ms(1000), true))
        .take(6)
        .map(|t| t.as_millis())
        .collect();
    assert_eq!(first, [75, 970, 1010, 1040, 1100, 1220]);
    let first: Vec<u128> = schedule(expected(ms(1000), false))
        .take(6)
        .map(|t| t.as_millis())
        .collect();
    assert_eq!(first, [75, 500, 800, 970, 1010, 1040]);
    // Only the prior: probes spread out below it.
    let first: Vec<u128> = schedule(prior(ms(3000)))
        .take(6)
        .map(|t| t.as_millis())
        .collect();
    assert_eq!(first, [75, 375, 1000, 2910, 3030, 3120]);
    // A guess from a task seen ending between 180 and 220 ms: no probe below 180 ms,
    // and one at 220 ms.
    let guess = Expected {
        within: Some((ms(180), ms(220))),
        ..expected(ms(200), false)
    };
    let first: Vec<u128> = schedule(guess).take(5).map(|t| t.as_millis()).collect();
    assert_eq!(first, [75, 194, 202, 220, 226]);
    // A short expectation: the early poll comes first, planned polls too close to it
    // are left out, and the steps start small.
    let first: Vec<u128> = schedule(expected(ms(40), false))
        .take(5)
        .map(|t| t.as_millis())
        .collect();
    assert_eq!(first, [75, 80, 90, 110, 150]);
    // A long one: no gap before the expected end is longer than MAX_GAP.
    let first: Vec<u128> = schedule(expected(ms(7000), true))
        .take(6)
        .map(|t| t.as_millis())
        .collect();
    assert_eq!(first, [75, 2075, 4075, 6075, 6790, 7070]);
}

#[test]
fn a_task_ending_at_its_estimate_takes_at_most_six_polls_and_is_seen_within_5_percent() {
    for d in [50, 200, 1000, 2000, 5000].map(ms) {
        for e in [expected(d, true), expected(d, false), prior(d)] {
            for end in [d.mul_f64(0.97), d, d.mul_f64(1.03)] {
                let polls = polls_until(e, end);
                let seen = *polls.last().unwrap();
                assert!(
                    polls.len() <= if end <= d { 6 } else { 7 },
                    "{e:?}, ended {end:?}: {polls:?}"
                );
                let late = seen - end;
                assert!(
                    late <= end.mul_f64(0.05).max(FIRST_POLL - end.min(FIRST_POLL)),
                    "{e:?}, ended {end:?}, seen {seen:?}"
                );
            }
            // Ending well before the estimate, it is seen by the poll just before it.
            let polls = polls_until(e, d.mul_f64(0.9));
            assert!(polls.len() <= 5, "{d:?}: {polls:?}");
            assert!(*polls.last().unwrap() <= d.mul_f64(0.97).max(FIRST_POLL));
        }
    }
    assert_eq!(polls_until(expected(ms(1000), true), ms(1000)).len(), 3);
}

#[test]
fn a_task_running_ten_times_longer_is_polled_with_bounded_gaps() {
    for d in [200, 1000, 3000].map(ms) {
        for settled in [true, false] {
            let end = d * 10;
            let polls = polls_until(expected(d, settled), end);
            let gaps: Vec<Duration> = polls.windows(2).map(|w| w[1] - w[0]).collect();
            assert!(gaps.iter().all(|g| *g <= MAX_GAP), "{polls:?}");
            assert!(gaps.iter().all(|g| *g >= MIN_GAP), "{polls:?}");
            let seen = *polls.last().unwrap();
            // Seen within MAX_GAP, and never after twice the task's length.
            assert!(seen - end <= MAX_GAP.min(end), "{d:?}: seen {seen:?}");
            // Doubling from a few per cent of the estimate to MAX_GAP, then MAX_GAP.
            let most = (end.as_secs_f64() / MAX_GAP.as_secs_f64()) as usize + 14;
            assert!(
                polls.len() <= most,
                "{d:?}: {} polls: {polls:?}",
                polls.len()
            );
        }
    }
}

/// Runs tasks of the given true lengths through the schedule and the estimator, as
/// `wait_task` does, and returns (polls, how late the end was seen) for each.
fn run(times: &TaskTimes, kind: &str, ends: &[Duration]) -> Vec<(usize, Duration)> {
    ends.iter()
        .map(|&end| {
            let e = times.expected(kind);
            let polls = polls_until(e, end);
            let seen = *polls.last().unwrap();
            let running_at = polls.iter().rev().nth(1).copied().unwrap_or(Duration::ZERO);
            times.observe(kind, observed(e, running_at, seen));
            (polls.len(), seen - end)
        })
        .collect()
}

#[test]
fn one_second_tasks_are_seen_within_5_percent_with_few_polls() {
    let mut rng = XorShift::new(11);
    // 1 s tasks whose end, seen from the start of the wait, jitters by up to 20 ms.
    let ends: Vec<Duration> = (0..200).map(|_| ms(980) + ms(rng.below(21))).collect();
    for (kind, warmup) in [("vzstart", 0), ("vzshutdown", 6), ("other", 6)] {
        let times = TaskTimes::new();
        let seen = run(&times, kind, &ends);
        for (i, &(polls, late)) in seen.iter().enumerate().skip(warmup) {
            assert!(polls <= 6, "{kind} task {i}: {polls} polls");
            assert!(late <= ms(50), "{kind} task {i}: seen {late:?} late");
        }
        let mean_polls = seen.iter().map(|s| s.0).sum::<usize>() as f64 / seen.len() as f64;
        assert!(mean_polls < 4.0, "{kind}: {mean_polls} polls on average");
    }
}

#[test]
fn the_estimate_converges_from_a_wrong_prior_and_survives_an_outlier() {
    let times = TaskTimes::new();
    let mut ends = vec![ms(200); 8];
    ends.push(ms(2000));
    ends.extend([ms(200); 8]);
    let seen = run(&times, "vzstart", &ends);
    // From a prior five times too long, within a few tasks.
    for (i, &(polls, late)) in seen.iter().enumerate().skip(4) {
        if i == 8 {
            continue;
        }
        assert!(polls <= 6, "task {i}: {polls} polls ({seen:?})");
        assert!(late <= ms(10), "task {i}: seen {late:?} late ({seen:?})");
    }
    // The slow task is seen within MAX_GAP, and the next ones as before.
    assert!(seen[8].1 <= MAX_GAP, "{seen:?}");
    assert!(seen[9..].iter().all(|s| *s == seen[7]), "{seen:?}");
}

/// Waves of `lanes` waits side by side, as the lanes of a pass run them: each wait of a
/// wave takes its expectation before any of them has seen its task end. Returns, per
/// wave, the most polls and how late the wave's last task was seen.
fn waves(times: &TaskTimes, kind: &str, lanes: usize, ends: &[Duration]) -> Vec<(usize, Duration)> {
    ends.chunks(lanes)
        .map(|wave| {
            let e = times.expected(kind);
            let seen: Vec<(usize, Duration)> = wave
                .iter()
                .map(|&end| {
                    let polls = polls_until(e, end);
                    let seen = *polls.last().unwrap();
                    let running_at = polls.iter().rev().nth(1).copied().unwrap_or_default();
                    times.observe(kind, observed(e, running_at, seen));
                    (polls.len(), seen - end)
                })
                .collect();
            (
                seen.iter().map(|s| s.0).max().unwrap(),
                seen.iter().map(|s| s.1).max().unwrap(),
            )
        })
        .collect()
}

/// 0.2 s shutdowns eight at a time, from the 3 s prior: the first wave sees them end
/// at the prior's probe at an eighth of it, all eight with the same wide interval.
/// Their eight equal guesses do not settle the estimate; the next waves probe inside
/// that interval and measure the tasks, after which each is seen with three polls.
#[test]
fn waits_side_by_side_do_not_settle_on_one_guess() {
    let mut rng = XorShift::new(5);
    let ends: Vec<Duration> = (0..96).map(|_| ms(200) + ms(rng.below(11))).collect();
    let times = TaskTimes::new();
    let seen = waves(&times, "vzshutdown", 8, &ends);
    assert!(seen[0].1 <= ms(375 - 200), "the prior's eighth: {seen:?}");
    for (i, &(polls, late)) in seen.iter().enumerate().skip(1) {
        assert!(late <= ms(20), "wave {i}: seen {late:?} late ({seen:?})");
        assert!(
            polls <= if i < 3 { 4 } else { 3 },
            "wave {i}: {polls} polls ({seen:?})"
        );
    }
    assert!(times.expected("vzshutdown").settled);
    // All waves after the first lose less time together than the first alone.
    let after: Duration = seen[1..].iter().map(|w| w.1).sum();
    assert!(after < seen[0].1, "{seen:?}");
}

/// A wait counts from when the client was handed the UPID, not from when the caller
/// began it: here as if the call had answered a second before the wait, so the polls
/// planned from the prior are all due at once, and the task is seen ending more than
/// a second after its start. Counted from the wait's own start it would be seen
/// ending at once.
#[cfg(feature = "sim")]
#[test]
fn a_wait_counts_from_when_the_task_was_started() {
    use crate::cancel::Cancel;
    use crate::pve::types::PowerOp;
    use crate::pve::{ClientOptions, Vmid};
    use crate::secret::Secret;
    use crate::sim::{Sim, SimGuest, SimOptions};
    let sim = Sim::start(SimOptions {
        task_duration: ms(150),
        ..SimOptions::default()
    })
    .unwrap();
    sim.add_guest(SimGuest::new(101, "pve1"));
    let c = Client::new(ClientOptions::new(
        &sim.url(),
        sim.token_id(),
        Secret::new(sim.token_secret()),
    ))
    .unwrap();
    let params = Default::default();
    let upid = c
        .lxc_power("pve1", Vmid::new(101).unwrap(), PowerOp::Start, &params)
        .unwrap();
    let times = c.task_times();
    let answered = times
        .take_start(&upid)
        .expect("the call noted its task's start");
    times.note_start(&upid, answered - Duration::from_secs(1));
    let opts = WaitOptions::new(Instant::now() + Duration::from_secs(10), Cancel::never());
    assert_eq!(c.wait_task(&upid, &opts), Ok(TaskOutcome::Ok));
    assert_eq!(times.take_start(&upid), None, "the wait took it");
    let learned = times.expected("vzstart").duration;
    assert!(learned > ms(1000), "{learned:?}");
}

/// A settled estimate and tasks that now and then end just before the poll at 97 % of
/// it, seen stopped there with only the early poll before: each is a guess at that
/// poll, not the interval's midpoint (a third of the estimate lower), so the schedule
/// stays around the tasks' real length and no task takes more than six polls. A real
/// change, to tasks four times shorter or sixteen times longer, still takes over
/// within a few tasks.
#[test]
fn an_early_end_now_and_then_does_not_throw_a_settled_estimate_off() {
    let times = TaskTimes::new();
    let mut ends = vec![ms(200); 4];
    for i in 0..60 {
        ends.push(if i % 3 == 0 { ms(193) } else { ms(200) });
    }
    let seen = run(&times, "vzstart", &ends);
    for (i, &(polls, late)) in seen.iter().enumerate().skip(4) {
        assert!(polls <= 6, "task {i}: {polls} polls ({seen:?})");
        assert!(late <= ms(12), "task {i}: seen {late:?} late ({seen:?})");
    }
    let seen = run(&times, "vzstart", &[ms(50); 12]);
    for (i, &(polls, late)) in seen.iter().enumerate().skip(5) {
        assert!(polls <= 3, "task {i}: {polls} polls ({seen:?})");
        assert!(
            late <= FIRST_POLL - ms(50),
            "task {i}: seen {late:?} late ({seen:?})"
        );
    }
    let seen = run(&times, "vzstart", &[ms(800); 12]);
    for (i, &(polls, late)) in seen.iter().enumerate().skip(6) {
        assert!(polls <= 6, "task {i}: {polls} polls ({seen:?})");
        assert!(late <= ms(40), "task {i}: seen {late:?} late ({seen:?})");
    }
}
