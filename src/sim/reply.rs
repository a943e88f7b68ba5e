//! What a handler answers ([`Data`] or [`Fail`]) and the PVE envelope it goes out in
//! (pve-http-server `src/PVE/APIServer/Formatter/Standard.pm`).
//!
//! Imports only the leaves `http` and `model`.

use super::http::Response;
use super::model::ErrorStyle;
use serde_json::{json, Value};
use std::collections::BTreeMap;

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
        Fail::new(500, message)
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

/// The response for a handler result, in the given error style.
pub(crate) fn envelope(result: Result<Data, Fail>, style: ErrorStyle) -> Response {
    match result {
        Ok(d) => {
            let mut body = json!({ "data": d.data });
            if let Some(total) = d.total {
                body["total"] = total.into();
            }
            Response::json(200, "OK", body.to_string().into_bytes())
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
            let reason = message.lines().next().unwrap_or("").to_string();
            let mut r = Response::json(f.status, reason, body.to_string().into_bytes());
            r.close = true;
            r
        }
    }
}

/// A response without a body (401, 596 and the like); the connection is closed.
pub(crate) fn bare(status: u16, reason: &str) -> Response {
    let mut r = Response::json(status, reason, Vec::new());
    r.close = true;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelopes() {
        let f = Fail::param("onboot", "type check ('boolean') failed - got 'true'");
        let r = envelope(Err(f.clone()), ErrorStyle::Modern);
        assert_eq!(r.status, 400);
        assert_eq!(r.reason, "Parameter verification failed.");
        let body: Value = serde_json::from_slice(r.bytes().unwrap()).unwrap();
        assert_eq!(body["message"], "Parameter verification failed.\n");
        assert_eq!(
            body["errors"]["onboot"],
            "type check ('boolean') failed - got 'true'"
        );
        let r = envelope(Err(Fail::server("CT 101 not running")), ErrorStyle::Legacy);
        assert_eq!(r.reason, "CT 101 not running");
        assert_eq!(r.bytes().unwrap(), br#"{"data":null}"#);
        assert!(r.close);
        let r = envelope(Ok(Data::null()), ErrorStyle::Legacy);
        assert_eq!((r.status, r.close), (200, false));
        assert_eq!(r.bytes().unwrap(), br#"{"data":null}"#);
    }
}
