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
use super::types::RunState;
use super::Vmid;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
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

impl fmt::Display for QmpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for QmpStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for QmpStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(QmpStatus::parse(&String::deserialize(d)?))
    }
}

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
        status: &RunState,
        qmpstatus: Option<&QmpStatus>,
        lock: Option<&str>,
    ) -> Option<VmPower> {
        match status {
            RunState::Stopped if lock == Some("suspended") => Some(VmPower::Hibernated),
            RunState::Stopped => Some(VmPower::Stopped),
            RunState::Running => Some(match qmpstatus? {
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
            RunState::Unknown(_) => None,
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

    /// As a [`RunState`]: running, stopped, or the state's name as unknown text.
    pub fn run_state(&self) -> RunState {
        match self {
            VmPower::Running => RunState::Running,
            VmPower::Stopped => RunState::Stopped,
            other => RunState::Unknown(other.as_str().to_string()),
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
    pub status: RunState,
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
    pub status: RunState,
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
    status: RunState,
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

/// MiB from a `memory` value: a JSON number (before qemu-server 8.0.8), or a property
/// string whose default key is `current`: `"2048"`, `"current=2048"`. Other keys of the
/// property string are ignored. Works on pending values too.
pub fn memory_mib(v: &Value) -> Result<u64, String> {
    let text = match v {
        Value::String(s) => s.as_str(),
        other => return perl::to_u64(other),
    };
    let bad = || format!("expected memory in MiB like \"2048\" or \"current=2048\", got {text:?}");
    let mut found = None;
    for part in text.split(',').map(str::trim) {
        let value = match part.split_once('=') {
            Some(("current", v)) => v,
            Some(_) => continue,
            None => part,
        };
        found = Some(value.parse::<u64>().map_err(|_| bad())?);
    }
    found.ok_or_else(bad)
}

fn de_opt_memory<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => memory_mib(&v).map(Some).map_err(D::Error::custom),
    }
}

/// `GET /nodes/{node}/qemu/{vmid}/config` (docs/proxmox-api.md §9.3). Only keys that are
/// set come back; sizes are MiB. Keys the agent does not manage are in `other`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmConfig {
    /// Cores per socket; absent means 1.
    #[serde(default, deserialize_with = "perl::de_opt_u32")]
    pub cores: Option<u32>,
    /// Absent means 1.
    #[serde(default, deserialize_with = "perl::de_opt_u32")]
    pub sockets: Option<u32>,
    /// vCPUs plugged at start (at most sockets × cores); absent or 0 means all.
    #[serde(default, deserialize_with = "perl::de_opt_u32")]
    pub vcpus: Option<u32>,
    /// MiB; absent means 512.
    #[serde(default, deserialize_with = "de_opt_memory")]
    pub memory: Option<u64>,
    /// MiB: absent means a balloon device with target = memory; 0 means no balloon
    /// device; more is the auto-ballooning minimum.
    #[serde(default, deserialize_with = "perl::de_opt_u64")]
    pub balloon: Option<u64>,
    #[serde(default, deserialize_with = "perl::de_opt_bool")]
    pub numa: Option<bool>,
    /// The hotplug features (`network,disk,usb` when absent); see [`Hotplug`].
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub hotplug: Option<String>,
    /// The guest agent property string (`1`, `enabled=1,type=virtio`, ...).
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub agent: Option<String>,
    #[serde(default, deserialize_with = "perl::de_opt_bool")]
    pub onboot: Option<bool>,
    /// As PVE returns it: trailing whitespace already stripped.
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub tags: Option<String>,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub name: Option<String>,
    /// `[order=]N[,up=N][,down=N]`.
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub startup: Option<String>,
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub lock: Option<String>,
    #[serde(default, deserialize_with = "perl::de_flag")]
    pub template: bool,
    /// The saved RAM state of a hibernated VM.
    #[serde(default, deserialize_with = "perl::de_opt_string")]
    pub vmstate: Option<String>,
    /// SHA-1 of the whole config file; send it back to guard a write.
    pub digest: String,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl VmConfig {
    /// Cores per socket: absent means 1 (not "all host cores" as for containers).
    pub fn effective_cores(&self) -> u32 {
        self.cores.unwrap_or(1)
    }

    /// Sockets: absent means 1.
    pub fn effective_sockets(&self) -> u32 {
        self.sockets.unwrap_or(1)
    }

    /// The most vCPUs the VM can have: sockets × cores.
    pub fn max_vcpus(&self) -> u32 {
        self.effective_sockets()
            .saturating_mul(self.effective_cores())
    }

    /// Memory in MiB: 512 when the key is absent.
    pub fn effective_memory(&self) -> u64 {
        self.memory.unwrap_or(512)
    }

    /// Absent `onboot` means false.
    pub fn effective_onboot(&self) -> bool {
        self.onboot.unwrap_or(false)
    }

    /// The hotplug features in force.
    pub fn hotplug_features(&self) -> Hotplug {
        Hotplug::parse(self.hotplug.as_deref())
    }

    /// Whether the guest agent is enabled in this config (`agent: 1`,
    /// `enabled=1,...`). A disabled agent's other properties are ignored, as PVE does.
    pub fn agent_enabled(&self) -> bool {
        let Some(agent) = self.agent.as_deref() else {
            return false;
        };
        let enabled = agent
            .split(',')
            .find_map(|part| match part.split_once('=') {
                Some(("enabled", v)) => Some(v),
                Some(_) => None,
                None => Some(part),
            });
        enabled.is_some_and(|v| perl::to_bool(&Value::String(v.to_string())).unwrap_or(false))
    }

    /// Hibernated: the RAM state is saved (`lock: suspended` or `vmstate` set).
    pub fn is_hibernated(&self) -> bool {
        self.lock.as_deref() == Some("suspended") || self.vmstate.is_some()
    }

    /// The `down=` of `startup`, when set and not 0: the shutdown timeout PVE uses when
    /// a shutdown call gives none (else 60 s).
    pub fn startup_down(&self) -> Option<u64> {
        let startup = self.startup.as_deref()?;
        startup
            .split(',')
            .find_map(|p| p.trim().strip_prefix("down="))
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|d| *d > 0)
    }
}

/// qemu-server's hotplug features (`hotplug`): `1` or absent is
/// `network,disk,usb`, `0` is none (qemu-server `parse_hotplug_features`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hotplug {
    pub network: bool,
    pub disk: bool,
    pub cpu: bool,
    pub memory: bool,
    pub usb: bool,
    pub cloudinit: bool,
}

impl Hotplug {
    /// From a `hotplug` value; `None` is the default. Unknown words are ignored.
    pub fn parse(v: Option<&str>) -> Hotplug {
        let v = match v.map(str::trim) {
            None | Some("1") => "network,disk,usb",
            Some(v) => v,
        };
        let mut h = Hotplug::default();
        for f in v.split([',', ';', ' ']).filter(|f| !f.is_empty()) {
            match f {
                "network" => h.network = true,
                "disk" => h.disk = true,
                "cpu" => h.cpu = true,
                "memory" => h.memory = true,
                "usb" => h.usb = true,
                "cloudinit" => h.cloudinit = true,
                _ => {}
            }
        }
        h
    }
}

#[cfg(test)]
mod tests;
