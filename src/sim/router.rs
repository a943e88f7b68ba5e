//! One request from arrival to answer: record it, inject faults, authenticate, route,
//! validate parameters, run the handler and shape the PVE envelope.
//!
//! Order, as pveproxy/pvedaemon do it: authentication (401) → route (501) → the node in
//! the path (a node that is not in the cluster cannot be proxied to: 500) → parameter
//! schema (400) → the handler (500 for most failures).

use super::http::{self, Request, Response};
use super::schema::{self, Kind};
use super::state::Shared;
use super::{config, power, read, tasks, ErrorStyle, RequestRecord};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;

/// An API error: status, message (the reason phrase is its first line) and per-parameter
/// errors.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fail {
    pub status: u16,
    pub message: String,
    pub errors: BTreeMap<String, String>,
}

impl Fail {
    /// A `die` in a handler: 500.
    pub(crate) fn server(message: impl Into<String>) -> Fail {
        Fail {
            status: 500,
            message: message.into(),
            errors: BTreeMap::new(),
        }
    }

    /// A parameter error (`raise_param_exc`): 400.
    pub(crate) fn param(key: &str, msg: impl Into<String>) -> Fail {
        Fail::params(BTreeMap::from([(key.to_string(), msg.into())]))
    }

    pub(crate) fn params(errors: BTreeMap<String, String>) -> Fail {
        Fail {
            status: 400,
            message: "Parameter verification failed.".to_string(),
            errors,
        }
    }
}

/// A successful result: `data`, plus `total` for the task list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Data {
    pub data: Value,
    pub total: Option<usize>,
}

impl Data {
    pub(crate) fn new(data: Value) -> Data {
        Data { data, total: None }
    }

    pub(crate) fn null() -> Data {
        Data::new(Value::Null)
    }
}

/// What the connection should do.
pub(crate) enum Outcome {
    Respond(Response),
    /// Close the socket without answering.
    Reset,
}

/// The API calls the simulated node implements.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Route<'a> {
    Version,
    ClusterResources,
    HaResources,
    LxcList(&'a str),
    GetConfig(&'a str, &'a str),
    PutConfig(&'a str, &'a str),
    Status(&'a str, &'a str),
    Pending(&'a str, &'a str),
    Power(&'a str, &'a str, power::Op),
    Tasks(&'a str),
    TaskStatus(&'a str, &'a str),
}

fn route<'a>(method: &str, segs: &'a [String]) -> Option<Route<'a>> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    Some(match (method, s.as_slice()) {
        ("GET", ["version"]) => Route::Version,
        ("GET", ["cluster", "resources"]) => Route::ClusterResources,
        ("GET", ["cluster", "ha", "resources"]) => Route::HaResources,
        ("GET", ["nodes", _, "lxc"]) => Route::LxcList(&segs[1]),
        ("GET", ["nodes", _, "lxc", _, "config"]) => Route::GetConfig(&segs[1], &segs[3]),
        ("PUT", ["nodes", _, "lxc", _, "config"]) => Route::PutConfig(&segs[1], &segs[3]),
        ("GET", ["nodes", _, "lxc", _, "status", "current"]) => Route::Status(&segs[1], &segs[3]),
        ("GET", ["nodes", _, "lxc", _, "pending"]) => Route::Pending(&segs[1], &segs[3]),
        ("POST", ["nodes", _, "lxc", _, "status", op]) => {
            Route::Power(&segs[1], &segs[3], power::Op::parse(op)?)
        }
        ("GET", ["nodes", _, "tasks"]) => Route::Tasks(&segs[1]),
        ("GET", ["nodes", _, "tasks", _, "status"]) => Route::TaskStatus(&segs[1], &segs[3]),
        _ => return None,
    })
}

const NONE: &[(&str, Kind)] = &[];
const BOOL: Kind = Kind::Bool;
const STR: Kind = Kind::Str { max_len: None };
const NAT: Kind = Kind::Int { min: 0, max: None };

