//! The `signals` thread: turns each signal into a number on a channel, nothing else.

use super::Event;
use crate::agent::AppError;
use crossbeam_channel::Receiver;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

/// The signal thread: turns each signal into an event and does nothing else.
pub(super) struct SignalThread {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
    pub(super) events: Receiver<i32>,
}

impl SignalThread {
    pub(super) fn install() -> Result<SignalThread, AppError> {
        let mut signals = Signals::new([SIGHUP, SIGINT, SIGTERM, SIGUSR1])
            .map_err(|e| AppError::Io("installing signal handlers".into(), e))?;
        let handle = signals.handle();
        let (tx, events) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if tx.send(sig).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| AppError::Io("starting the signal thread".into(), e))?;
        Ok(SignalThread {
            handle,
            thread: Some(thread),
            events,
        })
    }
}

impl Drop for SignalThread {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(super) fn event_of_signal(sig: i32) -> Event {
    match sig {
        SIGHUP => Event::Reload,
        SIGUSR1 => Event::PassNow,
        other => Event::Shutdown(other),
    }
}
