//! Reading the node's actual state for one pass.
//!
//! Requests per pass: the guest list of this node and `/cluster/resources?type=vm` (HA
//! state, and which node a named guest that is not local lives on). Then a config read
//! (`current=1`, plus the pending section when a field differs) only for a guest the
//! desired state names, that lives here, that the plan could act on (not held, locked,
//! HA-managed, or a template asked to run), and whose desired fields the list cannot
//! confirm: the list already carries each container's run state, memory (`maxmem`),
//! swap (`maxswap`), tags and `cpus`, so a guest whose desired fields all show there and
//! match needs no read. `description` and `onboot` are not in the list, and `cpus` can
//! also be `cpulimit` or the host's CPU count when `cores` is unset, so a full read of
//! every managed guest's config every [`FULL_READ_EVERY`] passes catches what the list
//! cannot tell apart. Unmanaged guests cost nothing beyond the two lists; with nothing
//! desired, nothing is read.
//!
//! Config reads run on at most [`READERS`] threads at once: pvedaemon serves the API
//! with three workers, and a read per worker keeps them busy without queueing the
//! agent's own mutations behind a flood of reads.

use crate::cancel::Cancel;
use crate::desired::{DesiredState, GuestSpec};
use crate::plan::Startup;
use crate::plan::{gate, Actual, ActualGuest, ActualSpec, Field, Hold, PlanSettings};
use crate::pve::client::Client;
use crate::pve::error::{ApiError, TransportError};
use crate::pve::types::{GuestEntry, LxcConfig, PendingEntry, RunState, TaskQuery};
use crate::pve::Vmid;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Every this many passes, every managed guest's config is read, whatever the list says.
pub const FULL_READ_EVERY: u64 = 10;

/// Config reads in flight at once.
pub const READERS: usize = 3;

const MIB: u64 = 1024 * 1024;

/// How the spec of a guest whose config was deliberately not read begins.
pub const NOT_READ: &str = "not read";

/// The observed state plus guest names for display.
pub struct Observation {
    pub actual: Actual,
    pub names: BTreeMap<Vmid, String>,
    /// Guests held when the read began (a job queued or running, an op in flight,
    /// backoff): their config was not read, and a plan made from this observation holds
    /// them even if the hold has ended meanwhile, since what was read of them may
    /// predate their last action.
    pub held: BTreeMap<Vmid, Hold>,
    /// Config reads made.
    pub config_reads: usize,
}

/// How much of the config to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Read only what the list cannot confirm.
    Needed,
    /// Read every managed guest's config.
    Full,
}

/// Reads what the planner needs. A failed list or HA read fails the whole observation
/// (nothing is planned); a failed config read only makes that guest's spec unknown.
/// `held` guests get no config read. `cancel` ends the read between requests
/// (shutdown), as an error.
pub fn observe(
    client: &Client,
    node: &str,
    desired: &DesiredState,
    held: &BTreeMap<Vmid, Hold>,
    settings: &PlanSettings,
    depth: Depth,
    cancel: &Cancel,
) -> Result<Observation, ApiError> {
    let mut out = Observation {
        actual: Actual::default(),
        names: BTreeMap::new(),
        held: held.clone(),
        config_reads: 0,
    };
    if desired.guests.is_empty() {
        return Ok(out);
    }
    let list = client.list_lxc(node)?;
    stop_if_cancelled(cancel, "GET /cluster/resources")?;
    // HA state and the home of named guests that are not local both come from here:
    // it needs only VM.Audit, where /cluster/ha/resources needs Sys.Audit on `/`.
    let resources = client.cluster_resources()?;
    for r in &resources {
        if !desired.guests.contains_key(&r.vmid) {
            continue;
        }
        if let Some(state) = r.hastate.as_deref().filter(|s| *s != "ignored") {
            out.actual.ha_managed.insert(r.vmid, state.to_string());
        }
        if let Some(name) = &r.name {
            out.names.insert(r.vmid, name.clone());
        }
    }
    let mut to_read = Vec::new();
    let mut power_drift = false;
    for entry in &list {
        if let Some(name) = &entry.name {
            out.names.insert(entry.vmid, name.clone());
        }
        let Some(want) = desired.guests.get(&entry.vmid) else {
            continue;
        };
        let spec = if let Some(why) = no_read_needed(entry, want, &out.actual, held, settings) {
            Err(why)
        } else {
            let running = entry.status == RunState::Running;
            power_drift |= want
                .state
                .is_some_and(|s| (s == crate::desired::RunState::Running) != running);
            let want = crate::plan::effective_spec(want, settings);
            match (depth, spec_from_list(entry, &want)) {
                (Depth::Needed, Some(spec)) => Ok(spec),
                _ => {
                    to_read.push(entry.vmid);
                    Err(NOT_READ.to_string())
                }
            }
        };
        out.actual.local.insert(
            entry.vmid,
            ActualGuest {
                vmid: entry.vmid,
                name: entry.name.clone(),
                tags: entry.tags.clone(),
                running: entry.status == RunState::Running,
                lock: entry.lock.clone(),
                template: entry.template,
                spec,
            },
        );
    }
    if power_drift {
        // Only when a power action may follow: a pass with nothing to start or stop
        // costs no request for this.
        stop_if_cancelled(cancel, "GET the active tasks")?;
        out.actual.bulk_task = bulk_task(client, node);
    }
    out.config_reads = to_read.len();
    for (vmid, spec) in read_specs(client, node, desired, settings, &to_read, cancel)? {
        if let Some(g) = out.actual.local.get_mut(&vmid) {
            g.spec = spec;
        }
    }
    // The node's own list is live and wins; /cluster/resources can lag ~10 s.
    for r in resources {
        if desired.guests.contains_key(&r.vmid) && !out.actual.local.contains_key(&r.vmid) {
            out.actual.elsewhere.insert(r.vmid, r.node);
        }
    }
    Ok(out)
}

