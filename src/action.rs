//! The benign actions the agent may take on a guest. There is deliberately no
//! variant that creates, destroys, migrates or reboots.

use crate::pve::{GuestKind, Vmid};
use std::fmt;
use std::str::FromStr;

/// What one action does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    /// `POST .../status/start`.
    Start,
    /// `POST .../status/shutdown` with `timeout` and `forceStop`.
    Shutdown,
    /// `POST .../status/stop`: a hard stop, only when `stop_mode` is `"stop"`.
    Stop,
    /// `PUT .../config`: one request with every drifted field and the digest.
    SetConfig,
}

impl ActionKind {
    pub const ALL: [ActionKind; 4] = [
        ActionKind::Start,
        ActionKind::Shutdown,
        ActionKind::Stop,
        ActionKind::SetConfig,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Start => "start",
            ActionKind::Shutdown => "shutdown",
            ActionKind::Stop => "stop",
            ActionKind::SetConfig => "set_config",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for ActionKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActionKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown action kind {s:?}"))
    }
}

impl serde::Serialize for ActionKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ActionKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

pub use crate::pve::form::Params;

/// One planned action on one guest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Action {
    pub vmid: Vmid,
    /// A container or a virtual machine: which API the action goes to.
    #[serde(default = "lxc")]
    pub guest: GuestKind,
    pub kind: ActionKind,
    pub params: Params,
    /// A VM config update carried out by a task (`POST .../config`) and waited on,
    /// because it hotplugs CPU or memory on a running VM, which can outlast the API
    /// proxy's 30 s (docs/proxmox-api.md §9).
    #[serde(default)]
    pub via_task: bool,
    /// The one-shot key of this action (a desired entry's `once`), which the journal
    /// records with its op so that the action is carried out at most once per guest,
    /// ever; `None` for the ordinary convergent actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Why, for people: `memory 512 -> 1024`.
    pub reason: String,
    /// For a power action: what must still hold when it is sent, checked against a
    /// fresh read of the guest right before the call.
    #[serde(skip)]
    pub guard: Option<Guard>,
}

/// What a power action checks right before it is sent. A job may wait in the queue or
/// for its startup stage while an operator tags, renames or locks the guest, hands it
/// to HA, or the node starts all its guests; what the pass read is stale by then. A
/// config update needs no guard: its digest makes the node refuse it if the config
/// changed since it was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Guard {
    /// The hold tag in force.
    pub hold_tag: Option<String>,
    /// The name the guest must have, when the identity guard is on and the desired
    /// entry names one.
    pub name: Option<String>,
    /// Whether an HA-managed guest may be sent the action (`ha_mode: "request"`).
    pub ha_request: bool,
}

fn lxc() -> GuestKind {
    GuestKind::Lxc
}
