//! A blocking client for the PVE HTTP API over minreq: one call per endpoint the agent
//! uses (docs/proxmox-api.md §3-§7, and §9 for VMs in [`qemu`]), authenticated with an
//! API token.
//!
//! Every request gets a fresh connection (minreq does not pool), which sidesteps
//! pveproxy's 5 s idle keep-alive race (docs/proxmox-api.md §1.3), and a timeout. Redirects are
//! not followed, so the token is only ever sent to the configured host. A body is read
//! up to [`MAX_BODY_BYTES`] and checked for being cut off. Failed requests are
//! repeated as [`super::retry`] allows. Sending is in [`super::request`].

use super::error::ApiError;
use super::form::encode_component;
use super::form::Params;
use super::resources::Resources;
use super::times::TaskTimes;
use super::types::{
    ClusterNode, ClusterResource, GuestEntry, GuestStatus, LxcConfig, PendingEntry, PowerOp,
    RawGuestStatus, TaskListEntry, TaskQuery, TaskStatus, Version,
};
use super::url::BaseUrl;
use super::{Upid, Vmid};
use crate::cancel::Cancel;
use crate::rng::XorShift;
use crate::secret::Secret;
use minreq::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use super::retry::Retry;
pub use super::tls::{check_ca_file, default_ca_file, trust_ca_file, DEFAULT_CA_FILE};
pub use super::transport::MAX_BODY_BYTES;
pub use super::wait::WaitOptions;

/// The per-request timeout when the config gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach and authenticate to the API.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// `https://127.0.0.1:8006`; `/api2/json` is appended by the client. Plain
    /// `http://` only to a loopback IP address (see [`BaseUrl`]).
    pub base_url: String,
    /// `USER@REALM!TOKENID`, e.g. `agent@pve!reconciler`.
    pub token_id: String,
    pub token_secret: Secret,
    /// Per request; minreq counts whole seconds, so this is rounded up (minimum 1 s).
    pub timeout: Duration,
}

