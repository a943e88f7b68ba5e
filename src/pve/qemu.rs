//! What qemu-server's API returns for virtual machines, decoded tolerantly as in
//! [`super::types`], and the VM's power state as a reconciler must read it
//! (docs/proxmox-api.md §9).
//!
//! A VM's list entry says only whether a QEMU process exists (`status`); a paused,
//! prelaunch, io-error or shut-down-but-alive VM is `running` there. The QMP run state
//! (`qmpstatus`) is in `status/current`, and in the list only with `full=1`.
//! [`VmPower`] combines both with the lock into one meaning.
//!
//! Absent config keys keep qemu-server's defaults: `cores` and `sockets` 1, `memory`
//! 512 MiB, `onboot` false ([`VmConfig`]'s `effective_*` methods). `memory` is a
//! property string since qemu-server 8.0.8 (`"2048"` or `"current=2048"`) and a number
//! before; both decode to MiB.

use super::perl;
use super::types::PowerState;
use super::Vmid;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// QEMU's run state as `query-status` reports it (QEMU `qapi/run-state.json`), plus PVE's
/// `stopped` for a VM without a process.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QmpStatus {
    Running,
    Paused,
    Prelaunch,
    IoError,
    Suspended,
    Shutdown,
    InMigrate,
    PostMigrate,
    FinishMigrate,
    /// No QEMU process (PVE's fallback), or QMP did not answer for a stopped VM.
    Stopped,
    /// Any other state (`debug`, `internal-error`, `guest-panicked`, `watchdog`,
    /// `save-vm`, `restore-vm`, `colo`), or one QEMU adds.
    Other(String),
}

impl QmpStatus {
    pub fn as_str(&self) -> &str {
        match self {
            QmpStatus::Running => "running",
            QmpStatus::Paused => "paused",
            QmpStatus::Prelaunch => "prelaunch",
            QmpStatus::IoError => "io-error",
            QmpStatus::Suspended => "suspended",
            QmpStatus::Shutdown => "shutdown",
            QmpStatus::InMigrate => "inmigrate",
            QmpStatus::PostMigrate => "postmigrate",
            QmpStatus::FinishMigrate => "finish-migrate",
            QmpStatus::Stopped => "stopped",
            QmpStatus::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> QmpStatus {
        match s {
            "running" => QmpStatus::Running,
            "paused" => QmpStatus::Paused,
            "prelaunch" => QmpStatus::Prelaunch,
            "io-error" => QmpStatus::IoError,
            "suspended" => QmpStatus::Suspended,
            "shutdown" => QmpStatus::Shutdown,
            "inmigrate" => QmpStatus::InMigrate,
            "postmigrate" => QmpStatus::PostMigrate,
            "finish-migrate" => QmpStatus::FinishMigrate,
            "stopped" => QmpStatus::Stopped,
            other => QmpStatus::Other(other.to_string()),
        }
    }
}

wire_word!(QmpStatus);

/// What a VM's `status` × `qmpstatus` × `lock` mean to a reconciler
/// (docs/proxmox-api.md §9.2). Only [`VmPower::Running`] and [`VmPower::Stopped`] are
/// states the agent converges from; every other one is left alone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VmPower {
    /// No QEMU process.
    Stopped,
    /// The guest runs.
    Running,
    /// No process, its RAM saved to disk (`lock: suspended`): a start restores it
    /// without applying pending changes; config writes are refused.
    Hibernated,
    /// vCPUs stopped (`paused`: `status/suspend`, a suspend-mode backup, a job left it
    /// so). It needs a resume, not a start; a graceful shutdown is refused.
    Paused,
    /// vCPUs stopped on a disk error (`io-error`). Never resume it automatically.
    IoError,
    /// The guest put itself to sleep (ACPI S3: `suspended`); a graceful shutdown is
    /// refused.
    GuestSuspended,
    /// A backup of a stopped VM: QEMU runs in `prelaunch` under `lock: backup`. It
    /// counts as stopped (HA counts it so too) and vzdump stops it again afterwards; a
    /// start would boot it.
    BackupOfStopped,
    /// QEMU started with `-S` (config `freeze: 1`), waiting for a resume.
    Prelaunch,
    /// The guest powered off but its QEMU process is kept (`shutdown`: during a backup,
    /// until the backup ends).
    ShutDownInside,
    /// A live migration phase (`inmigrate`, `postmigrate`, `finish-migrate`).
    Migrating,
    /// Any other QMP state (`guest-panicked`, `internal-error`, `save-vm`, ...).
    Other(String),
}

impl VmPower {
    /// The meaning of a process state (`status`), a QMP run state and a lock.
    /// `None` when it cannot be told: a QEMU process exists but no `qmpstatus` was
    /// read (the plain list), or `status` is neither `running` nor `stopped`.
    ///
    /// Caveat: when QMP does not answer within PVE's ~3 s budget, PVE reports
    /// `qmpstatus` equal to `status`, so a paused VM with a hung monitor reads as
    /// [`VmPower::Running`].
    pub fn from_parts(
        status: &PowerState,
        qmpstatus: Option<&QmpStatus>,
        lock: Option<&str>,
    ) -> Option<VmPower> {
        match status {
            PowerState::Stopped if lock == Some("suspended") => Some(VmPower::Hibernated),
            PowerState::Stopped => Some(VmPower::Stopped),
            PowerState::Running => Some(match qmpstatus? {
                QmpStatus::Running => VmPower::Running,
                QmpStatus::Paused => VmPower::Paused,
                QmpStatus::IoError => VmPower::IoError,
                QmpStatus::Suspended => VmPower::GuestSuspended,
                QmpStatus::Prelaunch if lock == Some("backup") => VmPower::BackupOfStopped,
                QmpStatus::Prelaunch => VmPower::Prelaunch,
                QmpStatus::Shutdown => VmPower::ShutDownInside,
                QmpStatus::InMigrate | QmpStatus::PostMigrate | QmpStatus::FinishMigrate => {
                    VmPower::Migrating
                }
                other @ (QmpStatus::Stopped | QmpStatus::Other(_)) => {
                    VmPower::Other(other.as_str().to_string())
                }
            }),
            PowerState::Unknown(_) => None,
        }
    }

