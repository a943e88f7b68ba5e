//! Per-guest backoff: failures (of an action, or of reading the guest's config) wait
//! about 10 s for the first three in a row, then doubling to 5 min, with jitter, and
//! say why and until when; a success resets them. Three at the first step ride through
//! a flaky API (at 1 request in 3 failing, a guest's two mutations fail together in
//! more than half of all passes) at the cost of one try per pass; a guest that cannot
//! be acted on is soon tried only every few minutes. A parameter error holds the guest until its desired state changes.
//!
//! Time is passed in, so this is tested without a clock.

use crate::lanes::Outcome;
use crate::plan::Hold;
use crate::pve::Vmid;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_secs(10);
const MAX: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Failing {
        failures: u32,
        until: Instant,
        error: String,
    },
    Terminal {
        fingerprint: u64,
        error: String,
    },
}

/// The backoff table, owned by the engine.
#[derive(Debug)]
pub struct Backoff {
    guests: BTreeMap<Vmid, State>,
    rng: u64,
}

impl Backoff {
    pub fn new(seed: u64) -> Backoff {
        Backoff {
            guests: BTreeMap::new(),
            rng: seed | 1,
        }
    }

    /// Whether the guest is held at `now`, given its current desired fingerprint.
    pub fn hold(&self, vmid: Vmid, fingerprint: u64, now: Instant) -> Option<Hold> {
        match self.guests.get(&vmid)? {
            State::Failing { until, error, .. } if *until > now => {
                // For people: the wall-clock time the hold ends.
                let left = until.duration_since(now).as_secs().max(1) as i64;
                Some(Hold::Backoff {
                    until: crate::time::rfc3339(crate::time::unix_now() + left),
                    error: error.clone(),
                })
            }
            State::Failing { .. } => None,
            State::Terminal {
                fingerprint: f,
                error,
            } if *f == fingerprint => Some(Hold::Terminal {
                error: error.clone(),
            }),
            State::Terminal { .. } => None,
        }
    }

    /// Records how a guest's job ended (its deciding outcome).
    pub fn record(&mut self, vmid: Vmid, fingerprint: u64, outcome: &Outcome, now: Instant) {
        match outcome {
            Outcome::Applied { .. } | Outcome::Converged(_) => {
                self.guests.remove(&vmid);
            }
            // Blocked guests are retried on the next pass; a cancelled one is resolved by
            // recovery at the next start; one in flight is held by the journal until its
            // outcome is known.
            Outcome::Blocked(_)
            | Outcome::Cancelled(_)
            | Outcome::InFlight(_)
            | Outcome::Moved(_) => {}
            Outcome::Terminal(error) => {
                self.guests.insert(
                    vmid,
                    State::Terminal {
                        fingerprint,
                        error: error.clone(),
                    },
                );
            }
            Outcome::Failed(error) => self.fail(vmid, error, now),
        }
    }

    /// Records how reading a guest's config went: a failure backs the guest off like a
    /// failed action; a success ends a backoff that a failed read began.
    pub fn record_read(&mut self, vmid: Vmid, read: Result<(), &str>, now: Instant) {
        match read {
            Err(e) => self.fail(vmid, &format!("cannot read its config: {e}"), now),
            Ok(()) => {
                if let Some(State::Failing { error, .. }) = self.guests.get(&vmid) {
                    if error.starts_with("cannot read its config") {
                        self.guests.remove(&vmid);
                    }
                }
            }
        }
    }

    fn fail(&mut self, vmid: Vmid, error: &str, now: Instant) {
        let failures = match self.guests.get(&vmid) {
            Some(State::Failing { failures, .. }) => failures + 1,
            _ => 1,
        };
        let delay = self.jitter(delay_for(failures));
        self.guests.insert(
            vmid,
            State::Failing {
                failures,
                until: now + delay,
                error: error.to_string(),
            },
        );
    }

