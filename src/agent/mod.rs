//! The composition root: how the running agent is built from its config file. `run`,
//! `once`, `plan`, the demo and the tests all build it here, so there is one way to go
//! from a config to a client, a journal, start-up recovery and an engine.
//!
//! Order matters and is kept here: the config, the token secret and the desired state
//! are loaded and validated first (a bad one stops everything before any I/O; a URL's
//! state is its last good one, kept in the state directory, and is fetched later); the
//! CAs are trusted before any thread starts (see [`crate::trust`]: it sets
//! `SSL_CERT_FILE` for the TLS stack); then
//! the client is built and the journal opened (which takes the state directory's lock);
//! then recovery resolves what an earlier run left in flight; only then is an engine
//! built.

mod error;

pub use error::AppError;

use crate::cancel::Cancel;
use crate::config::{Config, Fixed, Live, StopMode};
use crate::desired::{
    DesiredState, EmptyProvider, FileProvider, Provider, Refresh, UrlOptions, UrlProvider,
};
use crate::engine::{Engine, EngineSettings, Progress};
use crate::inflight::{ClientNode, RecoverError, RecoverOptions, Tracker};
use crate::journal::{Journal, JournalOptions};
use crate::log;
use crate::plan::PlanSettings;
use crate::pve::client::{Client, ClientOptions};
use crate::quarantine::Quarantine;
use crate::remote::ReportTarget;
use crate::secret::Secret;
use crossbeam_channel::Sender;
use std::path::Path;
use std::time::{Duration, Instant};

/// Validated config, token secret and desired state: what `check` proves and
/// everything else needs.
pub struct Loaded {
    pub config: Config,
    pub secret: Secret,
    pub provider: Box<dyn Provider>,
    pub desired: DesiredState,
    /// Where the status is posted after every pass (`report_url`).
    pub report: Option<ReportTarget>,
}

/// Loads and validates the config, the token secret and the desired state to start
/// from (see [`Provider::load`]: a URL's is its last good state; nothing is fetched).
pub fn load(config_path: &Path) -> Result<Loaded, AppError> {
    load_in(config_path, None)
}

/// [`load`] for a reload of an agent that runs with `state_dir`: the config's
/// `state_dir` takes effect only at a restart, so the provider keeps (and reads back)
/// its last good state where the running agent holds the lock, not in a directory the
/// new file names.
pub fn load_in(config_path: &Path, state_dir: Option<&Path>) -> Result<Loaded, AppError> {
    let config = Config::load(config_path)?;
    let secret = config.fixed.token_secret()?;
    let token = config.live.desired_token()?;
    let state_dir = state_dir.unwrap_or(&config.fixed.state_dir);
    let provider = provider_with(&config, token.clone(), state_dir);
    let desired = provider.load()?;
    let live = &config.live;
    let report = ReportTarget::of(
        live.report_url.as_ref(),
        live.desired_url.as_ref(),
        token.as_ref(),
    );
    Ok(Loaded {
        config,
        secret,
        provider,
        desired,
        report,
    })
}

/// Where the desired state comes from: `desired_file`, `desired_url` (whose token file
/// is read here), or nowhere (nothing is managed).
pub fn provider_for(config: &Config) -> Result<Box<dyn Provider>, AppError> {
    Ok(provider_with(
        config,
        config.live.desired_token()?,
        &config.fixed.state_dir,
    ))
}

/// [`provider_for`] with the token already read, keeping a URL's last good state in
/// `state_dir`.
fn provider_with(config: &Config, token: Option<Secret>, state_dir: &Path) -> Box<dyn Provider> {
    let live = &config.live;
    if let Some(url) = &live.desired_url {
        return Box::new(UrlProvider::new(UrlOptions {
            url: url.clone(),
            token,
            every: live.desired_interval(),
            state_dir: state_dir.to_path_buf(),
            timeout: crate::desired::FETCH_TIMEOUT,
        }));
    }
    match &live.desired_file {
        Some(path) => Box::new(FileProvider { path: path.clone() }),
        None => Box::new(EmptyProvider),
    }
}

/// Asks a remote source for its state once (nothing for a file) and takes a good
/// answer into `loaded`; `Ok(true)` when the source sent a state (rather than confirm
/// the one held). `save`: keep it in the state directory (only a process holding its
/// lock). A failure is returned, `loaded.desired` staying the last good state.
pub fn refresh(loaded: &mut Loaded, save: bool) -> Result<bool, crate::desired::SourceError> {
    if loaded.provider.refresh_every().is_none() {
        return Ok(false);
    }
    match loaded.provider.refresh(save) {
        Refresh::New(state) => {
            loaded.desired = state;
            Ok(true)
        }
        Refresh::Unchanged => Ok(false),
        Refresh::Failed(e) => Err(e),
    }
}

/// [`refresh`] for the commands that go on with the last good state when the source
/// fails (`plan`, `once`): the failure is logged, with how old that state is.
pub fn refresh_or_keep(loaded: &mut Loaded, save: bool) {
    if let Err(e) = refresh(loaded, save) {
        let status = loaded.provider.source_status().unwrap_or_default();
        let age = status
            .age_secs
            .map_or("none".to_string(), crate::desired::short_duration);
        log::warn(
            "the desired-state source failed; going on with the last good state",
            &[("error", &e), ("age", &age)],
        );
    }
}

/// How the engine plans, from the settings a reload may change.
pub fn plan_settings(live: &Live) -> PlanSettings {
    PlanSettings {
        hard_stop: live.stop_mode == StopMode::Stop,
        shutdown_timeout_secs: live.shutdown_timeout.as_secs(),
        hold_tag: Some(live.hold_tag.clone()),
        identity_guard: live.identity_guard,
        ha_request: live.ha_mode == crate::config::HaMode::Request,
    }
}

