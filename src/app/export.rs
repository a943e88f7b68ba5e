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
//! on stderr: `cores` when unset (all host cores), and any field with a change waiting
//! in PVE's pending section, which the agent would otherwise undo after the guest's
//! next restart.
//!
//! Read-only, like `plan`: it reads the node and, for the notes, the journal file; it
//! never opens the journal for writing, so it runs beside the service. Each guest kind
//! has its own reader (containers today: [`containers`]); they share [`adopt`].

use crate::agent::{self, AppError, Loaded};
use crate::cancel::Cancel;
use crate::config::Config;
use crate::desired::{
    is_tag, DesiredState, EmptyProvider, GuestSpec, RunState, MAX_DESCRIPTION, MAX_MIB,
};
use crate::exit::ExitCode;
use crate::plan::{normalize_tags, render_description, ActualSpec, Field};
use crate::pve::client::Client;
use crate::pve::types::PendingEntry;
use crate::pve::{ApiError, Vmid};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// PVE's LXC memory when the config has none (docs/proxmox-api.md §4.3).
const DEFAULT_MEMORY_MIB: u64 = 512;

/// Which guests to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Every guest on the node.
    All,
    /// The guests named by vmid, and those with any of the tags (compared as PVE
    /// stores tags: lowercase).
    Chosen {
        vmids: BTreeSet<Vmid>,
        tags: BTreeSet<String>,
    },
}

