//! The commands behind the binary: shared start-up (config, token, TLS trust, client,
//! journal, recovery) and the one-shot commands `check`, `plan`, `once`, `journal`
//! and `status`. The long-running `run` lives in [`crate::daemon`].

mod show;

pub use show::{journal, render_status, status, status_path, write_status};

use crate::config::{Config, ConfigError, StopMode};
use crate::desired::{DesiredError, DesiredState, Provider};
use crate::engine::{Engine, EngineSettings, PassReport};
use crate::exit::ExitCode;
use crate::inflight::{ClientNode, RecoverError, RecoverOptions, Tracker};
use crate::journal::{Journal, JournalError, JournalOptions};
use crate::plan::PlanSettings;
use crate::pve::client::{Client, ClientOptions};
use crate::pve::error::ApiError;
use crate::secret::Secret;
use crate::{cancel::Cancel, log};
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where the config is read from unless `--config` says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/felhom-agent/config.json";

/// Everything that can stop a command, one variant per boundary.
#[derive(Debug)]
pub enum AppError {
    Usage(String),
    Config(ConfigError),
    Desired(DesiredError),
    Journal(JournalError),
    Api(ApiError),
    Io(String, std::io::Error),
    /// An internal thread died or vanished: a bug, not the user's doing.
    Internal(String),
}

impl AppError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            AppError::Usage(_) | AppError::Config(_) | AppError::Desired(_) => ExitCode::Usage,
            AppError::Journal(e) => e.exit_code(),
            AppError::Api(_) | AppError::Io(..) => ExitCode::Failure,
            AppError::Internal(_) => ExitCode::Internal,
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Usage(m) => f.write_str(m),
            AppError::Config(e) => write!(f, "{e}"),
            AppError::Desired(e) => write!(f, "{e}"),
            AppError::Journal(e) => write!(f, "{e}"),
            AppError::Api(e) => write!(f, "proxmox api: {e}"),
            AppError::Internal(m) => write!(f, "internal error: {m}"),
            AppError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AppError::Config(e) => Some(e),
            AppError::Desired(e) => Some(e),
            AppError::Journal(e) => Some(e),
            AppError::Api(e) => Some(e),
            AppError::Io(_, e) => Some(e),
            AppError::Usage(_) | AppError::Internal(_) => None,
        }
    }
}

impl From<ConfigError> for AppError {
    fn from(e: ConfigError) -> Self {
        AppError::Config(e)
    }
}
impl From<DesiredError> for AppError {
    fn from(e: DesiredError) -> Self {
        AppError::Desired(e)
    }
}
impl From<JournalError> for AppError {
    fn from(e: JournalError) -> Self {
        AppError::Journal(e)
    }
}
impl From<ApiError> for AppError {
    fn from(e: ApiError) -> Self {
        AppError::Api(e)
    }
}

/// Validated config, token secret and desired state: what `check` proves and
/// everything else needs.
pub struct Loaded {
    pub config: Config,
    pub secret: Secret,
    pub provider: Box<dyn Provider>,
    pub desired: DesiredState,
}

/// Loads and validates the config, the token secret and the desired state.
pub fn load(config_path: &Path) -> Result<Loaded, AppError> {
    let config = Config::load(config_path)?;
    let secret = config.token_secret()?;
    let provider = crate::desired::provider_for(&config);
    let desired = provider.load()?;
    Ok(Loaded {
        config,
        secret,
        provider,
        desired,
    })
}

/// Trusts the configured CA (must run before any thread starts) and builds the client.
pub fn client(loaded: &Loaded) -> Result<Client, AppError> {
    let config = &loaded.config;
    if let Some(ca) = config.resolved_ca_file() {
        crate::pve::trust_ca_file(&ca)?;
    }
    Ok(Client::new(ClientOptions {
        base_url: config.api_url.clone(),
        token_id: config.token_id.clone(),
        token_secret: loaded.secret.clone(),
        timeout: Duration::from_secs(30),
    })?)
}

pub fn engine_settings(config: &Config) -> EngineSettings {
    EngineSettings {
        node: config.node.clone(),
        max_parallel: config.max_parallel,
        task_timeout: config.task_timeout,
        plan: PlanSettings {
            hard_stop: config.stop_mode == StopMode::Stop,
            shutdown_timeout_secs: config.shutdown_timeout.as_secs(),
        },
    }
}

pub fn open_journal(config: &Config) -> Result<Journal, AppError> {
    Ok(Journal::open(
        &config.state_dir,
        JournalOptions {
            compact_bytes: config.journal_compact_bytes,
            ..JournalOptions::default()
        },
    )?)
}

