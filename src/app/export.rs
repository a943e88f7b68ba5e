//! `felhom-agent export`: a desired state that matches the node as it is now, for the
//! guests the user chooses (containers and virtual machines alike), so that a fleet is
//! adopted without the first pass acting on anything.
//!
//! Each kind has its reader ([`containers`], [`vms`]): the node's plain list, then per
//! chosen guest its active config and its pending section, and for a VM that the list
//! shows running its `status/current` (the list cannot tell running from paused,
//! prelaunch or io-error: docs/proxmox-api.md §9.2). Both map a config to the managed
//! fields as a pass does, and share [`adopt`], which is kind-aware.
//!
//! Each chosen guest gets every managed field of its kind, filled in from its active
//! config (the values the planner compares, not the pending ones) and written the way
//! the planner normalises it: absent onboot is off, absent memory is PVE's 512, tags
//! are lowercased, sorted and de-duplicated; for a container absent swap is 0 and a
//! description loses its trailing newlines; a VM gets `"type": "qemu"`, absent cores
//! and sockets are 1, a description loses its trailing whitespace, and it has no swap.
//! Its `name` is the container's hostname or the VM's name. Every field is then checked
//! with the planner's own comparison ([`Field::drift`]): a field the planner would not
//! find in sync is left out rather than written, so the first pass after adopting the
//! export plans nothing.
//!
//! A field that cannot be written as desired state is left out (unmanaged), with a note
//! on stderr: a container's `cores` when unset (all host cores), a VM's `balloon` when
//! unset (its target follows `memory`; a number written in its place would stay behind
//! when `memory` is edited), a value the desired-state parser refuses, and any field
//! with a change waiting in PVE's pending section, which the agent would otherwise undo
//! after the guest's next restart. A VM in a state the agent leaves alone (paused,
//! prelaunch, io-error, suspended by its guest, hibernated, a stopped VM being backed
//! up, ...) gets no `state`, with a note saying which state.
//!
//! Read-only, like `plan`: it reads the node and, for the notes, the journal file; it
//! never opens the journal for writing, so it runs beside the service.

use crate::agent::{self, AppError, Loaded};
use crate::cancel::Cancel;
use crate::config::Config;
use crate::desired::{DesiredError, DesiredState, EmptyProvider, GuestSpec, RunState};
use crate::engine::observe::read::{of_lxc, of_vm};
use crate::exit::ExitCode;
use crate::plan::{normalize_tags, render_description, ActualSpec, Field};
use crate::pve::client::Client;
use crate::pve::{ApiError, GuestKind, PowerState, VmPower, Vmid};
use std::path::Path;

/// PVE's memory when the config has none, for both kinds (docs/proxmox-api.md §4.3,
/// §9.3).
const DEFAULT_MEMORY_MIB: u64 = 512;

/// Which guests to export. (Plain lists: a selection is a handful of entries, and the
/// node binary has a size budget.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Every guest on the node.
    All,
    /// The guests named by vmid, and those with any of the tags (lowercase, as PVE
    /// stores tags).
    Chosen { vmids: Vec<Vmid>, tags: Vec<String> },
}

impl Selection {
    /// Whether a guest with these (normalised) tags is chosen.
    fn wants(&self, vmid: Vmid, tags: &[String]) -> bool {
        match self {
            Selection::All => true,
            Selection::Chosen { vmids, tags: want } => {
                vmids.contains(&vmid) || tags.iter().any(|t| want.contains(t))
            }
        }
    }
}

/// A guest as read for export: what the planner would see of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub vmid: Vmid,
    /// The container's hostname or the VM's name, else the name the node's list shows.
    pub name: Option<String>,
    /// The node's list status: whether the guest runs (for a VM, whether its QEMU
    /// process exists).
    pub status: PowerState,
    /// A VM's power state, as the planner reads it: from its `status/current` when the
    /// list shows it running, from the list and its lock when stopped. `None` for a
    /// container, and for a VM whose list status the agent does not know.
    pub vm_power: Option<VmPower>,
    pub lock: Option<String>,
    /// The active config's managed fields; its `kind` says which kind of guest this is.
    pub spec: ActualSpec,
    /// Managed fields with a change waiting in the pending section.
    pub pending: Vec<Field>,
}

