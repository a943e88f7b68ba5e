//! A shutdown signal that any number of threads can wait on with a deadline.
//!
//! Built on a channel that never carries a message: dropping the [`CancelSource`]
//! disconnects it, and every waiter wakes at once. Waiting is therefore also how
//! the agent sleeps between polls, so no sleep outlives a shutdown.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// The owner side: dropping it (or calling [`CancelSource::cancel`]) cancels every token.
pub struct CancelSource {
    sender: Option<Sender<()>>,
    token: Cancel,
}

/// The waiting side: cheap to clone and send to other threads.
#[derive(Clone)]
pub struct Cancel {
    receiver: Receiver<()>,
}

impl CancelSource {
    pub fn new() -> CancelSource {
        let (sender, receiver) = crossbeam_channel::bounded(0);
        CancelSource {
            sender: Some(sender),
            token: Cancel { receiver },
        }
    }

    pub fn token(&self) -> Cancel {
        self.token.clone()
    }

    pub fn cancel(&mut self) {
        self.sender = None;
    }
}

impl Default for CancelSource {
    fn default() -> Self {
        Self::new()
    }
}

impl Cancel {
    /// A token that is never cancelled.
    pub fn never() -> Cancel {
        let (sender, receiver) = crossbeam_channel::bounded(0);
        // Leaking one tiny sender keeps the channel open for the life of the process.
        std::mem::forget(sender);
        Cancel { receiver }
    }

    pub fn is_cancelled(&self) -> bool {
        matches!(
            self.receiver.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    }

    /// Sleeps for `dur` unless cancelled first; returns true when cancelled.
    pub fn wait(&self, dur: Duration) -> bool {
        matches!(
            self.receiver.recv_timeout(dur),
            Err(RecvTimeoutError::Disconnected)
        )
    }

    /// Sleeps until `deadline` unless cancelled first; returns true when cancelled.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        self.wait(deadline.saturating_duration_since(Instant::now()))
    }

    /// The channel, for use inside a `select!`.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.receiver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelling_wakes_a_waiter_at_once() {
        let mut src = CancelSource::new();
        let tok = src.token();
        let t = std::thread::Builder::new()
            .name("waiter".into())
            .spawn(move || tok.wait(Duration::from_secs(30)))
            .unwrap();
        src.cancel();
        assert!(t.join().unwrap());
        assert!(src.token().is_cancelled());
    }

    #[test]
    fn uncancelled_wait_times_out() {
        let src = CancelSource::new();
        assert!(!src.token().wait(Duration::from_millis(1)));
        assert!(!src.token().is_cancelled());
        assert!(!Cancel::never().is_cancelled());
    }
}
