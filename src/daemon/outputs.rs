//! What the run loop writes after a pass (and after a reload or a fetch changes what
//! they show): status.json, the metrics file, the STATUS= line, and the status report
//! handed to the `reporter` thread.

use super::reporter::Reporter;
use super::Daemon;
use crate::desired::SourceStatus;
use crate::engine::PassReport;
use crate::log;

impl Daemon {
    pub(super) fn pass_done(&mut self, report: PassReport) {
        let level = if report.ok() {
            log::Level::Info
        } else {
            log::Level::Warn
        };
        log::log(level, "pass finished", &[("summary", &report.summary())]);
        self.telemetry.record_pass(&report);
        self.last_report = Some(report);
        let status = self.write_outputs();
        self.send_report(&status);
    }

    /// Hands the status to the `reporter` thread, when `report_url` is set.
    pub(super) fn send_report(&mut self, status: &crate::status::Status) {
        let Some(target) = &self.report else {
            return;
        };
        if self.reporter.is_none() {
            match Reporter::spawn() {
                Ok(r) => self.reporter = Some(r),
                Err(e) => {
                    log::warn("cannot start the reporter thread", &[("error", &e)]);
                    return;
                }
            }
        }
        if let Some(r) = &self.reporter {
            let body = serde_json::to_vec(status).expect("the status serializes");
            r.post(target.clone(), body);
        }
    }

    /// The remote source's status as of now.
    pub(super) fn source_now(&self) -> Option<SourceStatus> {
        let now = crate::time::unix_now();
        match &self.provider {
            Some(p) => p.source_status(),
            None => self.source.clone().map(|s| s.aged(now)),
        }
    }

    /// Writes status.json and, when configured, the metrics file; then the STATUS=
    /// line (files first: whoever sees the status line finds them written). Returns
    /// the status written.
    pub(super) fn write_outputs(&self) -> crate::status::Status {
        let empty = PassReport::default();
        let report = self.last_report.as_ref().unwrap_or(&empty);
        let source = self.source_now();
        let status =
            crate::status::Status::new(&self.fixed.node, report, self.reload_error.as_deref())
                .with_source(source.clone())
                .with_keys(&self.journal.keys());
        if let Err(e) = crate::status::write(&self.fixed.state_dir, &status) {
            log::warn("cannot write status", &[("error", &e)]);
        }
        if let Some(path) = &self.live.metrics_file {
            let live = crate::telemetry::Live {
                journal_bytes: self.journal.size_bytes(),
                in_flight_ops: self.journal.in_flight().len(),
                busy_guests: self.engine.busy(),
                reload_error: self.reload_error.is_some(),
                source,
                reports: self
                    .report
                    .as_ref()
                    .map(|_| self.reporter.as_ref().map_or((0, 0), Reporter::counts)),
            };
            let text = self.telemetry.render(&live);
            if let Err(e) = crate::fsutil::write_atomic(path, &text) {
                log::warn(
                    "cannot write metrics",
                    &[("file", &path.display()), ("error", &e)],
                );
            }
        }
        if self.last_report.is_some() {
            let _ = self.notifier.status(&status.summary);
        }
        status
    }
}
