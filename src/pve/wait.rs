//! Waiting for a task to finish: poll its status with a growing interval until it
//! stops, the deadline passes, or the agent shuts down.

use super::client::{whole_seconds, Client};
use super::error::WaitError;
use super::types::TaskOutcome;
use super::Upid;
use crate::cancel::Cancel;
use crate::log;
use std::time::{Duration, Instant};

/// The first pause between polls; each later one is 1.5 times longer, up to
/// [`MAX_POLL_INTERVAL`].
pub const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The longest pause between polls.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How long to wait, and what stops the wait early.
#[derive(Clone)]
pub struct WaitOptions {
    /// No poll starts after this instant and no pause runs past it.
    pub deadline: Instant,
    /// Fires on shutdown; the wait then returns [`WaitError::Cancelled`] at once.
    pub cancel: Cancel,
}

impl std::fmt::Debug for WaitOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitOptions")
            .field("deadline", &self.deadline)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

/// The pauses between polls: 0.2 s, growing by half each time, capped at 2 s.
pub(crate) fn next_interval(current: Duration) -> Duration {
    current.mul_f64(1.5).min(MAX_POLL_INTERVAL)
}

/// A status read answers at once on a healthy node; a slow one is retried. Keeping
/// each poll short also bounds how long a shutdown waits for a lane that is polling.
const POLL_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    /// Polls `GET /nodes/{upid.node}/tasks/{upid}/status` until the task stops.
    ///
    /// `OK` and `WARNINGS: n` are success; any other exit status comes back as
    /// [`TaskOutcome::Failed`] (it is not an `Err`). Transient errors while polling
    /// (never sent, no answer, 5xx other than 501) are retried until the deadline; any
    /// other error, such as 400 `no such task` or a 403, ends the wait.
    ///
    /// Each poll's request timeout is cut to the time left (minreq counts whole
    /// seconds, so a poll can overrun the deadline by under a second), and a request
    /// already in flight is not interrupted by the cancel token.
    pub fn wait_task(&self, upid: &Upid, opts: &WaitOptions) -> Result<TaskOutcome, WaitError> {
        let mut interval = FIRST_POLL_INTERVAL;
        loop {
            if opts.cancel.is_cancelled() {
                return Err(WaitError::Cancelled);
            }
            let left = opts.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WaitError::Timeout);
            }
            let timeout = Duration::from_secs(whole_seconds(left))
                .min(self.timeout())
                .min(POLL_REQUEST_TIMEOUT);
            match self.task_status_within(upid, timeout) {
                Ok(status) => {
                    if let Some(outcome) = status.outcome() {
                        return Ok(outcome);
                    }
                }
                Err(e) if e.is_retryable_read() => {
                    log::debug(
                        "task status poll failed, retrying",
                        &[("upid", upid), ("error", &log::Chain(&e))],
                    );
                }
                Err(e) => return Err(WaitError::Api(e)),
            }
            let left = opts.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WaitError::Timeout);
            }
            if opts.cancel.wait(interval.min(left)) {
                return Err(WaitError::Cancelled);
            }
            interval = next_interval(interval);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_interval_grows_by_half_up_to_two_seconds() {
        let mut i = FIRST_POLL_INTERVAL;
        let mut seen = vec![i.as_millis()];
        for _ in 0..8 {
            i = next_interval(i);
            seen.push(i.as_millis());
        }
        assert_eq!(seen, [200, 300, 450, 675, 1012, 1518, 2000, 2000, 2000]);
    }
}
