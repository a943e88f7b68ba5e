//! The `observer` thread: reads the node for a pass, off the run loop.
//!
//! Reading the node is a series of blocking requests, each bounded by the client's
//! timeout. Done on the run-loop thread, a slow or hung API would also stall signals,
//! reloads and watchdog pings; here the run loop asks, goes on serving events, and takes
//! the answer as one more event. On shutdown the observer's own cancel token ends a read
//! between two requests, so the thread ends within one request's timeout.

use crate::cancel::{Cancel, CancelSource};
use crate::desired::DesiredState;
use crate::engine::{NodeReader, Observation};
use crate::plan::{Hold, PlanSettings};
use crate::pve::{ApiError, Vmid};
use crossbeam_channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// One observation, for the desired state of `generation`.
pub struct Reply {
    pub generation: u64,
    pub result: Result<Observation, ApiError>,
    /// When the observation began: an instant and Unix seconds.
    pub started: (Instant, i64),
}

/// What one read is for.
pub(super) struct Request {
    /// The desired-state generation, and its snapshot.
    pub generation: u64,
    pub desired: Arc<DesiredState>,
    /// The holds in force as the read begins.
    pub held: BTreeMap<Vmid, Hold>,
    /// How the plan made from it will be made.
    pub settings: PlanSettings,
}

/// Drop order is significant: the request channel closes before the join.
pub(super) struct Observer {
    requests: Option<Sender<Request>>,
    pub(super) results: Receiver<Reply>,
    cancel: CancelSource,
    thread: Option<JoinHandle<()>>,
}

impl Observer {
    pub(super) fn spawn(reader: NodeReader) -> std::io::Result<Observer> {
        let (requests, inbox) = crossbeam_channel::bounded::<Request>(1);
        let (reply, results) = crossbeam_channel::bounded(1);
        let cancel = CancelSource::new();
        let token = cancel.token();
        let thread = std::thread::Builder::new()
            .name("observer".into())
            .spawn(move || observe_loop(&reader, &inbox, &reply, &token))?;
        Ok(Observer {
            requests: Some(requests),
            results,
            cancel,
            thread: Some(thread),
        })
    }

    /// Asks for an observation. The caller asks again only after the answer came.
    pub(super) fn request(&self, request: Request) {
        if let Some(tx) = &self.requests {
            let _ = tx.try_send(request);
        }
    }

    /// Stops a read under way at its next request and takes no new ones.
    pub(super) fn stop(&mut self) {
        self.cancel.cancel();
        drop(self.requests.take());
    }
}

fn observe_loop(
    reader: &NodeReader,
    inbox: &Receiver<Request>,
    reply: &Sender<Reply>,
    cancel: &Cancel,
) {
    for Request {
        generation,
        desired,
        held,
        settings,
    } in inbox
    {
        if crate::failpoint::hit("observer-panic") {
            panic!("failpoint observer-panic");
        }
        let started = (Instant::now(), crate::time::unix_now());
        let result = reader.read(&desired, &held, &settings, cancel);
        let observed = Reply {
            generation,
            result,
            started,
        };
        if reply.send(observed).is_err() {
            break;
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop();
        // A read under way ends within one request's timeout; its answer is dropped
        // unread.
        while self.results.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
