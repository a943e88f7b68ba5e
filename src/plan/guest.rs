//! Planning one guest: whether it may be touched at all, then its config update and its
//! power action, in the order that makes each land where it should.

use super::{
    effective_spec, gate, guard, ha_heads_for, Action, ActionKind, Actual, ActualGuest, ActualSpec,
    Field, Hold, Params, Plan, PlanSettings, Skip, SkipReason,
};
use crate::desired::{field_kind_problem, GuestSpec, OneShot, OneShotAction, RunState};
use crate::pve::{GuestKind, PowerState, VmPower, Vmid};
use std::collections::BTreeMap;

/// What the guest's power state is, for planning.
enum Live {
    Running,
    Stopped,
    /// A VM state the agent does not fight.
    Other(VmPower),
    /// A status the node's list shows that the agent does not know.
    Unknown(String),
}

fn live(guest: &ActualGuest) -> Live {
    match &guest.vm_power {
        Some(p) if p.is_running() => Live::Running,
        Some(p) if p.is_stopped() => Live::Stopped,
        Some(p) => Live::Other(p.clone()),
        None => match &guest.status {
            PowerState::Running => Live::Running,
            PowerState::Stopped => Live::Stopped,
            PowerState::Unknown(s) => Live::Unknown(s.clone()),
        },
    }
}

pub(super) fn plan_guest(
    vmid: Vmid,
    spec: &GuestSpec,
    actual: &Actual,
    holds: &BTreeMap<Vmid, Hold>,
    settings: &PlanSettings,
    out: &mut Plan,
) {
    let skip = |out: &mut Plan, reason| out.skipped.push(Skip { vmid, reason });
    let Some(guest) = actual.local.get(&vmid) else {
        let reason = match actual.elsewhere.get(&vmid) {
            Some(node) => SkipReason::Elsewhere(node.clone()),
            None => SkipReason::Missing,
        };
        return skip(out, reason);
    };
    if let Some(reason) = gate(spec, guest.name.as_deref(), guest.tags.as_deref(), settings) {
        return skip(out, reason);
    }
    if let Some(why) = unfit(spec, guest) {
        return skip(out, SkipReason::Unfit(why));
    }
    if let Some(hold) = holds.get(&vmid) {
        return skip(out, SkipReason::Held(hold.clone()));
    }
    let spec = &*effective_spec(spec, settings);
    if let Some(state) = actual
        .ha_managed
        .get(&vmid)
        .filter(|_| !settings.ha_request)
    {
        return skip(out, SkipReason::HaManaged(state.clone()));
    }
    if let Some(lock) = &guest.lock {
        return skip(out, SkipReason::Locked(lock.clone()));
    }
    if guest.template && spec.state == Some(RunState::Running) {
        return skip(out, SkipReason::Template);
    }
    let skips = out.skipped.len();
    let live = live(guest);
    if let Live::Unknown(status) = live {
        return skip(out, SkipReason::StatusUnknown(status));
    }
    // A one-shot action due (the first of the entry's keys not spent) takes the power
    // action's place this pass; the desired `state` has its say again on the next.
    // One that would change nothing is only recorded, first, and the pass goes on.
    let spent = actual.spent_keys.get(&vmid);
    // A key names the node whose agent carries it out; one that names another node
    // waits (and the keys after it with it) for its guest to be there.
    let due = super::due_once(spec, spent);
    let once = due.filter(|o| o.node.as_ref().is_none_or(|n| *n == actual.node));
    if let Some(o) = due.filter(|_| once.is_none()) {
        out.waiting.push((vmid, o.clone()));
    }
    if let Some(o) = once.filter(|o| o.node.is_none() && actual.cluster_nodes != Some(1)) {
        return skip(
            out,
            SkipReason::OnceNeedsNode {
                key: o.key.clone(),
                nodes: actual.cluster_nodes,
            },
        );
    }
    let once = match once.map(|o| one_shot(o, spec, guest, &live, settings)) {
        Some(Ok(action)) => Some(action),
        Some(Err(reason)) => return skip(out, reason),
        None => None,
    };
    let (recorded, power) = match once {
        Some(action) if already(action.kind, &live) => (Some(action), None),
        Some(action) => (None, Some(action)),
        None => (None, None),
    };
    let power = match power {
        Some(action) => Some(action),
        None => match power_action(spec, guest, &live, settings) {
            Ok(power) => power,
            Err(reason) => return skip(out, reason),
        },
    };
    let config = match &guest.spec {
        Ok(actual) => match config_action(spec, guest, actual, &live) {
            Ok((action, pending)) => {
                if !pending.is_empty() {
                    out.pending.push((vmid, pending));
                }
                action
            }
            Err(why) => return skip(out, SkipReason::Unfit(why)),
        },
        Err(e) => {
            skip(out, SkipReason::SpecUnknown(e.clone()));
            None
        }
    };
    // HA already working towards the same state: a second request would only repeat
    // the first (HA's service state, pve-ha-manager src/PVE/HA/Manager.pm).
    let power = match (power, actual.ha_managed.get(&vmid)) {
        (Some(p), Some(state)) if ha_heads_for(state, p.kind) && !already(p.kind, &live) => {
            skip(out, SkipReason::HaPending(state.clone()));
            None
        }
        (power, _) => power,
    };
    // While the node starts or stops all its guests itself, power actions wait.
    let power = match (power, &actual.bulk_task) {
        (Some(_), Some(task)) => {
            skip(out, SkipReason::PowerWaits(task.clone()));
            None
        }
        (power, _) => power,
    };

    // Going to stopped: stop first, so the config change lands on a stopped guest.
    // Going to running: configure first, so the guest starts with its new config.
    let stopping = power.as_ref().is_some_and(|a| a.kind != ActionKind::Start);
    let ordered = if stopping {
        [power, config]
    } else {
        [config, power]
    };
    let before = out.actions.len();
    out.actions.extend(recorded);
    out.actions.extend(ordered.into_iter().flatten());
    // Not in sync when a power action waits (bulk task, HA) or its spec is unknown.
    if out.actions.len() == before && out.skipped.len() == skips {
        out.in_sync.push(vmid);
    }
}