/// What `export` found: the desired state, and what the user should know about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Export {
    pub desired: DesiredState,
    /// One line each, starting with the vmid.
    pub notes: Vec<String>,
}

/// `felhom-agent export`: prints the desired state on stdout, the notes on stderr.
pub fn export(config_path: &Path, select: &Selection) -> Result<ExitCode, AppError> {
    let config = Config::load(config_path)?;
    let secret = config.fixed.token_secret()?;
    // Export needs no desired state (it writes one), so none is loaded: a desired file
    // that does not exist yet, or is being replaced by this very export, is no error.
    let loaded = Loaded {
        config,
        secret,
        provider: Box::new(EmptyProvider),
        desired: DesiredState::default(),
        report: None,
    };
    let client = agent::client(&loaded, &Cancel::never())?;
    let fixed = &loaded.config.fixed;
    let journal = crate::journal::file_in(&fixed.state_dir);
    let records = if journal.exists() {
        crate::journal::read_records(&journal)?
    } else {
        Vec::new()
    };
    let in_flight: Vec<(Vmid, String)> = crate::journal::in_flight_of(&records)
        .into_iter()
        .map(|op| (op.vmid, format!("op {} {}", op.op, op.kind)))
        .collect();
    let found = read(&client, &fixed.node, select, &in_flight)?;
    for note in &found.notes {
        eprintln!("felhom-agent export: {note}");
    }
    print!("{}", found.desired.to_json());
    Ok(ExitCode::Ok)
}

/// Reads the chosen guests of `node` and adopts them. `in_flight` names the guests
/// with an op of the agent still in flight, for the notes. A vmid chosen by number
/// that is not on the node is an error, and nothing is exported.
pub fn read(
    client: &Client,
    node: &str,
    select: &Selection,
    in_flight: &[(Vmid, String)],
) -> Result<Export, AppError> {
    let mut out = Export::default();
    let mut seen = Vec::new();
    let mut guests = containers(client, node, select, &mut seen)?;
    guests.extend(vms(client, node, select, &mut seen)?);
    for guest in guests {
        let (spec, notes) = adopt(&guest);
        out.notes.extend(notes);
        if let Some((_, op)) = in_flight.iter().find(|(v, _)| *v == guest.vmid) {
            out.notes.push(format!(
                "{}: the agent's {op} is in flight: it may still change",
                guest.vmid
            ));
        }
        out.desired.guests.insert(spec.vmid, spec);
    }
    if let Selection::Chosen { vmids, tags } = select {
        let missing: Vec<String> = vmids
            .iter()
            .filter(|v| !seen.contains(v))
            .map(|v| v.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(AppError::Usage(format!(
                "no guest {} on node {node}: nothing exported",
                missing.join(", ")
            )));
        }
        if out.desired.guests.is_empty() && !tags.is_empty() {
            out.notes.push(format!(
                "no guest on node {node} has the tag {}",
                tags.join(" or ")
            ));
        }
    }
    // Each guest was checked alone by the parser in `adopt`, and guests only differ by
    // vmid: the whole export reads back as written (tested: parse(print(x)) == x).
    Ok(out)
}

/// The chosen containers of `node`, read for export; adds every vmid on the node to
/// `seen`. Two reads per chosen guest: its active config and its pending section.
pub fn containers(
    client: &Client,
    node: &str,
    select: &Selection,
    seen: &mut Vec<Vmid>,
) -> Result<Vec<Observed>, ApiError> {
    let mut out = Vec::new();
    for entry in client.list_lxc(node)? {
        seen.push(entry.vmid);
        if !select.wants(entry.vmid, &list_tags(entry.tags.as_deref())) {
            continue;
        }
        let c = client.lxc_config(node, entry.vmid, true)?;
        let pending = client.lxc_pending(node, entry.vmid)?;
        out.push(Observed {
            vmid: entry.vmid,
            name: c.hostname.clone().or(entry.name),
            status: entry.status,
            vm_power: None,
            lock: c.lock.clone().or(entry.lock),
            spec: of_lxc(&c),
            pending: pending_fields(&pending),
        });
    }
    Ok(out)
}

