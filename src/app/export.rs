//! `felhom-agent export`: a desired state that matches the node as it is now, for the
//! guests the user chooses, so that a fleet is adopted without the first pass acting on
//! anything.
//!
//! Each chosen guest gets every managed field, filled in from its active config (the
//! values the planner compares, not the pending ones) and written the way the planner
//! normalises it: absent swap is 0, absent onboot is off, absent memory is PVE's 512,
//! a description loses its trailing newlines, tags are lowercased, sorted and
//! de-duplicated. Its `name` is the guest's hostname. Every field is then checked with
//! the planner's own comparison ([`Field::drift`]): a field the planner would not find
//! in sync is left out rather than written, so the first pass after adopting the
//! export plans nothing.
//!
//! A field that cannot be written as desired state is left out (unmanaged), with a note
//! on stderr: `cores` when unset (all host cores), a value the desired-state parser
//! refuses, and any field with a change waiting in PVE's pending section, which the
//! agent would otherwise undo after the guest's next restart.
//!
//! Read-only, like `plan`: it reads the node and, for the notes, the journal file; it
//! never opens the journal for writing, so it runs beside the service. Each guest kind
//! has its own reader (containers today: [`containers`]); they share [`adopt`].

use crate::agent::{self, AppError, Loaded};
use crate::cancel::Cancel;
use crate::config::Config;
use crate::desired::{DesiredError, DesiredState, EmptyProvider, GuestSpec, RunState};
use crate::exit::ExitCode;
use crate::plan::{normalize_tags, render_description, ActualSpec, Field};
use crate::pve::client::Client;
use crate::pve::{ApiError, Vmid};
use std::path::Path;

/// PVE's LXC memory when the config has none (docs/proxmox-api.md §4.3).
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
    /// The hostname, or the name the node's list shows.
    pub name: Option<String>,
    /// Whether it runs; `None` when the node lists a status the agent does not know.
    pub running: Option<bool>,
    pub lock: Option<String>,
    /// The active config's managed fields.
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
    for guest in containers(client, node, select, &mut seen)? {
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
        let tags = normalize_tags(split_tags(entry.tags.as_deref().unwrap_or("")));
        if !select.wants(entry.vmid, &tags) {
            continue;
        }
        let c = client.lxc_config(node, entry.vmid, true)?;
        let pending = client.lxc_pending(node, entry.vmid)?;
        out.push(Observed {
            vmid: entry.vmid,
            name: c.hostname.or(entry.name),
            running: match entry.status {
                crate::pve::PowerState::Running => Some(true),
                crate::pve::PowerState::Stopped => Some(false),
                crate::pve::PowerState::Unknown(_) => None,
            },
            lock: c.lock.or(entry.lock),
            spec: ActualSpec {
                cores: c.cores,
                memory: c.memory,
                swap: c.swap,
                description: c.description,
                onboot: c.onboot,
                tags: c.tags,
                digest: c.digest,
                ..ActualSpec::empty(crate::pve::GuestKind::Lxc)
            },
            pending: Field::ALL
                .into_iter()
                .filter(|f| pending.iter().any(|p| p.key == f.name() && p.is_pending()))
                .collect(),
        });
    }
    Ok(out)
}

/// PVE's tag separators, as the planner splits a tag string.
fn split_tags(s: &str) -> impl Iterator<Item = &str> {
    s.split([';', ',', ' ', '\t', '\n'])
        .filter(|t| !t.trim().is_empty())
}

/// The desired spec that matches `g` as the planner compares it, and a note for each
/// field left out. Pure. Two checks have the last word on every field: the planner's
/// comparison ([`Field::drift`]) and the desired-state parser, which refuses values a
/// desired state cannot hold (PVE may store a longer description, say).
pub fn adopt(g: &Observed) -> (GuestSpec, Vec<String>) {
    let a = &g.spec;
    let mut notes = Vec::new();
    if let Some(lock) = &g.lock {
        notes.push(format!(
            "{}: locked ({lock}): read while PVE works on it; check it",
            g.vmid
        ));
    }
    let mut spec = GuestSpec::new(g.vmid);
    spec.name = g.name.clone();
    spec.state = g.running.map(|running| {
        if running {
            RunState::Running
        } else {
            RunState::Stopped
        }
    });
    if g.running.is_none() {
        notes.push(format!(
            "{}: the node lists a status the agent does not know: no state written; add one by hand",
            g.vmid
        ));
    }
    spec.cores = a.cores;
    spec.memory = Some(a.memory.unwrap_or(DEFAULT_MEMORY_MIB));
    spec.swap = Some(a.swap.unwrap_or(0));
    spec.description = Some(render_description(a.description.as_deref().unwrap_or("")).into());
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
    if a.cores.is_none() {
        left_out(&mut spec, Field::Cores, "not set (all host cores)");
    }
    for field in Field::ALL {
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

#[cfg(test)]
mod tests;
