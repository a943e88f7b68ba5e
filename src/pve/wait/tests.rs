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
        for settled in [true, false] {
            for end in [d.mul_f64(0.97), d, d.mul_f64(1.03)] {
                let polls = polls_until(expected(d, settled), end);
                let seen = *polls.last().unwrap();
                assert!(
                    polls.len() <= if end <= d { 6 } else { 7 },
                    "expected {d:?} (settled {settled}), ended {end:?}: {polls:?}"
                );
                let late = seen - end;
                assert!(
                    late <= end.mul_f64(0.05).max(FIRST_POLL - end.min(FIRST_POLL)),
                    "expected {d:?} (settled {settled}), ended {end:?}, seen {seen:?}"
                );
            }
            // Ending well before the estimate, it is seen by the poll just before it.
            let polls = polls_until(expected(d, settled), d.mul_f64(0.9));
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
            times.record(kind, observed(e, running_at, seen));
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
