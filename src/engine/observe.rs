//! Reading the node's actual state for one pass.
//!
//! Requests per pass: `/cluster/resources?type=vm` (each named guest's kind and node, HA
//! state, and which node a named guest that is not local lives on) and the node's list
//! of the kinds the desired state names there (containers, virtual machines, or both).
//! Then, per guest the desired state names, that lives here, and that the plan could act
//! on (not held, locked, HA-managed, or a template asked to run), only what the lists
//! cannot tell:
//! - its config (`current=1`, plus the pending section when a field differs), unless
//!   every desired field shows in the list and matches. A container's list entry carries
//!   its memory (`maxmem`), swap (`maxswap`), tags and `cpus`; a VM's its memory and
//!   tags. `description` and `onboot` are never in the list, and `cpus` can also be
//!   `cpulimit` or the host's CPU count when `cores` is unset, so a full read of every
//!   managed guest every [`FULL_READ_EVERY`] passes catches what the list cannot tell
//!   apart. A guest to start or stop is read too, for its `startup` order.
//! - a managed VM's `status/current`, when the list shows it running: the list cannot
//!   tell running from paused, prelaunch, io-error or shut down inside
//!   (docs/proxmox-api.md §9). Only for the VMs the desired state names, never for the
//!   whole node.
//!
//! Unmanaged guests cost nothing beyond the lists; with nothing desired, nothing is
//! read. Reads per guest run on at most [`READERS`] threads at once: pvedaemon serves
//! the API with three workers, and a read per worker keeps them busy without queueing
//! the agent's own mutations behind a flood of reads.

// The config-to-spec mapping is the crate's one reading of a config; `export` uses it too.
pub(crate) mod read;

use crate::cancel::Cancel;
use crate::desired::{DesiredState, GuestSpec, RunState as Want};
use crate::plan::{gate, Actual, ActualGuest, ActualSpec, Field, Hold, PlanSettings};
use crate::pve::client::Client;
use crate::pve::error::{ApiError, TransportError};
use crate::pve::types::{PowerState, TaskQuery};
use crate::pve::{GuestKind, VmPower, Vmid};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Every this many passes, every managed guest's config is read, whatever the list says.
pub const FULL_READ_EVERY: u64 = 10;

/// Reads in flight at once.
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

/// One entry of either list, as the planner needs it.
struct Listed {
    vmid: Vmid,
    kind: GuestKind,
    status: PowerState,
    name: Option<String>,
    lock: Option<String>,
    template: bool,
    tags: Option<String>,
    cpus: Option<f64>,
    maxmem: Option<u64>,
    maxswap: Option<u64>,
}

impl Listed {
    fn running(&self) -> bool {
        self.status == PowerState::Running
    }
}

/// What to read of one guest.
struct Reads {
    vmid: Vmid,
    kind: GuestKind,
    spec: bool,
    status: bool,
}

