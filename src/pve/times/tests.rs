//! The estimator: observations, guesses and when the estimate settles.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn starts_from_the_prior_and_settles_on_agreeing_observations() {
    let t = TaskTimes::new();
    assert_eq!(
        t.expected("vzstart"),
        Expected {
            duration: ms(1000),
            settled: false,
            prior: true,
            within: None
        }
    );
    assert_eq!(t.expected("vzshutdown").duration, ms(3000));
    assert_eq!(t.expected("hastart").duration, ms(500));
    t.record("vzstart", ms(300));
    assert_eq!(t.expected("vzstart").duration, ms(300));
    t.record("vzstart", ms(210));
    assert_eq!(t.expected("vzstart").duration, ms(210), "the latest of two");
    assert!(!t.expected("vzstart").settled);
    t.record("vzstart", ms(100));
    assert_eq!(
        t.expected("vzstart"),
        Expected {
            duration: ms(210),
            settled: false,
            prior: false,
            within: None
        },
        "100, 210 and 300 disagree by more than 10 %"
    );
    t.record("vzstart", ms(200));
    assert_eq!(
        t.expected("vzstart"),
        Expected {
            duration: ms(200),
            settled: true,
            prior: false,
            within: None
        },
        "the median (200) agrees with 210"
    );
    assert_eq!(t.expected("vzstop").duration, ms(1000), "types are apart");
}

#[test]
fn converges_after_a_change_and_ignores_one_outlier() {
    let t = TaskTimes::new();
    for _ in 0..5 {
        t.record("vzstart", ms(1000));
    }
    t.record("vzstart", ms(10_000));
    assert_eq!(
        t.expected("vzstart"),
        Expected {
            duration: ms(1000),
            settled: true,
            prior: false,
            within: None
        },
        "one slow start"
    );
    t.record("vzstart", ms(1000));
    t.record("vzstart", ms(20));
    assert_eq!(
        t.expected("vzstart").duration,
        ms(1000),
        "one instant failure"
    );
    t.record("vzstart", ms(2000));
    t.record("vzstart", ms(2000));
    assert_eq!(t.expected("vzstart").duration, ms(2000), "a real change");
}

#[test]
fn observations_are_clamped_and_kinds_bounded() {
    let t = TaskTimes::new();
    t.record("x", Duration::ZERO);
    assert_eq!(t.expected("x").duration, SHORTEST);
    t.record("x", Duration::from_secs(1 << 20));
    assert_eq!(t.expected("x").duration, LONGEST);
    for i in 0..2 * MAX_KINDS {
        t.record(&format!("kind{i}"), ms(5000));
    }
    assert_eq!(t.expected("kind0").duration, ms(5000));
    let last = format!("kind{}", 2 * MAX_KINDS - 1);
    assert_eq!(t.expected(&last).duration, TaskTimes::prior(&last));
}

fn precise(took: Duration) -> Observation {
    Observation {
        took,
        precise: true,
        within: (took, took),
    }
}

/// A guess from a task seen ending between the early poll and twice `took`.
fn guess(took: Duration) -> Observation {
    Observation {
        took,
        precise: false,
        within: (ms(75), took * 2),
    }
}

