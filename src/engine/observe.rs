//! Reading the node's actual state for one pass.
//!
//! Requests per pass: the guest list of this node and `/cluster/resources?type=vm` (HA
//! state, and which node a named guest that is not local lives on); then, only for
//! guests the desired state names that live on this node, the active config
//! (`current=1`), plus the pending section when a field differs. Unmanaged guests
//! therefore cost nothing beyond those two lists. With nothing desired, nothing is read.

use crate::cancel::Cancel;
use crate::desired::DesiredState;
use crate::plan::{Actual, ActualGuest, ActualSpec, Field};
use crate::pve::client::Client;
use crate::pve::error::{ApiError, TransportError};
use crate::pve::types::{LxcConfig, PendingEntry, RunState};
use crate::pve::Vmid;
use std::collections::{BTreeMap, BTreeSet};

/// The observed state plus guest names for display.
pub struct Observation {
    pub actual: Actual,
    pub names: BTreeMap<Vmid, String>,
    /// Guests that had a job queued or running when the read began: a plan made from
    /// this observation holds them.
    pub busy: BTreeSet<Vmid>,
}

/// Reads what the planner needs. A failed list or HA read fails the whole observation
/// (nothing is planned); a failed config read only makes that guest's spec unknown.
/// `cancel` ends the read between requests (shutdown), as an error.
pub fn observe(
    client: &Client,
    node: &str,
    desired: &DesiredState,
    cancel: &Cancel,
) -> Result<Observation, ApiError> {
    let mut out = Observation {
        actual: Actual::default(),
        names: BTreeMap::new(),
        busy: BTreeSet::new(),
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
    for entry in list {
        if let Some(name) = &entry.name {
            out.names.insert(entry.vmid, name.clone());
        }
        let Some(want) = desired.guests.get(&entry.vmid) else {
            continue;
        };
        stop_if_cancelled(cancel, &format!("GET the config of guest {}", entry.vmid))?;
        let spec = read_spec(client, node, want).map_err(|e| e.to_string());
        out.actual.local.insert(
            entry.vmid,
            ActualGuest {
                vmid: entry.vmid,
                name: entry.name.clone(),
                running: entry.status == RunState::Running,
                lock: entry.lock.clone(),
                template: entry.template,
                spec,
            },
        );
    }
    // The node's own list is live and wins; /cluster/resources can lag ~10 s.
    for r in resources {
        if desired.guests.contains_key(&r.vmid) && !out.actual.local.contains_key(&r.vmid) {
            out.actual.elsewhere.insert(r.vmid, r.node);
        }
    }
    Ok(out)
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
