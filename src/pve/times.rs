//! How long tasks of each type take (`vzstart`, `vzshutdown`, ...), learned from the
//! waits that saw them end, so that [`super::wait`] can poll just before and at the
//! expected end instead of on a fixed ladder.
//!
//! A wait observes the interval in which its task ended: between the last poll that
//! saw it running and the first that saw it stopped. A narrow interval (at most 10 % of
//! the duration) is a measurement, "precise". A wide one (the task ended long before
//! or after it was expected, between two polls far apart) only bounds the duration
//! and gives a guess ([`observed`]), which keeps its interval: the next wait probes
//! inside it.
//!
//! The estimate is the median of the last three observations of a type: one task that
//! takes ten times longer (or ends at once) does not move it, and a real change
//! unsettles it after two tasks. It is "settled" when two precise observations among
//! the three agree within 10 % (the median lies between them); until then the schedule
//! adds probes before the expected end, which both catch a task that is much shorter
//! than thought and measure it more precisely. Guesses never settle the estimate,
//! however many agree: the waits that run side by side with one expectation see their
//! tasks end between the same two polls and make the same guess.

use super::Upid;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many observations per task type the estimate is the median of (the code
/// below takes the middle of three).
const WINDOW: usize = 3;
/// Task types tracked at most; a node has a handful. Bounds the map should a broken
/// answer invent types.
const MAX_KINDS: usize = 64;
/// Task starts remembered at most, until their wait begins: far more than the tasks a
/// client's lanes have in flight. The oldest goes first.
const MAX_STARTS: usize = 256;
/// Observations are clamped to this range.
const SHORTEST: Duration = Duration::from_millis(10);
const LONGEST: Duration = Duration::from_secs(3600);
/// How close two observations must be to agree, and how narrow, relative to the
/// duration, the interval a task was seen to end in must be to be a measurement.
const CLOSE: f64 = 0.1;

/// What one wait learned about its task's duration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Observation {
    pub took: Duration,
    /// Whether the task's end was seen within [`CLOSE`] of `took`: a measurement, not
    /// a guess inside a wide interval.
    pub precise: bool,
    /// The interval the task was seen to end in, from the start of its wait.
    pub within: (Duration, Duration),
}

/// What a wait expects of a task.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Expected {
    /// The expected time from the start of the wait to the task's end.
    pub duration: Duration,
    /// Whether the last observations agree, so that polls can be few.
    pub settled: bool,
    /// Whether no task of the type was seen yet: the duration is [`TaskTimes::prior`],
    /// which may be off many times over.
    pub prior: bool,
    /// For an unsettled estimate that is a guess: the interval the task it comes from
    /// was seen to end in. A task like it ends inside, so the schedule probes there
    /// and polls at its end, not below it nor in small steps past the estimate.
    pub within: Option<(Duration, Duration)>,
}

/// The learned durations, per task type. Thread-safe; one is shared by a [`super::Client`]
/// and its clones.
#[derive(Debug, Default)]
pub struct TaskTimes {
    by_kind: Mutex<HashMap<String, Recent>>,
    /// When the client was handed the UPID of each task it started and has not waited
    /// on yet.
    starts: Mutex<VecDeque<(Upid, Instant)>>,
}

#[derive(Debug)]
struct Recent {
    samples: [Observation; WINDOW],
    len: usize,
    next: usize,
}

impl Default for Recent {
    fn default() -> Recent {
        let none = Observation {
            took: Duration::ZERO,
            precise: false,
            within: (Duration::ZERO, Duration::ZERO),
        };
        Recent {
            samples: [none; WINDOW],
            len: 0,
            next: 0,
        }
    }
}

impl Recent {
    fn push(&mut self, o: Observation) {
        self.samples[self.next] = o;
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
    }

    fn expected(&self) -> Expected {
        let unsettled = |o: &Observation| Expected {
            duration: o.took,
            settled: false,
            prior: false,
            within: (!o.precise).then_some(o.within),
        };
        if self.len < WINDOW {
            return unsettled(&self.samples[(self.next + WINDOW - 1) % WINDOW]);
        }
        let mut s = self.samples;
        s.sort_by_key(|o| o.took);
        let close = |a: &Observation, b: &Observation| {
            a.precise && b.precise && b.took.as_secs_f64() <= a.took.as_secs_f64() * (1.0 + CLOSE)
        };
        // Sorted, any pair has the median between them.
        if close(&s[0], &s[1]) || close(&s[1], &s[2]) || close(&s[0], &s[2]) {
            return Expected {
                duration: s[1].took,
                settled: true,
                prior: false,
                within: None,
            };
        }
        unsettled(&s[1])
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
                prior: true,
                within: None,
            },
        }
    }

    /// Notes that the call that started task `upid` was answered `at`. A wait on the
    /// task then measures from there, not from when the caller began the wait: the
    /// agent journals a UPID before it waits (an fsync, at times tens of milliseconds),
    /// and that delay would otherwise be taken off the task's duration.
    pub(crate) fn note_start(&self, upid: &Upid, at: Instant) {
        let mut starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        if starts.len() >= MAX_STARTS {
            starts.pop_front();
        }
        starts.push_back((upid.clone(), at));
    }

    /// When the call that started task `upid` was answered, if noted (and forgets it).
    pub(crate) fn take_start(&self, upid: &Upid) -> Option<Instant> {
        let mut starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        let i = starts.iter().position(|(u, _)| u == upid)?;
        starts.remove(i).map(|(_, at)| at)
    }

    /// Feeds one measured duration of a task of type `kind`.
    pub fn record(&self, kind: &str, took: Duration) {
        self.observe(
            kind,
            Observation {
                took,
                precise: true,
                within: (took, took),
            },
        );
    }

    /// Feeds what one wait observed of a task of type `kind` ([`observed`]).
    pub(crate) fn observe(&self, kind: &str, o: Observation) {
        let o = Observation {
            took: o.took.clamp(SHORTEST, LONGEST),
            ..o
        };
        let mut map = self.by_kind.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(kind) && map.len() >= MAX_KINDS {
            return;
        }
        map.entry(kind.to_string()).or_default().push(o);
    }
}

/// What a wait that expected `used`, last saw the task running at `running_at` and
/// saw it stopped by `stopped_by` (all from the start of the wait) observed: the task
/// ended in between.
///
/// An expectation inside that interval was right and is kept (a midpoint would drift
/// with each task); otherwise a narrow interval's midpoint is a measurement. A wide
/// interval only bounds the duration, and gives a guess: its midpoint if the
/// expectation was not settled (the next wait probes inside the interval), else the
/// bound nearest the expectation. A settled expectation is most likely off by a
/// little: a task that ends just before the poll at 97 % of it is seen stopped there
/// with only the early poll before it, and the midpoint of that interval would be far
/// too short. If the tasks did change, two such guesses unsettle the estimate, and the
/// probes that follow measure it.
pub(crate) fn observed(used: Expected, running_at: Duration, stopped_by: Duration) -> Observation {
    let e = used.duration;
    let width = stopped_by.saturating_sub(running_at).as_secs_f64();
    let narrow = |took: Duration| width <= took.as_secs_f64() * CLOSE;
    let mid = (running_at + stopped_by) / 2;
    let took = if e > running_at && e <= stopped_by {
        e
    } else if narrow(mid) || !used.settled {
        mid
    } else if e > stopped_by {
        stopped_by
    } else {
        running_at
    };
    Observation {
        took,
        precise: narrow(took),
        within: (running_at, stopped_by),
    }
}

#[cfg(test)]
mod tests;
