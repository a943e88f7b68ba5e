//! What the PVE API returns, decoded tolerantly (numbers and booleans through
//! [`super::perl`]) and with unknown fields ignored, since PVE adds fields over time.
//!
//! Absent fields keep PVE's meaning: absent `cores` is "all host cores" and stays
//! `None`; absent `swap` is 0 and absent `onboot` is false, exposed through
//! [`LxcConfig::effective_swap`] and [`LxcConfig::effective_onboot`].

use super::messages::TaskFailure;
use super::perl;
use super::{Upid, Vmid};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// A guest's run state. The node's guest lists report only `running` and `stopped`
/// (for a VM: whether a QEMU process exists; its QMP state is
/// [`super::qemu::QmpStatus`]); anything else (cluster resources' `unknown`, or a VM's
/// `paused` there) is kept as text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PowerState {
    Running,
    Stopped,
    Unknown(String),
}

impl PowerState {
    pub fn as_str(&self) -> &str {
        match self {
            PowerState::Running => "running",
            PowerState::Stopped => "stopped",
            PowerState::Unknown(s) => s,
        }
    }

    pub fn parse(s: &str) -> PowerState {
        match s {
            "running" => PowerState::Running,
            "stopped" => PowerState::Stopped,
            other => PowerState::Unknown(other.to_string()),
        }
    }
}

wire_word!(PowerState);

/// One entry of `GET /nodes/{node}/lxc` (docs/proxmox-api.md §3.1). Sizes are in bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuestEntry {
    pub vmid: Vmid,
    pub status: PowerState,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub lock: Option<String>,
    #[serde(default, deserialize_with = "perl::de_flag")]
    pub template: bool,
    /// The raw `;`-separated config string.
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub tags: Option<String>,
    /// `cores`, else `cpulimit`, else the host CPU count: not the config's `cores`.
    #[serde(default, deserialize_with = "perl::de_opt_f64")]
    pub cpus: Option<f64>,
    #[serde(default, deserialize_with = "perl::de_opt_u64")]
    pub maxmem: Option<u64>,
    #[serde(default, deserialize_with = "perl::de_opt_u64")]
    pub maxswap: Option<u64>,
    #[serde(default, deserialize_with = "perl::de_opt_u64")]
    pub uptime: Option<u64>,
}

/// `GET /nodes/{node}/lxc/{vmid}/config` (docs/proxmox-api.md §4.1). Only keys that are set come
/// back; `memory` and `swap` are MiB. Keys the agent does not manage are in `other`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LxcConfig {
    /// `None` means no cpuset limit: all host cores.
    #[serde(default, deserialize_with = "perl::de_opt_u32")]
    pub cores: Option<u32>,
    #[serde(default, deserialize_with = "perl::de_opt_u64")]
    pub memory: Option<u64>,
    #[serde(default, deserialize_with = "perl::de_opt_u64")]
    pub swap: Option<u64>,
    #[serde(default, deserialize_with = "perl::de_opt_bool")]
    pub onboot: Option<bool>,
    /// As PVE returns it: one `\n` after every line.
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub tags: Option<String>,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub hostname: Option<String>,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub lock: Option<String>,
    #[serde(default, deserialize_with = "perl::de_flag")]
    pub template: bool,
    /// SHA-1 of the whole config file; send it back to guard a write.
    pub digest: String,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl LxcConfig {
    /// Swap in MiB: an absent key means 0, not the schema's 512 (docs/proxmox-api.md §4.3).
    pub fn effective_swap(&self) -> u64 {
        self.swap.unwrap_or(0)
    }

    /// Absent `onboot` means false.
    pub fn effective_onboot(&self) -> bool {
        self.onboot.unwrap_or(false)
    }

    /// Memory in MiB: PVE falls back to 512 when the key is absent.
    pub fn effective_memory(&self) -> u64 {
        self.memory.unwrap_or(512)
    }
}

/// `GET /nodes/{node}/lxc/{vmid}/status/current` (docs/proxmox-api.md §3.2).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GuestStatus {
    pub vmid: Vmid,
    pub status: PowerState,
    pub name: Option<String>,
    pub lock: Option<String>,
    pub template: bool,
    /// The raw `;`-separated config string.
    pub tags: Option<String>,
    /// Whether the HA stack manages the guest; then power calls only queue requests.
    pub ha_managed: bool,
    /// The HA state (`started`, `stopped`, `request_stop`, ...) when managed.
    pub ha_state: Option<String>,
}