/// The chosen VMs of `node`, read for export; adds every vmid on the node to `seen`.
/// The plain list (`full=1` would ask every running VM's monitor), then per chosen VM
/// its active config, its pending section, and its `status/current` when the list shows
/// it running: only that tells a running VM from a paused one.
pub fn vms(
    client: &Client,
    node: &str,
    select: &Selection,
    seen: &mut Vec<Vmid>,
) -> Result<Vec<Observed>, ApiError> {
    let mut out = Vec::new();
    for entry in client.list_qemu(node, false)? {
        seen.push(entry.vmid);
        if !select.wants(entry.vmid, &list_tags(entry.tags.as_deref())) {
            continue;
        }
        let c = client.qemu_config(node, entry.vmid, true)?;
        let pending = client.qemu_pending(node, entry.vmid)?;
        let lock = c.lock.clone().or(entry.lock);
        let vm_power = match entry.status {
            PowerState::Running => Some(client.qemu_status(node, entry.vmid)?.power),
            ref status => VmPower::from_parts(status, None, lock.as_deref()),
        };
        out.push(Observed {
            vmid: entry.vmid,
            name: c.name.clone().or(entry.name),
            status: entry.status,
            vm_power,
            lock,
            spec: of_vm(&c),
            pending: pending_fields(&pending),
        });
    }
    Ok(out)
}

/// A list entry's tags, normalised as the selection compares them.
fn list_tags(tags: Option<&str>) -> Vec<String> {
    normalize_tags(split_tags(tags.unwrap_or("")))
}

/// The managed fields with something waiting in the pending section.
fn pending_fields(pending: &[crate::pve::types::PendingEntry]) -> Vec<Field> {
    Field::ALL
        .into_iter()
        .filter(|f| pending.iter().any(|p| p.key == f.name() && p.is_pending()))
        .collect()
}

/// PVE's tag separators, as the planner splits a tag string.
fn split_tags(s: &str) -> impl Iterator<Item = &str> {
    s.split([';', ',', ' ', '\t', '\n'])
        .filter(|t| !t.trim().is_empty())
}

/// The desired spec that matches `g` as the planner compares it, and a note for each
/// field left out. Pure, and one piece for both kinds: what differs by kind is what an
/// absent key means, which fields exist, and where a VM's power state comes from. Two
/// checks have the last word on every field: the planner's comparison
/// ([`Field::drift`]) and the desired-state parser, which refuses values a desired
/// state cannot hold (PVE may store a longer description, say).
pub fn adopt(g: &Observed) -> (GuestSpec, Vec<String>) {
    let a = &g.spec;
    let kind = a.kind;
    let mut notes = Vec::new();
    // A hibernated VM and a stopped VM being backed up have their lock named in the
    // note on their state.
    let lock_in_state = matches!(
        g.vm_power,
        Some(VmPower::Hibernated | VmPower::BackupOfStopped)
    );
    if let Some(lock) = g.lock.as_ref().filter(|_| !lock_in_state) {
        notes.push(format!(
            "{}: locked ({lock}): read while PVE works on it; check it",
            g.vmid
        ));
    }
    let mut spec = GuestSpec::new(g.vmid);
    spec.kind = (kind == GuestKind::Qemu).then_some(GuestKind::Qemu);
    spec.name = g.name.clone();
    match run_state(g) {
        Ok(state) => spec.state = Some(state),
        Err(why) => notes.push(format!("{}: {why}", g.vmid)),
    }
    let description = a.description.as_deref().unwrap_or("");
    match kind {
        GuestKind::Lxc => {
            spec.cores = a.cores;
            spec.swap = Some(a.swap.unwrap_or(0));
            spec.description = Some(render_description(description).into());
        }
        GuestKind::Qemu => {
            spec.cores = Some(a.cores.unwrap_or(1));
            spec.sockets = Some(a.sockets.unwrap_or(1));
            spec.balloon = a.balloon;
            spec.description = Some(description.trim_end().into());
        }
    }
    spec.memory = Some(a.memory.unwrap_or(DEFAULT_MEMORY_MIB));
    spec.onboot = Some(a.onboot.unwrap_or(false));
    spec.tags = Some(normalize_tags(split_tags(a.tags.as_deref().unwrap_or(""))));
    let mut left_out = |spec: &mut GuestSpec, field: Field, why: &str| {
        match field {
            Field::Cores => spec.cores = None,
            Field::Sockets => spec.sockets = None,
            Field::Balloon => spec.balloon = None,
            Field::Memory => spec.memory = None,
            Field::Swap => spec.swap = None,
            Field::Description => spec.description = None,
            Field::Onboot => spec.onboot = None,
            Field::Tags => spec.tags = None,
        }
        notes.push(format!(
            "{}: {} {why}: left out (unmanaged)",
            g.vmid,
            field.name()
        ));
    };
    match kind {
        GuestKind::Lxc if a.cores.is_none() => {
            left_out(&mut spec, Field::Cores, "not set (all host cores)")
        }
        // Without `balloon` the balloon target is the memory; a number pinned here would
        // stay behind when `memory` is edited, and PVE refuses a balloon above memory.
        GuestKind::Qemu if a.balloon.is_none() => {
            left_out(&mut spec, Field::Balloon, "not set (it follows memory)")
        }
        _ => {}
    }
    let fields = Field::ALL
        .into_iter()
        .filter(|f| crate::desired::field_kind_problem(f.name(), kind).is_none());
    for field in fields {
        // A pending change applies at the next restart: adopting the active value
        // would have the agent undo it then.
        if g.pending.contains(&field) {
            let why = "has a change pending until the next restart";
            left_out(&mut spec, field, why);
        } else if let Some(d) = field.drift(&spec, a) {
            left_out(
                &mut spec,
                field,
                &format!("would still differ ({} -> {})", d.from, d.to),
            );
        }
    }
    let mut alone = DesiredState::default();
    alone.guests.insert(spec.vmid, spec.clone());
    if let Err(DesiredError::Invalid { problems, .. }) =
        DesiredState::parse(&alone.to_json(), Path::new("export"))
    {
        for p in problems {
            let key = p.key.as_deref().unwrap_or("");
            let name = key.split('[').next().unwrap_or("");
            if let Some(field) = Field::ALL.into_iter().find(|f| f.name() == name) {
                left_out(&mut spec, field, &p.message);
            }
        }
    }
    (spec, notes)
}

