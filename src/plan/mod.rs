//! The planner: desired state plus actual state in, ordered benign actions and skip
//! reasons out.
//!
//! This module is pure: no I/O, no clock, no threads. Everything time-dependent (backoff,
//! busy lanes) arrives already decided, as [`Hold`]s. That keeps every decision here
//! testable with plain tables.
//!
//! It can only produce the four [`ActionKind`]s, none of which creates, destroys, migrates
//! or reboots a guest, and it only looks at guests the desired state names.

mod guest;
mod normalize;
mod startup;

pub use normalize::{description_eq, normalize_tags, render_description, Field};
pub use startup::Startup;

use crate::action::{Action, ActionKind, Guard, Params};
use crate::desired::{DesiredState, GuestSpec};
use crate::pve::{GuestKind, PowerState, VmPower, Vmid};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What the node reports, reduced to what the planner needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Actual {
    /// Guests whose config lives on this node, from the node's own list.
    pub local: BTreeMap<Vmid, ActualGuest>,
    /// Named guests that are not local: the node they live on. `None` when the pass did not
    /// need to look (no named guest was missing locally).
    pub elsewhere: BTreeMap<Vmid, String>,
    /// Guests under HA management (state other than `ignored`).
    pub ha_managed: BTreeMap<Vmid, String>,
    /// The node's own start-all or stop-all task running now, if any: power actions
    /// wait until it has ended.
    pub bulk_task: Option<String>,
    /// What the journal says, not the node: each guest's one-shot keys that are spent
    /// (carried out, or in flight). Such a key is never planned again.
    pub spent_keys: BTreeMap<Vmid, BTreeSet<String>>,
    /// This node's name: a one-shot key that names another node is not carried out here.
    pub node: String,
    /// How many nodes the cluster has, read when a one-shot key that names no node is
    /// due on a local guest (`None`: not read).
    pub cluster_nodes: Option<usize>,
}

/// One local guest.
#[derive(Clone, Debug, PartialEq)]
pub struct ActualGuest {
    pub vmid: Vmid,
    pub kind: GuestKind,
    pub name: Option<String>,
    /// The tags as the node's list shows them (`;`-separated), read on every pass.
    pub tags: Option<String>,
    /// The run state the node's list shows. Anything but running or stopped (a state
    /// this agent does not know) leaves the guest alone.
    pub status: PowerState,
    pub lock: Option<String>,
    pub template: bool,
    /// A virtual machine's power state, when it was read (its `status/current`): a VM
    /// the list shows running may be paused, in prelaunch, and so on.
    pub vm_power: Option<VmPower>,
    /// The active config, or why it could not be read.
    pub spec: Result<ActualSpec, String>,
}

/// The active values of the fields the agent manages, as PVE returns them (absent = `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActualSpec {
    /// The kind of guest this config is of.
    pub kind: GuestKind,
    pub cores: Option<u32>,
    pub sockets: Option<u32>,
    pub memory: Option<u64>,
    pub balloon: Option<u64>,
    pub swap: Option<u64>,
    pub description: Option<String>,
    pub onboot: Option<bool>,
    pub tags: Option<String>,
    /// The config digest read in this pass; sent back with the update.
    pub digest: String,
    /// Fields that differ from the desired value but already hold it in PVE's pending
    /// section: reported, never re-sent.
    pub pending: Vec<Field>,
    /// The guest's `startup` property, when set and valid.
    pub startup: Option<Startup>,
    /// A VM's `hotplug` includes `cpu` and `memory`: changing them on a running VM is
    /// then a hotplug that may take long, done by a task (docs/proxmox-api.md §9).
    pub hotplug_cpu: bool,
    pub hotplug_memory: bool,
}

impl ActualSpec {
    /// A config of `kind` with nothing set and no digest, to build on.
    pub fn empty(kind: GuestKind) -> ActualSpec {
        ActualSpec {
            kind,
            cores: None,
            sockets: None,
            memory: None,
            balloon: None,
            swap: None,
            description: None,
            onboot: None,
            tags: None,
            digest: String::new(),
            pending: Vec::new(),
            startup: None,
            hotplug_cpu: false,
            hotplug_memory: false,
        }
    }
}

