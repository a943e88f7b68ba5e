//! Start-up: recovery (see [`crate::inflight`]) runs on its own `recovery` thread while
//! the main thread watches signals.

use super::signals::event_of_signal;
use super::Event;
use crate::agent::{Agent, AppError};
use crate::cancel::CancelSource;
use crate::exit::ExitCode;
use crate::log;
use crate::notify::Notifier;
use crossbeam_channel::{select, Receiver};

/// How start-up recovery ended.
pub(super) enum Recovery {
    /// Recovery ran (what it could not resolve stays in flight and holds its guests);
    /// `reload` says whether a SIGHUP arrived meanwhile.
    Done { reload: bool },
    /// SIGTERM or SIGINT arrived first; recovery was cancelled.
    Stopped(i32),
}

/// Resolves the ops an earlier run left in flight, on a `recovery` thread, while this
/// thread keeps listening for signals: recovery may wait for a task for up to
/// `task_timeout_secs`, and a stop request must not wait that long.
pub(super) fn recover_watching_signals(
    agent: &Agent,
    cancel: &mut CancelSource,
    signals: &Receiver<i32>,
    notifier: &Notifier,
) -> Result<Recovery, AppError> {
    if agent.journal.in_flight().is_empty() {
        return Ok(Recovery::Done { reload: false });
    }
    std::thread::scope(|scope| {
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let token = cancel.token();
        let thread = std::thread::Builder::new()
            .name("recovery".into())
            .spawn_scoped(scope, move || {
                let _ = done_tx.send(agent.recover(&token));
            })
            .map_err(|e| AppError::Io("starting the recovery thread".into(), e))?;
        watch(thread, &done, cancel, signals, notifier)
    })
}

/// Serves signals until recovery reports (or is cancelled by a stop request).
fn watch(
    thread: std::thread::ScopedJoinHandle<'_, ()>,
    done: &Receiver<Result<bool, AppError>>,
    cancel: &mut CancelSource,
    signals: &Receiver<i32>,
    notifier: &Notifier,
) -> Result<Recovery, AppError> {
    let mut stopping = None;
    let mut reload = false;
    let result = loop {
        select! {
            recv(done) -> r => break r.unwrap_or_else(|_| Err(AppError::Internal("the recovery thread ended without a result".into()))),
            recv(signals) -> s => match s.map(event_of_signal) {
                Ok(Event::Shutdown(sig)) if stopping.is_none() => {
                    let _ = notifier.stopping();
                    log::info("stop requested during recovery; cancelling it", &[("signal", &sig)]);
                    stopping = Some(sig);
                    cancel.cancel();
                }
                Ok(Event::Shutdown(sig)) => {
                    log::warn("second signal: exiting at once", &[("signal", &sig)]);
                    std::process::exit(ExitCode::Failure.code());
                }
                Ok(Event::Reload) => {
                    log::info("reload requested during recovery; it follows recovery", &[]);
                    reload = true;
                }
                Ok(event) => log::info("ignored during recovery", &[("event", &event)]),
                Err(_) => {
                    // The signals thread is gone: no stop request could reach us.
                    cancel.cancel();
                    let _ = thread.join();
                    return Err(AppError::Internal("the signals thread ended".into()));
                }
            },
        }
    };
    let _ = thread.join();
    match stopping {
        Some(sig) => Ok(Recovery::Stopped(sig)),
        None => result.map(|_| Recovery::Done { reload }),
    }
}