impl ClientOptions {
    /// Options with [`DEFAULT_TIMEOUT`].
    pub fn new(base_url: &str, token_id: &str, token_secret: Secret) -> ClientOptions {
        ClientOptions {
            base_url: base_url.to_string(),
            token_id: token_id.to_string(),
            token_secret,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// The API client. Cheap to clone; `Send + Sync`; clones share their [`TaskTimes`].
/// Its `Debug` shows the base URL and token id, never the secret.
#[derive(Clone)]
pub struct Client {
    pub(super) base: BaseUrl,
    pub(super) token_id: String,
    pub(super) secret: Secret,
    pub(super) timeout: Duration,
    pub(super) retry: Retry,
    /// Stops the pauses between repeats at once on shutdown.
    pub(super) cancel: Cancel,
    pub(super) times: Arc<TaskTimes>,
    pub(super) jitter: Arc<Mutex<XorShift>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base.origin)
            .field("token_id", &self.token_id)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Checks the options: the base URL ([`BaseUrl::parse`]), the token id's
    /// `USER@REALM!TOKENID` shape, and that the secret can go into a header. Reads are
    /// repeated as [`Retry::DEFAULT`] says, with no cancel token: see
    /// [`Client::with_retry`] and [`Client::with_cancel`].
    pub fn new(opts: ClientOptions) -> Result<Client, ApiError> {
        let base = BaseUrl::parse(&opts.base_url).map_err(|e| ApiError::Config(e.to_string()))?;
        check_token_id(&opts.token_id)?;
        let s = opts.token_secret.expose();
        if s.is_empty()
            || s.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ';')
        {
            return Err(ApiError::Config(
                "the token secret is empty or holds characters that cannot be sent".into(),
            ));
        }
        // Jitter only has to differ between processes started together.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Ok(Client {
            base,
            token_id: opts.token_id,
            secret: opts.token_secret,
            timeout: opts.timeout,
            retry: Retry::DEFAULT,
            cancel: Cancel::never(),
            times: Arc::new(TaskTimes::new()),
            jitter: Arc::new(Mutex::new(XorShift::new(seed))),
        })
    }

    /// The same client, repeating failed requests as `retry` says.
    pub fn with_retry(mut self, retry: Retry) -> Client {
        self.retry = retry;
        self
    }

    /// The same client, giving up a repeat at once when `cancel` fires (a request in
    /// flight is not interrupted; the pause before the next attempt is).
    pub fn with_cancel(mut self, cancel: Cancel) -> Client {
        self.cancel = cancel;
        self
    }

    /// The same client, learning task durations into `times` (shared with others).
    pub fn with_task_times(mut self, times: Arc<TaskTimes>) -> Client {
        self.times = times;
        self
    }

    /// What the client has learned about task durations.
    pub fn task_times(&self) -> &TaskTimes {
        &self.times
    }

    /// How failed requests are repeated.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    pub fn token_id(&self) -> &str {
        &self.token_id
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `GET /version`.
    pub fn version(&self) -> Result<Version, ApiError> {
        self.get("/version", &[])
    }

    /// `GET` any path below `/api2/json` (e.g. `/cluster/status`) and return the
    /// unwrapped `data` as JSON: for diagnostics and for calls with no typed method.
    pub fn get_raw(&self, path: &str) -> Result<Value, ApiError> {
        let path = format!("/{}", path.trim_start_matches('/'));
        self.request(Method::Get, &path, &[], None, self.timeout, self.retry)
    }

    /// `GET /nodes/{node}/lxc`: the CTs whose config is on `node` (filtered to those the
    /// token may audit).
    pub fn list_lxc(&self, node: &str) -> Result<Vec<GuestEntry>, ApiError> {
        self.get(&format!("/nodes/{}/lxc", encode_component(node)), &[])
    }

    /// `GET .../config`: with `current` false pending values are merged in (the config as
    /// it will be); with `current` true only active values.
    pub fn lxc_config(&self, node: &str, vmid: Vmid, current: bool) -> Result<LxcConfig, ApiError> {
        let query = if current {
            vec![("current", "1".to_string())]
        } else {
            Vec::new()
        };
        self.get(&format!("{}/config", ct_path(node, vmid)), &query)
    }

    /// `GET .../status/current`.
    pub fn lxc_status(&self, node: &str, vmid: Vmid) -> Result<GuestStatus, ApiError> {
        let raw: RawGuestStatus =
            self.get(&format!("{}/status/current", ct_path(node, vmid)), &[])?;
        Ok(raw.into_status(vmid))
    }

    /// `GET .../pending`.
    pub fn lxc_pending(&self, node: &str, vmid: Vmid) -> Result<Vec<PendingEntry>, ApiError> {
        self.get(&format!("{}/pending", ct_path(node, vmid)), &[])
    }

    /// `GET /cluster/resources?type=vm`: every guest on every node, LXC and QEMU.
    /// Entries of any other type are skipped.
    pub fn cluster_resources(&self) -> Result<Vec<ClusterResource>, ApiError> {
        let list: Resources<ClusterResource> =
            self.get("/cluster/resources", &[("type", "vm".into())])?;
        Ok(list.0)
    }

    /// `GET /cluster/resources?type=node`: every node of the cluster.
    pub fn cluster_nodes(&self) -> Result<Vec<ClusterNode>, ApiError> {
        let list: Resources<ClusterNode> =
            self.get("/cluster/resources", &[("type", "node".into())])?;
        Ok(list.0)
    }

    /// `GET /nodes/{node}/tasks` with the filters that are set.
    pub fn tasks(&self, node: &str, q: &TaskQuery) -> Result<Vec<TaskListEntry>, ApiError> {
        let mut query = Vec::new();
        if let Some(v) = q.vmid {
            query.push(("vmid", v.to_string()));
        }
        if let Some(t) = &q.typefilter {
            query.push(("typefilter", t.clone()));
        }
        if let Some(s) = q.since {
            query.push(("since", s.to_string()));
        }
        if let Some(s) = &q.source {
            query.push(("source", s.clone()));
        }
        if let Some(l) = q.limit {
            query.push(("limit", l.to_string()));
        }
        self.get(&format!("/nodes/{}/tasks", encode_component(node)), &query)
    }

    /// `GET /nodes/{node}/tasks/{upid}/status`, asking the node named in the UPID.
    pub fn task_status(&self, upid: &Upid) -> Result<TaskStatus, ApiError> {
        self.task_status_with(upid, self.timeout, self.retry)
    }

    /// One poll of a wait: no repeats inside it, the wait has its own schedule.
    pub(crate) fn task_status_within(
        &self,
        upid: &Upid,
        timeout: Duration,
    ) -> Result<TaskStatus, ApiError> {
        self.task_status_with(upid, timeout, Retry::NEVER)
    }

    fn task_status_with(
        &self,
        upid: &Upid,
        timeout: Duration,
        retry: Retry,
    ) -> Result<TaskStatus, ApiError> {
        let path = format!(
            "/nodes/{}/tasks/{}/status",
            encode_component(&upid.node),
            upid.to_path_segment()
        );
        self.request(Method::Get, &path, &[], None, timeout, retry)
    }

    /// `POST .../lxc/{vmid}/status/{start|stop|shutdown}`: [`Client::guest_power`] for
    /// a container.
    pub fn lxc_power(
        &self,
        node: &str,
        vmid: Vmid,
        op: PowerOp,
        params: &Params,
    ) -> Result<Upid, ApiError> {
        self.guest_power(super::GuestKind::Lxc, node, vmid, op, params)
    }

    /// `PUT .../config`, form-encoded; `delete` and `digest` are ordinary params. LXC
    /// config writes are synchronous, so this is normally `Ok(None)`.
    pub fn lxc_set_config(
        &self,
        node: &str,
        vmid: Vmid,
        params: &Params,
    ) -> Result<Option<Upid>, ApiError> {
        let path = format!("{}/config", ct_path(node, vmid));
        self.mutate(Method::Put, &path, params, None)
    }

    fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ApiError> {
        self.request(Method::Get, path, query, None, self.timeout, self.retry)
    }

    /// A config update: `task` is the task it may start (`qmconfig` for a VM's `POST`),
    /// `None` for a synchronous call, which answers `null` only.
    fn mutate(
        &self,
        method: Method,
        path: &str,
        params: &Params,
        task: Option<ConfigTask<'_>>,
    ) -> Result<Option<Upid>, ApiError> {
        let request = format!("{method} {path}");
        let data = self.request(method, path, &[], Some(params), self.timeout, self.retry)?;
        let upid = task_id(&request, data, task)?;
        if let Some(upid) = &upid {
            self.times.note_start(upid, std::time::Instant::now());
        }
        Ok(upid)
    }
}