/// A guest's `status/current`, of either kind, as far as a decision on its power
/// needs ([`crate::pve::Client::guest_status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusNow {
    pub status: PowerState,
    /// A VM's state from `status`, `qmpstatus` and `lock`; `None` for a container.
    pub vm_power: Option<super::VmPower>,
    pub name: Option<String>,
    /// The raw `;`-separated config string.
    pub tags: Option<String>,
    pub lock: Option<String>,
    pub ha_managed: bool,
    pub ha_state: Option<String>,
}

impl From<GuestStatus> for StatusNow {
    fn from(s: GuestStatus) -> StatusNow {
        StatusNow {
            status: s.status,
            vm_power: None,
            name: s.name,
            tags: s.tags,
            lock: s.lock,
            ha_managed: s.ha_managed,
            ha_state: s.ha_state,
        }
    }
}

impl From<super::VmStatus> for StatusNow {
    fn from(s: super::VmStatus) -> StatusNow {
        StatusNow {
            status: s.status,
            vm_power: Some(s.power),
            name: s.name,
            tags: s.tags,
            lock: s.lock,
            ha_managed: s.ha_managed,
            ha_state: s.ha_state,
        }
    }
}

/// The wire form of [`GuestStatus`]: `vmid` may be missing and HA is nested.
#[derive(Deserialize)]
pub(crate) struct RawGuestStatus {
    #[serde(default)]
    vmid: Option<Vmid>,
    status: PowerState,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    lock: Option<String>,
    #[serde(default, deserialize_with = "perl::de_flag")]
    template: bool,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    tags: Option<String>,
    #[serde(default)]
    ha: Option<RawHa>,
}

/// The `ha` object of a status answer: `{"managed":0}` or `{"managed":1,"state":...}`.
#[derive(Deserialize)]
pub(crate) struct RawHa {
    #[serde(default, deserialize_with = "perl::de_flag")]
    pub(crate) managed: bool,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub(crate) state: Option<String>,
}

impl RawGuestStatus {
    /// Completes the status with the vmid that was asked for, if the answer lacks one.
    pub(crate) fn into_status(self, asked: Vmid) -> GuestStatus {
        let (ha_managed, ha_state) = match self.ha {
            Some(ha) => (ha.managed, ha.state),
            None => (false, None),
        };
        GuestStatus {
            vmid: self.vmid.unwrap_or(asked),
            status: self.status,
            name: self.name,
            lock: self.lock,
            template: self.template,
            tags: self.tags,
            ha_managed,
            ha_state,
        }
    }
}

/// One entry of `GET /nodes/{node}/lxc/{vmid}/pending` (docs/proxmox-api.md §4.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingEntry {
    pub key: String,
    /// The active value.
    #[serde(default)]
    pub value: Option<Value>,
    /// The value waiting to be applied.
    #[serde(default)]
    pub pending: Option<Value>,
    /// 1 = pending delete, 2 = forced delete.
    #[serde(default, deserialize_with = "perl::de_opt_u8")]
    pub delete: Option<u8>,
}

impl PendingEntry {
    /// Whether something is waiting for this key (a new value or a delete).
    pub fn is_pending(&self) -> bool {
        self.pending.is_some() || self.delete.is_some_and(|d| d > 0)
    }
}

/// One guest from `GET /cluster/resources?type=vm` (docs/proxmox-api.md §3.3). `status` and
/// metrics can be ~10 s stale or `unknown`; `lock` and `tags` are current. For a VM,
/// `status` is its QMP run state (`paused`, `prelaunch`, ...; docs/proxmox-api.md §9.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterResource {
    /// `lxc/101` or `qemu/100`.
    pub id: String,
    pub vmid: Vmid,
    /// `lxc` or `qemu`.
    #[serde(rename = "type")]
    pub kind: String,
    pub node: String,
    #[serde(
        default = "unknown_status",
        deserialize_with = "perl::de_string_or_empty"
    )]
    pub status: String,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "perl::de_flag")]
    pub template: bool,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub lock: Option<String>,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub tags: Option<String>,
    /// The CRM state, only for HA resources.
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub hastate: Option<String>,
}

