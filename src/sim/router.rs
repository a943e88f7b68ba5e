//! One request from arrival to answer: log it and decide its faults on arrival, wait out
//! an injected delay, authenticate, route, validate parameters, run the handler, shape the
//! PVE envelope, apply the fault, and note in the log when and how it ended.
//!
//! Order, as pveproxy/pvedaemon do it: authentication (401) → route (501) → the node in
//! the path (a node that is not in the cluster cannot be proxied to: 500) → parameter
//! schema (400) → the handler (500 for most failures).
//!
//! Above `routes`, below `server`.

use super::faults;
use super::http::{self, Outcome, Request, Response};
use super::inject;
use super::model::RequestRecord;
use super::reply::{bare, envelope, Fail};
use super::routes::{route, run_route, split_path};
use super::state::Shared;
use std::collections::BTreeMap;
use std::time::Instant;

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

/// A request as the node reads it, before anything is decided.
struct Parsed {
    path: String,
    segs: Vec<String>,
    /// Query and body parameters, query winning.
    params: BTreeMap<String, String>,
    /// A JSON body that could not be read; only counts once the caller is known.
    body_error: Option<String>,
    vmid: Option<u32>,
    node: Option<String>,
    mutating: bool,
}

fn parse(req: &Request) -> Parsed {
    let (raw_path, query) = req.path_and_query();
    let (path, segs) = split_path(raw_path);
    let node = (segs.first().map(String::as_str) == Some("nodes"))
        .then(|| segs.get(1).cloned())
        .flatten();
    let guest_path = matches!(segs.get(2).map(String::as_str), Some("lxc" | "qemu"));
    let vmid = guest_path
        .then(|| segs.get(3).and_then(|v| v.parse().ok()))
        .flatten();
    // Parameters are read first so that every record has them, even for requests that
    // are refused or dropped.
    let mut params = BTreeMap::new();
    let content_type = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let body_error = if content_type.starts_with("application/json") {
        http::parse_json_body(&req.body, &mut params).err()
    } else {
        http::parse_form(&String::from_utf8_lossy(&req.body), &mut params);
        None
    };
    http::parse_form(query, &mut params);
    Parsed {
        path,
        segs,
        params,
        body_error,
        vmid,
        node,
        mutating: matches!(req.method.as_str(), "POST" | "PUT" | "DELETE"),
    }
}

impl super::server::Handler for Shared {
    fn handle(&self, req: &Request) -> Outcome {
        process(self, req)
    }

    fn cancel(&self) -> &crate::cancel::Cancel {
        &self.cancel
    }
}

