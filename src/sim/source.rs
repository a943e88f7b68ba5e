//! A desired-state source: a second, independent server (its own listener, TLS
//! certificate and request log) that serves one desired-state document the way a
//! control plane, nginx or a forge's raw URL does, and takes status reports.
//!
//! It answers conditional requests as RFC 9110 says: `If-None-Match` (§13.1.2) with the
//! weak comparison of entity tags (§8.8.3.2) and `*`; `If-Modified-Since` (§13.1.3) only
//! without `If-None-Match` and only with a valid HTTP-date, comparing at whole seconds;
//! a 304 carries the `ETag` (or, without one, the `Last-Modified`) and no body.
//! [`Serve`] switches it to the ways a source misbehaves; stopping it and starting a
//! new one on the same address is a source that goes away and comes back.
//!
//! A separate server rather than a route of the simulated node, because the tests need
//! the source on another certificate from another CA than the Proxmox API, and a
//! request log of its own.

use super::http::{Body, Outcome, Request, Response, JSON};
use super::model::TlsFiles;
use super::server::{accept_loop, Handler};
use super::tls;
use crate::cancel::{Cancel, CancelSource};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the source answers a GET of its document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serve {
    /// The document, with its validators, answering conditional requests.
    Document,
    /// The document under another content type (`text/html`, say).
    ContentType(&'static str),
    /// An error status with an HTML page, as a reverse proxy sends it.
    Status(u16),
    /// 200 with this content type and body (garbage of any kind).
    Body(&'static str, Vec<u8>),
    /// The document's `Content-Length`, half its bytes, then the connection closes.
    Truncated,
    /// A redirect (301, 302, 303, 307, 308) to this location.
    Redirect(u16, String),
    /// 200 JSON whose body repeats the request's `Authorization` header, as the state
    /// of guest 101.
    Reflect,
    /// 200 JSON of this many bytes.
    Huge(u64),
}

/// One request as the source saw it.
#[derive(Clone, Debug)]
pub struct SourceRecord {
    pub method: String,
    pub target: String,
    pub status: u16,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub authorization: Option<String>,
    /// A POST's body (a status report).
    pub body: Vec<u8>,
    pub at: Instant,
}

/// Where and how the source listens.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// Port 0 picks a free one; a stopped source's address brings it back there.
    pub listen: SocketAddr,
    /// The document's path (GETs of other paths get 404).
    pub path: String,
    pub tls: Option<TlsFiles>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            path: "/nodes/pve1.json".to_string(),
            tls: None,
        }
    }
}

struct Doc {
    text: String,
    etag: Option<String>,
    /// Unix seconds.
    modified: Option<i64>,
}

struct State {
    doc: Doc,
    serve: Serve,
    log: Vec<SourceRecord>,
    /// Bumped by every new document, for its ETag.
    version: u64,
    with_etag: bool,
    with_last_modified: bool,
}

