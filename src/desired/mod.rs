//! Desired state: which guests should run or be stopped, and with what config.
//!
//! The file is JSON, schema version 1:
//!
//! ```json
//! {"version": 1,
//!  "guests": [{"vmid": 101, "state": "running", "cores": 2, "memory": 1024, "swap": 512,
//!              "description": "web frontend", "onboot": true, "tags": ["prod", "web"]}]}
//! ```
//!
//! `version` may be left out (it means 1); `guests` is required and may be empty.
//! Each guest needs a `vmid`; every other field is optional, and a field that is
//! left out is not managed: the agent leaves that part of the guest alone. `name`
//! is a label for people and is never sent to Proxmox.
//!
//! This module only parses and validates. A file with any problem is refused as a
//! whole, with every problem listed (up to [`MAX_PROBLEMS`]) so that an
//! operator can fix them in one go; callers keep their last good [`DesiredState`].
//!
//! Positions come from our own small parser in [`crate::json`], because serde_json
//! does not keep them.

mod guest;
mod print;
mod provider;
mod provider_last_good;
mod provider_url;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fuzz;
#[cfg(test)]
mod tests_guest;
#[cfg(test)]
mod tests_syntax;

pub use crate::json::diag::{Problem, MAX_PROBLEMS};
pub use crate::json::Pos;
pub use guest::is_tag;
pub use print::FIELDS;
pub use provider::{
    short_duration, EmptyProvider, FileProvider, Provider, Refresh, SourceError, SourceStatus,
};
pub use provider_last_good::path as last_good_path;
pub use provider_url::{check_content_type, UrlOptions, UrlProvider, FETCH_TIMEOUT};

use crate::json;
use crate::json::diag::{decode, known_members, write_problems, Problems};

use crate::pve::{GuestKind, Vmid};
use json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a desired field cannot apply to a guest of `kind`, if it cannot: `swap` is a
/// container's, `sockets` and `balloon` a virtual machine's.
pub fn field_kind_problem(key: &str, kind: GuestKind) -> Option<String> {
    let (only, other) = match key {
        "swap" => (GuestKind::Lxc, "virtual machine"),
        "sockets" | "balloon" => (GuestKind::Qemu, "container"),
        _ => return None,
    };
    (kind != only).then(|| {
        format!("a {other} has no {key}: remove it from this guest, or check its vmid and type")
    })
}

/// The largest desired-state file read: about 100,000 guests. (Inside `/etc/pve` the
/// cluster file system caps a file at 1 MiB anyway.)
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// The run state a guest should be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunState {
    Running,
    Stopped,
}

impl RunState {
    /// The word used in the file: `running` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One guest's desired state. `None` means "not managed".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestSpec {
    pub vmid: Vmid,
    /// `type`: when given, the guest must be of this kind; when not, the kind is
    /// whatever the live guest is (a vmid is unique in a cluster).
    pub kind: Option<GuestKind>,
    /// The guest's name (a container's hostname, a VM's name). When given, it guards
    /// against a reused vmid: a live guest with another name is left alone. Never sent.
    pub name: Option<String>,
    pub state: Option<RunState>,
    pub cores: Option<u32>,
    /// Virtual machines only.
    pub sockets: Option<u32>,
    /// MiB.
    pub memory: Option<u64>,
    /// MiB; virtual machines only. 0 turns the balloon device off.
    pub balloon: Option<u64>,
    /// MiB; containers only.
    pub swap: Option<u64>,
    pub description: Option<String>,
    pub onboot: Option<bool>,
    /// As written in the file; Proxmox lowercases, sorts and de-duplicates them.
    pub tags: Option<Vec<String>>,
    /// One-shot power actions, each carried out at most once per guest, ever, in the
    /// order given.
    pub once: Vec<OneShot>,
}

/// A one-shot power action: `{"key": "...", "action": "start"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OneShot {
    /// Unique per guest: once its action was carried out (or found needless), it never
    /// runs again.
    pub key: String,
    pub action: OneShotAction,
    /// The node whose agent carries it out. A key's use is journaled on the node
    /// that carried it out, so in a cluster only the named node's agent may: an
    /// agent never carries out a key that names no node when its node is one of
    /// several (after a migration, another node's agent would find it unused).
    pub node: Option<String>,
}

/// What a one-shot action does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OneShotAction {
    Start,
    Shutdown,
    Stop,
}

impl OneShotAction {
    pub fn as_str(self) -> &'static str {
        match self {
            OneShotAction::Start => "start",
            OneShotAction::Shutdown => "shutdown",
            OneShotAction::Stop => "stop",
        }
    }
}

impl GuestSpec {
    /// A spec that manages nothing yet.
    pub fn new(vmid: Vmid) -> GuestSpec {
        GuestSpec {
            vmid,
            kind: None,
            name: None,
            state: None,
            cores: None,
            sockets: None,
            memory: None,
            balloon: None,
            swap: None,
            description: None,
            onboot: None,
            tags: None,
            once: Vec::new(),
        }
    }

