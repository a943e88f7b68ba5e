//! The simulated node's plain data types: how it starts ([`SimOptions`]), its guests
//! ([`SimGuest`], containers and VMs) and its record of each request ([`RequestRecord`]).
//!
//! A leaf: it imports no other module of the simulator.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How the simulated node starts. `Default` is tuned for tests: short task durations, no
/// 401 delay, a fixed token.
#[derive(Clone)]
pub struct SimOptions {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Node names of the simulated cluster; the first is the default node for new guests.
    pub nodes: Vec<String>,
    /// The only accepted API token id, `USER@REALM!TOKENID`.
    pub token_id: String,
    /// Its secret.
    pub token_secret: String,
    /// How long a `vzstart`/`vzstop` (and `qmstart`/`qmstop`) task runs.
    pub task_duration: Duration,
    /// How long a guest takes to shut down cleanly (`vzshutdown`, `qmshutdown`).
    pub shutdown_duration: Duration,
    /// How long a VM's asynchronous config update (`qmconfig`) runs.
    pub config_task_duration: Duration,
    /// How long an HA `hastart`/`hastop` task runs.
    pub ha_task_duration: Duration,
    /// How long after an HA task ends the guest actually changes state.
    pub ha_apply_delay: Duration,
    /// How long a request waits for a guest's config lock (held by a shutdown task).
    pub lock_wait: Duration,
    /// How long every 401 is delayed (PVE: 3 s).
    pub unauthorized_delay: Duration,
    /// Which generation of error bodies to send.
    pub error_style: ErrorStyle,
    /// Send `vmid` as a JSON string in the LXC list and status (PVE before 8.2).
    pub vmid_as_string: bool,
    /// Whether the cluster has quorum.
    pub quorate: bool,
    /// CPU count of the simulated host (`cpus` of guests without `cores`).
    pub host_cpus: u32,
    /// Seed of the fault-injection random number generator.
    pub seed: u64,
    /// Serve HTTPS with these files instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Load guests from this JSON file at start (when it exists) and write them back after
    /// every change.
    pub state_file: Option<PathBuf>,
    /// When the `Sim` drops (and its thread is not already panicking), run `Sim::audit`
    /// and panic with every violation it finds, unless `Sim::allow_violations` was
    /// called. On by default, so that every test checks the agent's promise.
    pub audit_on_drop: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            nodes: vec!["pve1".to_string()],
            token_id: "agent@pve!reconciler".to_string(),
            token_secret: "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b".to_string(),
            task_duration: Duration::from_millis(200),
            shutdown_duration: Duration::from_millis(200),
            config_task_duration: Duration::from_millis(50),
            ha_task_duration: Duration::from_millis(20),
            ha_apply_delay: Duration::from_millis(200),
            lock_wait: Duration::from_millis(500),
            unauthorized_delay: Duration::ZERO,
            error_style: ErrorStyle::Modern,
            vmid_as_string: false,
            quorate: true,
            host_cpus: 8,
            seed: 0x5eed_f00d,
            tls: None,
            state_file: None,
            audit_on_drop: true,
        }
    }
}

impl fmt::Debug for SimOptions {
    // Hand-written so that the token secret never reaches a Debug print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimOptions")
            .field("listen", &self.listen)
            .field("nodes", &self.nodes)
            .field("token_id", &self.token_id)
            .field("token_secret", &"<redacted>")
            .field("task_duration", &self.task_duration)
            .field("shutdown_duration", &self.shutdown_duration)
            .field("config_task_duration", &self.config_task_duration)
            .field("ha_task_duration", &self.ha_task_duration)
            .field("ha_apply_delay", &self.ha_apply_delay)
            .field("lock_wait", &self.lock_wait)
            .field("unauthorized_delay", &self.unauthorized_delay)
            .field("error_style", &self.error_style)
            .field("vmid_as_string", &self.vmid_as_string)
            .field("quorate", &self.quorate)
            .field("host_cpus", &self.host_cpus)
            .field("seed", &self.seed)
            .field("tls", &self.tls)
            .field("state_file", &self.state_file)
            .field("audit_on_drop", &self.audit_on_drop)
            .finish()
    }
}

/// PEM files for the HTTPS listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The two generations of PVE error bodies (pve-http-server
/// `src/PVE/APIServer/Formatter/Standard.pm`: `message` is in the body since 5.2.0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorStyle {
    /// libpve-http-server-perl 5.2.0 and later: `{"data":null,"message":"...\n"}`.
    #[default]
    Modern,
    /// Before 5.2.0: `{"data":null}`; the message is only in the reason phrase.
    Legacy,
}