/// Why the desired entry cannot apply to this live guest, if it cannot.
fn unfit(spec: &GuestSpec, guest: &ActualGuest) -> Option<String> {
    let label = |k: GuestKind| match k {
        GuestKind::Lxc => "a container",
        GuestKind::Qemu => "a virtual machine",
    };
    if let Some(kind) = spec.kind.filter(|k| *k != guest.kind) {
        return Some(format!(
            "the desired type is {}, but guest {} is {}",
            kind.as_str(),
            guest.vmid,
            label(guest.kind)
        ));
    }
    let named = [
        ("swap", spec.swap.is_some()),
        ("sockets", spec.sockets.is_some()),
        ("balloon", spec.balloon.is_some()),
    ];
    named
        .into_iter()
        .filter(|(_, set)| *set)
        .find_map(|(key, _)| field_kind_problem(key, guest.kind))
}

/// Whether the guest already is where an action of `kind` would take it.
fn already(kind: ActionKind, live: &Live) -> bool {
    match kind {
        ActionKind::Start => matches!(live, Live::Running),
        ActionKind::Shutdown | ActionKind::Stop => matches!(live, Live::Stopped),
        ActionKind::SetConfig => false,
    }
}

/// A power action of `kind`, with the parameters PVE needs: a graceful shutdown's
/// timeout and forced stop after it.
fn power(
    kind: ActionKind,
    spec: &GuestSpec,
    guest: &ActualGuest,
    settings: &PlanSettings,
    reason: String,
) -> Action {
    let params = match kind {
        ActionKind::Shutdown => {
            // The guest's own `down` is its shutdown timeout, as for the node's
            // stop-all; 0 means unset (docs/proxmox-api.md §5.6). A timeout is always
            // sent: a VM's guest-agent shutdown otherwise waits up to 600 s (§9).
            let down = guest
                .spec
                .as_ref()
                .ok()
                .and_then(|s| s.startup)
                .and_then(|s| s.down)
                .filter(|d| *d > 0);
            let timeout = down.unwrap_or(settings.shutdown_timeout_secs);
            Params::from([
                ("forceStop".into(), "1".into()),
                ("timeout".into(), timeout.to_string()),
            ])
        }
        _ => Params::new(),
    };
    Action {
        vmid: guest.vmid,
        guest: guest.kind,
        kind,
        params,
        via_task: false,
        key: None,
        guard: Some(guard(spec, settings)),
        reason,
    }
}

/// A one-shot action due this pass. One whose guest is already where it would take
/// it is still planned: the executor records its key as carried out without sending
/// anything, after a fresh look at the guest.
fn one_shot(
    once: &OneShot,
    spec: &GuestSpec,
    guest: &ActualGuest,
    live: &Live,
    settings: &PlanSettings,
) -> Result<Action, SkipReason> {
    let kind = match once.action {
        OneShotAction::Start => ActionKind::Start,
        OneShotAction::Shutdown => ActionKind::Shutdown,
        OneShotAction::Stop => ActionKind::Stop,
    };
    if let Live::Other(p) = live {
        let halted = matches!(
            p,
            VmPower::Paused | VmPower::IoError | VmPower::GuestSuspended
        );
        if !(kind == ActionKind::Stop && halted) {
            return Err(SkipReason::VmState {
                state: p.as_str().to_string(),
                why: format!(
                    "one-shot {:?} ({}) waits: the agent does not act on a VM in this state",
                    once.key,
                    once.action.as_str()
                ),
            });
        }
    }
    if kind == ActionKind::Start && guest.template {
        return Err(SkipReason::Template);
    }
    let mut reason = format!("once {:?}: {}", once.key, once.action.as_str());
    if already(kind, live) {
        let state = if kind == ActionKind::Start {
            "running"
        } else {
            "stopped"
        };
        reason += &format!(" (already {state}: recorded, nothing sent)");
    }
    let mut action = power(kind, spec, guest, settings, reason);
    action.key = Some(once.key.clone());
    Ok(action)
}