/// Why a guest is held back this pass; decided by the engine, which owns the clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// An earlier action for this guest is still queued or running.
    Busy,
    /// Failures back off; `until` is when (RFC 3339, for people), `error` why.
    Backoff { until: String, error: String },
    /// A parameter error that will recur until the desired state changes.
    Terminal { error: String },
    /// The agent panicked acting on this guest (a bug): held until its desired spec
    /// changes.
    Quarantined { panic: String, at: String },
    /// An earlier op's outcome is not known yet (its task still runs, or its request
    /// went unanswered): nothing more is done to the guest until it is.
    InFlight { what: String },
}

/// Settings that shape the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanSettings {
    /// Use a hard `stop` instead of a graceful `shutdown`.
    pub hard_stop: bool,
    /// `timeout` for a graceful shutdown, after which `forceStop=1` kills the guest.
    pub shutdown_timeout_secs: u64,
    /// A guest carrying this PVE tag is left alone entirely; the agent never adds or
    /// removes the tag itself.
    pub hold_tag: Option<String>,
    /// A desired `name` must match the live guest's name, or the guest is left alone.
    pub identity_guard: bool,
    /// HA-managed guests are driven through HA requests instead of being skipped.
    pub ha_request: bool,
}

impl Default for PlanSettings {
    fn default() -> Self {
        PlanSettings {
            hard_stop: false,
            shutdown_timeout_secs: 60,
            hold_tag: Some(DEFAULT_HOLD_TAG.to_string()),
            identity_guard: true,
            ha_request: false,
        }
    }
}

/// The PVE tag that holds a guest unless the config names another.
pub const DEFAULT_HOLD_TAG: &str = "felhom-hold";

/// Whether a guest is closed to the agent before anything else is looked at: held by
/// an operator's tag, or not the guest the desired state means (another name). The
/// plan skips it, and the node is not asked about it beyond its list. One decision,
/// used by [`plan`] and by the engine when it decides what to read.
pub fn gate(
    spec: &GuestSpec,
    live_name: Option<&str>,
    live_tags: Option<&str>,
    settings: &PlanSettings,
) -> Option<SkipReason> {
    gate_by(&guard(spec, settings), live_name, live_tags)
}

/// The gate as a power action carries it, to be checked again right before the call.
pub fn guard(spec: &GuestSpec, settings: &PlanSettings) -> Guard {
    Guard {
        hold_tag: settings.hold_tag.clone(),
        name: spec.name.clone().filter(|_| settings.identity_guard),
        ha_request: settings.ha_request,
    }
}

/// [`gate`] by a guard: against the list when planning, against a fresh read of the
/// guest right before a power action.
pub fn gate_by(
    guard: &Guard,
    live_name: Option<&str>,
    live_tags: Option<&str>,
) -> Option<SkipReason> {
    if let Some(tag) = &guard.hold_tag {
        if normalize::split_tags(live_tags.unwrap_or("")).any(|t| t.eq_ignore_ascii_case(tag)) {
            return Some(SkipReason::HeldByTag(tag.clone()));
        }
    }
    if let Some(want) = &guard.name {
        if !live_name.is_some_and(|n| n.eq_ignore_ascii_case(want)) {
            return Some(SkipReason::IdentityMismatch {
                desired: want.clone(),
                found: live_name.map(str::to_string),
            });
        }
    }
    None
}

/// Whether an HA service in CRM state `state` is already headed where a power action
/// of `kind` would send it.
pub fn ha_heads_for(state: &str, kind: ActionKind) -> bool {
    match kind {
        ActionKind::Start => matches!(state, "started" | "request_start" | "request_start_balance"),
        ActionKind::Shutdown | ActionKind::Stop => matches!(state, "stopped" | "request_stop"),
        ActionKind::SetConfig => false,
    }
}

/// The one-shot entry due for a guest: the first of its keys not spent, whichever node
/// it names.
pub fn due_once<'a>(
    spec: &'a GuestSpec,
    spent: Option<&BTreeSet<String>>,
) -> Option<&'a crate::desired::OneShot> {
    spec.once
        .iter()
        .find(|o| !spent.is_some_and(|s| s.contains(&o.key)))
}