/// Whether a guest runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    Running,
    Stopped,
}

impl PowerState {
    /// `"running"` or `"stopped"`, as PVE spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Running => "running",
            PowerState::Stopped => "stopped",
        }
    }
}

/// The node's own bulk power task, which `pve-guests.service` runs at boot (`startall`:
/// the guests with `onboot` set, in startup order) and at shutdown (`stopall`): pve-manager
/// `PVE/API2/Nodes.pm` (`startall`, `stopall`), `services/pve-guests.service`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BulkTask {
    StartAll,
    StopAll,
}

impl BulkTask {
    /// The worker type in its UPID and in the task list: `startall` or `stopall`.
    pub fn type_name(self) -> &'static str {
        match self {
            BulkTask::StartAll => "startall",
            BulkTask::StopAll => "stopall",
        }
    }
}

/// A container (pve-container) or a QEMU virtual machine (qemu-server).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimKind {
    #[default]
    Lxc,
    Qemu,
}

impl SimKind {
    /// The path segment and cluster resource type: `lxc` or `qemu`.
    pub fn as_str(self) -> &'static str {
        match self {
            SimKind::Lxc => "lxc",
            SimKind::Qemu => "qemu",
        }
    }
}

/// A VM's QEMU run state as QMP `query-status` reports it (QEMU `qapi/run-state.json`),
/// meaningful while its QEMU process runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QmpState {
    #[default]
    #[serde(rename = "running")]
    Running,
    /// vCPUs stopped (`status/suspend`, a suspend-mode backup).
    #[serde(rename = "paused")]
    Paused,
    /// Started with `-S` and not resumed: a backup of a stopped VM, or `freeze: 1`.
    #[serde(rename = "prelaunch")]
    Prelaunch,
    /// vCPUs stopped on a disk error.
    #[serde(rename = "io-error")]
    IoError,
    /// The guest entered ACPI S3.
    #[serde(rename = "suspended")]
    Suspended,
    /// The guest powered off and QEMU was kept alive (during a backup).
    #[serde(rename = "shutdown")]
    Shutdown,
    #[serde(rename = "inmigrate")]
    InMigrate,
    #[serde(rename = "postmigrate")]
    PostMigrate,
    #[serde(rename = "finish-migrate")]
    FinishMigrate,
    #[serde(rename = "guest-panicked")]
    GuestPanicked,
    #[serde(rename = "internal-error")]
    InternalError,
}

impl QmpState {
    /// As QEMU spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            QmpState::Running => "running",
            QmpState::Paused => "paused",
            QmpState::Prelaunch => "prelaunch",
            QmpState::IoError => "io-error",
            QmpState::Suspended => "suspended",
            QmpState::Shutdown => "shutdown",
            QmpState::InMigrate => "inmigrate",
            QmpState::PostMigrate => "postmigrate",
            QmpState::FinishMigrate => "finish-migrate",
            QmpState::GuestPanicked => "guest-panicked",
            QmpState::InternalError => "internal-error",
        }
    }
}

/// One simulated guest, a container or a VM, with its config as PVE stores it.
///
/// `None` means the key is not set in the config. `description` is kept the way PVE
/// returns it: a container's lines each end in `\n`, a VM's trailing whitespace is
/// stripped. `pending` is the pending section (`[pve:pending]`, a VM's `[PENDING]`):
/// pending values by key, plus a `delete` entry listing pending deletions
/// (`,`-separated). `other` holds every other config key (`ostype`, `rootfs`, `net0`, a
/// VM's `sockets`, `balloon`, `agent`, `hotplug`, ...) as its config-file text.
/// `hostname` and `swap` are container keys; a VM has them `None`.
///
/// Seeding helpers (`SimGuest::vm`, `running`, `paused`, `with_pending`, ...) are in
/// the simulator's `seed` module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimGuest {
    pub vmid: u32,
    pub node: String,
    /// Container or VM.
    pub kind: SimKind,
    /// Whether the guest runs: for a VM, whether its QEMU process exists.
    pub status: PowerState,
    /// VM only: the QMP run state while `status` is running (ignored when stopped).
    pub qmp: QmpState,
    /// VM only: a guest agent answers inside the guest. A shutdown goes through it when
    /// the config enables `agent` too; otherwise through ACPI.
    pub guest_agent: bool,
    /// VM only: the guest OS does not react to the ACPI power button, so a shutdown
    /// without the guest agent runs into its timeout.
    pub ignores_acpi: bool,
    pub hostname: Option<String>,
    pub cores: Option<u32>,
    /// MiB.
    pub memory: Option<u64>,
    /// VM only: the `memory` config text when it is not the bare number (a
    /// `current=2048` written that way); `None` for the bare form.
    pub memory_raw: Option<String>,
    /// MiB.
    pub swap: Option<u64>,
    pub onboot: Option<bool>,
    pub description: Option<String>,
    /// As stored: normalised and `;`-joined.
    pub tags: Option<String>,
    pub lock: Option<String>,
    pub template: bool,
    /// The HA resource's requested state (`started`, `stopped`, `disabled`, `ignored`,
    /// `error`, ...); `None` when the guest is not an HA resource.
    pub ha: Option<String>,
    pub pending: BTreeMap<String, String>,
    pub other: BTreeMap<String, String>,
}

