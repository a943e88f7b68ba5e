//! What a fault's [`Effect`] makes the node send: the answer instead of executing a
//! request, or the node's answer changed after executing it.
//!
//! Beside the router, which calls it; imports only leaves (`faults`, `http`, `model`,
//! `reply`).

use super::faults::{Effect, Garble};
use super::http::{Body, Outcome, Response, HTML, JSON};
use super::model::ErrorStyle;
use super::reply::{bare, envelope, Fail};
use serde_json::{Map, Value};

/// The answer to a request the fault keeps from being executed, or `None` when the
/// effect lets it run.
pub(crate) fn before(effect: &Effect, style: ErrorStyle) -> Option<Outcome> {
    match effect {
        Effect::Reset => Some(Outcome::Reset),
        Effect::StatusBefore(status) => Some(Outcome::Respond(status_answer(*status, style))),
        _ => None,
    }
}

/// The node's answer `resp`, changed by an effect that applies after execution.
pub(crate) fn after(effect: &Effect, resp: Response, style: ErrorStyle) -> Response {
    match effect {
        Effect::StatusAfter(status) => status_answer(*status, style),
        Effect::Truncate(keep) => Response {
            cut: Some(*keep),
            close: true,
            ..resp
        },
        Effect::Html => Response {
            status: 200,
            reason: "OK".into(),
            content_type: HTML,
            body: Body::Bytes(LOGIN_PAGE.as_bytes().to_vec()),
            close: resp.close,
            cut: None,
            headers: Vec::new(),
        },
        Effect::Garble(g) if resp.status == 200 => match json_of(&resp) {
            Some(mut v) => {
                garble(&mut v, g);
                Response {
                    body: Body::Bytes(v.to_string().into_bytes()),
                    content_type: JSON,
                    ..resp
                }
            }
            None => resp,
        },
        Effect::Huge(size) => padded(resp, *size),
        Effect::Garble(_) | Effect::Delay(_) | Effect::Reset | Effect::StatusBefore(_) => resp,
    }
}

const LOGIN_PAGE: &str = "<!DOCTYPE html>\n<html>\n<head><title>Proxmox Virtual Environment\
</title></head>\n<body><form method=\"post\" action=\"/login\"><input name=\"username\">\
<input name=\"password\" type=\"password\"></form></body>\n</html>\n";

/// An injected status: PVE's envelope for 500, pveproxy's bare 596, a reverse proxy's
/// HTML page for anything else.
fn status_answer(status: u16, style: ErrorStyle) -> Response {
    match status {
        500 => envelope(Err(Fail::server("simulated internal server error")), style),
        596 => bare(596, "Connection timed out"),
        _ => {
            let reason = match status {
                502 => "Bad Gateway",
                503 => "Service Unavailable",
                504 => "Gateway Time-out",
                _ => "Error",
            };
            let page = format!(
                "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
                 <center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n\
                 </body>\r\n</html>\r\n"
            );
            Response {
                status,
                reason: reason.into(),
                content_type: HTML,
                body: Body::Bytes(page.into_bytes()),
                close: true,
                cut: None,
                headers: Vec::new(),
            }
        }
    }
}

fn json_of(resp: &Response) -> Option<Value> {
    serde_json::from_slice(resp.bytes()?).ok()
}

/// The answer with its JSON object padded by a `"pad"` member to `size` bytes (or a
/// little more, when the answer alone is longer).
fn padded(resp: Response, size: u64) -> Response {
    let object = match json_of(&resp) {
        Some(Value::Object(m)) => m,
        _ => Map::from_iter([("data".to_string(), Value::Null)]),
    };
    let text = Value::Object(object).to_string();
    let open = &text[..text.len() - 1];
    let head = if open.len() > 1 {
        format!("{open},\"pad\":\"")
    } else {
        "{\"pad\":\"".to_string()
    };
    let tail = b"\"}".to_vec();
    let fill = size.saturating_sub((head.len() + tail.len()) as u64);
    Response {
        content_type: JSON,
        body: Body::Padded {
            head: head.into_bytes(),
            fill,
            tail,
        },
        ..resp
    }
}

