//! The `reporter` thread: posts the status document to `report_url` after every pass,
//! best effort, off the run loop, so that a slow or absent control plane never delays
//! a pass, a signal or a watchdog ping.
//!
//! The run loop leaves the newest document in a one-place slot and wakes the thread;
//! a document not yet sent when a newer one comes is replaced, never queued, so a
//! control plane that is down costs one request per pass at most, each bounded by
//! [`crate::remote::REPORT_TIMEOUT`].

use crate::log;
use crate::remote::ReportTarget;
use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Reports sent and failed since start.
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

type Slot = Arc<Mutex<Option<(ReportTarget, Vec<u8>)>>>;

/// Drop order is significant: the wake channel closes before the join.
pub(super) struct Reporter {
    wake: Option<Sender<()>>,
    slot: Slot,
    pub(super) counts: Arc<Counts>,
    thread: Option<JoinHandle<()>>,
}

impl Reporter {
    pub(super) fn spawn() -> std::io::Result<Reporter> {
        let (wake, woken) = crossbeam_channel::bounded::<()>(1);
        let slot: Slot = Arc::default();
        let counts = Arc::new(Counts::default());
        let (slot2, counts2) = (slot.clone(), counts.clone());
        let thread = std::thread::Builder::new()
            .name("reporter".into())
            .spawn(move || {
                let mut failing = false;
                for () in woken {
                    let next = slot2.lock().unwrap_or_else(|p| p.into_inner()).take();
                    let Some((target, body)) = next else {
                        continue;
                    };
                    match target.post(body) {
                        Ok(status) => {
                            counts2.ok.fetch_add(1, Ordering::Relaxed);
                            if std::mem::take(&mut failing) {
                                log::info("status reports go through again", &[]);
                            }
                            log::debug("status reported", &[("status", &status)]);
                        }
                        Err(e) => {
                            counts2.failed.fetch_add(1, Ordering::Relaxed);
                            // Once per outage at warning level; every pass says so at debug.
                            let level = if failing {
                                log::Level::Debug
                            } else {
                                log::Level::Warn
                            };
                            failing = true;
                            log::log(
                                level,
                                "cannot report the status",
                                &[("error", &log::Chain(&e))],
                            );
                        }
                    }
                }
            })?;
        Ok(Reporter {
            wake: Some(wake),
            slot,
            counts,
            thread: Some(thread),
        })
    }

    /// Leaves `body` for the thread to post to `target`, replacing one not yet sent.
    pub(super) fn post(&self, target: ReportTarget, body: Vec<u8>) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some((target, body));
        if let Some(w) = &self.wake {
            let _ = w.try_send(());
        }
    }

    /// (sent, failed) since start.
    pub(super) fn counts(&self) -> (u64, u64) {
        (
            self.counts.ok.load(Ordering::Relaxed),
            self.counts.failed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        // A report under way ends within its timeout; one not yet sent is dropped.
        drop(self.wake.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::remote::RemoteUrl;
    use crate::sim::{Source, SourceOptions};
    use std::time::Duration;

    #[test]
    fn the_newest_document_is_posted_and_the_counts_kept() {
        let source = Source::start(SourceOptions::default(), "{}").unwrap();
        let target = ReportTarget {
            url: RemoteUrl::parse(&format!("{}/report", source.origin())).unwrap(),
            token: None,
        };
        let reporter = Reporter::spawn().unwrap();
        for n in 1..=5 {
            reporter.post(target.clone(), format!("{{\"n\": {n}}}").into_bytes());
        }
        // Each posted or replaced by a newer one; the newest always arrives.
        assert!(source.wait_until(Duration::from_secs(10), |log| log
            .last()
            .is_some_and(|r| r.body == b"{\"n\": 5}")));
        let posts = source.requests();
        assert!((1..=5).contains(&posts.len()), "{}", posts.len());
        let bodies: Vec<_> = posts.iter().map(|r| r.body.clone()).collect();
        let mut sorted = bodies.clone();
        sorted.sort();
        assert_eq!(bodies, sorted, "in order, none twice");
        // The source logs a report before it answers; the count follows the answer.
        let counted = |want: (u64, u64)| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while reporter.counts() != want && std::time::Instant::now() < deadline {
                let _ = crossbeam_channel::after(Duration::from_millis(10)).recv();
            }
            reporter.counts()
        };
        let sent = posts.len() as u64;
        assert_eq!(counted((sent, 0)), (sent, 0));
        // A target that refuses connections is counted as a failure.
        let gone = ReportTarget {
            url: RemoteUrl::parse("http://127.0.0.1:1/report").unwrap(),
            token: None,
        };
        reporter.post(gone, b"{}".to_vec());
        assert_eq!(counted((sent, 1)), (sent, 1));
    }
}