    /// The guest runs: the state a desired `running` is met by.
    pub fn is_running(&self) -> bool {
        *self == VmPower::Running
    }

    /// No process and nothing saved: the state a desired `stopped` is met by.
    pub fn is_stopped(&self) -> bool {
        *self == VmPower::Stopped
    }

    /// Whether a QEMU process exists (the list's `status: running`).
    pub fn has_process(&self) -> bool {
        !matches!(self, VmPower::Stopped | VmPower::Hibernated)
    }

    /// Whether the agent must leave the VM alone: anything but running or stopped.
    /// Someone (an admin, a backup, a migration, the guest itself) put it there, and
    /// a start or shutdown would fight them or fail.
    pub fn leave_alone(&self) -> bool {
        !matches!(self, VmPower::Running | VmPower::Stopped)
    }

    /// As a [`PowerState`]: running, stopped, or the state's name as unknown text.
    pub fn run_state(&self) -> PowerState {
        match self {
            VmPower::Running => PowerState::Running,
            VmPower::Stopped => PowerState::Stopped,
            other => PowerState::Unknown(other.as_str().to_string()),
        }
    }

    /// A short name: `running`, `stopped`, `hibernated`, `paused`, `io-error`,
    /// `suspended`, `backup-prelaunch`, `prelaunch`, `shutdown`, `migrating`, or the
    /// QMP state.
    pub fn as_str(&self) -> &str {
        match self {
            VmPower::Stopped => "stopped",
            VmPower::Running => "running",
            VmPower::Hibernated => "hibernated",
            VmPower::Paused => "paused",
            VmPower::IoError => "io-error",
            VmPower::GuestSuspended => "suspended",
            VmPower::BackupOfStopped => "backup-prelaunch",
            VmPower::Prelaunch => "prelaunch",
            VmPower::ShutDownInside => "shutdown",
            VmPower::Migrating => "migrating",
            VmPower::Other(s) => s,
        }
    }
}

impl Serialize for VmPower {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for VmPower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `GET /nodes/{node}/qemu` (docs/proxmox-api.md §9.1). Sizes are bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmEntry {
    pub vmid: Vmid,
    /// Whether a QEMU process exists: `running` also for a paused or prelaunch VM.
    pub status: PowerState,
    /// Only with `full=1`.
    #[serde(default)]
    pub qmpstatus: Option<QmpStatus>,
    /// The `name` option, or `VM <vmid>`.
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub lock: Option<String>,
    #[serde(default, deserialize_with = "perl::de_flag")]
    pub template: bool,
    /// The raw `;`-separated config string.
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub tags: Option<String>,
    /// `vcpus` if set, else sockets × cores capped at the host's CPU count.
    #[serde(default, deserialize_with = "perl::de_opt_f64")]
    pub cpus: Option<f64>,
    /// The active config's memory (512 MiB if unset); with `full=1` the balloon
    /// driver's maximum when it answers.
    #[serde(default, deserialize_with = "perl::de_opt_u64")]
    pub maxmem: Option<u64>,
    #[serde(default, deserialize_with = "perl::de_opt_u64")]
    pub uptime: Option<u64>,
}

impl VmEntry {
    /// The power state, if the entry tells it: always for a stopped VM, for a running
    /// one only from a `full=1` list.
    pub fn power(&self) -> Option<VmPower> {
        VmPower::from_parts(&self.status, self.qmpstatus.as_ref(), self.lock.as_deref())
    }
}

/// `GET /nodes/{node}/qemu/{vmid}/status/current` (docs/proxmox-api.md §9.1).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VmStatus {
    pub vmid: Vmid,
    pub status: PowerState,
    pub qmpstatus: QmpStatus,
    /// [`VmPower::from_parts`] of the above and the lock.
    pub power: VmPower,
    pub name: Option<String>,
    pub lock: Option<String>,
    pub template: bool,
    pub tags: Option<String>,
    /// Whether the HA stack manages the VM; then power calls only queue requests.
    pub ha_managed: bool,
    /// The HA state (`started`, `stopped`, `request_stop`, ...) when managed.
    pub ha_state: Option<String>,
    /// Whether the guest agent is enabled in the active config. It does not say that an
    /// agent answers inside the guest.
    pub agent: bool,
    pub cpus: Option<f64>,
    pub maxmem: Option<u64>,
    pub uptime: Option<u64>,
}

/// The wire form of [`VmStatus`].
#[derive(Deserialize)]
pub(crate) struct RawVmStatus {
    #[serde(default)]
    vmid: Option<Vmid>,
    status: PowerState,
    #[serde(default)]
    qmpstatus: Option<QmpStatus>,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    lock: Option<String>,
    #[serde(default, deserialize_with = "perl::de_flag")]
    template: bool,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    tags: Option<String>,
    #[serde(default)]
    ha: Option<super::types::RawHa>,
    #[serde(default, deserialize_with = "perl::de_flag")]
    agent: bool,
    #[serde(default, deserialize_with = "perl::de_opt_f64")]
    cpus: Option<f64>,
    #[serde(default, deserialize_with = "perl::de_opt_u64")]
    maxmem: Option<u64>,
    #[serde(default, deserialize_with = "perl::de_opt_u64")]
    uptime: Option<u64>,
}

impl RawVmStatus {
    /// Completes the status: the vmid asked for if the answer lacks one, and the QMP
    /// state PVE would fall back to (`status`) if it lacks that.
    pub(crate) fn into_status(self, asked: Vmid) -> VmStatus {
        let qmpstatus = self
            .qmpstatus
            .unwrap_or_else(|| QmpStatus::parse(self.status.as_str()));
        let power = VmPower::from_parts(&self.status, Some(&qmpstatus), self.lock.as_deref())
            .unwrap_or_else(|| VmPower::Other(self.status.as_str().to_string()));
        let (ha_managed, ha_state) = match self.ha {
            Some(ha) => (ha.managed, ha.state),
            None => (false, None),
        };
        VmStatus {
            vmid: self.vmid.unwrap_or(asked),
            status: self.status,
            qmpstatus,
            power,
            name: self.name,
            lock: self.lock,
            template: self.template,
            tags: self.tags,
            ha_managed,
            ha_state,
            agent: self.agent,
            cpus: self.cpus,
            maxmem: self.maxmem,
            uptime: self.uptime,
        }
    }
}

mod config;

pub use config::{memory_mib, Hotplug, VmConfig};

#[cfg(test)]
mod tests;