/// Resolves every op left in flight by an earlier run before anything is planned
/// (see [`crate::inflight`]). What it cannot resolve by `task_timeout` (a task still
/// running, a node that cannot be read, an unanswered op still within its grace) stays in
/// flight: every pass looks at it again and holds its guest until it is resolved.
/// Returns `Ok(false)` when cancelled.
pub fn recover_journal(
    journal: &Journal,
    client: &Client,
    config: &Config,
    tracker: &Tracker,
    cancel: &Cancel,
) -> Result<bool, AppError> {
    let in_flight = journal.in_flight();
    if in_flight.is_empty() {
        return Ok(true);
    }
    log::info("recovering in-flight ops", &[("count", &in_flight.len())]);
    let node = ClientNode {
        client,
        node: &config.node,
    };
    let opts = RecoverOptions {
        deadline: Instant::now() + config.task_timeout,
        cancel: cancel.clone(),
    };
    match crate::inflight::recover(journal, &node, client.token_id(), tracker, &opts) {
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

/// `felhom-agent check`: config, token file and desired state are valid.
pub fn check(config_path: &Path) -> Result<ExitCode, AppError> {
    let loaded = load(config_path)?;
    println!(
        "ok: {} ({} guests desired, source {})",
        config_path.display(),
        loaded.desired.guests.len(),
        loaded.provider.name()
    );
    Ok(ExitCode::Ok)
}

/// `felhom-agent plan`: read-only.
pub fn plan(config_path: &Path, json: bool) -> Result<ExitCode, AppError> {
    let loaded = load(config_path)?;
    let client = client(&loaded)?;
    // Read-only: the journal is read, not opened (the service may hold it). Its ops
    // still in flight hold their guests, decided as a pass would decide them.
    let journal = loaded.config.state_dir.join("journal");
    let records = if journal.exists() {
        crate::journal::read_records(&journal)?
    } else {
        Vec::new()
    };
    let owned = records.iter().filter_map(|r| r.upid.clone()).collect();
    let node = ClientNode {
        client: &client,
        node: &loaded.config.node,
    };
    let holds = crate::inflight::preview(
        &crate::journal::in_flight_of(&records),
        &owned,
        &node,
        client.token_id(),
        &Tracker::new(loaded.config.unanswered_grace),
    )
    .into_iter()
    .map(|(vmid, what)| (vmid, crate::plan::Hold::InFlight { what }))
    .collect();
    let obs = crate::engine::observe(
        &client,
        &loaded.config.node,
        &loaded.desired,
        &Cancel::never(),
    )?;
    let plan = crate::plan::plan(
        &loaded.desired,
        &obs.observed,
        &holds,
        &engine_settings(&loaded.config).plan,
    );
    if json {
        println!("{}", plan_json(&plan));
    } else {
        print!("{}", crate::plan::render(&plan, &obs.names));
    }
    Ok(ExitCode::Ok)
}

/// The plan as `{"actions":[...],"skipped":[...],"pending":[...]}`.
pub fn plan_json(plan: &crate::plan::Plan) -> String {
    let skipped: Vec<serde_json::Value> = plan
        .skipped
        .iter()
        .map(|s| serde_json::json!({"vmid": s.vmid, "reason": s.reason.to_string()}))
        .collect();
    let pending: Vec<serde_json::Value> = plan
        .pending
        .iter()
        .map(|(v, f)| {
            let keys: Vec<&str> = f.iter().map(|f| f.name()).collect();
            serde_json::json!({"vmid": v, "keys": keys})
        })
        .collect();
    serde_json::json!({"actions": plan.actions, "skipped": skipped, "pending": pending}).to_string()
}

/// `felhom-agent once`: recovery, then one pass, waiting for every action.
pub fn once(config_path: &Path, json: bool) -> Result<ExitCode, AppError> {
    let loaded = load(config_path)?;
    let client = client(&loaded)?;
    let journal = open_journal(&loaded.config)?;
    let cancel = crate::cancel::CancelSource::new();
    let tracker = Tracker::new(loaded.config.unanswered_grace);
    recover_journal(&journal, &client, &loaded.config, &tracker, &cancel.token())?;
    let mut engine = Engine::new(
        client,
        journal.clone(),
        tracker,
        engine_settings(&loaded.config),
        cancel.token(),
        None,
    );
    // Every task wait is bounded by task_timeout; the pass by the slowest guest's chain.
    let deadline = Instant::now() + loaded.config.task_timeout * 4 + Duration::from_secs(60);
    let (_plan, report) = engine.run_pass(&loaded.desired, deadline);
    let mut cancel = cancel;
    engine.shutdown(Instant::now(), || cancel.cancel());
    journal.close()?;
    write_status(&loaded.config, &report, None)?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serializes")
        );
    } else {
        print_report(&report);
    }
    Ok(if report.ok() {
        ExitCode::Ok
    } else {
        ExitCode::Failure
    })
}

fn print_report(r: &PassReport) {
    for a in &r.actions {
        println!("{} {}  {}", a.vmid, a.kind, a.message);
    }
    for s in &r.skipped {
        println!("{} skipped: {}", s.vmid, s.reason);
    }
    for p in &r.pending {
        println!("{} pending: {}", p.vmid, p.keys.join(", "));
    }
    println!("{}", r.summary());
}
