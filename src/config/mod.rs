//! The agent's own configuration: how to reach the Proxmox API, as whom, and how
//! fast to work.
//!
//! The file is JSON (`--config FILE`, default [`DEFAULT_PATH`]):
//!
//! ```json
//! {"token_id": "agent@pve!reconciler",
//!  "token_secret_file": "token",
//!  "desired_file": "desired.json"}
//! ```
//!
//! | key | default | allowed |
//! |---|---|---|
//! | `api_url` | `https://127.0.0.1:8006` | `https://host[:port]`, or `http://` to a loopback IPv4 address; no path, no user info, no IPv6 literal |
//! | `node` | the short hostname | a PVE node name |
//! | `token_id` | required | `USER@REALM!TOKENID` |
//! | `token_secret_file` | required | a path; mode must deny group and others; a file name holding a UUID is refused (it is the secret itself) |
//! | `ca_file` | `/etc/pve/pve-root-ca.pem` if it exists | a path |
//! | `desired_file` | none: nothing is managed | a path |
//! | `desired_url` | none | `https://host[:port]/path[?query]` (or `http://` to a loopback IPv4 address); not with `desired_file` |
//! | `desired_token_file` | none | a path (with `desired_url`); mode must deny group and others |
//! | `desired_ca_file` | the system roots | a path |
//! | `desired_interval_secs` | `interval_secs` | 1..=86400 (with `desired_url`) |
//! | `report_url` | none | as `desired_url` |
//! | `state_dir` | `/var/lib/felhom-agent` | a path |
//! | `interval_secs` | 30 | 1..=86400 |
//! | `max_parallel` | 4 | 1..=64 |
//! | `task_timeout_secs` | 600 | 1..=86400 |
//! | `shutdown_timeout_secs` | 60 | 1..=3600 |
//! | `drain_timeout_secs` | 20 | 1..=600 |
//! | `unanswered_grace_secs` | 120 | 5..=3600 |
//! | `stop_mode` | `"shutdown"` | `"shutdown"` or `"stop"` |
//! | `hold_tag` | `"felhom-hold"` | a PVE tag |
//! | `identity_guard` | `true` | a boolean |
//! | `ha_mode` | `"skip"` | `"skip"` or `"request"` |
//! | `metrics_file` | none | a path |
//! | `journal_compact_bytes` | 4194304 | at least 4096 |
//!
//! **Relative paths are resolved against the directory of the config file**, not
//! the working directory, so a config and its secret can live side by side.
//! Unknown keys are errors (a typo must not silently fall back to a default), and
//! every problem in the file is reported at once, each with its line and column.

mod error;
mod print;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fuzz;
#[cfg(test)]
mod tests_keys;
#[cfg(test)]
mod tests_secret;
mod values;

pub use error::{ConfigError, SecretKind};

use crate::json::diag::{boolean, choice, decode, integer, known_members, string, Problems};
use crate::json::{self, Value};
use crate::remote::RemoteUrl;
use crate::secret::Secret;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the config is read from when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/felhom-agent/config.json";
/// The PVE cluster CA, trusted when `ca_file` is not set and the file exists.
pub const PVE_ROOT_CA: &str = crate::pve::DEFAULT_CA_FILE;
/// A config file is a few hundred bytes; anything over this is the wrong file.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Where PVE's node name comes from when `node` is not set.
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// Every key the config file may hold, in the documented order.
pub const KEYS: &[&str] = &[
    "api_url",
    "node",
    "token_id",
    "token_secret_file",
    "ca_file",
    "desired_file",
    "desired_url",
    "desired_token_file",
    "desired_ca_file",
    "desired_interval_secs",
    "report_url",
    "state_dir",
    "interval_secs",
    "max_parallel",
    "task_timeout_secs",
    "shutdown_timeout_secs",
    "drain_timeout_secs",
    "unanswered_grace_secs",
    "stop_mode",
    "hold_tag",
    "identity_guard",
    "ha_mode",
    "metrics_file",
    "journal_compact_bytes",
];

/// How a guest that should be stopped is brought down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopMode {
    /// A graceful shutdown (`status/shutdown` with a timeout and `forceStop`).
    Shutdown,
    /// A hard stop (`status/stop`).
    Stop,
}

