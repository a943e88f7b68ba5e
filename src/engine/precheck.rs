//! The last look before a power action: a fresh read of the guest, right before the
//! call.
//!
//! A job may wait in the queue behind others, or for its startup stage, while an
//! operator tags, renames or locks the guest, hands it to HA, starts or stops it by
//! hand, or the node starts all its guests. What the pass read is stale by then, so a
//! power action is sent only if its [`Guard`] still holds against the guest's
//! `status/current` and the node runs no start-all or stop-all. A config update needs
//! no such look: its digest makes the node refuse it if the config changed.

use super::observe::bulk_task;
use crate::action::{Action, ActionKind, Guard};
use crate::lanes::Outcome;
use crate::plan;
use crate::pve::{Client, PowerState, VmPower};

/// What the last look says.
#[derive(Debug)]
pub enum Look {
    /// Send it.
    Go,
    /// The guest is already where the action would take it: nothing to send.
    AlreadySo(String),
    /// Do not send it; this is why.
    Stop(Outcome),
}

/// The guest as a fresh read shows it, for both kinds.
struct Fresh {
    name: Option<String>,
    tags: Option<String>,
    lock: Option<String>,
    ha_managed: bool,
    ha_state: Option<String>,
    /// Where the guest is, as the action sees it.
    power: Power,
}

#[derive(Debug, PartialEq)]
enum Power {
    Running,
    Stopped,
    /// A VM state the agent leaves alone, or a status it does not know.
    Other(String),
    /// A VM whose vCPUs are stopped: a hard stop may still end it.
    Halted(String),
}

/// Takes the last look at `action`'s guest.
pub fn look(client: &Client, node: &str, action: &Action, guard: &Guard) -> Look {
    let fresh = match read(client, node, action) {
        Ok(fresh) => fresh,
        Err(e) if e.is_config_missing() => return Look::Stop(Outcome::Moved(e.to_string())),
        Err(e) => {
            return Look::Stop(Outcome::Failed(format!(
                "cannot read the guest right before acting: {e}"
            )))
        }
    };
    let changed = |why: String| Look::Stop(Outcome::Blocked(format!("since planned: {why}")));
    if let Some(reason) = plan::gate_by(guard, fresh.name.as_deref(), fresh.tags.as_deref()) {
        return changed(reason.to_string());
    }
    if let Some(lock) = &fresh.lock {
        return changed(format!("locked ({lock})"));
    }
    if fresh.ha_managed && !guard.ha_request {
        return changed("handed to HA: ha-manager owns it".into());
    }
    let already =
        |state: &str| Look::AlreadySo(format!("already {state}, as read right before the call"));
    match (action.kind, &fresh.power) {
        (ActionKind::Start, Power::Running) => return already("running"),
        (ActionKind::Shutdown | ActionKind::Stop, Power::Stopped) => return already("stopped"),
        (ActionKind::Start, Power::Stopped)
        | (ActionKind::Shutdown | ActionKind::Stop, Power::Running)
        | (ActionKind::Stop, Power::Halted(_))
        | (ActionKind::SetConfig, _) => {}
        (_, Power::Other(state) | Power::Halted(state)) => {
            return changed(format!("it is {state}, which the agent leaves alone"))
        }
    }
    let ha_state = fresh.ha_state.as_deref().filter(|_| fresh.ha_managed);
    if let Some(state) = ha_state.filter(|s| plan::ha_heads_for(s, action.kind)) {
        return changed(format!("HA already carries it out (ha state {state})"));
    }
    if let Some(task) = bulk_task(client, node) {
        return changed(format!("the node runs {task}; power actions wait for it"));
    }
    Look::Go
}

fn read(client: &Client, node: &str, action: &Action) -> Result<Fresh, crate::pve::ApiError> {
    let s = client.guest_status(action.guest, node, action.vmid)?;
    // A resource set to `ignored` is not HA's (its power calls act directly), as the
    // plan takes it; PVE reads it as unmanaged already, and this holds if an answer
    // still gives its state.
    let ha_managed = s.ha_managed && s.ha_state.as_deref() != Some("ignored");
    let power = match (s.vm_power, s.status) {
        (None, PowerState::Running) | (Some(VmPower::Running), _) => Power::Running,
        (None, PowerState::Stopped) | (Some(VmPower::Stopped), _) => Power::Stopped,
        (None, PowerState::Unknown(s)) => Power::Other(format!("in status {s:?}")),
        (Some(p @ (VmPower::Paused | VmPower::IoError | VmPower::GuestSuspended)), _) => {
            Power::Halted(p.as_str().to_string())
        }
        (Some(p), _) => Power::Other(p.as_str().to_string()),
    };
    Ok(Fresh {
        name: s.name,
        tags: s.tags,
        lock: s.lock,
        ha_managed,
        ha_state: s.ha_state,
        power,
    })
}
