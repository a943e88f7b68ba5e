//! How long tasks of each type take (`vzstart`, `vzshutdown`, ...), learned from the
//! waits that saw them end, so that [`super::wait`] can poll just before and at the
//! expected end instead of on a fixed ladder.
//!
//! The estimate is the median of the last three observations of a type: one task
//! that takes ten times longer (or ends at once) does not move it, and a real change
//! takes over after two tasks. Until the median of three observations agrees with
//! another within 10 % the estimate is "unsettled" and the schedule adds probes
//! before the expected end, which both catch a task that is much shorter than thought
//! and measure it more precisely.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How many observations per task type the estimate is the median of (the code
/// below takes the middle of three).
const WINDOW: usize = 3;
/// Task types tracked at most; a node has a handful. Bounds the map should a broken
/// answer invent types.
const MAX_KINDS: usize = 64;
/// Observations are clamped to this range.
const SHORTEST: Duration = Duration::from_millis(10);
const LONGEST: Duration = Duration::from_secs(3600);

/// What a wait expects of a task.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Expected {
    /// The expected time from the start of the wait to the task's end.
    pub duration: Duration,
    /// Whether the last observations agree, so that polls can be few.
    pub settled: bool,
}

/// The learned durations, per task type. Thread-safe; one is shared by a [`super::Client`]
/// and its clones.
#[derive(Debug, Default)]
pub struct TaskTimes {
    by_kind: Mutex<HashMap<String, Recent>>,
}

#[derive(Debug, Default)]
struct Recent {
    samples: [Duration; WINDOW],
    len: usize,
    next: usize,
}

impl Recent {
    fn push(&mut self, d: Duration) {
        self.samples[self.next] = d;
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
    }

    fn latest(&self) -> Duration {
        self.samples[(self.next + WINDOW - 1) % WINDOW]
    }

    fn expected(&self) -> Expected {
        if self.len < WINDOW {
            return Expected {
                duration: self.latest(),
                settled: false,
            };
        }
        let mut s = self.samples;
        s.sort();
        let close = |a: Duration, b: Duration| b.as_secs_f64() <= a.as_secs_f64() * 1.1;
        Expected {
            duration: s[1],
            // The median agrees with one of the others: an outlier does not unsettle.
            settled: close(s[0], s[1]) || close(s[1], s[2]),
        }
    }
}

impl TaskTimes {
    pub fn new() -> TaskTimes {
        TaskTimes::default()
    }

    /// What to expect before any task of the type was seen: typical times on a PVE
    /// node for a small container. Only the first waits use it.
    pub fn prior(kind: &str) -> Duration {
        let ms = match kind {
            "vzstart" | "vzstop" | "qmstart" | "qmstop" => 1000,
            "vzshutdown" | "qmshutdown" => 3000,
            k if k.starts_with("ha") => 500,
            _ => 2000,
        };
        Duration::from_millis(ms)
    }

    /// The expectation for a task of type `kind`.
    pub fn expected(&self, kind: &str) -> Expected {
        let map = self.by_kind.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(kind) {
            Some(r) if r.len > 0 => r.expected(),
            _ => Expected {
                duration: TaskTimes::prior(kind),
                settled: false,
            },
        }
    }

    /// Feeds one observed duration of a task of type `kind`.
    pub fn record(&self, kind: &str, took: Duration) {
        let took = took.clamp(SHORTEST, LONGEST);
        let mut map = self.by_kind.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(kind) && map.len() >= MAX_KINDS {
            return;
        }
        map.entry(kind.to_string()).or_default().push(took);
    }
}

/// The duration to record after a wait that expected `used`, last saw the task
/// running at `running_at` and saw it stopped by `stopped_by` (all from the start of
/// the wait): the task ended in between.
///
/// An expectation inside that interval was right and is kept (a midpoint would drift
/// with each task). Otherwise an unsettled expectation gives way to the interval's
/// midpoint (the schedule's probes keep the interval short), while a settled one moves
/// at most 10 % past the interval's near end: the task most likely ended close to
/// where it was expected, and a wide interval (the poll before the expected end saw it
/// stopped, the poll before that was the early one) says little about where in it.
pub(crate) fn observed(used: Expected, running_at: Duration, stopped_by: Duration) -> Duration {
    let e = used.duration;
    let mid = (running_at + stopped_by) / 2;
    if e > running_at && e <= stopped_by {
        e
    } else if !used.settled {
        mid
    } else if e > stopped_by {
        mid.max(stopped_by.mul_f64(0.9))
    } else {
        mid.min(running_at.mul_f64(1.1))
    }
}

#[cfg(test)]
mod tests {
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
                settled: false
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
                settled: false
            },
            "100, 210 and 300 disagree by more than 10 %"
        );
        t.record("vzstart", ms(200));
        assert_eq!(
            t.expected("vzstart"),
            Expected {
                duration: ms(200),
                settled: true
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
                settled: true
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

    #[test]
    fn what_a_wait_observed() {
        let unsettled = |d| Expected {
            duration: d,
            settled: false,
        };
        let settled = |d| Expected {
            duration: d,
            settled: true,
        };
        for e in [unsettled(ms(1000)), settled(ms(1000))] {
            assert_eq!(observed(e, ms(970), ms(1010)), ms(1000), "kept");
            assert_eq!(observed(e, ms(1000), ms(1040)), ms(1020), "running at 1000");
        }
        // Shorter than expected.
        assert_eq!(
            observed(unsettled(ms(2000)), ms(75), ms(1000)),
            ms(537) + ms(1) / 2
        );
        assert_eq!(observed(settled(ms(2000)), ms(75), ms(1000)), ms(900));
        assert_eq!(observed(settled(ms(2000)), ms(800), ms(1000)), ms(900));
        assert_eq!(observed(settled(ms(2000)), ms(960), ms(1000)), ms(980));
        // Longer than expected.
        assert_eq!(observed(unsettled(ms(500)), ms(600), ms(1000)), ms(800));
        assert_eq!(observed(settled(ms(500)), ms(600), ms(1000)), ms(660));
        assert_eq!(observed(settled(ms(500)), ms(600), ms(620)), ms(610));
    }
}
