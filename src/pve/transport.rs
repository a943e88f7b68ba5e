//! The HTTP edge of the client: turning minreq's failures into "never sent" or "no
//! answer", reading a body with a size cap and noticing when it was cut off, and
//! turning a response into data or an [`ApiError`].
//!
//! TLS handshake failures are recognised without naming the rustls crate (it is to
//! become a dependency of the simulator only): rustls reports them as an
//! `InvalidData` io error whose inner error's text names the failure.

use super::error::{ApiError, TransportError};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;

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
    tls_failure(io).is_some()
}

/// rustls' texts (its `Display`) for errors that can only come from a handshake, so
/// the request, written after it, cannot have been sent. An error after the handshake
/// (a bad record, a close alert) may follow a request that was received.
const HANDSHAKE_ERRORS: &[&str] = &[
    "invalid peer certificate",
    "peer sent no certificates",
    "presented server name type wasn't supported",
    "peer is incompatible",
    "received unexpected handshake message",
    "invalid certificate revocation list",
];

/// The alerts a server sends when it refuses a handshake (`received fatal alert: X`).
const HANDSHAKE_ALERTS: &[&str] = &[
    "HandshakeFailure",
    "ProtocolVersion",
    "InsufficientSecurity",
    "BadCertificate",
    "UnsupportedCertificate",
    "CertificateRevoked",
    "CertificateExpired",
    "CertificateUnknown",
    "UnknownCA",
];

fn is_handshake_failure(text: &str) -> bool {
    HANDSHAKE_ERRORS.iter().any(|p| text.starts_with(p))
        || text
            .strip_prefix("received fatal alert: ")
            .is_some_and(|alert| HANDSHAKE_ALERTS.contains(&alert.trim()))
}

/// The text of the TLS handshake failure inside `io`, if that is what it is: an
/// `InvalidData` error whose inner error, or one of that error's sources, has a
/// handshake failure's text.
fn tls_failure(io: &std::io::Error) -> Option<String> {
    if io.kind() != std::io::ErrorKind::InvalidData {
        return None;
    }
    let mut next: Option<&(dyn std::error::Error + 'static)> = match io.get_ref() {
        Some(inner) => Some(inner),
        None => return None,
    };
    while let Some(e) = next {
        let text = e.to_string();
        if is_handshake_failure(&text) {
            return Some(text);
        }
        next = e.source();
    }
    None
}

/// The config keys a TLS failure points the reader to: the CA file that is to vouch for
/// the server, and the URL that names it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TlsKeys {
    pub ca: &'static str,
    pub url: &'static str,
}

/// The keys of the Proxmox API.
pub(crate) const API_KEYS: TlsKeys = TlsKeys {
    ca: "ca_file",
    url: "api_url",
};

/// What a handshake failure means for the person reading the log.
fn tls_hint(text: &str, keys: TlsKeys) -> String {
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if has(&["UnknownIssuer", "UnknownCA", "BadSignature"]) {
        format!(
            "the server's certificate is not signed by the trusted CA (check {})",
            keys.ca
        )
    } else if has(&["not valid for name", "NotValidForName"]) {
        format!(
            "the server's certificate is not valid for the host in {} \
             (use a name or address the certificate lists)",
            keys.url
        )
    } else if has(&["expired", "Expired"]) {
        "the server's certificate has expired".to_string()
    } else if has(&["not valid yet", "NotValidYet"]) {
        "the server's certificate is not valid yet (check this node's clock)".to_string()
    } else {
        "the server refused or failed the handshake".to_string()
    }
}

/// A minreq failure as whether it is "never sent" (see [`never_sent`]) and its reason,
/// a TLS handshake failure explained with `keys`. Shared by the Proxmox client and the
/// agent's other HTTP requests ([`crate::remote`]).
pub(crate) fn transport_failure(err: &minreq::Error, keys: TlsKeys) -> (bool, TransportError) {
    let tls = match err {
        minreq::Error::IoError(io) => tls_failure(io),
        _ => None,
    };
    let source = match tls {
        Some(text) => TransportError::new(format!(
            "tls handshake failed, {}: {text}",
            tls_hint(&text, keys)
        )),
        None => TransportError::new(err.to_string()),
    };
    (never_sent(err), source)
}