/// The spec the plan compares: the hold tag, which only an operator sets, taken out
/// of the desired tags.
pub fn effective_spec<'a>(spec: &'a GuestSpec, settings: &PlanSettings) -> Cow<'a, GuestSpec> {
    match (&settings.hold_tag, &spec.tags) {
        (Some(tag), Some(tags)) if tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) => {
            let mut s = spec.clone();
            s.tags = Some(
                tags.iter()
                    .filter(|t| !t.eq_ignore_ascii_case(tag))
                    .cloned()
                    .collect(),
            );
            Cow::Owned(s)
        }
        _ => Cow::Borrowed(spec),
    }
}

/// Why a guest gets no action (or no config action) this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    Locked(String),
    Template,
    HaManaged(String),
    /// With `ha_mode: "request"`: HA already has the power change in hand (its service
    /// state is the one a request would set), so no request is filed again.
    HaPending(String),
    Elsewhere(String),
    Missing,
    SpecUnknown(String),
    Held(Hold),
    /// An operator put the hold tag on the guest.
    HeldByTag(String),
    /// The node runs its own start-all or stop-all: the power action waits for it.
    PowerWaits(String),
    /// A virtual machine in a state the agent does not fight (paused, io-error, in
    /// prelaunch, shut down inside, migrating...), with what that means here.
    VmState {
        state: String,
        why: String,
    },
    /// The node's list shows a run state this agent does not know: no power action is
    /// planned on a guess.
    StatusUnknown(String),
    /// The desired entry cannot apply to this guest: the wrong type, a field its kind
    /// lacks, memory below its balloon target.
    Unfit(String),
    /// The live guest is not the one the desired state names.
    IdentityMismatch {
        desired: String,
        found: Option<String>,
    },
    /// A one-shot key is due that names no node, and this node is one of `nodes` in
    /// its cluster (`None`: the cluster's nodes were not read): only the agent of a
    /// node the key names may carry it out, or a migration would let a second agent
    /// carry it out again.
    OnceNeedsNode {
        key: String,
        nodes: Option<usize>,
    },
}

impl SkipReason {
    /// A short stable class name, for metrics labels.
    pub fn class(&self) -> &'static str {
        match self {
            SkipReason::Locked(_) => "locked",
            SkipReason::Template => "template",
            SkipReason::HaManaged(_) => "ha",
            SkipReason::HaPending(_) => "ha_pending",
            SkipReason::Elsewhere(_) => "elsewhere",
            SkipReason::Missing => "missing",
            SkipReason::SpecUnknown(_) => "spec_unknown",
            SkipReason::HeldByTag(_) => "hold_tag",
            SkipReason::PowerWaits(_) => "bulk_task",
            SkipReason::VmState { .. } => "vm_state",
            SkipReason::StatusUnknown(_) => "status_unknown",
            SkipReason::Unfit(_) => "unfit",
            SkipReason::IdentityMismatch { .. } => "identity",
            SkipReason::OnceNeedsNode { .. } => "once_node",
            SkipReason::Held(Hold::Busy) => "busy",
            SkipReason::Held(Hold::Backoff { .. }) => "backoff",
            SkipReason::Held(Hold::Terminal { .. }) => "terminal",
            SkipReason::Held(Hold::InFlight { .. }) => "in_flight",
            SkipReason::Held(Hold::Quarantined { .. }) => "quarantined",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Locked(lock) => write!(f, "locked ({lock})"),
            SkipReason::Template => f.write_str("template: a template cannot run"),
            SkipReason::HaManaged(state) => {
                write!(f, "ha-managed (ha state {state}): ha-manager owns it")
            }
            SkipReason::HaPending(state) => write!(
                f,
                "ha request pending (ha state {state}): HA carries it out; not requested again"
            ),
            SkipReason::Elsewhere(node) => write!(f, "elsewhere: {node}"),
            SkipReason::Missing => f.write_str("missing: on no node of the cluster"),
            SkipReason::SpecUnknown(e) => write!(f, "spec unknown ({e}): config not managed"),
            SkipReason::VmState { state, why } => write!(f, "{state}: {why}"),
            SkipReason::StatusUnknown(status) => write!(
                f,
                "status unknown: the node lists it as {status:?}; left alone until it shows running or stopped"
            ),
            SkipReason::Unfit(why) => write!(f, "unfit: {why}"),
            SkipReason::PowerWaits(task) => {
                write!(f, "power action waits: the node runs {task}")
            }
            SkipReason::HeldByTag(tag) => {
                write!(f, "held by tag {tag:?}: remove the tag to hand it back")
            }
            SkipReason::IdentityMismatch { desired, found } => match found {
                Some(found) => write!(f, "identity mismatch: desired {desired:?}, found {found:?}"),
                None => write!(f, "identity mismatch: desired {desired:?}, found no name"),
            },
            SkipReason::OnceNeedsNode { key, nodes } => {
                write!(f, "one-shot {key:?} names no node")?;
                match nodes {
                    Some(n) => write!(f, ", and this node is one of {n} in its cluster")?,
                    None => f.write_str(", and the cluster's nodes were not read")?,
                }
                f.write_str(": add \"node\" to the entry, so that one node's agent carries it out")
            }
            SkipReason::Held(Hold::Busy) => f.write_str("busy: an earlier action is running"),
            SkipReason::Held(Hold::Backoff { until, error }) => {
                write!(f, "in backoff until {until}: {error}")
            }
            SkipReason::Held(Hold::Terminal { error }) => write!(
                f,
                "failed permanently ({error}): change its desired state to retry"
            ),
            SkipReason::Held(Hold::InFlight { what }) => write!(f, "in flight: {what}"),
            SkipReason::Held(Hold::Quarantined { panic, at }) => write!(
                f,
                "quarantined: the agent crashed acting on it at {at} ({panic}); change its desired state to retry"
            ),
        }
    }
}

