//! A VM's config as `GET .../qemu/{vmid}/config` returns it (docs/proxmox-api.md §9.3),
//! with qemu-server's defaults for absent keys, and the `memory` property string.

use crate::pve::perl;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

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
