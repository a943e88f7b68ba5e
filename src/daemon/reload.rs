//! Reloads and the remote desired-state source, as the run loop sees them: asking the
//! `loader` thread (one request at a time), taking its answers, and the fetch timer.
//! A reload is swapped in whole or not at all; a fetch swaps in a new state at once
//! and changes nothing when it fails but the status.

use super::loader::Request as LoaderRequest;
use super::{jittered, Daemon};
use crate::agent::{self, AppError, Loaded};
use crate::desired::{DesiredState, Provider, Refresh};
use crate::log;
use crate::telemetry::FetchOutcome;
use std::time::Instant;

impl Daemon {
    /// Takes a reload read by the loader (see [`Daemon::apply_reload`]); a pass
    /// follows at once.
    pub(super) fn on_reloaded(
        &mut self,
        loaded: Result<Loaded, AppError>,
        fetched: Option<FetchOutcome>,
    ) {
        self.loading = false;
        self.apply_reload(loaded, fetched);
        let _ = self.notifier.ready();
        // A refused reload asked no source: the first answer is still due.
        let remote = self
            .provider
            .as_ref()
            .is_some_and(|p| p.refresh_every().is_some());
        if fetched.is_some() || !remote {
            self.first_fetch = false;
        }
        self.next_fetch = if self.first_fetch {
            Some(Instant::now())
        } else {
            self.fetch_after_interval()
        };
        self.next_loader_request();
    }

    /// Takes the provider back from a fetch. Returns whether a pass is due at once:
    /// the state changed, or this was the source's first answer (passes waited).
    pub(super) fn on_fetched(&mut self, provider: Box<dyn Provider>, refresh: Refresh) -> bool {
        self.loading = false;
        let changed = self.apply_fetched(provider, refresh);
        let first = std::mem::take(&mut self.first_fetch);
        self.next_fetch = self.fetch_after_interval();
        self.next_loader_request();
        changed || first
    }

    /// Asks the loader to re-read config and desired state (or remembers to, when it is
    /// busy); passes go on with the state in force meanwhile.
    pub(super) fn start_reload(&mut self) {
        if self.loading {
            self.reload_due = true;
            return;
        }
        let _ = self.notifier.reloading();
        self.loading = true;
        self.loader.request(LoaderRequest::Reload);
    }

    /// Lends the provider to the loader to ask its source again (or remembers to, when
    /// the loader is busy).
    pub(super) fn start_fetch(&mut self) {
        if self.loading {
            self.fetch_due = true;
            return;
        }
        if let Some(provider) = self.provider.take() {
            self.loading = true;
            self.loader.request(LoaderRequest::Fetch(provider));
        }
    }

    /// What the loader does next once it is free: a reload first (it asks the source
    /// too), else a fetch that fell due.
    pub(super) fn next_loader_request(&mut self) {
        if std::mem::take(&mut self.reload_due) {
            self.fetch_due = false;
            self.start_reload();
        } else if std::mem::take(&mut self.fetch_due) {
            self.next_fetch = None;
            self.start_fetch();
        }
    }

    /// When to ask a remote source next: one interval (with jitter) from now.
    pub(super) fn fetch_after_interval(&self) -> Option<Instant> {
        let every = self.provider.as_ref()?.refresh_every()?;
        Some(Instant::now() + jittered(every))
    }

    /// Takes the provider back from a fetch and what its source said. Returns whether
    /// the desired state in force changed.
    pub(super) fn apply_fetched(&mut self, provider: Box<dyn Provider>, refresh: Refresh) -> bool {
        self.source = provider.source_status();
        self.provider = Some(provider);
        let changed = match refresh {
            Refresh::New(state) => {
                self.note_fetch(FetchOutcome::New);
                self.swap_desired(state)
            }
            Refresh::Unchanged => {
                self.note_fetch(FetchOutcome::Unchanged);
                // The source confirmed the state its provider holds: that one is in
                // force (it already is, unless a reload kept an older one while the
                // source was failing).
                match self.provider.as_ref().map(|p| p.load()) {
                    Some(Ok(held)) => self.swap_desired(held),
                    _ => false,
                }
            }
            Refresh::Failed(_) => {
                self.note_fetch(FetchOutcome::Failed);
                false
            }
        };
        self.write_outputs();
        changed
    }