/// One node of `/cluster/resources?type=node`. Every node of the cluster is listed,
/// whatever the token may audit (pve-manager `PVE/API2/Cluster.pm` `resources`,
/// `PVE/API2Tools.pm` `extract_node_stats`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ClusterNode {
    pub node: String,
    /// `online`, `offline` (a cluster member that is not), or `unknown` (no status
    /// figures from it yet).
    #[serde(
        default = "unknown_status",
        deserialize_with = "perl::de_string_or_empty"
    )]
    pub status: String,
}

impl ClusterResource {
    /// The guest's kind from `type`.
    pub fn guest_kind(&self) -> Option<super::GuestKind> {
        super::GuestKind::parse(&self.kind)
    }
}

fn unknown_status() -> String {
    "unknown".to_string()
}

/// Whether a task's process still exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskRunState {
    Running,
    Stopped,
}

/// How a finished task ended. `OK` and `WARNINGS: n` are both success
/// (docs/proxmox-api.md §7.3; pve-common `status_is_error`); anything else is the error
/// text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskOutcome {
    Ok,
    /// Succeeded, but logged this many warnings: the caller should log them.
    Warnings(u32),
    Failed(String),
}

impl TaskOutcome {
    /// Reads an exit status: `OK`, `WARNINGS: 2`, or an error text.
    pub fn from_exit_status(s: &str) -> TaskOutcome {
        let s = s.trim();
        if s == "OK" {
            return TaskOutcome::Ok;
        }
        if let Some(n) = s.strip_prefix("WARNINGS:") {
            if let Ok(n) = n.trim().parse() {
                return TaskOutcome::Warnings(n);
            }
        }
        TaskOutcome::Failed(s.to_string())
    }

    pub fn is_success(&self) -> bool {
        !matches!(self, TaskOutcome::Failed(_))
    }

    /// The failure classified (`CT is locked (backup)` is [`TaskFailure::Locked`]).
    pub fn failure(&self) -> Option<TaskFailure> {
        match self {
            TaskOutcome::Failed(msg) => Some(TaskFailure::classify(msg)),
            _ => None,
        }
    }
}

impl fmt::Display for TaskOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskOutcome::Ok => f.write_str("OK"),
            TaskOutcome::Warnings(n) => write!(f, "WARNINGS: {n}"),
            TaskOutcome::Failed(msg) => f.write_str(msg),
        }
    }
}

/// `GET /nodes/{node}/tasks/{upid}/status` (docs/proxmox-api.md §7.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub upid: Upid,
    pub status: TaskRunState,
    /// Present once stopped: `OK`, `WARNINGS: n`, or the error text.
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub exitstatus: Option<String>,
}

impl TaskStatus {
    /// `None` while running. A stopped task without an exit status counts as failed.
    pub fn outcome(&self) -> Option<TaskOutcome> {
        match self.status {
            TaskRunState::Running => None,
            TaskRunState::Stopped => Some(match &self.exitstatus {
                Some(s) => TaskOutcome::from_exit_status(s),
                None => TaskOutcome::Failed("task stopped without an exit status".into()),
            }),
        }
    }
}

/// One entry of `GET /nodes/{node}/tasks`, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskListEntry {
    pub upid: Upid,
    /// The worker type, e.g. `vzstart`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The worker id: the vmid for guest tasks, may be empty.
    #[serde(default, deserialize_with = "perl::de_string_or_empty")]
    pub id: String,
    #[serde(deserialize_with = "perl::de_i64")]
    pub starttime: i64,
    /// Present once the task has finished.
    #[serde(default, deserialize_with = "perl::de_opt_i64")]
    pub endtime: Option<i64>,
    /// The exit status, or `RUNNING` while active.
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub status: Option<String>,
}

/// Filters for [`super::client::Client::tasks`]; `None` leaves a filter out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskQuery {
    pub vmid: Option<Vmid>,
    /// A task type such as `vzstart`.
    pub typefilter: Option<String>,
    /// Unix time: only tasks started at or after it.
    pub since: Option<i64>,
    /// `active`, `archive` or `all`.
    pub source: Option<String>,
    pub limit: Option<u32>,
}

/// `GET /version`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Version {
    #[serde(deserialize_with = "perl::de_string_or_empty")]
    pub version: String,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub release: Option<String>,
}

/// A power action, named by its path segment under `.../status/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PowerOp {
    Start,
    Stop,
    Shutdown,
}

impl PowerOp {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerOp::Start => "start",
            PowerOp::Stop => "stop",
            PowerOp::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for PowerOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