/// Handles one request and keeps its record up to date.
pub(crate) fn process(shared: &Shared, req: &Request) -> Outcome {
    let at = Instant::now();
    let p = parse(req);
    // Arrival: numbered, logged and judged by the fault rules in one step under the lock,
    // so that faults follow the arrival order. Mutations on a guest note the guest as it
    // is now (when its config is on the node in the path), for the audit.
    let (seq, verdict, style) = {
        let mut st = shared.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        let st = &mut *st;
        let verdict = faults::decide(
            &st.faults.rules,
            &mut st.rule_counts,
            &mut st.rng,
            &req.method,
            &p.path,
            p.vmid,
        );
        let (guest, guest_tasks) = match p.vmid.filter(|_| p.mutating) {
            Some(vmid) => (
                st.guests
                    .get(&vmid)
                    .filter(|r| p.node.as_deref() == Some(r.g.node.as_str()))
                    .map(|r| r.g.clone()),
                st.tasks
                    .iter()
                    .filter(|t| t.running() && t.vmid == vmid)
                    .map(|t| t.type_name().to_string())
                    .collect(),
            ),
            None => (None, Vec::new()),
        };
        st.push_request(RequestRecord {
            seq,
            method: req.method.clone(),
            path: p.path.clone(),
            params: p.params.clone(),
            status: 0,
            vmid: p.vmid,
            node: p.node.clone(),
            mutating: p.mutating,
            at,
            done: None,
            executed: false,
            task: None,
            guest,
            guest_tasks,
        });
        if p.mutating {
            st.inflight_mutations += 1;
            st.max_inflight_mutations = st.max_inflight_mutations.max(st.inflight_mutations);
        }
        shared.changed(st);
        (seq, verdict, st.error_style)
    };
    // The client may be gone by the time the wait is over: the request is executed all
    // the same, as pvedaemon would once a worker is free. Only a shutdown of the node
    // cuts the wait short, and then nothing is executed.
    let shut_down = !verdict.delay.is_zero() && shared.cancel.wait(verdict.delay);
    // pveproxy cannot connect to a node that is down to proxy the call to: AnyEvent::HTTP's
    // 595, the text in the reason phrase, an empty body; nothing was sent on
    // (docs/proxmox-api.md §1.4).
    let unreachable = p
        .node
        .as_ref()
        .is_some_and(|n| shared.lock().offline.contains(n));
    let early = match &verdict.effect {
        _ if shut_down => Some(Outcome::Reset),
        _ if unreachable => Some(Outcome::Respond(bare(595, "No route to host"))),
        Some(e) => inject::before(e, style),
        None => None,
    };
    let executed = early.is_none();
    let outcome = early.unwrap_or_else(|| {
        let resp = answer(shared, seq, req, &p);
        // The error style may have been switched while a slow call ran; use the current one.
        let style = shared.lock().error_style;
        Outcome::Respond(match &verdict.effect {
            Some(e) => inject::after(e, resp, style),
            None => resp,
        })
    });
    let status = match &outcome {
        Outcome::Respond(r) => r.status,
        Outcome::Reset => 0,
    };
    crate::log::debug(
        "sim request",
        &[
            ("method", &req.method),
            ("path", &p.path),
            ("status", &status),
            ("ms", &at.elapsed().as_millis()),
        ],
    );
    let mut st = shared.lock();
    if let Some(r) = st.request_mut(seq) {
        r.status = status;
        r.executed = executed;
        r.done = Some(Instant::now());
    }
    if p.mutating {
        st.inflight_mutations -= 1;
    }
    shared.changed(&mut st);
    outcome
}

/// Executes the request and makes the node's own answer.
fn answer(shared: &Shared, seq: u64, req: &Request, p: &Parsed) -> Response {
    let style = shared.lock().error_style;
    if let Err(reason) = authenticate(shared, req) {
        shared.cancel.wait(shared.opts.unauthorized_delay);
        return bare(401, reason);
    }
    if let Some(e) = &p.body_error {
        return envelope(Err(Fail::new(400, e.clone())), style);
    }

    let result = match route(&req.method, &p.segs) {
        None => Err(Fail::new(
            501,
            format!("Method '{} {}' not implemented", req.method, p.path),
        )),
        Some(r) => run_route(shared, seq, r, &p.segs, p.params.clone()),
    };
    let style = shared.lock().error_style;
    envelope(result, style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_vmid_and_parameters() {
        let req = Request {
            method: "PUT".into(),
            target: "/api2/json/nodes/pve1/lxc/101/config?digest=abc".into(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: b"cores=2&digest=zzz".to_vec(),
            keep_alive: true,
        };
        let p = parse(&req);
        assert_eq!(p.path, "/nodes/pve1/lxc/101/config");
        assert_eq!(
            (p.vmid, p.node.as_deref(), p.mutating),
            (Some(101), Some("pve1"), true)
        );
        assert_eq!(p.params["cores"], "2");
        assert_eq!(p.params["digest"], "abc", "the query wins");
        assert!(p.body_error.is_none());
        let vm = Request {
            method: "POST".into(),
            target: "/api2/json/nodes/pve1/qemu/100/status/start".into(),
            headers: Vec::new(),
            body: Vec::new(),
            keep_alive: true,
        };
        assert_eq!(parse(&vm).vmid, Some(100));
    }
}
