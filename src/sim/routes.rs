//! The API calls the simulated node implements: matching a path to a call, each call's
//! parameter schema (checked the way pve-common `JSONSchema::validate` does, every error
//! collected), and running the matching handler.
//!
//! Above the handlers (`read`, `vmread`, `config`, `vmconfig`, `power`, `vmpower`,
//! `tasks`), below the router.

use super::http;
use super::keys;
use super::model::SimKind;
use super::power;
use super::reply::{Data, Fail};
use super::schema::{self, Kind};
use super::state::Shared;
use super::{config, read, tasks, vmconfig, vmpower, vmread};
use std::collections::BTreeMap;

/// The API calls the simulated node implements. Guest calls name the kind of guest
/// their path is under (`/lxc/` or `/qemu/`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Route<'a> {
    Version,
    ClusterResources,
    List(SimKind, &'a str),
    GetConfig(SimKind, &'a str, &'a str),
    PutConfig(SimKind, &'a str, &'a str),
    /// A VM's asynchronous config update.
    PostConfig(&'a str, &'a str),
    Status(SimKind, &'a str, &'a str),
    Pending(SimKind, &'a str, &'a str),
    Power(SimKind, &'a str, &'a str, power::Op),
    Tasks(&'a str),
    TaskStatus(&'a str, &'a str),
}

pub(crate) fn route<'a>(method: &str, segs: &'a [String]) -> Option<Route<'a>> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let kind = |k: &str| match k {
        "lxc" => Some(SimKind::Lxc),
        "qemu" => Some(SimKind::Qemu),
        _ => None,
    };
    Some(match (method, s.as_slice()) {
        ("GET", ["version"]) => Route::Version,
        ("GET", ["cluster", "resources"]) => Route::ClusterResources,
        ("GET", ["nodes", _, "tasks"]) => Route::Tasks(&segs[1]),
        ("GET", ["nodes", _, "tasks", _, "status"]) => Route::TaskStatus(&segs[1], &segs[3]),
        ("GET", ["nodes", _, k]) => Route::List(kind(k)?, &segs[1]),
        ("GET", ["nodes", _, k, _, "config"]) => Route::GetConfig(kind(k)?, &segs[1], &segs[3]),
        ("PUT", ["nodes", _, k, _, "config"]) => Route::PutConfig(kind(k)?, &segs[1], &segs[3]),
        ("POST", ["nodes", _, "qemu", _, "config"]) => Route::PostConfig(&segs[1], &segs[3]),
        ("GET", ["nodes", _, k, _, "status", "current"]) => {
            Route::Status(kind(k)?, &segs[1], &segs[3])
        }
        ("GET", ["nodes", _, k, _, "pending"]) => Route::Pending(kind(k)?, &segs[1], &segs[3]),
        ("POST", ["nodes", _, k, _, "status", op]) => {
            Route::Power(kind(k)?, &segs[1], &segs[3], power::Op::parse(op)?)
        }
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
        Route::List(SimKind::Qemu, _) => &[("full", BOOL)],
        Route::GetConfig(..) => &[("current", BOOL), ("snapshot", STR)],
        Route::ClusterResources => &[("type", Kind::Enum(&["vm", "storage", "node", "sdn"]))],
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
        Route::Power(SimKind::Lxc, _, _, op) => op.params(),
        Route::Power(SimKind::Qemu, _, _, op) => vmpower::params(*op),
        Route::PutConfig(SimKind::Lxc, ..) => {
            return match key {
                "delete" | "revert" => Some(Kind::ConfigIdList),
                "digest" => Some(Kind::Str { max_len: Some(40) }),
                _ => keys::key(SimKind::Lxc, key).map(|d| d.kind),
            }
        }
        Route::PutConfig(SimKind::Qemu, ..) | Route::PostConfig(..) => {
            return match key {
                "delete" | "revert" => Some(Kind::ConfigIdList),
                "digest" => Some(Kind::Str { max_len: Some(40) }),
                "skiplock" | "force" => Some(BOOL),
                "background_delay" if matches!(r, Route::PostConfig(..)) => Some(Kind::Int {
                    min: 1,
                    max: Some(30),
                }),
                _ => keys::key(SimKind::Qemu, key).map(|d| d.kind),
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
        Route::List(..) | Route::Tasks(_) => &[("node", 1)],
        Route::TaskStatus(..) => &[("node", 1), ("upid", 3)],
        Route::GetConfig(..)
        | Route::PutConfig(..)
        | Route::PostConfig(..)
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

fn dispatch(
    shared: &Shared,
    seq: u64,
    r: Route,
    params: &BTreeMap<String, String>,
) -> Result<Data, Fail> {
    let vmid = |s: &str| s.parse::<u32>().unwrap_or(0);
    match r {
        Route::Version => Ok(read::version()),
        Route::ClusterResources => Ok(read::cluster_resources(shared, params)),
        Route::List(SimKind::Lxc, node) => Ok(read::lxc_list(shared, node)),
        Route::List(SimKind::Qemu, node) => Ok(vmread::list(shared, node, params)),
        Route::GetConfig(kind, node, id) => read::config(shared, kind, node, vmid(id), params),
        Route::Status(SimKind::Lxc, node, id) => read::status(shared, node, vmid(id)),
        Route::Status(SimKind::Qemu, node, id) => vmread::status(shared, node, vmid(id)),
        Route::Pending(kind, node, id) => read::pending(shared, kind, node, vmid(id)),
        Route::PutConfig(SimKind::Lxc, node, id) => config::put(shared, node, vmid(id), params),
        Route::PutConfig(SimKind::Qemu, node, id) => vmconfig::put(shared, node, vmid(id), params),
        Route::PostConfig(node, id) => vmconfig::post(shared, seq, node, vmid(id), params),
        Route::Power(SimKind::Lxc, node, id, op) => {
            power::run(shared, seq, node, vmid(id), op, params)
        }
        Route::Power(SimKind::Qemu, node, id, op) => {
            vmpower::run(shared, seq, node, vmid(id), op, params)
        }
        Route::Tasks(node) => tasks::list(&shared.lock(), node, params),
        Route::TaskStatus(node, upid) => tasks::status(&shared.lock(), node, upid),
    }
}

fn route_node<'a>(r: &Route<'a>) -> Option<&'a str> {
    match *r {
        Route::List(_, n) | Route::Tasks(n) => Some(n),
        Route::GetConfig(_, n, _)
        | Route::PutConfig(_, n, _)
        | Route::PostConfig(n, _)
        | Route::Status(_, n, _)
        | Route::Pending(_, n, _)
        | Route::Power(_, n, _, _)
        | Route::TaskStatus(n, _) => Some(n),
        _ => None,
    }
}

/// The decoded path relative to `/api2/json` and its decoded segments.
pub(crate) fn split_path(raw: &str) -> (String, Vec<String>) {
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

/// Runs the call for request `seq`: the node in the path, the parameter schema, then
/// the handler.
pub(crate) fn run_route(
    shared: &Shared,
    seq: u64,
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
    dispatch(shared, seq, r, &params)
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
        assert_eq!(
            route("PUT", &segs),
            Some(Route::PutConfig(SimKind::Lxc, "pve1", "101"))
        );
        assert!(
            route("POST", &segs).is_none(),
            "containers have no async update"
        );
        let (_, segs) = split_path("/api2/json/nodes/pve1/qemu/100/config");
        assert_eq!(route("POST", &segs), Some(Route::PostConfig("pve1", "100")));
        let (_, segs) = split_path("/api2/json/nodes/pve1/qemu/100/status/shutdown");
        assert_eq!(
            route("POST", &segs),
            Some(Route::Power(
                SimKind::Qemu,
                "pve1",
                "100",
                power::Op::Shutdown
            ))
        );
        let (_, segs) = split_path("/api2/json/nodes/pve1/qemu/100/status/suspend");
        assert!(route("POST", &segs).is_none());
        let (_, segs) = split_path("/api2/json/nodes/pve1/openvz");
        assert!(route("GET", &segs).is_none());
        let (_, segs) = split_path("/api2/json/cluster/ha/resources");
        assert!(
            route("GET", &segs).is_none(),
            "HA state is in /cluster/resources"
        );
    }
}