struct Shared {
    path: String,
    state: Mutex<State>,
    cond: Condvar,
    cancel: Cancel,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running source; dropping it stops it and joins its threads.
pub struct Source {
    shared: Arc<Shared>,
    addr: SocketAddr,
    https: bool,
    cancel: CancelSource,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Source {
    /// Binds and starts serving `document` (which may be anything: it is not checked).
    pub fn start(opts: SourceOptions, document: &str) -> io::Result<Source> {
        let tls_cfg = opts.tls.as_ref().map(tls::server_config).transpose()?;
        let listener = TcpListener::bind(opts.listen)?;
        let addr = listener.local_addr()?;
        let cancel = CancelSource::new();
        let shared = Arc::new(Shared {
            path: opts.path,
            state: Mutex::new(State {
                doc: Doc {
                    text: String::new(),
                    etag: None,
                    modified: None,
                },
                serve: Serve::Document,
                log: Vec::new(),
                version: 0,
                with_etag: true,
                with_last_modified: true,
            }),
            cond: Condvar::new(),
            cancel: cancel.token(),
        });
        let mut source = Source {
            shared: shared.clone(),
            addr,
            https: tls_cfg.is_some(),
            cancel,
            stop: Arc::new(AtomicBool::new(false)),
            accept: None,
        };
        source.set_document(document);
        let stop = source.stop.clone();
        source.accept = Some(
            std::thread::Builder::new()
                .name("sim source accept".into())
                .spawn(move || accept_loop(shared, listener, tls_cfg, stop))?,
        );
        Ok(source)
    }

    /// The document's URL: `https://localhost:PORT/path` with TLS (the test
    /// certificate's name), `http://127.0.0.1:PORT/path` without.
    pub fn url(&self) -> String {
        format!("{}{}", self.origin(), self.shared.path)
    }

    /// `https://localhost:PORT` or `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        let port = self.addr.port();
        if self.https {
            format!("https://localhost:{port}")
        } else {
            format!("http://127.0.0.1:{port}")
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `text` from now on, with a new ETag and `Last-Modified` (now).
    pub fn set_document(&self, text: &str) {
        let mut st = self.shared.lock();
        st.version += 1;
        let etag = format!("\"v{}-{:016x}\"", st.version, fnv(text.as_bytes()));
        st.doc = Doc {
            text: text.to_string(),
            etag: st.with_etag.then_some(etag),
            modified: st.with_last_modified.then(unix_now),
        };
    }

    /// Which validators the next documents carry (both by default).
    pub fn set_validators(&self, etag: bool, last_modified: bool) {
        let mut st = self.shared.lock();
        st.with_etag = etag;
        st.with_last_modified = last_modified;
    }

    /// The ETag of the document served now.
    pub fn etag(&self) -> Option<String> {
        self.shared.lock().doc.etag.clone()
    }

    pub fn set_serve(&self, serve: Serve) {
        self.shared.lock().serve = serve;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<SourceRecord> {
        self.shared.lock().log.clone()
    }

    /// Waits until `cond` holds for the request log, or `timeout` passes.
    pub fn wait_until(&self, timeout: Duration, cond: impl Fn(&[SourceRecord]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if cond(&st.log) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .shared
                .cond
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Handler for Shared {
    fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    fn handle(&self, req: &Request) -> Outcome {
        let mut st = self.lock();
        let resp = if req.method == "POST" {
            let mut r = Response::json(202, "Accepted", Vec::new());
            r.close = false;
            r
        } else if req.method != "GET" {
            Response::json(405, "Method Not Allowed", Vec::new())
        } else if req.path_and_query().0 != self.path {
            page(404, "Not Found")
        } else {
            answer(&st, req)
        };
        st.log.push(SourceRecord {
            method: req.method.clone(),
            target: req.target.clone(),
            status: resp.status,
            if_none_match: req.header("if-none-match").map(str::to_string),
            if_modified_since: req.header("if-modified-since").map(str::to_string),
            authorization: req.header("authorization").map(str::to_string),
            body: req.body.clone(),
            at: Instant::now(),
        });
        drop(st);
        self.cond.notify_all();
        Outcome::Respond(resp)
    }
}

/// An error page as nginx writes it.
fn page(status: u16, reason: &str) -> Response {
    let html = format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    let mut r = Response::json(status, reason, html.into_bytes());
    r.content_type = super::http::HTML;
    r
}

/// The answer to a GET of the document.
fn answer(st: &State, req: &Request) -> Response {
    let doc = &st.doc;
    let with_doc = |content_type: &'static str| {
        let mut r = Response::json(200, "OK", doc.text.clone().into_bytes());
        r.content_type = content_type;
        r.close = false;
        r.headers = validators(doc);
        r
    };
    match &st.serve {
        Serve::Document => {
            if not_modified(doc, req) {
                let mut r = Response::json(304, "Not Modified", Vec::new());
                r.headers = match &doc.etag {
                    Some(e) => vec![("ETag".into(), e.clone())],
                    None => validators(doc),
                };
                r
            } else {
                with_doc(JSON)
            }
        }
        Serve::ContentType(ct) => with_doc(ct),
        Serve::Status(s) => page(*s, reason(*s)),
        Serve::Body(ct, body) => {
            let mut r = Response::json(200, "OK", body.clone());
            r.content_type = ct;
            r
        }
        Serve::Truncated => {
            let mut r = with_doc(JSON);
            r.cut = Some(doc.text.len() as u64 / 2);
            r.close = true;
            r
        }
        Serve::Redirect(status, location) => {
            let mut r = page(*status, reason(*status));
            r.headers = vec![("Location".into(), location.clone())];
            r
        }
        Serve::Reflect => {
            let auth = req.header("authorization").unwrap_or("");
            // In a value, where a refused document's error would quote it.
            let body = serde_json::json!({"guests": [{"vmid": 101, "state": auth}]}).to_string();
            Response::json(200, "OK", body.into_bytes())
        }
        Serve::Huge(size) => {
            let mut r = Response::json(200, "OK", Vec::new());
            r.body = Body::Padded {
                head: b"{\"guests\": [], \"pad\": \"".to_vec(),
                fill: size.saturating_sub(25),
                tail: b"\"}".to_vec(),
            };
            r
        }
    }
}

fn validators(doc: &Doc) -> Vec<(String, String)> {
    let mut h = Vec::new();
    if let Some(e) = &doc.etag {
        h.push(("ETag".to_string(), e.clone()));
    }
    if let Some(m) = doc.modified {
        h.push(("Last-Modified".to_string(), http_date(m)));
    }
    h
}

fn reason(status: u16) -> &'static str {
    match status {
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// RFC 9110 §13.2.2, for a GET: `If-None-Match` decides when present; else
/// `If-Modified-Since`, when it is a valid date.
fn not_modified(doc: &Doc, req: &Request) -> bool {
    if let Some(inm) = req.header("if-none-match") {
        return if_none_match_fails(inm, doc.etag.as_deref());
    }
    match (
        req.header("if-modified-since").and_then(parse_http_date),
        doc.modified,
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// Whether `If-None-Match: <value>` evaluates to false for a representation with
/// `etag`, by the weak comparison: `*` matches any current representation, a list
/// matches when one member's opaque tag equals the representation's.
pub(crate) fn if_none_match_fails(value: &str, etag: Option<&str>) -> bool {
    if value.trim() == "*" {
        return true;
    }
    let Some(etag) = etag else {
        return false;
    };
    let opaque = |t: &str| t.trim().strip_prefix("W/").unwrap_or(t.trim()).to_string();
    value.split(',').any(|t| opaque(t) == opaque(etag))
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn http_date(secs: i64) -> String {
    let iso = crate::time::rfc3339(secs); // 1994-11-06T08:49:37Z
    let month = iso[5..7].parse::<usize>().unwrap_or(1);
    format!(
        "{}, {} {} {} {} GMT",
        DAYS[secs.div_euclid(86_400).rem_euclid(7) as usize],
        &iso[8..10],
        MONTHS[month - 1],
        &iso[0..4],
        &iso[11..19]
    )
}

/// Parses an IMF-fixdate; anything else (the obsolete formats included) is `None`,
/// which a recipient of `If-Modified-Since` ignores.
pub(crate) fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split(' ').collect();
    let [day, dd, mon, yyyy, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    if !DAYS.iter().any(|d| day.strip_suffix(',') == Some(*d)) || dd.len() != 2 {
        return None;
    }
    let month = MONTHS.iter().position(|m| m == mon)? + 1;
    crate::time::parse_rfc3339(&format!("{yyyy}-{month:02}-{dd}T{time}Z"))
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_round_trip() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), None);
        assert_eq!(parse_http_date("yesterday"), None);
        let now = unix_now();
        assert_eq!(parse_http_date(&http_date(now)), Some(now));
    }

    #[test]
    fn if_none_match_uses_the_weak_comparison() {
        let fails = |v, e| if_none_match_fails(v, e);
        assert!(fails("\"a\"", Some("\"a\"")));
        assert!(fails("W/\"a\"", Some("\"a\"")));
        assert!(fails("\"a\"", Some("W/\"a\"")));
        assert!(fails("\"x\", W/\"a\"", Some("\"a\"")));
        assert!(fails("*", Some("\"a\"")));
        assert!(fails("*", None));
        assert!(!fails("\"b\"", Some("\"a\"")));
        assert!(!fails("\"a\"", None));
    }
}
