//! The HTTP edge of the client: base URL checks, turning minreq's failures into
//! "never sent" or "no answer", and turning a response into data or an [`ApiError`].

use super::error::{ApiError, TransportError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A checked base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    pub https: bool,
    pub host: String,
    /// `https://127.0.0.1:8006`, no trailing slash.
    pub origin: String,
}

/// Accepts `https://host[:port][/]` (and `/api2/json`, which the client adds anyway),
/// and `http://` only to a loopback host. Messages never echo user information,
/// which could hold a password.
pub(crate) fn parse_base_url(url: &str) -> Result<BaseUrl, ApiError> {
    let bad = |what: &str| ApiError::Config(format!("invalid base url: {what}"));
    let trimmed = url.trim();
    let lower = trimmed.to_ascii_lowercase();
    let (https, rest) = if lower.starts_with("https://") {
        (true, &trimmed["https://".len()..])
    } else if lower.starts_with("http://") {
        (false, &trimmed["http://".len()..])
    } else {
        return Err(bad(
            "it must start with https:// (or http:// to a loopback address)",
        ));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(bad("it must not contain user information"));
    }
    let path = tail.trim_end_matches('/');
    if !path.is_empty() && path != "/api2/json" {
        return Err(bad(&format!(
            "{trimmed:?} has a path, query or fragment; give only scheme, host and port"
        )));
    }
    if authority.starts_with('[') {
        return Err(bad(
            "ipv6 address literals are not supported by the http library; use localhost",
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("port {p:?} is not a number from 1 to 65535")))?;
            (h, Some(port))
        }
        None => (authority, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !host_ok {
        return Err(bad(&format!("{host:?} is not a host name or address")));
    }
    if !https && !is_loopback_host(host) {
        return Err(ApiError::Config(format!(
            "plain http is only allowed to a loopback address (127.0.0.0/8, ::1, localhost), \
             not {host:?}; use https"
        )));
    }
    let scheme = if https { "https" } else { "http" };
    let origin = match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    };
    Ok(BaseUrl {
        https,
        host: host.to_string(),
        origin,
    })
}

/// `localhost`, 127.0.0.0/8 or `::1` (with or without brackets).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_end_matches('.');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Ok(v4) = h.parse::<Ipv4Addr>() {
        return v4.is_loopback();
    }
    let inner = h
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(h);
    inner.parse::<Ipv6Addr>().is_ok_and(|v6| v6.is_loopback())
}

/// Whether a minreq failure happened before any byte of the request can have reached
/// the server. When in doubt the answer is no: a timeout or reset is "no answer" even
/// if it might have happened while connecting, because "never sent" licenses a retry.
pub(crate) fn never_sent(err: &minreq::Error) -> bool {
    use minreq::Error as E;
    match err {
        E::AddressNotFound
        | E::RustlsCreateConnection(_)
        | E::InvalidProtocol
        | E::HttpsFeatureNotEnabled
        | E::PunycodeFeatureNotEnabled
        | E::PunycodeConversionFailed
        | E::BadProxy
        | E::BadProxyCreds
        | E::ProxyConnect
        | E::InvalidProxyCreds => true,
        E::IoError(io) => io_never_sent(io),
        _ => false,
    }
}

fn io_never_sent(io: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    match io.kind() {
        K::ConnectionRefused
        | K::AddrNotAvailable
        | K::AddrInUse
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::InvalidInput => return true,
        _ => {}
    }
    // A failed DNS lookup; std gives it no ErrorKind of its own.
    if io
        .to_string()
        .starts_with("failed to lookup address information")
    {
        return true;
    }
    // rustls reports handshake failures as InvalidData wrapping its own error. The
    // rustls type is named here (it is in the tree through minreq, same version) so
    // that only failures that can only happen during the handshake count as never
    // sent; an error after the handshake may follow a request that was received.
    io.get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(tls_handshake_failure)
}

