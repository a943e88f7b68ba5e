//! The `sim clock` thread: finishes tasks and applies HA requests when they fall due.
//!
//! It sleeps on the state `Condvar` until the next due instant (or until any change,
//! which may have added an earlier one), never polling.

use super::state::Shared;
use super::tasks;
use std::sync::Arc;
use std::time::Instant;

/// Runs until the state says `shutting_down`.
pub(crate) fn run(shared: Arc<Shared>) {
    let mut st = shared.lock();
    loop {
        if st.shutting_down {
            return;
        }
        let now = Instant::now();
        if tasks::advance(&shared, &mut st, now) {
            shared.changed(&mut st);
        }
        st = match tasks::next_due(&st) {
            Some(due) => {
                let wait = due.saturating_duration_since(Instant::now());
                shared
                    .cond
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => shared.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
        };
    }
}