/// The parameters each call accepts (besides those in the path).
fn param_kind(r: &Route, key: &str) -> Option<Kind> {
    let table: &[(&str, Kind)] = match r {
        Route::GetConfig(..) => &[("current", BOOL), ("snapshot", STR)],
        Route::ClusterResources => &[("type", Kind::Enum(&["vm", "storage", "node", "sdn"]))],
        Route::HaResources => &[("type", Kind::Enum(&["ct", "vm"]))],
        Route::Tasks(_) => &[
            (
                "vmid",
                Kind::Int {
                    min: 100,
                    max: Some(999_999_999),
                },
            ),
            ("typefilter", STR),
            ("userfilter", STR),
            ("statusfilter", STR),
            ("source", Kind::Enum(&["archive", "active", "all"])),
            ("since", NAT),
            ("until", NAT),
            ("limit", NAT),
            ("start", NAT),
            ("errors", BOOL),
        ],
        Route::Power(_, _, op) => op.params(),
        Route::PutConfig(..) => {
            return match key {
                "delete" | "revert" => Some(Kind::ConfigIdList),
                "digest" => Some(Kind::Str { max_len: Some(40) }),
                _ => schema::lxc_key(key).map(|d| d.kind),
            }
        }
        _ => NONE,
    };
    table.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind)
}

/// Checks the parameters against the call's schema, collecting every error as PVE does,
/// and removes path parameters repeated in the query or body.
fn validate(r: &Route, segs: &[String], params: &mut BTreeMap<String, String>) -> Result<(), Fail> {
    let mut errors = BTreeMap::new();
    let path_params: &[(&str, usize)] = match r {
        Route::LxcList(_) | Route::Tasks(_) => &[("node", 1)],
        Route::TaskStatus(..) => &[("node", 1), ("upid", 3)],
        Route::GetConfig(..)
        | Route::PutConfig(..)
        | Route::Status(..)
        | Route::Pending(..)
        | Route::Power(..) => &[("node", 1), ("vmid", 3)],
        _ => &[],
    };
    for (name, idx) in path_params {
        let in_path = &segs[*idx];
        if let Some(v) = params.remove(*name) {
            if v != *in_path {
                errors.insert(
                    name.to_string(),
                    "duplicate parameter (already defined in URI) with conflicting values!"
                        .to_string(),
                );
            }
        }
        if *name == "vmid" {
            let vmid_kind = Kind::Int {
                min: 100,
                max: Some(999_999_999),
            };
            if let Err(e) = schema::check_value(&vmid_kind, in_path) {
                errors.insert("vmid".to_string(), e);
            }
        }
    }
    for (k, v) in params.iter() {
        match param_kind(r, k) {
            None => {
                errors.insert(
                    k.clone(),
                    "property is not defined in schema and the schema does not allow \
                     additional properties"
                        .to_string(),
                );
            }
            Some(kind) => {
                if let Err(e) = schema::check_value(&kind, v) {
                    errors.insert(k.clone(), e);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Fail::params(errors))
    }
}

fn dispatch(shared: &Shared, r: Route, params: &BTreeMap<String, String>) -> Result<Data, Fail> {
    let vmid = |s: &str| s.parse::<u32>().unwrap_or(0);
    match r {
        Route::Version => Ok(read::version()),
        Route::ClusterResources => Ok(read::cluster_resources(shared, params)),
        Route::HaResources => Ok(read::ha_resources(shared, params)),
        Route::LxcList(node) => Ok(read::lxc_list(shared, node)),
        Route::GetConfig(node, id) => read::config(shared, node, vmid(id), params),
        Route::Status(node, id) => read::status(shared, node, vmid(id)),
        Route::Pending(node, id) => read::pending(shared, node, vmid(id)),
        Route::PutConfig(node, id) => config::put(shared, node, vmid(id), params),
        Route::Power(node, id, op) => power::run(shared, node, vmid(id), op, params),
        Route::Tasks(node) => tasks::list(&shared.lock(), node, params),
        Route::TaskStatus(node, upid) => tasks::status(&shared.lock(), node, upid),
    }
}

fn route_node<'a>(r: &Route<'a>) -> Option<&'a str> {
    match *r {
        Route::LxcList(n) | Route::Tasks(n) => Some(n),
        Route::GetConfig(n, _)
        | Route::PutConfig(n, _)
        | Route::Status(n, _)
        | Route::Pending(n, _)
        | Route::Power(n, _, _)
        | Route::TaskStatus(n, _) => Some(n),
        _ => None,
    }
}