impl Selection {
    /// Whether a guest with these (normalised) tags is chosen.
    fn wants(&self, vmid: Vmid, tags: &[String]) -> bool {
        match self {
            Selection::All => true,
            Selection::Chosen { vmids, tags: want } => {
                vmids.contains(&vmid) || tags.iter().any(|t| want.contains(&t.to_lowercase()))
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
    pub running: bool,
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
    };
    let client = agent::client(&loaded, &Cancel::never())?;
    let fixed = &loaded.config.fixed;
    let journal = fixed.state_dir.join("journal");
    let records = if journal.exists() {
        crate::journal::read_records(&journal)?
    } else {
        Vec::new()
    };
    let in_flight: BTreeMap<Vmid, String> = crate::journal::in_flight_of(&records)
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
    in_flight: &BTreeMap<Vmid, String>,
) -> Result<Export, AppError> {
    let mut out = Export::default();
    let mut seen = BTreeSet::new();
    for guest in containers(client, node, select, &mut seen)? {
        let (spec, notes) = adopt(&guest);
        out.notes.extend(notes);
        if let Some(op) = in_flight.get(&guest.vmid) {
            out.notes.push(format!(
                "{}: the agent's {op} is still in flight: what was read may change when it ends",
                guest.vmid
            ));
        }
        out.desired.guests.insert(spec.vmid, spec);
    }
    if let Selection::Chosen { vmids, tags } = select {
        let missing: Vec<String> = vmids.difference(&seen).map(|v| v.to_string()).collect();
        if !missing.is_empty() {
            return Err(AppError::Usage(format!(
                "no guest {} on node {node}: nothing exported",
                missing.join(", ")
            )));
        }
        if out.desired.guests.is_empty() && !tags.is_empty() {
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            out.notes.push(format!(
                "no guest on node {node} has the tag {}: the export names no guest",
                tags.join(" or ")
            ));
        }
    }
    // The export must read back as exactly what was adopted; a difference is our bug.
    let text = out.desired.to_json();
    match DesiredState::parse(&text, Path::new("export")) {
        Ok(back) if back == out.desired => Ok(out),
        Ok(_) => Err(AppError::Internal(
            "the export does not read back as written".into(),
        )),
        Err(e) => Err(AppError::Internal(format!(
            "the export does not read back: {e}"
        ))),
    }
}

/// The chosen containers of `node`, read for export; adds every vmid on the node to
/// `seen`. Two reads per chosen guest: its active config and its pending section.
pub fn containers(
    client: &Client,
    node: &str,
    select: &Selection,
    seen: &mut BTreeSet<Vmid>,
) -> Result<Vec<Observed>, ApiError> {
    let mut out = Vec::new();
    for entry in client.list_lxc(node)? {
        seen.insert(entry.vmid);
        let tags = normalize_tags(split_tags(entry.tags.as_deref().unwrap_or("")));
        if !select.wants(entry.vmid, &tags) {
            continue;
        }
        let config = client.lxc_config(node, entry.vmid, true)?;
        let pending = client.lxc_pending(node, entry.vmid)?;
        out.push(Observed {
            vmid: entry.vmid,
            name: config.hostname.clone().or(entry.name.clone()),
            running: entry.status == crate::pve::types::RunState::Running,
            lock: config.lock.clone().or(entry.lock.clone()),
            spec: ActualSpec {
                cores: config.cores,
                memory: config.memory,
                swap: config.swap,
                description: config.description.clone(),
                onboot: config.onboot,
                tags: config.tags.clone(),
                digest: config.digest.clone(),
                pending: Vec::new(),
            },
            pending: pending_fields(&pending),
        });
    }
    Ok(out)
}

/// The managed fields that have something waiting in the pending section.
fn pending_fields(pending: &[PendingEntry]) -> Vec<Field> {
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
/// field left out. Pure.
pub fn adopt(g: &Observed) -> (GuestSpec, Vec<String>) {
    let a = &g.spec;
    let mut notes = Vec::new();
    let mut spec = GuestSpec::new(g.vmid);
    spec.name = g.name.clone();
    spec.state = Some(if g.running {
        RunState::Running
    } else {
        RunState::Stopped
    });
    if let Some(lock) = &g.lock {
        notes.push(format!(
            "{}: locked ({lock}): its state was read while PVE works on it; check it before adopting",
            g.vmid
        ));
    }
    for field in Field::ALL {
        let value = match field {
            Field::Cores => match a.cores {
                Some(n) if (1..=8192).contains(&n) => Ok(Adopted::Cores(n)),
                Some(n) => Err(format!("{n} is outside 1 to 8192")),
                None => Err("not set (all host cores), which a desired state cannot say".into()),
            },
            Field::Memory => {
                let mib = a.memory.unwrap_or(DEFAULT_MEMORY_MIB);
                in_mib_range(mib, 16).map(Adopted::Memory)
            }
            Field::Swap => in_mib_range(a.swap.unwrap_or(0), 0).map(Adopted::Swap),
            Field::Description => {
                let text = render_description(a.description.as_deref().unwrap_or(""));
                if text.len() > MAX_DESCRIPTION {
                    Err(format!(
                        "{} bytes, over the desired state's {MAX_DESCRIPTION}",
                        text.len()
                    ))
                } else {
                    Ok(Adopted::Description(text.to_string()))
                }
            }
            Field::Onboot => Ok(Adopted::Onboot(a.onboot.unwrap_or(false))),
            Field::Tags => {
                let tags = normalize_tags(split_tags(a.tags.as_deref().unwrap_or("")));
                match tags.iter().find(|t| !is_tag(t)) {
                    Some(bad) => Err(format!("{bad:?} is not a valid tag")),
                    None => Ok(Adopted::Tags(tags)),
                }
            }
        };
        let value = if g.pending.contains(&field) {
            Err(
                "has a change waiting in PVE's pending section (it applies at the next restart)"
                    .into(),
            )
        } else {
            value
        };
        let why = match value {
            Ok(v) => {
                let mut with = spec.clone();
                v.set(&mut with);
                // The planner's own comparison has the last word.
                match field.drift(&with, a) {
                    None => {
                        spec = with;
                        continue;
                    }
                    Some(d) => format!("would still differ ({} -> {})", d.from, d.to),
                }
            }
            Err(why) => why,
        };
        notes.push(format!(
            "{}: {} {why}: left out (unmanaged)",
            g.vmid,
            field.name()
        ));
    }
    (spec, notes)
}

fn in_mib_range(mib: u64, min: u64) -> Result<u64, String> {
    if (min..=MAX_MIB).contains(&mib) {
        Ok(mib)
    } else {
        Err(format!("{mib} MiB is outside {min} to {MAX_MIB} MiB"))
    }
}

/// One field's adopted value.
enum Adopted {
    Cores(u32),
    Memory(u64),
    Swap(u64),
    Description(String),
    Onboot(bool),
    Tags(Vec<String>),
}

impl Adopted {
    fn set(self, spec: &mut GuestSpec) {
        match self {
            Adopted::Cores(n) => spec.cores = Some(n),
            Adopted::Memory(n) => spec.memory = Some(n),
            Adopted::Swap(n) => spec.swap = Some(n),
            Adopted::Description(s) => spec.description = Some(s),
            Adopted::Onboot(b) => spec.onboot = Some(b),
            Adopted::Tags(t) => spec.tags = Some(t),
        }
    }
}

#[cfg(test)]
mod tests;