/// The transport failure as an [`ApiError`]. `request` is `METHOD /path`.
pub(crate) fn transport_error(request: &str, err: &minreq::Error) -> ApiError {
    let (never, source) = transport_failure(err, API_KEYS);
    let request = request.to_string();
    if never {
        ApiError::NeverSent { request, source }
    } else {
        ApiError::NoAnswer { request, source }
    }
}

/// The most the client reads of one answer's body: far above any real answer (a
/// cluster's resource list is a few hundred bytes per guest), low enough that a broken
/// or hostile server cannot exhaust the agent's memory.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Why a body could not be read whole.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Longer than the limit (by its Content-Length, or by what arrived).
    TooLarge,
    /// Fewer bytes than announced, or a read error mid-body: `412 of 1024 bytes`.
    CutOff(String),
}

/// Reads a body of at most `limit` bytes. `expected` is the Content-Length, when the
/// body is not chunked; minreq stops at it but returns a short body without error
/// when the connection closes early, so the count is checked here. A chunked or
/// close-delimited body that ends early shows up as JSON that ends early (see
/// [`interpret`]).
pub(crate) fn read_body(
    body: impl Read,
    expected: Option<u64>,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if expected.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let capacity = expected.map_or(0, |n| n as usize).min(64 << 10);
    let mut buf = Vec::with_capacity(capacity);
    // Up to the limit, then one byte more to tell a body of exactly the limit from a
    // longer one; reading limit + 1 at once could double the buffer past the limit.
    let mut capped = body.take(limit as u64);
    let read = capped.read_to_end(&mut buf);
    let got = buf.len();
    let of = expected.map_or(String::new(), |n| format!(" of {n}"));
    let cut = |e: Option<std::io::Error>| {
        let why = e.map_or(String::new(), |e| format!(" ({e})"));
        Err(BodyError::CutOff(format!("{got}{of} bytes{why}")))
    };
    match read {
        Err(e) => return cut(Some(e)),
        Ok(_) if expected.is_some_and(|n| (got as u64) < n) => return cut(None),
        Ok(_) => {}
    }
    if got == limit && expected.is_none() {
        match capped.into_inner().read(&mut [0u8; 1]) {
            Ok(0) => {}
            Ok(_) => return Err(BodyError::TooLarge),
            Err(e) => return cut(Some(e)),
        }
    }
    Ok(buf)
}

/// The body length a response announces: its Content-Length, unless it is chunked
/// (then the length header must be ignored). `headers` as minreq gives them, with
/// lowercased names.
pub(crate) fn announced_length(headers: &[(String, String)]) -> Option<u64> {
    let value = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    if value("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return None;
    }
    value("content-length").and_then(|v| v.parse().ok())
}

/// What minreq makes of a connection closed before a status line: a fake 503 with
/// this reason and no headers. It is a reset, not an answer.
const NO_STATUS_LINE: &str = "Server did not provide a status line";

/// Whether minreq's response is its stand-in for a connection closed before a status
/// line (see [`NO_STATUS_LINE`]).
pub(crate) fn is_no_status_line(status: u16, reason: &str, has_headers: bool) -> bool {
    status == 503 && reason == NO_STATUS_LINE && !has_headers
}

/// The parts of a response the client needs; separate from minreq's type so the
/// interpretation can be tested without a server.
pub(crate) struct Answer<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub has_headers: bool,
    pub body: &'a [u8],
}

/// The `data` of a 2xx as a `T` ([`super::envelope`]), or the error for anything else.
/// A 2xx whose JSON ends early was cut off ([`ApiError::Truncated`]), not malformed.
pub(crate) fn interpret<T: DeserializeOwned>(request: &str, a: &Answer<'_>) -> Result<T, ApiError> {
    if is_no_status_line(a.status, a.reason, a.has_headers) {
        return Err(ApiError::NoAnswer {
            request: request.to_string(),
            source: TransportError::new("connection closed without a response"),
        });
    }
    if (200..300).contains(&a.status) {
        return super::envelope::data(request, a.status, a.body);
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