impl Default for SimGuest {
    fn default() -> Self {
        SimGuest::new(100, "pve1")
    }
}

impl SimGuest {
    /// A stopped container with `memory: 512` and `swap: 512`, as `pct create` leaves it.
    pub fn new(vmid: u32, node: &str) -> SimGuest {
        SimGuest {
            vmid,
            node: node.to_string(),
            kind: SimKind::Lxc,
            status: PowerState::Stopped,
            qmp: QmpState::Running,
            guest_agent: false,
            ignores_acpi: false,
            hostname: None,
            cores: None,
            memory: Some(512),
            memory_raw: None,
            swap: Some(512),
            onboot: None,
            description: None,
            tags: None,
            lock: None,
            template: false,
            ha: None,
            pending: BTreeMap::new(),
            other: BTreeMap::new(),
        }
    }

    /// A stopped VM as the web interface creates one: `cores: 1`, `sockets: 1`,
    /// `memory: 2048`, `numa: 0`, a 32 GiB `scsi0`, `net0`, `ostype: l26`; no `balloon`
    /// (the balloon device is on), no `agent`, default `hotplug`.
    pub fn vm(vmid: u32, node: &str) -> SimGuest {
        let mut g = SimGuest::new(vmid, node);
        g.kind = SimKind::Qemu;
        g.cores = Some(1);
        g.memory = Some(2048);
        g.swap = None;
        for (k, v) in [
            ("boot", "order=scsi0;net0".to_string()),
            ("numa", "0".to_string()),
            ("ostype", "l26".to_string()),
            ("scsihw", "virtio-scsi-single".to_string()),
            (
                "scsi0",
                format!("local-lvm:vm-{vmid}-disk-0,iothread=1,size=32G"),
            ),
            (
                "net0",
                format!(
                    "virtio=BC:24:11:01:{:02X}:{:02X},bridge=vmbr0",
                    vmid >> 8 & 0xff,
                    vmid & 0xff
                ),
            ),
            ("sockets", "1".to_string()),
        ] {
            g.other.insert(k.to_string(), v);
        }
        g
    }

    /// Whether this is a VM.
    pub fn is_vm(&self) -> bool {
        self.kind == SimKind::Qemu
    }
}

/// One request the simulated node received.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    /// Arrival order, from 0.
    pub seq: u64,
    pub method: String,
    /// Percent-decoded, without `/api2/json` and without the query string.
    pub path: String,
    /// Query and body parameters, query winning.
    pub params: BTreeMap<String, String>,
    /// The status sent; 0 when the connection was closed without an answer.
    pub status: u16,
    /// The vmid in the path, if any.
    pub vmid: Option<u32>,
    /// The node in the path, if any.
    pub node: Option<String>,
    /// POST, PUT or DELETE.
    pub mutating: bool,
    /// When the request arrived (was read by the node).
    pub at: Instant,
    /// When the node was done with it: the answer made (or the connection closed without
    /// one). `None` while it is still being processed, delays included.
    pub done: Option<Instant>,
    /// Whether the node carried the request out (its handler ran, even if only to refuse
    /// it). False for a reset, a status injected before execution, and a delayed request
    /// the node shut down on.
    pub executed: bool,
    /// The UPID of the task the request started, if it started one.
    pub task: Option<String>,
    /// For a mutating request on a guest: the guest as it was when the request arrived.
    pub guest: Option<SimGuest>,
    /// For a mutating request on a guest: the types (`vzstart`, `hastop`, ...) of the
    /// guest's tasks that were running when the request arrived.
    pub guest_tasks: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_debug_hides_the_secret() {
        let o = SimOptions::default();
        let text = format!("{o:?}");
        assert!(!text.contains(&o.token_secret), "{text}");
        assert!(text.contains("<redacted>") && text.contains(&o.token_id));
    }
}