/// Spoils `body["data"]` as `g` says.
fn garble(body: &mut Value, g: &Garble) {
    let data = &mut body["data"];
    match g {
        Garble::WrongType => {
            *data = match data {
                Value::Array(_) => Value::String("unexpected".into()),
                Value::Object(_) => Value::Array(Vec::new()),
                Value::String(_) => Value::from(0),
                _ => Value::Object(Map::new()),
            }
        }
        Garble::Missing(key) => each_entry(data, |m| {
            m.remove(key);
        }),
        Garble::SwapType(key) => each_entry(data, |m| {
            if let Some(v) = m.get_mut(key) {
                *v = swap_type(v);
            }
        }),
        Garble::BadUpid => {
            let text = data.as_str().unwrap_or("UPID:pve1:0:0:0:x:0:root@pam:");
            let mut fields: Vec<&str> = text.split(':').collect();
            if fields.len() > 2 {
                fields[2] = "ZZZZZZZZ";
            }
            *data = Value::String(fields.join(":"));
        }
    }
}

/// Applies `f` to `data` when it is an object, or to each object in it when it is a list.
fn each_entry(data: &mut Value, mut f: impl FnMut(&mut Map<String, Value>)) {
    match data {
        Value::Object(m) => f(m),
        Value::Array(items) => items
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .for_each(f),
        _ => {}
    }
}

fn swap_type(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        Value::String(s) => s
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| s.parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| Value::from(0)),
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value) -> Response {
        Response::json(200, "OK", v.to_string().into_bytes())
    }

    fn data(r: &Response) -> Value {
        json_of(r).unwrap()["data"].clone()
    }

    #[test]
    fn garbles_data_of_200_answers_only() {
        let list = ok(json!({"data": [{"vmid": 101, "name": "a"}, {"vmid": "102"}]}));
        let g = |g: Garble, r: &Response| after(&Effect::Garble(g), r.clone(), ErrorStyle::Modern);
        assert_eq!(data(&g(Garble::WrongType, &list)), json!("unexpected"));
        assert_eq!(
            data(&g(Garble::Missing("vmid".into()), &list)),
            json!([{"name": "a"}, {}])
        );
        assert_eq!(
            data(&g(Garble::SwapType("vmid".into()), &list)),
            json!([{"vmid": "101", "name": "a"}, {"vmid": 102}])
        );
        let upid = ok(json!({"data": "UPID:pve1:00001234:01000000:65000000:vzstart:101:a@pve!t:"}));
        let bad = data(&g(Garble::BadUpid, &upid));
        assert_eq!(
            bad,
            "UPID:pve1:ZZZZZZZZ:01000000:65000000:vzstart:101:a@pve!t:"
        );
        assert_eq!(
            super::super::upid::SimUpid::parse(bad.as_str().unwrap()),
            None
        );
        let failed = envelope(Err(Fail::server("CT 101 not running")), ErrorStyle::Modern);
        assert_eq!(g(Garble::WrongType, &failed), failed);
    }

    #[test]
    fn statuses_pages_and_padding() {
        let r = status_answer(502, ErrorStyle::Modern);
        assert_eq!(
            (r.status, r.reason.as_str(), r.content_type),
            (502, "Bad Gateway", HTML)
        );
        assert_eq!(
            status_answer(596, ErrorStyle::Modern).reason,
            "Connection timed out"
        );
        assert_eq!(status_answer(500, ErrorStyle::Modern).status, 500);
        let html = after(
            &Effect::Html,
            status_answer(500, ErrorStyle::Modern),
            ErrorStyle::Modern,
        );
        assert_eq!((html.status, html.content_type), (200, HTML));
        let huge = after(
            &Effect::Huge(1000),
            ok(json!({"data": [1]})),
            ErrorStyle::Modern,
        );
        assert_eq!(huge.body.len(), 1000);
        let mut out = Vec::new();
        super::super::http::write_response(&mut out, &huge).unwrap();
        let text = String::from_utf8(out).unwrap();
        let v: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(v["data"], json!([1]));
        let empty = after(
            &Effect::Huge(100),
            bare(401, "No ticket"),
            ErrorStyle::Modern,
        );
        assert_eq!((empty.status, empty.body.len()), (401, 100));
        let cut = after(
            &Effect::Truncate(3),
            ok(json!({"data": 1})),
            ErrorStyle::Modern,
        );
        assert_eq!((cut.cut, cut.close), (Some(3), true));
    }
}
