//! The one-shot commands behind the binary: `check`, `plan`, `once`, `status`,
//! `journal` and `export`. The agent they run is built in [`crate::agent`]; the
//! long-running `run` lives in [`crate::daemon`].

pub mod cluster;
pub mod export;
mod journal;
mod pmxcfs;

pub use export::export;
pub use journal::{abandon, journal};

use crate::agent::{self, Agent, AppError};
use crate::cancel::Cancel;
use crate::engine::PassReport;
use crate::exit::ExitCode;
use crate::inflight::{ClientNode, Tracker};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// `felhom-agent check`: config, token file and desired state are valid; a
/// `desired_url` is fetched (conditionally, against the last good state kept) and must
/// answer a valid state now.
pub fn check(config_path: &Path) -> Result<ExitCode, AppError> {
    // Before the desired state is parsed: a copy cut off at pmxcfs's cap fails to
    // parse, and this says why.
    let config = crate::config::Config::load(config_path)?;
    if let Some(path) = &config.live.desired_file {
        pmxcfs::check_size(path)?;
    }
    let mut loaded = agent::load(config_path)?;
    if loaded.provider.refresh_every().is_some() {
        let fixed = &loaded.config.fixed;
        let plan = crate::trust::TrustPlan::of(fixed, &loaded.config.live);
        crate::trust::install(&plan, &fixed.state_dir)?;
        agent::refresh(&mut loaded, false).map_err(AppError::Source)?;
    }
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
    let mut loaded = agent::load(config_path)?;
    let client = agent::client(&loaded, &Cancel::never())?;
    // Read-only: what the source gives is not kept.
    agent::refresh_or_keep(&mut loaded, false);
    let fixed = &loaded.config.fixed;
    let FromJournal { holds, spent_keys } = from_journal(&loaded, &client)?;
    let settings = agent::plan_settings(&loaded.config.live);
    let obs = crate::engine::observe(
        &client,
        &fixed.node,
        &loaded.desired,
        &holds,
        &spent_keys,
        &settings,
        crate::engine::Depth::Full,
        &Cancel::never(),
    )?;
    let plan = crate::plan::plan(&loaded.desired, &obs.actual, &holds, &settings);
    if json {
        println!("{}", plan_json(&plan));
    } else {
        print!("{}", crate::plan::render(&plan, &obs.names));
    }
    Ok(ExitCode::Ok)
}

/// What this node's next pass would start from, from its journal: the holds of ops
/// still in flight, decided as a pass would decide them, and the spent one-shot keys.
/// Read-only: the journal is read, not opened (the service may hold it).
pub(crate) fn from_journal(
    loaded: &agent::Loaded,
    client: &crate::pve::client::Client,
) -> Result<FromJournal, AppError> {
    let fixed = &loaded.config.fixed;
    let journal = crate::journal::file_in(&fixed.state_dir);
    let records = if journal.exists() {
        crate::journal::read_records(&journal)?
    } else {
        Vec::new()
    };
    let owned = records.iter().filter_map(|r| r.upid.clone()).collect();
    let last_tasks = crate::journal::last_tasks_of(&records);
    let node = ClientNode {
        client,
        node: &fixed.node,
    };
    let known = crate::inflight::Known {
        token_id: client.token_id(),
        owned: &owned,
        last_tasks: &last_tasks,
    };
    let mut holds: BTreeMap<_, _> = crate::inflight::preview(
        &crate::journal::in_flight_of(&records),
        &known,
        &node,
        &Tracker::new(fixed.unanswered_grace),
    )
    .into_iter()
    .map(|(vmid, what)| (vmid, crate::plan::Hold::InFlight { what }))
    .collect();
    // Guests the agent panicked on stay held, as in a pass.
    let fingerprints = loaded
        .desired
        .guests
        .iter()
        .map(|(v, s)| (*v, s.fingerprint()))
        .collect();
    for (vmid, e) in crate::quarantine::Quarantine::read(&fixed.state_dir).holds(&fingerprints) {
        holds.entry(vmid).or_insert(crate::plan::Hold::Quarantined {
            panic: e.panic,
            at: e.at,
        });
    }
    let spent_keys = crate::journal::spent_by_guest(&crate::journal::keys_of(&records));
    Ok(FromJournal { holds, spent_keys })
}

/// What [`from_journal`] reads.
pub(crate) struct FromJournal {
    pub holds: BTreeMap<crate::pve::Vmid, crate::plan::Hold>,
    pub spent_keys: BTreeMap<crate::pve::Vmid, std::collections::BTreeSet<String>>,
}

/// The plan as `{"actions":[...],"skipped":[...],"pending":[...],"once_waiting":[...]}`.
pub fn plan_json(plan: &crate::plan::Plan) -> String {
    plan_value(plan).to_string()
}

/// [`plan_json`] as a JSON value.
pub fn plan_value(plan: &crate::plan::Plan) -> serde_json::Value {
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
    let waiting: Vec<serde_json::Value> = plan
        .waiting
        .iter()
        .map(|(v, o)| {
            serde_json::json!({"vmid": v, "key": o.key, "action": o.action.as_str(), "node": o.node})
        })
        .collect();
    serde_json::json!({
        "actions": plan.actions,
        "skipped": skipped,
        "pending": pending,
        "once_waiting": waiting,
    })
}

/// `felhom-agent once`: recovery, then one pass, waiting for every action.
pub fn once(config_path: &Path, json: bool) -> Result<ExitCode, AppError> {
    let mut loaded = agent::load(config_path)?;
    let mut cancel = crate::cancel::CancelSource::new();
    let agent = Agent::start(&loaded, &cancel.token())?;
    // After the state directory's lock is taken: a good state is kept there.
    agent::refresh_or_keep(&mut loaded, true);
    agent.recover(&cancel.token())?;
    let mut engine = agent.engine(&loaded.config.live, cancel.token(), None);
    // Every task wait is bounded by task_timeout; the pass by the slowest guest's chain.
    let deadline = Instant::now() + agent.fixed.task_timeout * 4 + Duration::from_secs(60);
    let (_plan, report) = engine.run_pass(&loaded.desired, deadline);
    engine.shutdown(Instant::now(), || cancel.cancel());
    let keys = agent.journal.keys();
    agent.journal.close()?;
    let status = crate::status::Status::new(&agent.fixed.node, &report, None)
        .with_source(loaded.provider.source_status())
        .with_keys(&keys);
    crate::status::write(&agent.fixed.state_dir, &status)
        .map_err(|e| AppError::Io("writing the status file".into(), e))?;
    if let Some(target) = &loaded.report {
        // Best effort, bounded by the report's timeout; the pass is over.
        let body = serde_json::to_vec(&status).expect("the status serializes");
        if let Err(e) = target.post(body) {
            crate::log::warn(
                "cannot report the status",
                &[("error", &crate::log::Chain(&e))],
            );
        }
    }
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

/// `felhom-agent status`: the last pass of the running agent.
pub fn status(config_path: &Path, json: bool) -> Result<ExitCode, AppError> {
    let config = crate::config::Config::load(config_path)?;
    let (text, status) = crate::status::read(&config.fixed.state_dir).map_err(AppError::Status)?;
    if json {
        print!("{text}");
    } else {
        print!("{}", crate::status::render(&status));
    }
    Ok(ExitCode::Ok)
}