/// The node's own start-all or stop-all task running now. A list that cannot be read is
/// taken as one running: power actions wait a pass rather than race it.
fn bulk_task(client: &Client, node: &str) -> Option<String> {
    let q = TaskQuery {
        source: Some("active".into()),
        ..TaskQuery::default()
    };
    match client.tasks(node, &q) {
        Ok(tasks) => tasks
            .into_iter()
            .find(|t| matches!(t.kind.as_str(), "startall" | "stopall"))
            .map(|t| format!("{} ({})", t.kind, t.upid)),
        Err(e) => Some(format!(
            "an unknown task: the active task list cannot be read ({e})"
        )),
    }
}

/// Why a guest's config is not worth reading: the plan will not act on it this pass.
fn no_read_needed(
    entry: &GuestEntry,
    want: &GuestSpec,
    actual: &Actual,
    held: &BTreeMap<Vmid, Hold>,
    settings: &PlanSettings,
) -> Option<String> {
    if let Some(skip) = gate(want, entry.name.as_deref(), entry.tags.as_deref(), settings) {
        Some(format!("{NOT_READ}: {skip}"))
    } else if held.contains_key(&entry.vmid) {
        Some(format!("{NOT_READ}: held"))
    } else if actual.ha_managed.contains_key(&entry.vmid) && !settings.ha_request {
        Some(format!("{NOT_READ}: ha-managed"))
    } else if entry.lock.is_some() {
        Some(format!("{NOT_READ}: locked"))
    } else if entry.template && want.state == Some(crate::desired::RunState::Running) {
        Some(format!("{NOT_READ}: a template cannot run"))
    } else {
        None
    }
}

/// The spec as the list shows it, when every desired field shows there and matches;
/// `None` when the config must be read.
fn spec_from_list(entry: &GuestEntry, want: &GuestSpec) -> Option<ActualSpec> {
    if want.description.is_some() || want.onboot.is_some() {
        return None;
    }
    // A guest to start or stop: its `startup` property orders the action.
    let running = entry.status == RunState::Running;
    let to_run = want.state.map(|s| s == crate::desired::RunState::Running);
    if to_run.is_some_and(|r| r != running) {
        return None;
    }
    let cpus = entry.cpus?;
    let spec = ActualSpec {
        // Only whole CPU counts can be `cores`; a match may still be a `cpulimit` or
        // the host's count, which the periodic full read catches.
        cores: (cpus.fract() == 0.0 && cpus >= 1.0).then_some(cpus as u32),
        memory: Some(entry.maxmem? / MIB),
        swap: Some(entry.maxswap? / MIB),
        description: None,
        onboot: None,
        tags: entry.tags.clone(),
        digest: String::new(),
        pending: Vec::new(),
        startup: None,
    };
    let matches = Field::ALL
        .into_iter()
        .all(|f| f.drift(want, &spec).is_none());
    matches.then_some(spec)
}

