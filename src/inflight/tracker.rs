//! [`Tracker`]: what this process has seen of ops in flight, on its monotonic clock.

use crate::journal::OpId;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What this process has seen of ops in flight: since when each one has gone
/// unexplained by the node, and since when HA has not taken up each request of ours
/// (both for the grace, on the monotonic clock), and why each is held (for `plan`,
/// `status` and logs). Shared by recovery, the observer and the executor of the lanes.
#[derive(Clone)]
pub struct Tracker {
    inner: Arc<Mutex<TrackerInner>>,
    grace: Duration,
}

#[derive(Default)]
struct TrackerInner {
    unexplained_since: HashMap<OpId, Instant>,
    ha_idle_since: HashMap<OpId, Instant>,
    why: HashMap<OpId, String>,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    pub fn new(grace: Duration) -> Tracker {
        Tracker {
            inner: Arc::default(),
            grace,
        }
    }

    /// How long an unanswered op may go unexplained by the node, and how long HA may
    /// leave a request of ours untouched.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    fn lock(&self) -> MutexGuard<'_, TrackerInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The executor of this process got no answer (or none it could read) for `op` at
    /// `at`: its grace counts from then, not from the first look at it. Should a look
    /// have started the count already, the later instant stands (the longer wait).
    pub fn unanswered(&self, op: OpId, at: Instant) {
        let mut inner = self.lock();
        let since = inner.unexplained_since.entry(op).or_insert(at);
        *since = (*since).max(at);
    }

    /// Since when `op` has gone unexplained, as far as this process knows.
    pub fn unanswered_since(&self, op: OpId) -> Option<Instant> {
        self.lock().unexplained_since.get(&op).copied()
    }

    /// How long `op` has been unexplained: since the executor got no answer, or else
    /// since the first time this process asked (which starts the count).
    pub(super) fn unexplained_for(&self, op: OpId, now: Instant) -> Duration {
        let since = *self.lock().unexplained_since.entry(op).or_insert(now);
        now.saturating_duration_since(since)
    }

    /// How long HA has left `op`'s request untouched, since the first time this process
    /// saw it so (which starts the count).
    pub(super) fn ha_idle_for(&self, op: OpId, now: Instant) -> Duration {
        let since = *self.lock().ha_idle_since.entry(op).or_insert(now);
        now.saturating_duration_since(since)
    }

    /// `op` is held, for this reason.
    pub(crate) fn held(&self, op: OpId, why: &str) {
        self.lock().why.insert(op, why.to_string());
    }

    /// `op` has ended: nothing about it is kept.
    pub(crate) fn ended(&self, op: OpId) {
        let mut inner = self.lock();
        inner.unexplained_since.remove(&op);
        inner.ha_idle_since.remove(&op);
        inner.why.remove(&op);
    }

    /// Why `op` is held, as of the last look.
    pub fn why(&self, op: OpId) -> Option<String> {
        self.lock().why.get(&op).cloned()
    }
}
