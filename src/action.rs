//! The benign actions the agent may take on a guest. There is deliberately no
//! variant that creates, destroys, migrates or reboots.

use crate::pve::Vmid;
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

    /// The LXC task type a power action starts (`vzstart`...), used to find a task
    /// in the node's task list when its UPID was never recorded.
    pub fn lxc_task_type(self) -> Option<&'static str> {
        match self {
            ActionKind::Start => Some("vzstart"),
            ActionKind::Shutdown => Some("vzshutdown"),
            ActionKind::Stop => Some("vzstop"),
            ActionKind::SetConfig => None,
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
    pub kind: ActionKind,
    pub params: Params,
    /// Why, for people: `memory 512 -> 1024`.
    pub reason: String,
}