    /// A stable 64-bit FNV-1a hash of the managed fields and the name guard, used to
    /// notice that a guest's desired state changed. The value is the same across runs
    /// and builds: it may be stored.
    pub fn fingerprint(&self) -> u64 {
        // Canonical rendering: `vmid=101;`, then one `key=+value;` per managed field
        // in a fixed order (state, cores, memory, swap, description, onboot, tags),
        // `key=-;` when absent, and last `name=<byte length>:<text>;` only when a name
        // is given (so specs without one keep the values they always had). Strings are
        // written as `<byte length>:<text>` and tags joined with `,`, so no content can
        // imitate a field boundary.
        let mut h = Fnv::new();
        h.field("vmid", &self.vmid.to_string());
        h.opt("state", self.state.map(|s| s.as_str().to_string()));
        h.opt("cores", self.cores.map(|n| n.to_string()));
        h.opt("memory", self.memory.map(|n| n.to_string()));
        h.opt("swap", self.swap.map(|n| n.to_string()));
        h.opt(
            "description",
            self.description
                .as_ref()
                .map(|s| format!("{}:{s}", s.len())),
        );
        h.opt("onboot", self.onboot.map(|b| b.to_string()));
        h.opt(
            "tags",
            self.tags.as_ref().map(|tags| {
                tags.iter()
                    .map(|t| format!("{}:{t}", t.len()))
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        );
        if let Some(name) = &self.name {
            h.field("name", &format!("{}:{name}", name.len()));
        }
        // The fields virtual machines brought, likewise only when given.
        if let Some(kind) = self.kind {
            h.field("type", kind.as_str());
        }
        if let Some(n) = self.sockets {
            h.field("sockets", &n.to_string());
        }
        if let Some(n) = self.balloon {
            h.field("balloon", &n.to_string());
        }
        for o in &self.once {
            let mut entry = format!("{}:{}:{}", o.key.len(), o.key, o.action.as_str());
            // The node an entry names, only when it names one (node names have no `:`).
            if let Some(node) = &o.node {
                entry += &format!(":{node}");
            }
            h.field("once", &entry);
        }
        h.0
    }
}

/// FNV-1a, 64 bit.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn field(&mut self, key: &str, value: &str) {
        self.write(key.as_bytes());
        self.write(b"=");
        self.write(value.as_bytes());
        self.write(b";");
    }

    fn opt(&mut self, key: &str, value: Option<String>) {
        match value {
            Some(v) => self.field(key, &format!("+{v}")),
            None => self.field(key, "-"),
        }
    }
}

/// Every guest the node should manage, by vmid. The default is empty: nothing is
/// managed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub guests: BTreeMap<Vmid, GuestSpec>,
}

/// Why a desired-state file was refused.
#[derive(Debug)]
pub enum DesiredError {
    /// The file could not be read.
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file was read but has problems; all of them are listed, in file order.
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
        /// Problems found beyond [`MAX_PROBLEMS`], counted but not kept.
        omitted: usize,
    },
}

impl DesiredError {
    /// The file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            DesiredError::Read { path, .. } | DesiredError::Invalid { path, .. } => path,
        }
    }
}

impl fmt::Display for DesiredError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DesiredError::Read { path, source } => write!(
                f,
                "cannot read desired state file {}: {source}",
                path.display()
            ),
            DesiredError::Invalid {
                path,
                problems,
                omitted,
            } => write_problems(f, path, problems, *omitted),
        }
    }
}

impl std::error::Error for DesiredError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DesiredError::Read { source, .. } => Some(source),
            DesiredError::Invalid { .. } => None,
        }
    }
}

const TOP_KEYS: &[&str] = &["version", "guests"];

impl DesiredState {
    /// Parses and validates a desired-state document. `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<DesiredState, DesiredError> {
        let invalid = |(problems, omitted)| DesiredError::Invalid {
            path: path.to_path_buf(),
            problems,
            omitted,
        };
        let mut problems = Problems::default();
        let root = match json::parse(text) {
            Ok(root) => root,
            Err(e) => {
                problems.push(e.pos, None, None, format!("invalid JSON: {}", e.message));
                return Err(invalid(problems.finish()));
            }
        };
        let Value::Object(members) = &root.value else {
            problems.push(
                root.pos,
                None,
                None,
                format!(
                    "expected an object like {{\"version\": 1, \"guests\": [...]}}, found {}",
                    root.describe()
                ),
            );
            return Err(invalid(problems.finish()));
        };
        let mut guests = None;
        for m in known_members(members, TOP_KEYS, None, &mut problems) {
            match m.key.as_str() {
                "version" => {
                    if m.value.as_u64() != Some(1) {
                        problems.push(
                            m.value.pos,
                            None,
                            Some("version"),
                            format!(
                                "expected 1, the only schema version this agent reads, found {}",
                                m.value.describe()
                            ),
                        );
                    }
                }
                "guests" => guests = Some(&m.value),
                _ => unreachable!("only known keys are returned"),
            }
        }
        let mut state = DesiredState::default();
        match guests {
            None => problems.push(
                root.pos,
                None,
                Some("guests"),
                "missing: add \"guests\": [...] with one object per managed guest (an empty list manages none)",
            ),
            Some(node) => guest::check_all(node, &mut state.guests, &mut problems),
        }
        if problems.is_empty() {
            Ok(state)
        } else {
            Err(invalid(problems.finish()))
        }
    }

    /// Reads and validates a desired-state file.
    pub fn load(path: &Path) -> Result<DesiredState, DesiredError> {
        let bytes = crate::fsutil::read_regular(path, MAX_FILE_BYTES).map_err(|source| {
            DesiredError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let text = decode(bytes).map_err(|p| DesiredError::Invalid {
            path: path.to_path_buf(),
            problems: vec![p],
            omitted: 0,
        })?;
        DesiredState::parse(&text, path)
    }
}
