//! One request from arrival to answer: record it, inject faults, authenticate, route,
//! validate parameters, run the handler and shape the PVE envelope.
//!
//! Order, as pveproxy/pvedaemon do it: authentication (401) → route (501) → the node in
//! the path (a node that is not in the cluster cannot be proxied to: 500) → parameter
//! schema (400) → the handler (500 for most failures).

use super::http::{self, Request, Response};
use super::routes::{route, run_route, split_path};
use super::state::Shared;
use super::{ErrorStyle, RequestRecord};
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
    /// Any status with a message and no per-parameter errors.
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Fail {
        Fail {
            status,
            message: message.into(),
            errors: BTreeMap::new(),
        }
    }

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
    // Parameters are read first so that every record has them, even for requests that
    // are refused or dropped; a bad body only counts once the caller is known.
    let content_type = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let body_error = if content_type.starts_with("application/json") {
        http::parse_json_body(&req.body, params).err()
    } else {
        http::parse_form(&String::from_utf8_lossy(&req.body), params);
        None
    };
    http::parse_form(query, params);
    if let Err(reason) = authenticate(shared, req) {
        shared.cancel.wait(shared.opts.unauthorized_delay);
        return Outcome::Respond(bare(401, reason));
    }
    let (reset, fail500, fail596) = {
        let mut st = shared.lock();
        let f = st.faults.clone();
        let targeted = f
            .faults_for
            .as_ref()
            .is_none_or(|(m, p)| m.eq_ignore_ascii_case(&req.method) && path.contains(p.as_str()));
        // Always three draws, so one rate does not shift the others' sequence.
        let draws = (
            st.rng.chance(f.reset_rate),
            st.rng.chance(f.rate_500),
            st.rng.chance(f.rate_596),
        );
        (
            targeted && draws.0,
            targeted && draws.1,
            targeted && draws.2,
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
    if let Some(e) = body_error {
        return Outcome::Respond(response(Err(Fail::new(400, e)), style));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
