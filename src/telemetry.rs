//! The agent's metrics: cumulative counters kept across passes, rendered in Prometheus
//! text format after every pass.

use crate::desired::SourceStatus;
use crate::engine::PassReport;
use crate::metrics::MetricsText;
use std::collections::BTreeMap;

/// Counters since the agent started, plus the gauges of the last pass.
#[derive(Debug, Default)]
pub struct Telemetry {
    passes: u64,
    pass_failures: u64,
    actions: BTreeMap<(String, String), u64>,
    last: Option<PassReport>,
    reload_failures: u64,
    /// Requests to the desired-state source, by [`FetchOutcome`].
    fetches: BTreeMap<&'static str, u64>,
}

/// What one request to the desired-state source did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// It sent a state (200).
    New,
    /// It confirmed the state held (304).
    Unchanged,
    /// It failed, or its answer was refused.
    Failed,
}

impl FetchOutcome {
    pub const ALL: [FetchOutcome; 3] = [
        FetchOutcome::New,
        FetchOutcome::Unchanged,
        FetchOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FetchOutcome::New => "new",
            FetchOutcome::Unchanged => "unchanged",
            FetchOutcome::Failed => "failed",
        }
    }
}

/// Gauges read from the live agent when rendering.
pub struct Live {
    pub journal_bytes: u64,
    pub in_flight_ops: usize,
    pub busy_guests: usize,
    pub reload_error: bool,
    /// The desired-state source, when it is a URL.
    pub source: Option<SourceStatus>,
    /// Status reports (sent, failed), when `report_url` is set.
    pub reports: Option<(u64, u64)>,
}

impl Telemetry {
    pub fn record_pass(&mut self, r: &PassReport) {
        self.passes += 1;
        if r.observe_error.is_some() {
            self.pass_failures += 1;
        }
        for a in &r.actions {
            *self
                .actions
                .entry((a.kind.clone(), a.result.clone()))
                .or_default() += 1;
        }
        self.last = Some(r.clone());
    }

    pub fn record_reload_failure(&mut self) {
        self.reload_failures += 1;
    }

    pub fn record_fetch(&mut self, outcome: FetchOutcome) {
        *self.fetches.entry(outcome.as_str()).or_default() += 1;
    }

    pub fn render(&self, live: &Live) -> String {
        let mut m = MetricsText::new();
        // Every name and label here is a constant or a known class, so these cannot fail.
        let counter =
            |m: &mut MetricsText, name: &str, help: &str, labels: &[(&str, &str)], v: f64| {
                m.counter(name, help, labels, v).expect("valid metric");
            };
        counter(
            &mut m,
            "felhom_passes_total",
            "Reconcile passes completed.",
            &[],
            self.passes as f64,
        );
        counter(
            &mut m,
            "felhom_pass_observe_failures_total",
            "Passes that could not read the node.",
            &[],
            self.pass_failures as f64,
        );
        counter(
            &mut m,
            "felhom_reload_failures_total",
            "SIGHUP reloads rejected; the last good config stayed in force.",
            &[],
            self.reload_failures as f64,
        );
        for kind in crate::action::ActionKind::ALL {
            for result in [
                "applied",
                "converged",
                "blocked",
                "terminal",
                "failed",
                "cancelled",
            ] {
                let n = self
                    .actions
                    .get(&(kind.to_string(), result.to_string()))
                    .copied()
                    .unwrap_or(0);
                counter(
                    &mut m,
                    "felhom_actions_total",
                    "Actions carried out, by kind and result.",
                    &[("kind", kind.as_str()), ("result", result)],
                    n as f64,
                );
            }
        }
        let mut gauge = |name: &str, help: &str, labels: &[(&str, &str)], v: f64| {
            m.gauge(name, help, labels, v).expect("valid metric");
        };
        if let Some(r) = &self.last {
            gauge(
                "felhom_last_pass_timestamp_seconds",
                "Unix time when the last completed pass started.",
                &[],
                r.started as f64,
            );
            gauge(
                "felhom_last_pass_duration_seconds",
                "How long the last completed pass took, including its actions.",
                &[],
                r.duration_ms as f64 / 1000.0,
            );
            let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
            classes.insert("in_sync", r.in_sync.len());
            classes.insert("drifted", r.drifted.len());
            classes.insert("pending", r.pending.len());
            let blocked = r.actions.iter().filter(|a| a.result == "blocked").count();
            classes.insert("blocked", blocked);
            for class in ["in_sync", "drifted", "pending", "blocked"] {
                gauge(
                    "felhom_guests",
                    "Guests named by the desired state, by drift class in the last pass.",
                    &[("class", class), ("reason", "")],
                    classes[class] as f64,
                );
            }
            let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
            for s in &r.skipped {
                *skipped.entry(s.class.as_str()).or_default() += 1;
            }
            for (reason, n) in skipped {
                gauge(
                    "felhom_guests",
                    "Guests named by the desired state, by drift class in the last pass.",
                    &[("class", "skipped"), ("reason", reason)],
                    n as f64,
                );
            }
        }
        gauge(
            "felhom_journal_size_bytes",
            "Size of the journal file.",
            &[],
            live.journal_bytes as f64,
        );
        gauge(
            "felhom_in_flight_ops",
            "Journaled ops started and not yet finished.",
            &[],
            live.in_flight_ops as f64,
        );
        gauge(
            "felhom_busy_guests",
            "Guests with an action queued or running.",
            &[],
            live.busy_guests as f64,
        );
        gauge(
            "felhom_reload_error",
            "1 when the last SIGHUP reload was rejected.",
            &[],
            f64::from(u8::from(live.reload_error)),
        );
        if let Some(src) = &live.source {
            for outcome in FetchOutcome::ALL {
                let n = self.fetches.get(outcome.as_str()).copied().unwrap_or(0);
                m.counter(
                    "felhom_desired_fetches_total",
                    "Requests to the desired-state source: new (a state sent), unchanged (304), failed.",
                    &[("result", outcome.as_str())],
                    n as f64,
                )
                .expect("valid metric");
            }
            let mut gauge = |name: &str, help: &str, v: f64| {
                m.gauge(name, help, &[], v).expect("valid metric");
            };
            gauge(
                "felhom_desired_source_error",
                "1 when the last request to the desired-state source failed; the last good state stays in force.",
                f64::from(u8::from(src.error.is_some())),
            );
            if let (Some(confirmed), Some(age)) = (src.confirmed, src.age_secs) {
                gauge(
                    "felhom_desired_confirmed_timestamp_seconds",
                    "Unix time when the source last sent or confirmed the desired state in force.",
                    confirmed as f64,
                );
                gauge(
                    "felhom_desired_age_seconds",
                    "Seconds since the source last sent or confirmed the desired state in force.",
                    age as f64,
                );
            }
        }
        if let Some((ok, failed)) = live.reports {
            for (result, n) in [("ok", ok), ("failed", failed)] {
                m.counter(
                    "felhom_status_reports_total",
                    "Status documents posted to report_url, by result.",
                    &[("result", result)],
                    n as f64,
                )
                .expect("valid metric");
            }
        }
        m.render()
    }
}