/// A guest's spec as read, or why it could not be read.
type SpecRead = (Vmid, Result<ActualSpec, String>);

/// Reads the configs of `vmids` on at most [`READERS`] threads; each result is the
/// spec or why it could not be read.
fn read_specs(
    client: &Client,
    node: &str,
    desired: &DesiredState,
    settings: &PlanSettings,
    vmids: &[Vmid],
    cancel: &Cancel,
) -> Result<Vec<SpecRead>, ApiError> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(vmids.len()));
    let read_one = || {
        while let Some(vmid) = vmids.get(next.fetch_add(1, Ordering::Relaxed)) {
            if cancel.is_cancelled() {
                return;
            }
            let want = crate::plan::effective_spec(&desired.guests[vmid], settings);
            let spec = read_spec(client, node, &want).map_err(|e| e.to_string());
            results
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((*vmid, spec));
        }
    };
    let threads = READERS.min(vmids.len());
    if threads <= 1 {
        read_one();
    } else {
        std::thread::scope(|scope| {
            for n in 1..threads {
                // A reader that cannot start leaves its share to the others.
                let _ = std::thread::Builder::new()
                    .name(format!("config reader {n}"))
                    .spawn_scoped(scope, read_one);
            }
            read_one();
        });
    }
    stop_if_cancelled(cancel, "GET the remaining configs")?;
    Ok(results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// A read that shutdown cut short: the next request is never sent.
fn stop_if_cancelled(cancel: &Cancel, request: &str) -> Result<(), ApiError> {
    if cancel.is_cancelled() {
        return Err(ApiError::NeverSent {
            request: request.to_string(),
            source: TransportError::new("shutting down"),
        });
    }
    Ok(())
}

fn read_spec(
    client: &Client,
    node: &str,
    want: &crate::desired::GuestSpec,
) -> Result<ActualSpec, ApiError> {
    let config = client.lxc_config(node, want.vmid, true)?;
    let mut spec = spec_of(&config);
    let drifted: Vec<Field> = Field::ALL
        .into_iter()
        .filter(|f| f.drift(want, &spec).is_some())
        .collect();
    if drifted.is_empty() {
        return Ok(spec);
    }
    // A drifted field whose pending value is already the desired one waits for a
    // restart; re-sending it would loop forever.
    let pending = client.lxc_pending(node, want.vmid)?;
    for field in drifted {
        let mut with_pending = spec.clone();
        if apply_pending(&mut with_pending, field, &pending)
            && field.drift(want, &with_pending).is_none()
        {
            spec.pending.push(field);
        }
    }
    Ok(spec)
}

/// The managed fields of an active config.
fn spec_of(c: &LxcConfig) -> ActualSpec {
    ActualSpec {
        cores: c.cores,
        memory: c.memory,
        swap: c.swap,
        description: c.description.clone(),
        onboot: c.onboot,
        tags: c.tags.clone(),
        digest: c.digest.clone(),
        pending: Vec::new(),
        startup: c
            .other
            .get("startup")
            .and_then(|v| v.as_str())
            .and_then(Startup::parse),
    }
}

/// Puts a field's pending value (or pending deletion) into `spec`; false when the field
/// has nothing pending.
fn apply_pending(spec: &mut ActualSpec, field: Field, pending: &[PendingEntry]) -> bool {
    let Some(p) = pending.iter().find(|p| p.key == field.name()) else {
        return false;
    };
    if p.delete.unwrap_or(0) > 0 {
        match field {
            Field::Cores => spec.cores = None,
            Field::Memory => spec.memory = None,
            Field::Swap => spec.swap = None,
            Field::Description => spec.description = None,
            Field::Onboot => spec.onboot = None,
            Field::Tags => spec.tags = None,
        }
        return true;
    }
    let Some(v) = &p.pending else {
        return false;
    };
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let num = || text.trim().parse::<u64>().ok();
    match field {
        Field::Cores => spec.cores = num().map(|n| n as u32),
        Field::Memory => spec.memory = num(),
        Field::Swap => spec.swap = num(),
        Field::Description => spec.description = Some(text.clone()),
        Field::Onboot => spec.onboot = num().map(|n| n != 0),
        Field::Tags => spec.tags = Some(text.clone()),
    }
    true
}