fn tls_handshake_failure(e: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    use rustls::Error as T;
    match e {
        T::InvalidCertificate(_)
        | T::NoCertificatesPresented
        | T::UnsupportedNameType
        | T::PeerIncompatible(_)
        | T::InappropriateHandshakeMessage { .. }
        | T::InvalidCertRevocationList(_) => true,
        T::AlertReceived(alert) => matches!(
            alert,
            A::HandshakeFailure
                | A::ProtocolVersion
                | A::InsufficientSecurity
                | A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
        ),
        _ => false,
    }
}

/// The transport failure as an [`ApiError`]. `request` is `METHOD /path`.
pub(crate) fn transport_error(request: &str, err: &minreq::Error) -> ApiError {
    let source = TransportError::new(err.to_string());
    let request = request.to_string();
    if never_sent(err) {
        ApiError::NeverSent { request, source }
    } else {
        ApiError::NoAnswer { request, source }
    }
}

/// What minreq makes of a connection closed before a status line: a fake 503 with
/// this reason and no headers. It is a reset, not an answer.
const NO_STATUS_LINE: &str = "Server did not provide a status line";

/// The parts of a response the client needs; separate from minreq's type so the
/// interpretation can be tested without a server.
pub(crate) struct Answer<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub has_headers: bool,
    pub body: &'a [u8],
}

/// Unwraps `{"data": ...}` from a 2xx, or builds the error for anything else.
pub(crate) fn interpret(request: &str, a: &Answer<'_>) -> Result<Value, ApiError> {
    if a.status == 503 && a.reason == NO_STATUS_LINE && !a.has_headers {
        return Err(ApiError::NoAnswer {
            request: request.to_string(),
            source: TransportError::new("connection closed without a response"),
        });
    }
    if (200..300).contains(&a.status) {
        let decode = |detail: String| ApiError::Decode {
            request: request.to_string(),
            detail,
        };
        let mut v: Value = serde_json::from_slice(a.body).map_err(|e| decode(e.to_string()))?;
        return match v.get_mut("data") {
            Some(data) => Ok(data.take()),
            None => Err(decode("no \"data\" in the response".into())),
        };
    }
    Err(http_error(a))
}

/// The message comes from, in order: the JSON body's `message` (PVE 8.3+), the reason
/// phrase (older PVE puts it only there), a non-JSON body (the http server's own
/// errors, e.g. 501), the canonical reason.
fn http_error(a: &Answer<'_>) -> ApiError {
    let json: Option<Value> = serde_json::from_slice(a.body).ok();
    let body_message = json
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
        .map(clean)
        .filter(|m| !m.is_empty());
    let reason = Some(clean(a.reason)).filter(|m| !m.is_empty());
    let body_text = if json.is_none() {
        let text = String::from_utf8_lossy(a.body);
        Some(clean(&truncate(&text, 1024))).filter(|m| !m.is_empty())
    } else {
        None
    };
    let message = body_message
        .or(reason)
        .or(body_text)
        .unwrap_or_else(|| canonical_reason(a.status).to_string());
    let mut errors = BTreeMap::new();
    if let Some(Value::Object(map)) = json.as_ref().and_then(|v| v.get("errors")) {
        for (k, v) in map {
            let text = match v {
                Value::String(s) => clean(s),
                other => other.to_string(),
            };
            errors.insert(k.clone(), text);
        }
    }
    ApiError::Http {
        status: a.status,
        message,
        errors,
    }
}

fn clean(s: &str) -> String {
    s.trim_end_matches(['\n', '\r', ' '])
        .trim_start()
        .to_string()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

fn canonical_reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        595 => "Errors during connection establishment",
        596 => "Errors during TLS negotiation, request sending and header processing",
        597 => "Errors during body receiving or processing",
        599 => "Other, usually nonretryable, errors",
        _ => "unexpected status",
    }
}

#[cfg(test)]
mod tests;
