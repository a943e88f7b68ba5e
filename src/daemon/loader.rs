//! The `loader` thread: reads the config and the desired state for a reload, off the run
//! loop, so that a slow or odd file never stalls signals, passes or watchdog pings. The
//! run loop asks, goes on serving events, and takes the result as one more event; it
//! swaps the new state in only if all of it is valid.

use crate::agent::{self, AppError, Loaded};
use crossbeam_channel::{Receiver, Sender};
use std::path::PathBuf;
use std::thread::JoinHandle;

/// Drop order is significant: the request channel closes before the join.
pub(super) struct Loader {
    requests: Option<Sender<()>>,
    pub(super) results: Receiver<Result<Loaded, AppError>>,
    thread: Option<JoinHandle<()>>,
}

impl Loader {
    pub(super) fn spawn(config_path: PathBuf) -> std::io::Result<Loader> {
        let (requests, inbox) = crossbeam_channel::bounded::<()>(1);
        let (reply, results) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("loader".into())
            .spawn(move || {
                for () in inbox {
                    if reply.send(agent::load(&config_path)).is_err() {
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

    /// Asks for a load. The caller asks again only after the answer came.
    pub(super) fn request(&self) {
        if let Some(tx) = &self.requests {
            let _ = tx.try_send(());
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        drop(self.requests.take());
        while self.results.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
