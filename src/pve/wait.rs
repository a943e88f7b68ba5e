//! Waiting for a task to finish: poll its status on a schedule built around when it is
//! expected to end ([`super::times::TaskTimes`]), until it stops, the deadline passes,
//! or the agent shuts down.
//!
//! The schedule ([`schedule`]) polls early once (a task that fails at once is seen at
//! once), then just before and just after the expected end, then with growing steps if
//! the task runs long, capped at [`MAX_GAP`]. While the expectation is not settled it
//! adds probes at half and four fifths of it; while it is only the prior (no task of
//! the type seen yet), at an eighth and a third of it. While it is a guess from an
//! interval a task was seen to end in, the probes below that interval are left out
//! and its end is polled too, so that a task like that one is seen by the sixth poll. A 1 s task whose time is known is seen
//! to end with three polls, at most 1 % (and a few ms) late.

use super::client::{whole_seconds, Client};
use super::error::WaitError;
use super::times::{observed, Expected};
use super::types::TaskOutcome;
use super::Upid;
use crate::cancel::Cancel;
use crate::log;
use std::time::{Duration, Instant};

/// The first poll, from the start of the wait.
pub const FIRST_POLL: Duration = Duration::from_millis(75);
/// The longest pause between polls, before the expected end and after it.
pub const MAX_GAP: Duration = Duration::from_secs(2);
/// Polls planned closer than this to the one before are left out.
const MIN_GAP: Duration = Duration::from_millis(5);
/// The first step after the expected end is this share of the expectation (at least
/// [`FIRST_STEP_MIN`]); each later one is twice as long, up to [`MAX_GAP`].
const FIRST_STEP_SHARE: f64 = 0.03;
const FIRST_STEP_MIN: Duration = Duration::from_millis(5);

/// How long to wait, and what stops the wait early.
#[derive(Clone)]
pub struct WaitOptions {
    /// No poll starts after this instant and no pause runs past it.
    pub deadline: Instant,
    /// Fires on shutdown; the wait then returns [`WaitError::Cancelled`] at once.
    pub cancel: Cancel,
}

impl WaitOptions {
    pub fn new(deadline: Instant, cancel: Cancel) -> WaitOptions {
        WaitOptions { deadline, cancel }
    }
}

impl std::fmt::Debug for WaitOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitOptions")
            .field("deadline", &self.deadline)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

/// The instants, from the start of the wait, at which to poll a task expected to take
/// `e`: an endless, strictly increasing sequence (the caller stops at the deadline).
pub(crate) fn schedule(e: Expected) -> impl Iterator<Item = Duration> {
    let d = e.duration;
    let mut anchors = vec![FIRST_POLL];
    if e.prior {
        // Nothing seen of the type yet: the probes spread out, since the task may be
        // many times shorter than the prior.
        anchors.extend([d / 8, d / 3]);
    } else if !e.settled {
        anchors.extend([d.mul_f64(0.5), d.mul_f64(0.8)]);
    }
    anchors.extend([d.mul_f64(0.97), d.mul_f64(1.01)]);
    if let Some((running, stopped)) = e.within {
        // A guess: a task like the one it comes from ends where that one did, so
        // probes below the interval are left out and its end is polled.
        anchors.retain(|a| *a == FIRST_POLL || *a > running);
        if stopped > d.mul_f64(1.01) {
            anchors.push(stopped);
        }
    }
    let mut planned: Vec<Duration> = Vec::with_capacity(anchors.len() + 4);
    for a in anchors {
        let Some(&last) = planned.last() else {
            planned.push(a);
            continue;
        };
        if a < last + MIN_GAP {
            continue;
        }
        let mut t = last;
        while a - t > MAX_GAP {
            t += MAX_GAP;
            planned.push(t);
        }
        planned.push(a);
    }
    let last = *planned.last().unwrap_or(&FIRST_POLL);
    let step = d.mul_f64(FIRST_STEP_SHARE).max(FIRST_STEP_MIN);
    let growing = std::iter::successors(Some((last, step)), |&(t, s)| {
        Some((t + s, (s * 2).min(MAX_GAP)))
    })
    .skip(1)
    .map(|(t, _)| t);
    planned.into_iter().chain(growing)
}

/// A status read answers at once on a healthy node; a slow one is retried. Keeping
/// each poll short also bounds how long a shutdown waits for a lane that is polling.
const POLL_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    /// Polls `GET /nodes/{upid.node}/tasks/{upid}/status` until the task stops, on the
    /// schedule above, counted from when the client was handed the UPID (when this
    /// client started the task; else from the call); a task that ends well feeds the
    /// client's [`super::TaskTimes`] for its type.
    ///
    /// `OK` and `WARNINGS: n` are success; any other exit status comes back as
    /// [`TaskOutcome::Failed`] (it is not an `Err`). Transient errors while polling
    /// (never sent, no answer, a cut-off answer, 5xx other than 501) are retried at the
    /// next poll until the deadline; any other error, such as 400 `no such task` or a
    /// 403, ends the wait.
    ///
    /// The last poll starts at the deadline. Each poll's request timeout is cut to the
    /// time left (minreq counts whole seconds, so a poll can overrun the deadline by
    /// under a second), and a request already in flight is not interrupted by the
    /// cancel token.
    pub fn wait_task(&self, upid: &Upid, opts: &WaitOptions) -> Result<TaskOutcome, WaitError> {
        // From when this client was handed the UPID, if it was (polls already due are
        // then made at once), else from now.
        let now = Instant::now();
        let start = self
            .task_times()
            .take_start(upid)
            .filter(|at| *at <= now)
            .unwrap_or(now);
        let expected = self.task_times().expected(&upid.kind);
        let mut polls = schedule(expected);
        let mut running_at = Duration::ZERO;
        let mut count = 0u32;
        loop {
            if opts.cancel.is_cancelled() {
                return Err(WaitError::Cancelled);
            }
            let now = Instant::now();
            if now >= opts.deadline {
                return Err(WaitError::Timeout);
            }
            // Polls that a slow answer has already overtaken are skipped.
            let elapsed = now - start;
            let next = polls.find(|t| *t > elapsed).unwrap_or(elapsed);
            if opts.cancel.wait_until((start + next).min(opts.deadline)) {
                return Err(WaitError::Cancelled);
            }
            let sent = start.elapsed();
            let left = opts.deadline.saturating_duration_since(Instant::now());
            let timeout = Duration::from_secs(whole_seconds(left))
                .min(self.timeout())
                .min(POLL_REQUEST_TIMEOUT);
            count += 1;
            match self.task_status_within(upid, timeout) {
                Ok(status) => match status.outcome() {
                    Some(outcome) => {
                        let stopped_by = start.elapsed();
                        if outcome.is_success() {
                            let seen = observed(expected, running_at, stopped_by);
                            self.task_times().observe(&upid.kind, seen);
                        }
                        log::debug(
                            "task ended",
                            &[
                                ("upid", upid),
                                ("ms", &stopped_by.as_millis()),
                                ("expected_ms", &expected.duration.as_millis()),
                                ("polls", &count),
                            ],
                        );
                        return Ok(outcome);
                    }
                    None => running_at = sent,
                },
                Err(e) if e.is_retryable_read() => {
                    log::debug(
                        "task status poll failed, retrying",
                        &[("upid", upid), ("error", &log::Chain(&e))],
                    );
                }
                Err(e) => return Err(WaitError::Api(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