impl StopMode {
    /// The word used in the config: `shutdown` or `stop`.
    pub fn as_str(self) -> &'static str {
        match self {
            StopMode::Shutdown => "shutdown",
            StopMode::Stop => "stop",
        }
    }
}

impl fmt::Display for StopMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated config. Paths are already resolved against the config's directory.
/// It holds the secret's path, never the secret: see [`Fixed::token_secret`].
///
/// Split by what a reload may change: the client, the journal and the lanes are built
/// from [`Fixed`] at start-up, so a running agent keeps the `Fixed` it started with (a
/// reload that changes it says so, and it takes effect at the next start); [`Live`] is
/// swapped in by every good reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file this config was read from.
    pub path: PathBuf,
    pub fixed: Fixed,
    pub live: Live,
}

/// The settings fixed at start-up. Serializes with the config file's key names, so
/// that a reload can name the keys whose change waits for a restart.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Fixed {
    /// `https://host[:port]` or `http://127.x.y.z[:port]`, without a trailing slash
    /// (see [`crate::pve::BaseUrl`]).
    pub api_url: String,
    pub node: String,
    pub token_id: String,
    pub token_secret_file: PathBuf,
    /// As configured; [`Fixed::resolved_ca_file`] applies the default.
    pub ca_file: Option<PathBuf>,
    /// The CA that vouches for `desired_url` and `report_url`, instead of the system
    /// roots. Fixed because the TLS stack reads its trust once (see [`crate::trust`]).
    pub desired_ca_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub max_parallel: usize,
    #[serde(rename = "task_timeout_secs", serialize_with = "as_secs")]
    pub task_timeout: Duration,
    /// How long a start, stop or config update that got no answer may go unexplained
    /// by the node before it is taken as not carried out (see `crate::inflight`).
    #[serde(rename = "unanswered_grace_secs", serialize_with = "as_secs")]
    pub unanswered_grace: Duration,
    pub journal_compact_bytes: u64,
}

/// The settings a reload may change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Live {
    pub desired_file: Option<PathBuf>,
    /// Where the desired state is fetched from, instead of `desired_file`.
    pub desired_url: Option<RemoteUrl>,
    /// The bearer token for `desired_url` (and `report_url` on the same origin).
    pub desired_token_file: Option<PathBuf>,
    /// How often `desired_url` is asked; `None`: every `interval`.
    pub desired_interval: Option<Duration>,
    /// Where the status is posted after every pass.
    pub report_url: Option<RemoteUrl>,
    pub interval: Duration,
    pub shutdown_timeout: Duration,
    /// How long SIGTERM waits for in-flight work.
    pub drain_timeout: Duration,
    pub stop_mode: StopMode,
    pub metrics_file: Option<PathBuf>,
    /// A guest carrying this PVE tag is left alone until the tag goes.
    pub hold_tag: String,
    /// A desired `name` must match the live guest's, or the guest is left alone.
    pub identity_guard: bool,
    /// Whether HA-managed guests are left to ha-manager or driven through requests.
    pub ha_mode: HaMode,
}

impl Live {
    /// How often the desired-state source is asked.
    pub fn desired_interval(&self) -> Duration {
        self.desired_interval.unwrap_or(self.interval)
    }

    /// Reads the bearer token for `desired_url` from `desired_token_file`, by the rules
    /// of [`Fixed::token_secret`].
    pub fn desired_token(&self) -> Result<Option<Secret>, ConfigError> {
        self.desired_token_file
            .as_deref()
            .map(|p| read_secret(p, SecretKind::DesiredToken))
            .transpose()
    }
}

