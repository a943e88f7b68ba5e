//! Repeating a request that failed in a way that can clear, within one pass.
//!
//! A read (every GET) is repeated after never sent, no answer, a reset, a cut-off
//! answer, or a 5xx other than 501. A mutation is repeated only when the failure
//! proves it was never sent: anything else may have reached Proxmox, and one intent
//! is never sent twice. The pauses grow and are jittered, so that lanes failing
//! together do not retry together.

use super::error::ApiError;
use crate::rng::XorShift;
use minreq::Method;
use std::time::Duration;

/// How often and how patiently the client repeats a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included; 1 never repeats.
    pub tries: u32,
    /// The pause before the first repeat is between half of this and this; each
    /// later one doubles, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Retry {
    /// Four attempts, pausing about 0.2 s, 0.4 s and 0.8 s: a pveproxy restart or a
    /// dropped connection clears, a node that is down is reported within 1.5 s, and at
    /// 1 request in 3 failing a read still fails only about once in 80.
    pub const DEFAULT: Retry = Retry {
        tries: 4,
        first_backoff: Duration::from_millis(250),
        max_backoff: Duration::from_secs(2),
    };

    /// One attempt only.
    pub const NEVER: Retry = Retry {
        tries: 1,
        first_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
    };

    /// The pause before attempt `attempt` (2 is the first repeat): the doubled base
    /// pause, capped, of which the upper half is random.
    pub fn backoff(&self, attempt: u32, rng: &mut XorShift) -> Duration {
        let doublings = attempt.saturating_sub(2).min(16);
        let base = self
            .first_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        base / 2 + (base / 2).mul_f64(rng.next_f64())
    }
}

impl Default for Retry {
    fn default() -> Retry {
        Retry::DEFAULT
    }
}

/// Whether a request with `method` that failed with `e` may be sent again.
pub(crate) fn may_retry(method: &Method, e: &ApiError) -> bool {
    match method {
        Method::Get => e.is_retryable_read(),
        _ => e.is_never_sent(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::error::TransportError;
    use std::collections::BTreeMap;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let r = Retry::DEFAULT;
        let mut rng = XorShift::new(3);
        for _ in 0..200 {
            let b2 = r.backoff(2, &mut rng);
            assert!(b2 >= Duration::from_millis(125) && b2 < Duration::from_millis(250));
            let b3 = r.backoff(3, &mut rng);
            assert!(b3 >= Duration::from_millis(250) && b3 < Duration::from_millis(500));
            let b9 = r.backoff(40, &mut rng);
            assert!(b9 >= Duration::from_secs(1) && b9 < Duration::from_secs(2));
        }
        let spread: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| r.backoff(2, &mut rng)).collect();
        assert!(spread.len() > 10, "jittered: {spread:?}");
        assert_eq!(Retry::NEVER.backoff(2, &mut rng), Duration::ZERO);
    }

    #[test]
    fn reads_retry_what_can_clear_and_mutations_only_what_was_never_sent() {
        let never = ApiError::NeverSent {
            request: "x".into(),
            source: TransportError::new("connection refused"),
        };
        let no_answer = ApiError::NoAnswer {
            request: "x".into(),
            source: TransportError::new("connection reset by peer"),
        };
        let cut = ApiError::Truncated {
            request: "x".into(),
            status: 200,
            detail: "1 of 2 bytes".into(),
        };
        let http = |status| ApiError::Http {
            status,
            message: "m".into(),
            errors: BTreeMap::new(),
        };
        let decode = ApiError::Decode {
            request: "x".into(),
            detail: "expected value".into(),
        };
        let big = ApiError::TooLarge {
            request: "x".into(),
            status: 200,
            limit: 1,
        };
        for e in [&never, &no_answer, &cut, &http(500), &http(503), &http(596)] {
            assert!(may_retry(&Method::Get, e), "{e}");
        }
        for e in [&http(501), &http(400), &http(401), &decode, &big] {
            assert!(!may_retry(&Method::Get, e), "{e}");
        }
        for m in [Method::Post, Method::Put, Method::Delete] {
            assert!(may_retry(&m, &never));
            for e in [
                &no_answer,
                &cut,
                &http(500),
                &http(503),
                &http(596),
                &decode,
                &big,
            ] {
                assert!(!may_retry(&m, e), "{m} {e}");
            }
        }
    }
}