/// The power action the desired state asks for, or why none may be taken.
fn power_action(
    spec: &GuestSpec,
    guest: &ActualGuest,
    live: &Live,
    settings: &PlanSettings,
) -> Result<Option<Action>, SkipReason> {
    let stop = |from: &str| {
        let kind = if settings.hard_stop {
            ActionKind::Stop
        } else {
            ActionKind::Shutdown
        };
        power(
            kind,
            spec,
            guest,
            settings,
            format!("state {from} -> stopped"),
        )
    };
    Ok(match (spec.state, live) {
        (Some(RunState::Running), Live::Stopped) => Some(power(
            ActionKind::Start,
            spec,
            guest,
            settings,
            "state stopped -> running".into(),
        )),
        (Some(RunState::Stopped), Live::Running) => Some(stop("running")),
        (Some(RunState::Stopped), Live::Other(p))
            if matches!(
                p,
                VmPower::Paused | VmPower::IoError | VmPower::GuestSuspended
            ) =>
        {
            // PVE refuses a graceful shutdown of a VM whose vCPUs are stopped.
            if !settings.hard_stop {
                return Err(SkipReason::VmState {
                    state: p.as_str().to_string(),
                    why: "a VM in this state cannot be shut down gracefully; stop_mode \"stop\" would stop it hard".into(),
                });
            }
            Some(stop(p.as_str()))
        }
        (_, Live::Other(p)) => {
            let why = match p {
                VmPower::Paused | VmPower::GuestSuspended => {
                    "left as it is: the agent never resumes a VM"
                }
                VmPower::IoError => {
                    "left as it is: a VM stopped on a disk error is never resumed automatically"
                }
                VmPower::Migrating => "left as it is while it migrates",
                _ => "left as it is: the agent does not act on a VM in this state",
            };
            return Err(SkipReason::VmState {
                state: p.as_str().to_string(),
                why: why.into(),
            });
        }
        _ => None,
    })
}

/// The config update the desired state asks for (with the fields already pending), or
/// why the entry cannot be applied.
fn config_action(
    spec: &GuestSpec,
    guest: &ActualGuest,
    actual: &ActualSpec,
    live: &Live,
) -> Result<(Option<Action>, Vec<Field>), String> {
    let (params, changes, pending) = config_drift(spec, actual);
    if params.is_empty() {
        return Ok((None, pending));
    }
    if guest.kind == GuestKind::Qemu && spec.balloon.is_none() {
        // PVE refuses memory below an explicit balloon target unless the same request
        // sets balloon (docs/proxmox-api.md §9).
        if let (Some(want), Some(balloon)) = (
            params.get("memory").and_then(|m| m.parse::<u64>().ok()),
            actual.balloon.filter(|b| *b > 0),
        ) {
            if want < balloon {
                return Err(format!(
                    "memory {want} is below the VM's balloon target {balloon}: add \"balloon\" to its desired entry"
                ));
            }
        }
    }
    let hotplug = |keys: &[&str]| keys.iter().any(|k| params.contains_key(*k));
    let via_task = guest.kind == GuestKind::Qemu
        && matches!(live, Live::Running)
        && ((actual.hotplug_memory && hotplug(&["memory", "balloon"]))
            || (actual.hotplug_cpu && hotplug(&["cores", "sockets"])));
    Ok((
        Some(Action {
            vmid: guest.vmid,
            guest: guest.kind,
            kind: ActionKind::SetConfig,
            params,
            via_task,
            key: None,
            guard: None,
            reason: changes.join(", "),
        }),
        pending,
    ))
}

/// Compares the managed fields; returns the update's parameters (with the digest), the
/// human-readable changes, and the fields whose desired value is already pending.
fn config_drift(spec: &GuestSpec, actual: &ActualSpec) -> (Params, Vec<String>, Vec<Field>) {
    let mut params = Params::new();
    let mut changes = Vec::new();
    let mut pending = Vec::new();
    let mut delete = Vec::new();
    for field in Field::ALL {
        let Some(drift) = field.drift(spec, actual) else {
            continue;
        };
        if actual.pending.contains(&field) {
            pending.push(field);
            continue;
        }
        changes.push(format!("{} {} -> {}", field.name(), drift.from, drift.to));
        match drift.wire {
            Some(value) => {
                params.insert(field.name().into(), value);
            }
            None => delete.push(field.name()),
        }
    }
    if !delete.is_empty() {
        params.insert("delete".into(), delete.join(","));
    }
    if !params.is_empty() {
        params.insert("digest".into(), actual.digest.clone());
    }
    (params, changes, pending)
}
