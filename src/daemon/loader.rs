//! The `loader` thread: reads the config and the desired state for a reload, and asks
//! a remote desired-state source again on its timer, off the run loop, so that a slow
//! or odd file, or a slow or hung source, never stalls signals, passes or watchdog
//! pings. The run loop asks, goes on serving events, and takes the result as one more
//! event; it swaps a reload in only if all of it is valid.
//!
//! One request at a time: a reload and a fetch never overlap, so only this thread
//! writes the last good state into the state directory. For a fetch the run loop hands
//! the provider over with the request and gets it back with the answer.

use crate::agent::{self, AppError, Loaded};
use crate::desired::{Provider, Refresh};
use crate::telemetry::FetchOutcome;
use crossbeam_channel::{Receiver, Sender};
use std::path::PathBuf;
use std::thread::JoinHandle;

/// What the loader is asked to do.
pub(super) enum Request {
    /// Re-read the config and build its provider; a remote source is asked at once.
    Reload,
    /// Ask the provider's source again.
    Fetch(Box<dyn Provider>),
}

/// What the loader did.
pub enum Reply {
    /// The reloaded config and desired state (for a remote source, with what it said:
    /// a failure leaves the last good state in `desired` and the error in the
    /// provider's status), or why the reload was refused; and, when a remote source
    /// was asked, what it did.
    Reloaded(Box<Result<Loaded, AppError>>, Option<FetchOutcome>),
    /// The provider back, with what its source said.
    Fetched(Box<dyn Provider>, Refresh),
}

/// Drop order is significant: the request channel closes before the join.
pub(super) struct Loader {
    requests: Option<Sender<Request>>,
    pub(super) results: Receiver<Reply>,
    thread: Option<JoinHandle<()>>,
}

impl Loader {
    /// `state_dir`: the one the agent runs with (and holds the lock of).
    pub(super) fn spawn(config_path: PathBuf, state_dir: PathBuf) -> std::io::Result<Loader> {
        let (requests, inbox) = crossbeam_channel::bounded::<Request>(1);
        let (reply, results) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("loader".into())
            .spawn(move || {
                for request in inbox {
                    let answer = match request {
                        Request::Reload => {
                            let (loaded, fetched) = reload(&config_path, &state_dir);
                            Reply::Reloaded(Box::new(loaded), fetched)
                        }
                        Request::Fetch(mut provider) => {
                            // The daemon holds the state directory's lock: keep what comes.
                            let refresh = provider.refresh(true);
                            Reply::Fetched(provider, refresh)
                        }
                    };
                    if reply.send(answer).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Loader {
            requests: Some(requests),
            results,
            thread: Some(thread),
        })
    }

    /// Asks for `request`. The caller asks again only after the answer came.
    pub(super) fn request(&self, request: Request) {
        if let Some(tx) = &self.requests {
            let _ = tx.try_send(request);
        }
    }
}

/// A reload: the config and its provider, and what a remote source says now.
fn reload(
    config_path: &std::path::Path,
    state_dir: &std::path::Path,
) -> (Result<Loaded, AppError>, Option<FetchOutcome>) {
    let mut loaded = match agent::load_in(config_path, Some(state_dir)) {
        Ok(l) => l,
        Err(e) => return (Err(e), None),
    };
    if loaded.provider.refresh_every().is_none() {
        return (Ok(loaded), None);
    }
    // A failing source does not fail the reload: the config may be what fixes it.
    let outcome = match agent::refresh(&mut loaded, true) {
        Ok(true) => FetchOutcome::New,
        Ok(false) => FetchOutcome::Unchanged,
        Err(_) => FetchOutcome::Failed,
    };
    (Ok(loaded), Some(outcome))
}

impl Drop for Loader {
    fn drop(&mut self) {
        drop(self.requests.take());
        // A fetch under way ends within its timeout.
        while self.results.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