/// Trusts the configured CAs (see [`crate::trust`]; this must happen before any thread
/// starts and before the first https request, the desired-state source's included) and
/// builds the client; for the read-only commands, which must not take the journal's
/// lock. `cancel` (shutdown) cuts the client's pauses between retries short.
pub fn client(loaded: &Loaded, cancel: &Cancel) -> Result<Client, AppError> {
    let fixed = &loaded.config.fixed;
    let plan = crate::trust::TrustPlan::of(fixed, &loaded.config.live);
    crate::trust::install(&plan, &fixed.state_dir)?;
    Ok(Client::new(ClientOptions {
        base_url: fixed.api_url.clone(),
        token_id: fixed.token_id.clone(),
        token_secret: loaded.secret.clone(),
        timeout: Duration::from_secs(30),
    })?
    .with_cancel(cancel.clone()))
}

/// The parts of a running agent built once at start-up from [`Fixed`].
pub struct Agent {
    pub fixed: Fixed,
    pub client: Client,
    pub journal: Journal,
    /// Shared by recovery and every later pass, so an op's grace keeps counting.
    pub tracker: Tracker,
    /// Guests the agent panicked acting on (see [`crate::quarantine`]).
    pub quarantine: Quarantine,
}

impl Agent {
    /// Trusts the configured CA and builds the client (see [`client`]), and opens the
    /// journal, taking the state directory's lock. `cancel` is the shutdown token.
    pub fn start(loaded: &Loaded, cancel: &Cancel) -> Result<Agent, AppError> {
        let fixed = loaded.config.fixed.clone();
        let client = client(loaded, cancel)?;
        let journal = Journal::open(
            &fixed.state_dir,
            JournalOptions {
                compact_bytes: fixed.journal_compact_bytes,
                ..JournalOptions::default()
            },
        )?;
        if let Some(cut) = journal.repaired_tail() {
            log::warn("journal tail was torn and cut off", &[("detail", &cut)]);
        }
        Ok(Agent {
            tracker: Tracker::new(fixed.unanswered_grace),
            quarantine: Quarantine::open(&fixed.state_dir),
            fixed,
            client,
            journal,
        })
    }

    /// Start-up recovery: resolves every op an earlier run left in flight before
    /// anything is planned (see [`crate::inflight`]). What it cannot resolve by
    /// `task_timeout` (a task still running, a node that cannot be read, an unanswered
    /// op still within its grace) stays in flight: every pass looks at it again and
    /// holds its guest until it is resolved. Returns `Ok(false)` when cancelled.
    pub fn recover(&self, cancel: &Cancel) -> Result<bool, AppError> {
        let in_flight = self.journal.in_flight();
        if in_flight.is_empty() {
            return Ok(true);
        }
        log::info("recovering in-flight ops", &[("count", &in_flight.len())]);
        let node = ClientNode {
            client: &self.client,
            node: &self.fixed.node,
        };
        let opts = RecoverOptions {
            deadline: Instant::now() + self.fixed.task_timeout,
            cancel: cancel.clone(),
        };
        let token = self.client.token_id();
        match crate::inflight::recover(&self.journal, &node, token, &self.tracker, &opts) {
            Ok(done) => {
                log::info(
                    "recovery done",
                    &[("resolved", &done.resolved), ("held", &done.held.len())],
                );
                for (op, vmid, why) in &done.held {
                    log::warn(
                        "op still in flight after recovery; its guest stays held",
                        &[("op", op), ("vmid", vmid), ("why", why)],
                    );
                }
                Ok(true)
            }
            Err(RecoverError::Cancelled) => Ok(false),
            Err(RecoverError::Journal(e)) => Err(AppError::Journal(e)),
        }
    }

    /// The engine, planning with `live` until told otherwise. `progress` hears about
    /// each action as it runs (the demo).
    pub fn engine(
        &self,
        live: &Live,
        cancel: Cancel,
        progress: Option<Sender<Progress>>,
    ) -> Engine {
        let settings = EngineSettings {
            node: self.fixed.node.clone(),
            max_parallel: self.fixed.max_parallel,
            task_timeout: self.fixed.task_timeout,
            plan: plan_settings(live),
        };
        Engine::new(
            self.client.clone(),
            self.journal.clone(),
            self.tracker.clone(),
            self.quarantine.clone(),
            settings,
            cancel,
            progress,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_follows_desired_file_and_desired_url() {
        let mut config = crate::config::Config::parse(
            r#"{"token_id": "agent@pve!reconciler", "token_secret_file": "t", "node": "pve1"}"#,
            Path::new("/etc/felhom-agent/config.json"),
        )
        .unwrap();
        let name = |c: &Config| provider_for(c).unwrap().name();
        assert_eq!(name(&config), "none");
        config.live.desired_file = Some("/etc/felhom-agent/desired.json".into());
        assert_eq!(name(&config), "file /etc/felhom-agent/desired.json");
        config.live.desired_file = None;
        config.fixed.state_dir = "/nonexistent/felhom".into();
        config.live.desired_url = crate::remote::RemoteUrl::parse("https://cp/d.json?x=1").ok();
        assert_eq!(name(&config), "url https://cp/d.json?...");
        // Nothing kept and nothing fetched yet: nothing is managed.
        let p = provider_for(&config).unwrap();
        assert_eq!(p.load().unwrap(), DesiredState::default());
        assert_eq!(p.refresh_every(), Some(Duration::from_secs(30)));
        config.live.desired_token_file = Some("/nonexistent/felhom/token".into());
        let e = provider_for(&config).err().unwrap();
        assert!(
            e.to_string().starts_with("cannot read desired token file"),
            "{e}"
        );
    }
}