/// Checks the `Authorization` header: `PVEAPIToken=USER@REALM!TOKENID=SECRET` (or a space
/// after `PVEAPIToken`), value URI-unescaped, id and secret split at the last `=`.
fn authenticate(shared: &Shared, req: &Request) -> Result<(), &'static str> {
    let Some(value) = req.header("authorization") else {
        return Err("No ticket");
    };
    let Some(rest) = value
        .strip_prefix("PVEAPIToken=")
        .or_else(|| value.strip_prefix("PVEAPIToken "))
    else {
        return Err("No ticket");
    };
    let rest = http::percent_decode(rest.trim(), false);
    if rest.contains(';') {
        return Err("No ticket");
    }
    match rest.rsplit_once('=') {
        Some((id, secret)) if id == shared.opts.token_id && secret == shared.opts.token_secret => {
            Ok(())
        }
        _ => Err("Authentication failed!"),
    }
}

/// Builds a response from a handler result in the configured error style.
pub(crate) fn response(result: Result<Data, Fail>, style: ErrorStyle) -> Response {
    match result {
        Ok(d) => {
            let mut body = json!({ "data": d.data });
            if let Some(total) = d.total {
                body["total"] = total.into();
            }
            Response {
                status: 200,
                reason: "OK".into(),
                body: body.to_string().into_bytes(),
                close: false,
            }
        }
        Err(f) => {
            let mut body = json!({ "data": null });
            if !f.errors.is_empty() {
                body["errors"] = json!(f.errors);
            }
            let mut message = f.message.clone();
            if !message.ends_with('\n') {
                message.push('\n');
            }
            if style == ErrorStyle::Modern {
                body["message"] = message.clone().into();
            }
            Response {
                status: f.status,
                reason: message.lines().next().unwrap_or("").to_string(),
                body: body.to_string().into_bytes(),
                close: true,
            }
        }
    }
}

fn bare(status: u16, reason: &str) -> Response {
    Response {
        status,
        reason: reason.to_string(),
        body: Vec::new(),
        close: true,
    }
}

/// The decoded path relative to `/api2/json` and its decoded segments.
fn split_path(raw: &str) -> (String, Vec<String>) {
    let rel = raw
        .strip_prefix("/api2/json")
        .filter(|r| r.is_empty() || r.starts_with('/'));
    let under_api = rel.is_some();
    let rel = rel.unwrap_or(raw);
    let segs = if under_api {
        rel.split('/')
            .filter(|s| !s.is_empty())
            .map(|s| http::percent_decode(s, false))
            .collect()
    } else {
        Vec::new()
    };
    let mut path = http::percent_decode(rel, false);
    if path.is_empty() {
        path.push('/');
    }
    (path, segs)
}

/// Handles one request and records it.
pub(crate) fn process(shared: &Shared, req: &Request) -> Outcome {
    let at = Instant::now();
    let (raw_path, query) = req.path_and_query();
    let (path, segs) = split_path(raw_path);
    let mutating = matches!(req.method.as_str(), "POST" | "PUT" | "DELETE");
    let node = (segs.first().map(String::as_str) == Some("nodes"))
        .then(|| segs.get(1).cloned())
        .flatten();
    let vmid = (segs.get(2).map(String::as_str) == Some("lxc"))
        .then(|| segs.get(3).and_then(|v| v.parse().ok()))
        .flatten();
    let (seq, faults, style) = {
        let mut st = shared.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        if mutating {
            st.inflight_mutations += 1;
            st.max_inflight_mutations = st.max_inflight_mutations.max(st.inflight_mutations);
        }
        shared.changed(&mut st);
        (seq, st.faults.clone(), st.error_style)
    };
    let slow = faults
        .latency_for
        .as_ref()
        .is_none_or(|(m, p)| m.eq_ignore_ascii_case(&req.method) && path.contains(p.as_str()));
    if slow && !faults.latency.is_zero() {
        shared.cancel.wait(faults.latency);
    }
    let mut params = BTreeMap::new();
    let outcome = answer(shared, req, query, &path, &segs, &mut params, style);
    let status = match &outcome {
        Outcome::Respond(r) => r.status,
        Outcome::Reset => 0,
    };
    crate::log::debug(
        "sim request",
        &[
            ("method", &req.method),
            ("path", &path),
            ("status", &status),
            ("ms", &at.elapsed().as_millis()),
        ],
    );
    let mut st = shared.lock();
    st.push_request(RequestRecord {
        seq,
        method: req.method.clone(),
        path,
        params,
        status,
        vmid,
        node,
        mutating,
        at,
    });
    if mutating {
        st.inflight_mutations -= 1;
    }
    shared.changed(&mut st);
    outcome
}

