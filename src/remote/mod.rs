//! HTTP(S) to servers other than Proxmox: fetching the desired state from its source
//! (a control plane, a forge's raw URL, nginx) and posting the status to `report_url`.
//!
//! It reuses the Proxmox client's HTTP edge ([`crate::pve::transport`]): minreq with
//! redirects off, the same "never sent" / "no answer" classification and TLS hints,
//! the body read with a cap and checked for being cut off. What differs is handled
//! here: a URL with a path ([`RemoteUrl`]), conditional requests, redirects followed
//! only to https on the same host, and a bearer token that is never shown and never
//! accepted back (an answer that repeats it is refused unread).
//!
//! Every exchange is bounded: one deadline covers all its redirects. Like the Proxmox
//! client, minreq runs each request with a timeout on a short-lived helper thread of
//! its own.

mod error;
#[cfg(test)]
mod tests;
mod url;

pub use error::RemoteError;
pub use url::{RemoteUrl, RemoteUrlError};

use crate::log;
use crate::pve::client::whole_seconds;
use crate::pve::transport::{
    announced_length, is_no_status_line, read_body, transport_failure, BodyError, TlsKeys,
};
use crate::secret::Secret;
use std::time::{Duration, Instant};

/// The most redirects one exchange follows.
pub const MAX_REDIRECTS: usize = 5;

/// How much of a report's answer is read (and thrown away).
const MAX_REPORT_ANSWER: usize = 64 << 10;

/// The config keys TLS failures of the desired-state source point to.
pub(crate) const SOURCE_KEYS: TlsKeys = TlsKeys {
    ca: "desired_ca_file",
    url: "desired_url",
};

/// The config keys TLS failures of the report target point to.
pub(crate) const REPORT_KEYS: TlsKeys = TlsKeys {
    ca: "desired_ca_file",
    url: "report_url",
};

/// A conditional GET.
pub(crate) struct Get<'a> {
    pub url: &'a RemoteUrl,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<&'a Secret>,
    /// The validators of the representation the agent holds: `If-None-Match` is sent
    /// with the ETag; `If-Modified-Since` only when there is no ETag (RFC 9110 §13.1.3:
    /// a server ignores it beside `If-None-Match`).
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
    pub accept: &'a str,
    /// The largest body read.
    pub limit: usize,
    /// The whole exchange, redirects included.
    pub timeout: Duration,
    pub keys: TlsKeys,
}

/// What a GET brought.
#[derive(Debug)]
pub(crate) enum Got {
    /// 304: the representation the agent holds is current.
    NotModified,
    /// A 2xx with its body.
    Body(Body),
}

/// A 2xx answer.
#[derive(Debug)]
pub(crate) struct Body {
    pub bytes: Vec<u8>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_type: Option<String>,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Whether anything of the answer's head repeats the token, in any spelling
/// ([`Secret::is_repeated_in`]: a `Location` may carry it percent-encoded).
fn head_reflects(token: Option<&Secret>, reason: &str, headers: &[(String, String)]) -> bool {
    let Some(t) = token else {
        return false;
    };
    let holds = |s: &str| t.is_repeated_in(s.as_bytes());
    holds(reason) || headers.iter().any(|(k, v)| holds(k) || holds(v))
}

/// Builds one request: the headers every request carries, and the token.
fn request(
    method: minreq::Method,
    url: &RemoteUrl,
    token: Option<&Secret>,
    left: Duration,
) -> minreq::Request {
    let mut r = minreq::Request::new(method, url.full())
        .with_header(
            "User-Agent",
            concat!("felhom-agent/", env!("CARGO_PKG_VERSION")),
        )
        .with_timeout(whole_seconds(left))
        .with_follow_redirects(false);
    if let Some(t) = token {
        r = r.with_header("Authorization", format!("Bearer {}", t.expose()));
    }
    if url.is_https() {
        crate::pve::tls::note_https_use();
    }
    r
}

/// Sends `req`, following redirects to https on the same host, and returns the
/// answer's body or that the representation held is current.
pub(crate) fn get(req: &Get<'_>) -> Result<Got, RemoteError> {
    let started = Instant::now();
    let deadline = started + req.timeout;
    let mut url = req.url.clone();
    let conditional = req.etag.is_some() || req.last_modified.is_some();
    for _hop in 0..=MAX_REDIRECTS {
        let label = format!("GET {}", url.shown());
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RemoteError::TimedOut {
                request: label,
                secs: req.timeout.as_secs(),
            });
        }
        let mut r =
            request(minreq::Method::Get, &url, req.token, left).with_header("Accept", req.accept);
        if let Some(etag) = req.etag {
            r = r.with_header("If-None-Match", etag);
        } else if let Some(date) = req.last_modified {
            r = r.with_header("If-Modified-Since", date);
        }
        let mut resp = send(r, &label, &url, req.token, req.keys, started)?;
        let status = resp.status_code;
        match status {
            304 if conditional => return Ok(Got::NotModified),
            200..=299 if status != 204 => {
                let expected = announced_length(&resp.headers);
                let headers = resp.headers.clone();
                let bytes = match read_body(&mut resp, expected, req.limit) {
                    Ok(b) => b,
                    Err(BodyError::TooLarge) => {
                        return Err(RemoteError::TooLarge {
                            request: label,
                            limit: req.limit,
                        })
                    }
                    Err(BodyError::CutOff(detail)) => {
                        return Err(RemoteError::CutOff {
                            request: label,
                            detail,
                        })
                    }
                };
                if req.token.is_some_and(|t| t.is_repeated_in(&bytes)) {
                    return Err(RemoteError::Reflected { request: label });
                }
                let owned = |name| header(&headers, name).map(str::to_string);
                return Ok(Got::Body(Body {
                    bytes,
                    etag: owned("etag"),
                    last_modified: owned("last-modified"),
                    content_type: owned("content-type"),
                }));
            }
            301 | 302 | 303 | 307 | 308 => {
                let location = header(&resp.headers, "location").unwrap_or("");
                url = url
                    .redirect(location)
                    .map_err(|why| RemoteError::Redirect {
                        request: label.clone(),
                        why,
                    })?;
                log::debug("remote redirect followed", &[("to", &url.shown())]);
            }
            _ => {
                return Err(RemoteError::Status {
                    request: label,
                    status,
                    reason: clean_reason(&resp.reason_phrase),
                })
            }
        }
    }
    Err(RemoteError::Redirect {
        request: format!("GET {}", req.url.shown()),
        why: format!("more than {MAX_REDIRECTS} redirects"),
    })
}