    /// Swaps `state` in when it differs from the state in force; a pass is due then.
    pub(super) fn swap_desired(&mut self, state: DesiredState) -> bool {
        if state == self.desired {
            return false;
        }
        self.desired = state;
        self.generation += 1;
        self.engine.set_wanted(&self.desired);
        log::info(
            "desired state changed",
            &[
                ("guests", &self.desired.guests.len()),
                (
                    "etag",
                    &self
                        .source
                        .as_ref()
                        .and_then(|s| s.etag.clone())
                        .unwrap_or_default(),
                ),
            ],
        );
        true
    }

    /// Counts a request to the source and logs it: each at debug level, a failure at
    /// warning level once per distinct error (the status shows it all along).
    pub(super) fn note_fetch(&mut self, outcome: FetchOutcome) {
        self.telemetry.record_fetch(outcome);
        let source = self.source.clone().unwrap_or_default();
        match (&source.error, outcome) {
            (Some(e), FetchOutcome::Failed) => {
                let age = source
                    .age_secs
                    .map_or("none".to_string(), crate::desired::short_duration);
                let level = if self.source_warned.as_ref() == Some(e) {
                    log::Level::Debug
                } else {
                    log::Level::Warn
                };
                log::log(
                    level,
                    "desired state source failed; the last good state stays in force",
                    &[("error", e), ("age", &age)],
                );
                self.source_warned = Some(e.clone());
            }
            _ => {
                if self.source_warned.take().is_some() {
                    log::info(
                        "desired state source answers again",
                        &[("url", &source.url)],
                    );
                }
                log::debug(
                    "desired state fetched",
                    &[("result", &outcome.as_str()), ("url", &source.url)],
                );
            }
        }
    }

    /// Swaps a reload in only if config and desired state are both valid and the new
    /// settings can run under the fixed ones in force.
    pub(super) fn apply_reload(
        &mut self,
        loaded: Result<Loaded, AppError>,
        fetched: Option<FetchOutcome>,
    ) {
        let loaded = loaded.and_then(|new| {
            self.fixed
                .check_live(&new.config.live)
                .map_err(|e| {
                    AppError::Usage(format!(
                        "{}: task_timeout_secs (as the agent started with it) {e}",
                        self.config_path.display()
                    ))
                })
                .map(|()| new)
        });
        match loaded {
            Ok(new) => {
                let restart = self.fixed.changed_keys(&new.config.fixed);
                if !restart.is_empty() {
                    log::warn(
                        "reload: these settings take effect only after a restart",
                        &[("keys", &restart.join(","))],
                    );
                }
                if crate::trust::TrustPlan::of(&new.config.fixed, &new.config.live) != self.trust {
                    log::warn(
                        "reload: the certificates to trust changed (a CA file, or a desired_url or report_url that turned https); that takes effect only after a restart",
                        &[],
                    );
                }
                self.engine
                    .set_plan_settings(agent::plan_settings(&new.config.live));
                self.live = new.config.live;
                self.report = new.report;
                let name = new.provider.name();
                self.source = new.provider.source_status();
                // A remote source that has given no state yet (none kept, and it failed),
                // or that failed just now, does not replace the state in force: what it
                // holds was kept by some earlier run, maybe under another config. The
                // next answer from the source decides (a 304 too: see `apply_fetched`).
                let nothing_yet = self.source.as_ref().is_some_and(|s| s.fetched.is_none());
                let failing = fetched == Some(FetchOutcome::Failed);
                self.provider = Some(new.provider);
                if nothing_yet || failing {
                    log::warn(
                        "reload: the desired-state source has not answered with a state; the state in force stays",
                        &[("source", &name)],
                    );
                } else {
                    self.desired = new.desired;
                }
                self.generation += 1;
                self.engine.set_wanted(&self.desired);
                self.reload_error = None;
                if let Some(outcome) = fetched {
                    self.note_fetch(outcome);
                }
                log::info(
                    "reloaded",
                    &[("guests", &self.desired.guests.len()), ("source", &name)],
                );
            }
            Err(e) => {
                log::error(
                    "reload failed; keeping the last good config and desired state",
                    &[("error", &e)],
                );
                self.reload_error = Some(e.to_string());
                self.telemetry.record_reload_failure();
                self.write_outputs();
            }
        }
    }
}