/// What the agent does with a guest that HA manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HaMode {
    /// Leave it to ha-manager entirely.
    Skip,
    /// Drive its power state through the ordinary calls, which PVE turns into HA
    /// requests, and verify the outcome from the guest's state; apply its config.
    Request,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl Fixed {
    /// The keys (as the config file names them) whose values differ in `other`.
    pub fn changed_keys(&self, other: &Fixed) -> Vec<String> {
        let (a, b) = (
            serde_json::to_value(self).expect("plain data serializes"),
            serde_json::to_value(other).expect("plain data serializes"),
        );
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => a
                .into_iter()
                .filter(|(k, v)| b.get(k) != Some(v))
                .map(|(k, _)| k)
                .collect(),
            _ => unreachable!("a struct serializes as an object"),
        }
    }

    /// Whether `live` may run under these fixed settings: a graceful shutdown can take
    /// about twice its timeout, and the task wait must outlast it.
    pub fn check_live(&self, live: &Live) -> Result<(), String> {
        let need = live.shutdown_timeout.as_secs() * 2 + 30;
        if self.task_timeout.as_secs() < need {
            return Err(format!(
                "must be at least twice shutdown_timeout_secs plus 30 ({need} seconds), found {}: \
                 raise task_timeout_secs or lower shutdown_timeout_secs",
                self.task_timeout.as_secs()
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = crate::fsutil::read_regular(path, MAX_CONFIG_BYTES).map_err(|source| {
            ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let text = decode(bytes).map_err(|p| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: vec![p],
            omitted: 0,
        })?;
        Config::parse(&text, path)
    }

    /// Validates config text read from `path`. Touches no file except, when `node`
    /// is not set, the kernel's hostname.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        parse_with(text, path, || std::fs::read_to_string(HOSTNAME_FILE))
    }
}

impl Fixed {
    /// Reads the API token secret from `token_secret_file`: the file's content with
    /// surrounding whitespace trimmed. Refuses a file that group or others can read
    /// or write, an empty one, and one with spaces or control characters inside.
    pub fn token_secret(&self) -> Result<Secret, ConfigError> {
        read_secret(&self.token_secret_file, SecretKind::ApiToken)
    }

    /// The CA file to trust: `ca_file` if set, else [`PVE_ROOT_CA`] if it exists,
    /// else `None` (use the system trust store).
    pub fn resolved_ca_file(&self) -> Option<PathBuf> {
        resolve_ca(self.ca_file.as_deref(), Path::new(PVE_ROOT_CA))
    }
}

/// Reads a secret file: its content with surrounding whitespace trimmed. Refuses a file
/// that group or others can read or write, an empty one, and one with spaces or control
/// characters inside.
fn read_secret(path: &Path, kind: SecretKind) -> Result<Secret, ConfigError> {
    let read_err = |source| ConfigError::SecretRead {
        kind,
        path: path.to_path_buf(),
        source,
    };
    // Checked on the open handle, so the file checked is the file read.
    let (file, meta) = crate::fsutil::open_regular(path).map_err(read_err)?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError::SecretPermissions {
            kind,
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    // A token secret is a UUID, a bearer token rarely over a few hundred bytes;
    // anything much longer is the wrong file.
    const MAX: u64 = 4096;
    let mut text = String::new();
    file.take(MAX + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(ConfigError::SecretEmpty {
            kind,
            path: path.to_path_buf(),
        });
    }
    if text.len() as u64 > MAX || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::SecretMalformed {
            kind,
            path: path.to_path_buf(),
        });
    }
    Ok(Secret::new(secret))
}

fn resolve_ca(configured: Option<&Path>, default: &Path) -> Option<PathBuf> {
    match configured {
        Some(p) => Some(p.to_path_buf()),
        None => default.is_file().then(|| default.to_path_buf()),
    }
}

/// [`Config::parse`] with the hostname source passed in, for tests.
fn parse_with(
    text: &str,
    path: &Path,
    hostname: impl FnOnce() -> io::Result<String>,
) -> Result<Config, ConfigError> {
    let invalid = |(problems, omitted)| ConfigError::Invalid {
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
                "expected an object like {{\"token_id\": \"agent@pve!reconciler\", \"token_secret_file\": \"token\"}}, found {}",
                root.describe()
            ),
        );
        return Err(invalid(problems.finish()));
    };
    let base = base_dir(path);
    let mut cfg = Config {
        path: path.to_path_buf(),
        fixed: Fixed {
            api_url: "https://127.0.0.1:8006".to_string(),
            node: String::new(),
            token_id: String::new(),
            token_secret_file: PathBuf::new(),
            ca_file: None,
            desired_ca_file: None,
            state_dir: PathBuf::from("/var/lib/felhom-agent"),
            max_parallel: 4,
            task_timeout: Duration::from_secs(600),
            unanswered_grace: crate::inflight::DEFAULT_GRACE,
            journal_compact_bytes: 4 * 1024 * 1024,
        },
        live: Live {
            desired_file: None,
            desired_url: None,
            desired_token_file: None,
            desired_interval: None,
            report_url: None,
            interval: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(20),
            stop_mode: StopMode::Shutdown,
            metrics_file: None,
            hold_tag: crate::plan::DEFAULT_HOLD_TAG.to_string(),
            identity_guard: true,
            ha_mode: HaMode::Skip,
        },
    };
    let (mut has_node, mut has_token_id, mut has_secret_file) = (false, false, false);
    let mut task_timeout_pos = root.pos;
    // Where the keys that only make sense with a desired_url are, for a problem.
    let (mut source_pos, mut token_pos, mut interval_pos) = (None, None, None);
    for m in known_members(members, KEYS, None, &mut problems) {
        let v = &m.value;
        if m.key == "task_timeout_secs" {
            task_timeout_pos = v.pos;
        }
        let set: Result<(), String> = match m.key.as_str() {
            "api_url" => string(v)
                .and_then(values::api_url)
                .map(|s| cfg.fixed.api_url = s),
            "node" => {
                has_node = true;
                string(v).and_then(values::node).map(|s| cfg.fixed.node = s)
            }
            "token_id" => {
                has_token_id = true;
                string(v)
                    .and_then(|s| values::token_id(s).map(|()| s))
                    .map(|s| cfg.fixed.token_id = s.to_string())
            }
            "token_secret_file" => {
                has_secret_file = true;
                string(v)
                    .and_then(|s| values::secret_file(s, &base))
                    .map(|p| cfg.fixed.token_secret_file = p)
            }
            "ca_file" => string(v)
                .and_then(|s| values::path(s, &base))
                .map(|p| cfg.fixed.ca_file = Some(p)),
            "desired_file" => string(v)
                .and_then(|s| values::path(s, &base))
                .map(|p| cfg.live.desired_file = Some(p)),
            "desired_url" => {
                source_pos = Some(v.pos);
                string(v)
                    .and_then(values::remote_url)
                    .map(|u| cfg.live.desired_url = Some(u))
            }
            "desired_token_file" => {
                token_pos = Some(v.pos);
                string(v)
                    .and_then(|s| values::token_file(s, &base))
                    .map(|p| cfg.live.desired_token_file = Some(p))
            }
            "desired_ca_file" => string(v)
                .and_then(|s| values::path(s, &base))
                .map(|p| cfg.fixed.desired_ca_file = Some(p)),
            "desired_interval_secs" => {
                interval_pos = Some(v.pos);
                secs(v, 86400).map(|d| cfg.live.desired_interval = Some(d))
            }
            "report_url" => string(v)
                .and_then(values::remote_url)
                .map(|u| cfg.live.report_url = Some(u)),
            "state_dir" => string(v)
                .and_then(|s| values::path(s, &base))
                .map(|p| cfg.fixed.state_dir = p),
            "metrics_file" => string(v)
                .and_then(|s| values::path(s, &base))
                .map(|p| cfg.live.metrics_file = Some(p)),
            "interval_secs" => secs(v, 86400).map(|d| cfg.live.interval = d),
            "task_timeout_secs" => secs(v, 86400).map(|d| cfg.fixed.task_timeout = d),
            "shutdown_timeout_secs" => secs(v, 3600).map(|d| cfg.live.shutdown_timeout = d),
            "drain_timeout_secs" => secs(v, 600).map(|d| cfg.live.drain_timeout = d),
            "unanswered_grace_secs" => integer(v, 5, 3600, " seconds")
                .map(|n| cfg.fixed.unanswered_grace = Duration::from_secs(n)),
            "max_parallel" => integer(v, 1, 64, "").map(|n| cfg.fixed.max_parallel = n as usize),
            "journal_compact_bytes" => {
                integer(v, 4096, u64::MAX, " bytes").map(|n| cfg.fixed.journal_compact_bytes = n)
            }
            "stop_mode" => choice(v, &["shutdown", "stop"]).map(|s| {
                cfg.live.stop_mode = match s {
                    "stop" => StopMode::Stop,
                    _ => StopMode::Shutdown,
                }
            }),
            "hold_tag" => string(v).and_then(|s| {
                if crate::desired::is_tag(s) {
                    cfg.live.hold_tag = s.to_ascii_lowercase();
                    Ok(())
                } else {
                    Err(format!(
                        "{} is not a PVE tag: use letters, digits and - _ + . only",
                        json::quote(s)
                    ))
                }
            }),
            "identity_guard" => boolean(v).map(|b| cfg.live.identity_guard = b),
            "ha_mode" => choice(v, &["skip", "request"]).map(|s| {
                cfg.live.ha_mode = match s {
                    "request" => HaMode::Request,
                    _ => HaMode::Skip,
                }
            }),
            other => unreachable!("{other} is not in KEYS"),
        };
        if let Err(msg) = set {
            problems.push(v.pos, None, Some(&m.key), msg);
        }
    }
    // A graceful LXC shutdown can take up to about twice its timeout before forceStop
    // ends it (docs/proxmox-api.md §5.3). A task wait that gives up first leaves the outcome
    // unknown and the guest held until the task ends: make the wait outlast it.
    if let Err(msg) = cfg.fixed.check_live(&cfg.live) {
        problems.push(task_timeout_pos, None, Some("task_timeout_secs"), msg);
    }
    check_source_keys(
        &cfg.live,
        source_pos,
        token_pos,
        interval_pos,
        &mut problems,
    );
    if !has_token_id {
        problems.push(
            root.pos,
            None,
            Some("token_id"),
            "missing: add \"token_id\": \"USER@REALM!TOKENID\", the API token the agent uses",
        );
    }
    if !has_secret_file {
        problems.push(
            root.pos,
            None,
            Some("token_secret_file"),
            "missing: add \"token_secret_file\": \"<path>\", a file that holds only the token's secret",
        );
    }
    if !has_node {
        match node_from_hostname(hostname) {
            Ok(node) => cfg.fixed.node = node,
            Err(msg) => problems.push(root.pos, None, Some("node"), msg),
        }
    }
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(invalid(problems.finish()))
    }
}