    /// Guests currently failing or terminal, for status and metrics.
    pub fn failing(&self) -> usize {
        self.guests.len()
    }

    /// ±20 % jitter, from a xorshift generator: enough to spread retries, not crypto.
    fn jitter(&mut self, d: Duration) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let permille = 800 + (self.rng % 401);
        d * permille as u32 / 1000
    }
}

/// Failures in a row that wait [`FIRST`] before the delay starts doubling.
const AT_FIRST: u32 = 3;

/// The delay before retry after `failures` consecutive failures, before jitter.
pub fn delay_for(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(AT_FIRST).min(16);
    (FIRST * 2u32.pow(doublings)).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmid() -> Vmid {
        Vmid::new(101).unwrap()
    }

    #[test]
    fn delays_stay_then_double_to_five_minutes() {
        let secs: Vec<u64> = (1..=10).map(|n| delay_for(n).as_secs()).collect();
        assert_eq!(secs, [10, 10, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn failures_hold_then_release_and_success_resets() {
        let mut b = Backoff::new(42);
        let t0 = Instant::now();
        b.record(vmid(), 1, &Outcome::Failed("x".into()), t0);
        assert!(matches!(b.hold(vmid(), 1, t0), Some(Hold::Backoff { .. })));
        // Jitter stays within ±20 % of 10 s.
        assert!(b.hold(vmid(), 1, t0 + Duration::from_secs(7)).is_some());
        assert!(b.hold(vmid(), 1, t0 + Duration::from_secs(13)).is_none());
        // The second and third in a row wait as long; the fourth twice that.
        for _ in 0..2 {
            b.record(vmid(), 1, &Outcome::Failed("x".into()), t0);
            assert!(b.hold(vmid(), 1, t0 + Duration::from_secs(13)).is_none());
        }
        b.record(vmid(), 1, &Outcome::Failed("x".into()), t0);
        assert!(b.hold(vmid(), 1, t0 + Duration::from_secs(15)).is_some());
        b.record(
            vmid(),
            1,
            &Outcome::Applied {
                upid: None,
                warnings: 0,
            },
            t0,
        );
        assert!(b.hold(vmid(), 1, t0).is_none());
        assert_eq!(b.failing(), 0);
    }

    #[test]
    fn a_failed_read_backs_off_says_why_and_a_good_read_ends_it() {
        let mut b = Backoff::new(7);
        let t0 = Instant::now();
        b.record_read(vmid(), Err("http 500: boom"), t0);
        match b.hold(vmid(), 1, t0 + Duration::from_secs(7)) {
            Some(Hold::Backoff { until, error }) => {
                assert!(until.ends_with('Z'), "{until}");
                assert_eq!(error, "cannot read its config: http 500: boom");
            }
            other => panic!("{other:?}"),
        }
        b.record_read(vmid(), Ok(()), t0);
        assert!(b.hold(vmid(), 1, t0).is_none());
        // A good read does not end a backoff that a failed action began.
        b.record(vmid(), 1, &Outcome::Failed("x".into()), t0);
        b.record_read(vmid(), Ok(()), t0);
        assert!(b.hold(vmid(), 1, t0).is_some());
    }

    #[test]
    fn blocked_is_not_a_failure() {
        let mut b = Backoff::new(1);
        let t0 = Instant::now();
        b.record(vmid(), 1, &Outcome::Blocked("locked".into()), t0);
        assert!(b.hold(vmid(), 1, t0).is_none());
    }

    #[test]
    fn terminal_holds_until_the_desired_state_changes() {
        let mut b = Backoff::new(1);
        let t0 = Instant::now();
        b.record(vmid(), 5, &Outcome::Terminal("400".into()), t0);
        let far = t0 + Duration::from_secs(86_400);
        assert!(matches!(
            b.hold(vmid(), 5, far),
            Some(Hold::Terminal { .. })
        ));
        assert!(b.hold(vmid(), 6, t0).is_none());
    }
}
