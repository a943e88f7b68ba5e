//! Reading one guest beyond the lists: its config as the fields the agent manages (with
//! what is already pending), and a virtual machine's power state. `export` maps a config
//! to those fields with the same [`of_lxc`] and [`of_vm`], so it writes what a pass sees.

use crate::desired::GuestSpec;
use crate::plan::{ActualSpec, Field, Startup};
use crate::pve::client::Client;
use crate::pve::error::ApiError;
use crate::pve::types::{LxcConfig, PendingEntry};
use crate::pve::{GuestKind, VmConfig, VmPower, Vmid};

/// The spec of a guest as read: its active config, and the drifted fields whose
/// desired value already waits in PVE's pending section.
pub(super) fn spec(
    client: &Client,
    node: &str,
    kind: GuestKind,
    want: &GuestSpec,
) -> Result<ActualSpec, ApiError> {
    let mut spec = match kind {
        GuestKind::Lxc => of_lxc(&client.lxc_config(node, want.vmid, true)?),
        GuestKind::Qemu => of_vm(&client.qemu_config(node, want.vmid, true)?),
    };
    let drifted: Vec<Field> = Field::ALL
        .into_iter()
        .filter(|f| f.drift(want, &spec).is_some())
        .collect();
    if drifted.is_empty() {
        return Ok(spec);
    }
    // A drifted field whose pending value is already the desired one waits for a
    // restart; re-sending it would loop forever.
    let pending = client.guest_pending(kind, node, want.vmid)?;
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

/// A VM's power state from its `status/current`.
pub(super) fn vm_power(client: &Client, node: &str, vmid: Vmid) -> Result<VmPower, ApiError> {
    Ok(client.qemu_status(node, vmid)?.power)
}

/// The managed fields of a container's active config.
pub(crate) fn of_lxc(c: &LxcConfig) -> ActualSpec {
    ActualSpec {
        kind: GuestKind::Lxc,
        cores: c.cores,
        sockets: None,
        memory: c.memory,
        balloon: None,
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
        hotplug_cpu: false,
        hotplug_memory: false,
    }
}

/// The managed fields of a VM's active config.
pub(crate) fn of_vm(c: &VmConfig) -> ActualSpec {
    let hotplug = c.hotplug_features();
    ActualSpec {
        kind: GuestKind::Qemu,
        cores: c.cores,
        sockets: c.sockets,
        memory: c.memory,
        balloon: c.balloon,
        swap: None,
        description: c.description.clone(),
        onboot: c.onboot,
        tags: c.tags.clone(),
        digest: c.digest.clone(),
        pending: Vec::new(),
        startup: c.startup.as_deref().and_then(Startup::parse),
        hotplug_cpu: hotplug.cpu,
        hotplug_memory: hotplug.memory,
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
            Field::Sockets => spec.sockets = None,
            Field::Memory => spec.memory = None,
            Field::Balloon => spec.balloon = None,
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
        Field::Sockets => spec.sockets = num().map(|n| n as u32),
        // A VM's memory may read `current=N`.
        Field::Memory => spec.memory = crate::pve::qemu::memory_mib(v).ok(),
        Field::Balloon => spec.balloon = num(),
        Field::Swap => spec.swap = num(),
        Field::Description => spec.description = Some(text.clone()),
        Field::Onboot => spec.onboot = num().map(|n| n != 0),
        Field::Tags => spec.tags = Some(text.clone()),
    }
    true
}