/// The keys that go with `desired_url` go only with it, and it does not go with
/// `desired_file`: the desired state has one source.
fn check_source_keys(
    live: &Live,
    source: Option<json::Pos>,
    token: Option<json::Pos>,
    interval: Option<json::Pos>,
    problems: &mut Problems,
) {
    match (source, live.desired_file.is_some()) {
        (Some(pos), true) => problems.push(
            pos,
            None,
            Some("desired_url"),
            "the desired state has one source: set desired_url or desired_file, not both",
        ),
        (None, _) => {
            let alone = [
                (token, "desired_token_file", "the token for it"),
                (interval, "desired_interval_secs", "how often it is asked"),
            ];
            for (pos, key, what) in alone {
                if let Some(pos) = pos {
                    problems.push(
                        pos,
                        None,
                        Some(key),
                        format!(
                            "only goes with desired_url, {what}: set desired_url or remove {key}"
                        ),
                    );
                }
            }
        }
        (Some(_), false) => {}
    }
}

/// A duration in whole seconds, from 1 to `max`.
fn secs(v: &json::Node, max: u64) -> Result<Duration, String> {
    integer(v, 1, max, " seconds").map(Duration::from_secs)
}

/// The default node name, or the message for a problem at `node`.
fn node_from_hostname(hostname: impl FnOnce() -> io::Result<String>) -> Result<String, String> {
    match hostname() {
        Ok(h) => {
            let node = values::node_from_hostname(&h);
            if values::is_node_name(node) {
                Ok(node.to_string())
            } else {
                Err(format!(
                    "not set, and the hostname {} is not a valid node name: set \"node\" to this node's name as shown in the Proxmox GUI",
                    json::quote(h.trim())
                ))
            }
        }
        Err(e) => Err(format!(
            "not set, and the hostname cannot be read from {HOSTNAME_FILE} ({e}): set \"node\" to this node's name as shown in the Proxmox GUI"
        )),
    }
}

/// The directory relative paths are resolved against: the config file's directory,
/// made absolute so that a later change of working directory cannot move them.
fn base_dir(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}