/// A guest that gets no action (or only run-state actions) this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    pub vmid: Vmid,
    pub reason: SkipReason,
}

/// The outcome of planning: actions in execution order (grouped by guest, guests in vmid
/// order), skips, and guests whose drift is only pending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub skipped: Vec<Skip>,
    pub pending: Vec<(Vmid, Vec<Field>)>,
    pub in_sync: Vec<Vmid>,
    /// Local guests whose due one-shot entry names another node: it waits for its
    /// guest to be there (and the guest's later keys with it).
    pub waiting: Vec<(Vmid, crate::desired::OneShot)>,
}

impl Plan {
    /// The actions for one guest, in order.
    pub fn for_guest(&self, vmid: Vmid) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(move |a| a.vmid == vmid)
    }

    /// Guests with at least one action, in order.
    pub fn guests(&self) -> Vec<Vmid> {
        let mut v: Vec<Vmid> = self.actions.iter().map(|a| a.vmid).collect();
        v.dedup();
        v
    }
}

/// Plans one pass.
pub fn plan(
    desired: &DesiredState,
    actual: &Actual,
    holds: &BTreeMap<Vmid, Hold>,
    settings: &PlanSettings,
) -> Plan {
    let mut out = Plan::default();
    for (vmid, spec) in &desired.guests {
        guest::plan_guest(*vmid, spec, actual, holds, settings, &mut out);
    }
    out
}

/// Renders a plan for people: one line per guest with actions, then pending drift and
/// skips. `names` gives guest names where known.
pub fn render(plan: &Plan, names: &BTreeMap<Vmid, String>) -> String {
    use fmt::Write as _;
    let mut out = String::new();
    let name = |v: &Vmid| names.get(v).map(String::as_str).unwrap_or("-");
    for vmid in plan.guests() {
        let reasons: Vec<&str> = plan.for_guest(vmid).map(|a| a.reason.as_str()).collect();
        let _ = writeln!(out, "{vmid} {}  {}", name(&vmid), reasons.join(", "));
    }
    for (vmid, fields) in &plan.pending {
        let f: Vec<&str> = fields.iter().map(|f| f.name()).collect();
        let _ = writeln!(
            out,
            "{vmid} {}  pending: {} (waits for a restart; not re-sent)",
            name(vmid),
            f.join(", ")
        );
    }
    for (vmid, o) in &plan.waiting {
        let _ = writeln!(
            out,
            "{vmid} {}  once {:?} ({}) waits for node {}",
            name(vmid),
            o.key,
            o.action.as_str(),
            o.node.as_deref().unwrap_or("-")
        );
    }
    for s in &plan.skipped {
        let _ = writeln!(out, "{} {}  skipped: {}", s.vmid, name(&s.vmid), s.reason);
    }
    if out.is_empty() {
        out.push_str("nothing to do\n");
    }
    out
}

#[cfg(test)]
mod tests;