/// Sends `r` (`label` is its method and shown URL) and returns the answer once its
/// head is one: a transport failure says whether the request may have left, a
/// connection closed before a status line is no answer, and a head that reflects the
/// token is refused before anything else is read. Logs the exchange at debug level.
fn send(
    r: minreq::Request,
    label: &str,
    url: &RemoteUrl,
    token: Option<&Secret>,
    keys: TlsKeys,
    started: Instant,
) -> Result<minreq::ResponseLazy, RemoteError> {
    let request = || label.to_string();
    let resp = r.send_lazy().map_err(|e| {
        let (never, source) = transport_failure(&e, keys);
        if never {
            RemoteError::NeverSent {
                request: request(),
                source,
            }
        } else {
            RemoteError::NoAnswer {
                request: request(),
                source,
            }
        }
    })?;
    let method = label.split(' ').next().unwrap_or_default();
    log::debug(
        "remote request",
        &[
            ("method", &method),
            ("url", &url.shown()),
            ("status", &resp.status_code),
            ("ms", &started.elapsed().as_millis()),
        ],
    );
    if is_no_status_line(
        resp.status_code,
        &resp.reason_phrase,
        !resp.headers.is_empty(),
    ) {
        return Err(RemoteError::NoAnswer {
            request: request(),
            source: crate::pve::TransportError::new("connection closed without a response"),
        });
    }
    if head_reflects(token, &resp.reason_phrase, &resp.headers) {
        return Err(RemoteError::Reflected { request: request() });
    }
    Ok(resp)
}

/// A reason phrase fit for a log line: printable, and not endless.
fn clean_reason(reason: &str) -> String {
    let clean: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    clean.trim().to_string()
}

/// POSTs `body` as JSON to `url` within `timeout` and returns the answer's status, a
/// 2xx. A redirect is not followed (it is an error), and the answer's body is read
/// (up to 64 KiB) and thrown away.
pub(crate) fn post_json(
    url: &RemoteUrl,
    token: Option<&Secret>,
    body: Vec<u8>,
    timeout: Duration,
    keys: TlsKeys,
) -> Result<u16, RemoteError> {
    let label = format!("POST {}", url.shown());
    let started = Instant::now();
    let r = request(minreq::Method::Post, url, token, timeout)
        .with_header("Content-Type", "application/json")
        .with_body(body);
    let mut resp = send(r, &label, url, token, keys, started)?;
    let status = resp.status_code;
    if !(200..300).contains(&status) {
        return Err(RemoteError::Status {
            request: label,
            status,
            reason: clean_reason(&resp.reason_phrase),
        });
    }
    let expected = announced_length(&resp.headers);
    // The answer means nothing to the agent; reading it keeps the exchange whole.
    let _ = read_body(&mut resp, expected, MAX_REPORT_ANSWER);
    Ok(status)
}

/// Where the status goes after every pass: `report_url`, with the desired-state
/// source's token when both are on the same origin (scheme, host and port), so that
/// the token never goes to another server than the one it was given for.
#[derive(Clone, Debug)]
pub struct ReportTarget {
    pub url: RemoteUrl,
    pub token: Option<Secret>,
}

impl ReportTarget {
    /// The target for `report_url`, if set; `token` is `desired_url`'s.
    pub fn of(
        report_url: Option<&RemoteUrl>,
        desired_url: Option<&RemoteUrl>,
        token: Option<&Secret>,
    ) -> Option<ReportTarget> {
        let url = report_url?.clone();
        let same_origin = desired_url.is_some_and(|d| d.origin() == url.origin());
        Some(ReportTarget {
            token: token.filter(|_| same_origin).cloned(),
            url,
        })
    }

    /// Posts `body` (a status document) within [`REPORT_TIMEOUT`].
    pub fn post(&self, body: Vec<u8>) -> Result<u16, RemoteError> {
        post_json(
            &self.url,
            self.token.as_ref(),
            body,
            REPORT_TIMEOUT,
            REPORT_KEYS,
        )
    }
}

/// The longest one report may take.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