/// The task a config update may start: on `node`, for guest `vmid`, of type `kind`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConfigTask<'a> {
    pub node: &'a str,
    pub vmid: Vmid,
    pub kind: &'a str,
}

/// A config update's `data`: null for a synchronous success, or the UPID of the task
/// `task` says the call may start, checked as a power call's is
/// ([`power::power_task`]). Anything else (another value, a UPID of another node, guest
/// or type, or a UPID from a call that starts no task) is a decode error: the outcome
/// is unknown, and the op is settled from the guest's config digest, never from a task
/// that is not its own.
pub(crate) fn task_id(
    request: &str,
    data: Value,
    task: Option<ConfigTask<'_>>,
) -> Result<Option<Upid>, ApiError> {
    let refuse = |detail: String| ApiError::Decode {
        request: request.to_string(),
        detail,
    };
    let s = match data {
        Value::Null => return Ok(None),
        Value::String(s) => s,
        other => {
            return Err(refuse(format!(
                "expected a task id or null, got {}",
                shorten(&other)
            )))
        }
    };
    let upid: Upid = s.parse().map_err(|e| refuse(format!("{e}")))?;
    let Some(task) = task else {
        return Err(refuse(format!(
            "the call starts no task, yet it answered the task {upid}"
        )));
    };
    let wrong = if upid.node != task.node && task.node != "localhost" {
        format!("it runs on node {:?}, not on {:?}", upid.node, task.node)
    } else if upid.id != task.vmid.to_string() {
        format!("its id is {:?}, not guest {}", upid.id, task.vmid)
    } else if upid.kind != task.kind {
        format!("its type is {:?}, not {}", upid.kind, task.kind)
    } else {
        return Ok(Some(upid));
    };
    Err(refuse(format!(
        "the task {upid} is not the config update's: {wrong}"
    )))
}

/// A value for an error message: its JSON text, cut to 200 characters.
fn shorten(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

fn ct_path(node: &str, vmid: Vmid) -> String {
    format!("/nodes/{}/lxc/{vmid}", encode_component(node))
}

/// minreq takes whole seconds: round up, at least one.
pub(crate) fn whole_seconds(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

/// `USER@REALM!TOKENID`, with nothing that would break the header.
fn check_token_id(id: &str) -> Result<(), ApiError> {
    let bad = || {
        ApiError::Config(format!(
            "token id {id:?} is not of the form USER@REALM!TOKENID"
        ))
    };
    let (user_realm, token) = id.rsplit_once('!').ok_or_else(bad)?;
    let (user, realm) = user_realm.rsplit_once('@').ok_or_else(bad)?;
    let clean = |s: &str| {
        !s.is_empty()
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '=' | ';'))
    };
    if clean(user) && clean(realm) && clean(token) {
        Ok(())
    } else {
        Err(bad())
    }
}

mod power;
mod qemu;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fuzz;