/// Reads what the planner needs. A failed list or HA read fails the whole observation
/// (nothing is planned); a failed read of one guest only makes that guest's spec
/// unknown. `held` guests get no config read. `cancel` ends the read between requests
/// (shutdown), as an error.
///
/// `spent`: each guest's spent one-shot keys, from the journal; the observation
/// carries them. When a key that names no node is due on a local guest, the cluster's
/// node list is read as well (`GET /cluster/resources?type=node`), since such a key
/// may be carried out only on a node that is alone.
#[allow(clippy::too_many_arguments)]
pub fn observe(
    client: &Client,
    node: &str,
    desired: &DesiredState,
    held: &BTreeMap<Vmid, Hold>,
    spent: &BTreeMap<Vmid, BTreeSet<String>>,
    settings: &PlanSettings,
    depth: Depth,
    cancel: &Cancel,
) -> Result<Observation, ApiError> {
    let mut out = Observation {
        actual: Actual {
            node: node.to_string(),
            spent_keys: spent.clone(),
            ..Actual::default()
        },
        names: BTreeMap::new(),
        held: held.clone(),
        config_reads: 0,
    };
    if desired.guests.is_empty() {
        return Ok(out);
    }
    // HA state, each named guest's kind and home all come from here: it needs only
    // VM.Audit, where /cluster/ha/resources needs Sys.Audit on `/`.
    let resources = client.cluster_resources()?;
    let mut kinds = BTreeSet::new();
    let mut known = BTreeSet::new();
    for r in &resources {
        if !desired.guests.contains_key(&r.vmid) {
            continue;
        }
        known.insert(r.vmid);
        if let Some(state) = r.hastate.as_deref().filter(|s| *s != "ignored") {
            out.actual.ha_managed.insert(r.vmid, state.to_string());
        }
        if let Some(name) = &r.name {
            out.names.insert(r.vmid, name.clone());
        }
        if r.node == node {
            kinds.extend(r.guest_kind());
        }
    }
    // A named guest /cluster/resources does not show yet (it lags ~10 s) may be here
    // under either kind; the type the desired state gives narrows it.
    for (vmid, want) in &desired.guests {
        if !known.contains(vmid) {
            match want.kind {
                Some(kind) => kinds.insert(kind),
                None => {
                    kinds.extend(GuestKind::ALL);
                    true
                }
            };
        }
    }
    let listed = list(client, node, &kinds, cancel)?;

    let mut reads = Vec::new();
    let mut power_drift = false;
    for entry in &listed {
        if let Some(name) = &entry.name {
            out.names.insert(entry.vmid, name.clone());
        }
        let Some(want) = desired.guests.get(&entry.vmid) else {
            continue;
        };
        let mut read = Reads {
            vmid: entry.vmid,
            kind: entry.kind,
            spec: false,
            status: false,
        };
        let spec = if let Some(why) = no_read_needed(entry, want, &out.actual, held, settings) {
            Err(why)
        } else {
            let to_change = want
                .state
                .is_some_and(|s| (s == Want::Running) != entry.running());
            power_drift |= to_change;
            let want = crate::plan::effective_spec(want, settings);
            let from_list = match depth {
                Depth::Needed if !to_change => spec_from_list(entry, &want),
                _ => None,
            };
            read.spec = from_list.is_none();
            // A managed VM that runs as far as the list can tell: its real state
            // (running, paused, prelaunch...) is in its status alone.
            read.status = entry.kind == GuestKind::Qemu && entry.running();
            from_list.ok_or_else(|| NOT_READ.to_string())
        };
        let vm_power =
            (entry.kind == GuestKind::Qemu && entry.status == PowerState::Stopped).then(|| {
                VmPower::from_parts(&PowerState::Stopped, None, entry.lock.as_deref())
                    .unwrap_or(VmPower::Stopped)
            });
        if read.spec || read.status {
            reads.push(read);
        }
        out.actual.local.insert(
            entry.vmid,
            ActualGuest {
                vmid: entry.vmid,
                kind: entry.kind,
                name: entry.name.clone(),
                tags: entry.tags.clone(),
                status: entry.status.clone(),
                lock: entry.lock.clone(),
                template: entry.template,
                vm_power,
                spec,
            },
        );
    }
    let unpinned_due = listed.iter().any(|entry| {
        desired.guests.get(&entry.vmid).is_some_and(|want| {
            crate::plan::due_once(want, spent.get(&entry.vmid)).is_some_and(|o| o.node.is_none())
        })
    });
    if unpinned_due {
        stop_if_cancelled(cancel, "GET the cluster's nodes")?;
        out.actual.cluster_nodes = Some(client.cluster_nodes()?.len());
    }
    if power_drift {
        // Only when a power action may follow: a pass with nothing to start or stop
        // costs no request for this.
        stop_if_cancelled(cancel, "GET the active tasks")?;
        out.actual.bulk_task = bulk_task(client, node);
    }
    out.config_reads = reads.iter().filter(|r| r.spec).count();
    for (vmid, spec, power) in read_all(client, node, desired, settings, &reads, cancel)? {
        if let Some(g) = out.actual.local.get_mut(&vmid) {
            if let Some(spec) = spec {
                g.spec = spec;
            }
            match power {
                Some(Ok(p)) => g.vm_power = Some(p),
                Some(Err(e)) => g.spec = Err(format!("cannot read its power state: {e}")),
                None => {}
            }
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

/// The node's guests of `kinds`, as one list.
fn list(
    client: &Client,
    node: &str,
    kinds: &BTreeSet<GuestKind>,
    cancel: &Cancel,
) -> Result<Vec<Listed>, ApiError> {
    let mut out = Vec::new();
    if kinds.contains(&GuestKind::Lxc) {
        stop_if_cancelled(cancel, "GET the container list")?;
        out.extend(client.list_lxc(node)?.into_iter().map(|e| Listed {
            vmid: e.vmid,
            kind: GuestKind::Lxc,
            status: e.status,
            name: e.name,
            lock: e.lock,
            template: e.template,
            tags: e.tags,
            cpus: e.cpus,
            maxmem: e.maxmem,
            maxswap: e.maxswap,
        }));
    }
    if kinds.contains(&GuestKind::Qemu) {
        stop_if_cancelled(cancel, "GET the VM list")?;
        // The plain list: `full=1` would ask QEMU for every VM on the node.
        out.extend(client.list_qemu(node, false)?.into_iter().map(|e| Listed {
            vmid: e.vmid,
            kind: GuestKind::Qemu,
            status: e.status,
            name: e.name,
            lock: e.lock,
            template: e.template,
            tags: e.tags,
            cpus: e.cpus,
            maxmem: e.maxmem,
            maxswap: None,
        }));
    }
    Ok(out)
}

/// The node's own start-all or stop-all task running now. A list that cannot be read is
/// taken as one running: power actions wait a pass rather than race it.
pub(super) fn bulk_task(client: &Client, node: &str) -> Option<String> {
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

/// Why a guest is not worth reading: the plan will not act on it this pass.
fn no_read_needed(
    entry: &Listed,
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
    } else if let PowerState::Unknown(status) = &entry.status {
        Some(format!("{NOT_READ}: status {status:?} unknown"))
    } else if entry.template && want.state == Some(Want::Running) {
        Some(format!("{NOT_READ}: a template cannot run"))
    } else {
        None
    }
}

/// The spec as the list shows it, when every desired field shows there and matches;
/// `None` when the config must be read.
fn spec_from_list(entry: &Listed, want: &GuestSpec) -> Option<ActualSpec> {
    if want.description.is_some() || want.onboot.is_some() || want.balloon.is_some() {
        return None;
    }
    let (cores, sockets) = match entry.kind {
        GuestKind::Lxc => {
            let cpus = entry.cpus?;
            // Only whole CPU counts can be `cores`; a match may still be a `cpulimit`
            // or the host's count, which the periodic full read catches.
            (
                (cpus.fract() == 0.0 && cpus >= 1.0).then_some(cpus as u32),
                None,
            )
        }
        // A VM's `cpus` is sockets × cores (or vcpus): it cannot tell either.
        GuestKind::Qemu if want.cores.is_some() || want.sockets.is_some() => return None,
        GuestKind::Qemu => (None, None),
    };
    let spec = ActualSpec {
        kind: entry.kind,
        cores,
        sockets,
        memory: Some(entry.maxmem? / MIB),
        balloon: None,
        swap: match entry.kind {
            GuestKind::Lxc => Some(entry.maxswap? / MIB),
            GuestKind::Qemu => None,
        },
        description: None,
        onboot: None,
        tags: entry.tags.clone(),
        digest: String::new(),
        pending: Vec::new(),
        startup: None,
        hotplug_cpu: false,
        hotplug_memory: false,
    };
    let matches = Field::ALL
        .into_iter()
        .all(|f| f.drift(want, &spec).is_none());
    matches.then_some(spec)
}

/// One guest's reads: its spec (or why not), and a VM's power state (or why not).
type GuestRead = (
    Vmid,
    Option<Result<ActualSpec, String>>,
    Option<Result<VmPower, String>>,
);

/// Makes the reads on at most [`READERS`] threads.
fn read_all(
    client: &Client,
    node: &str,
    desired: &DesiredState,
    settings: &PlanSettings,
    reads: &[Reads],
    cancel: &Cancel,
) -> Result<Vec<GuestRead>, ApiError> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(reads.len()));
    let read_one = || {
        while let Some(r) = reads.get(next.fetch_add(1, Ordering::Relaxed)) {
            if cancel.is_cancelled() {
                return;
            }
            let power = r
                .status
                .then(|| read::vm_power(client, node, r.vmid).map_err(|e| e.to_string()));
            let spec = r.spec.then(|| {
                let want = crate::plan::effective_spec(&desired.guests[&r.vmid], settings);
                read::spec(client, node, r.kind, &want).map_err(|e| e.to_string())
            });
            results
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((r.vmid, spec, power));
        }
    };
    let threads = READERS.min(reads.len());
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