/// The run state to write, as the planner would read the guest's power: a VM's from
/// its power state, a container's from the list. `Err` is the note saying why none is
/// written.
fn run_state(g: &Observed) -> Result<RunState, String> {
    match (&g.vm_power, &g.status, g.spec.kind) {
        (Some(VmPower::Running), _, _) => Ok(RunState::Running),
        (Some(VmPower::Stopped), _, _) => Ok(RunState::Stopped),
        (Some(p), _, _) => Err(format!(
            "the VM is {}: no state written (the agent leaves a VM in this state alone)",
            vm_state_words(p)
        )),
        (None, PowerState::Unknown(s), _) => Err(format!(
            "the node lists a status the agent does not know ({s}): no state written; add one by hand"
        )),
        // Only a VM's `status/current` tells whether it runs or is paused.
        (None, _, GuestKind::Qemu) => {
            Err("its power state was not read: no state written; add one by hand".into())
        }
        (None, PowerState::Running, GuestKind::Lxc) => Ok(RunState::Running),
        (None, PowerState::Stopped, GuestKind::Lxc) => Ok(RunState::Stopped),
    }
}

/// A VM's power state in words, for its note.
fn vm_state_words(p: &VmPower) -> String {
    match p {
        VmPower::Paused => "paused".into(),
        VmPower::Prelaunch => "in prelaunch (started frozen, waiting for a resume)".into(),
        VmPower::IoError => "halted on a disk error (io-error)".into(),
        VmPower::GuestSuspended => "suspended by its guest (ACPI S3)".into(),
        VmPower::Hibernated => "hibernated (lock: suspended)".into(),
        VmPower::BackupOfStopped => "stopped and being backed up (prelaunch, lock: backup)".into(),
        VmPower::ShutDownInside => "shut down inside while its QEMU is kept (shutdown)".into(),
        VmPower::Migrating => "migrating".into(),
        VmPower::Other(s) => format!("in QMP state {s}"),
        VmPower::Running | VmPower::Stopped => p.as_str().into(),
    }
}

#[cfg(test)]
mod tests;