fn answer(
    shared: &Shared,
    req: &Request,
    query: &str,
    path: &str,
    segs: &[String],
    params: &mut BTreeMap<String, String>,
    style: ErrorStyle,
) -> Outcome {
    if let Err(reason) = authenticate(shared, req) {
        shared.cancel.wait(shared.opts.unauthorized_delay);
        return Outcome::Respond(bare(401, reason));
    }
    let (reset, fail500, fail596) = {
        let mut st = shared.lock();
        let f = st.faults.clone();
        // Always three draws, so one rate does not shift the others' sequence.
        (
            st.rng.chance(f.reset_rate),
            st.rng.chance(f.rate_500),
            st.rng.chance(f.rate_596),
        )
    };
    if reset {
        return Outcome::Reset;
    }
    if fail500 {
        return Outcome::Respond(response(
            Err(Fail::server("simulated internal server error")),
            style,
        ));
    }
    let content_type = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        if let Err(e) = http::parse_json_body(&req.body, params) {
            return Outcome::Respond(response(Err(Fail::new(400, e)), style));
        }
    } else {
        http::parse_form(&String::from_utf8_lossy(&req.body), params);
    }
    http::parse_form(query, params);
    let result = match route(&req.method, segs) {
        None => Err(Fail::new(
            501,
            format!("Method '{} {path}' not implemented", req.method),
        )),
        Some(r) => run_route(shared, r, segs, params.clone()),
    };
    if fail596 {
        return Outcome::Respond(bare(596, "Connection timed out"));
    }
    // The error style may have been switched while a slow call ran; use the current one.
    let style = shared.lock().error_style;
    Outcome::Respond(response(result, style))
}

fn run_route(
    shared: &Shared,
    r: Route,
    segs: &[String],
    mut params: BTreeMap<String, String>,
) -> Result<Data, Fail> {
    if let Some(node) = route_node(&r) {
        if !shared.opts.nodes.iter().any(|n| n == node) {
            return Err(Fail::server(format!(
                "hostname lookup '{node}' failed - failed to get address info for: {node}: \
                 Name or service not known"
            )));
        }
    }
    validate(&r, segs, &mut params)?;
    dispatch(shared, r, &params)
}

impl Fail {
    /// Any status with a message and no per-parameter errors.
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Fail {
        Fail {
            status,
            message: message.into(),
            errors: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_paths() {
        let (path, segs) = split_path("/api2/json/nodes/pve1/tasks/UPID%3Apve1%3A/status");
        assert_eq!(path, "/nodes/pve1/tasks/UPID:pve1:/status");
        assert_eq!(segs[3], "UPID:pve1:");
        assert_eq!(
            route("GET", &segs),
            Some(Route::TaskStatus("pve1", "UPID:pve1:"))
        );
        let (path, segs) = split_path("/api2/extjs/version");
        assert_eq!(path, "/api2/extjs/version");
        assert!(route("GET", &segs).is_none());
        let (_, segs) = split_path("/api2/json/nodes/pve1/lxc/101/status/reboot");
        assert!(route("POST", &segs).is_none());
        let (_, segs) = split_path("/api2/json/nodes/pve1/lxc/101/config");
        assert_eq!(route("PUT", &segs), Some(Route::PutConfig("pve1", "101")));
        assert!(route("POST", &segs).is_none());
    }

    #[test]
    fn error_envelopes() {
        let f = Fail::param("onboot", "type check ('boolean') failed - got 'true'");
        let r = response(Err(f.clone()), ErrorStyle::Modern);
        assert_eq!(r.status, 400);
        assert_eq!(r.reason, "Parameter verification failed.");
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["message"], "Parameter verification failed.\n");
        assert_eq!(
            body["errors"]["onboot"],
            "type check ('boolean') failed - got 'true'"
        );
        let r = response(Err(Fail::server("CT 101 not running")), ErrorStyle::Legacy);
        assert_eq!(r.reason, "CT 101 not running");
        assert_eq!(r.body, br#"{"data":null}"#);
        assert!(r.close);
        let r = response(Ok(Data::null()), ErrorStyle::Legacy);
        assert_eq!((r.status, r.close), (200, false));
        assert_eq!(r.body, br#"{"data":null}"#);
    }
}