#[test]
fn what_a_wait_observed() {
    let unsettled = |d| Expected {
        duration: d,
        settled: false,
        prior: false,
        within: None,
    };
    let settled = |d| Expected {
        duration: d,
        settled: true,
        ..unsettled(d)
    };
    let seen = |e, running_at, stopped_by| {
        let o = observed(e, running_at, stopped_by);
        assert_eq!(o.within, (running_at, stopped_by));
        (o.took, o.precise)
    };
    for e in [unsettled(ms(1000)), settled(ms(1000))] {
        assert_eq!(seen(e, ms(970), ms(1010)), (ms(1000), true), "kept");
        assert_eq!(
            seen(e, ms(1000), ms(1040)),
            (ms(1020), true),
            "running at 1000"
        );
        // Shorter or longer than expected, seen closely: measured.
        assert_eq!(seen(e, ms(940), ms(980)), (ms(960), true));
        assert_eq!(seen(e, ms(600), ms(620)), (ms(610), true));
    }
    // Between two polls far apart: the midpoint, if the expectation was not
    // settled ...
    let (u, s) = (unsettled(ms(2000)), settled(ms(2000)));
    assert_eq!(seen(u, ms(75), ms(1000)), (ms(537) + ms(1) / 2, false));
    assert_eq!(seen(u, ms(800), ms(1000)), (ms(900), false));
    assert_eq!(
        seen(unsettled(ms(500)), ms(600), ms(1000)),
        (ms(800), false)
    );
    // ... else the bound nearest it.
    assert_eq!(seen(s, ms(75), ms(1940)), (ms(1940), false));
    assert_eq!(seen(s, ms(75), ms(1000)), (ms(1000), false));
    assert_eq!(seen(settled(ms(500)), ms(600), ms(1000)), (ms(600), false));
    // Kept inside a wide interval (a task shorter than the early poll): a guess.
    assert_eq!(
        seen(unsettled(ms(40)), Duration::ZERO, ms(75)),
        (ms(40), false)
    );
}

fn fed(kind: &str, observations: &[Observation]) -> Expected {
    let t = TaskTimes::new();
    for o in observations {
        t.observe(kind, *o);
    }
    t.expected(kind)
}

#[test]
fn guesses_never_settle_the_estimate() {
    // The waits of one wave, side by side with the prior: the same guess each.
    let wave = [guess(ms(787)); 8];
    assert_eq!(
        fed("vzshutdown", &wave),
        Expected {
            duration: ms(787),
            settled: false,
            prior: false,
            within: Some((ms(75), ms(1574)))
        }
    );
    // Probing around it narrows it down.
    let probing = [guess(ms(787)), guess(ms(234)), guess(ms(234))];
    assert_eq!(fed("vzshutdown", &probing).duration, ms(234));
    // Measurements that agree settle it, on their median.
    let measured = [guess(ms(207)), precise(ms(205)), precise(ms(207))];
    assert_eq!(
        fed("vzshutdown", &measured),
        Expected {
            duration: ms(207),
            settled: true,
            prior: false,
            within: None
        }
    );
    // A settled estimate stays through one guess either side of it ...
    for (odd, median) in [(guess(ms(100)), ms(200)), (guess(ms(900)), ms(204))] {
        let e = fed("x", &[precise(ms(200)), precise(ms(204)), odd]);
        assert_eq!((e.duration, e.settled), (median, true), "{odd:?}");
    }
    // ... and gives way to two, unsettled: the schedule probes.
    let e = fed("x", &[precise(ms(200)), guess(ms(120)), guess(ms(110))]);
    assert_eq!((e.duration, e.settled), (ms(120), false));
    // A measurement and a guess that agree do not settle it either.
    let e = fed("x", &[precise(ms(200)), guess(ms(205)), precise(ms(300))]);
    assert_eq!((e.duration, e.settled), (ms(205), false));
}

#[test]
fn task_starts_are_taken_once_and_bounded() {
    let t = TaskTimes::new();
    let upid = |n: u32| -> Upid {
        format!("UPID:pve1:{n:08X}:0456789A:6650F1C2:vzstart:101:root@pam:")
            .parse()
            .unwrap()
    };
    let at = Instant::now();
    t.note_start(&upid(1), at);
    t.note_start(&upid(2), at + ms(5));
    assert_eq!(t.take_start(&upid(2)), Some(at + ms(5)));
    assert_eq!(t.take_start(&upid(2)), None, "taken");
    assert_eq!(t.take_start(&upid(3)), None, "never noted");
    for n in 10..10 + MAX_STARTS as u32 {
        t.note_start(&upid(n), at);
    }
    assert_eq!(t.take_start(&upid(1)), None, "the oldest went first");
    assert_eq!(t.take_start(&upid(10)), Some(at));
}
