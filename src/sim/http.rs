//! HTTP/1.x by hand: reading one request, writing one response, and decoding URLs and
//! form bodies the way pve-http-server does (`AnyEvent.pm` `decode_urlencoded`).
//!
//! A leaf: it imports no other module of the simulator.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};

/// Limits from pve-http-server `src/PVE/APIServer/AnyEvent.pm` (`$limit_max_headers`,
/// `$limit_max_header_size`, `$limit_max_post`).
const MAX_HEADER_BYTES: usize = 8 * 1024;
const MAX_HEADER_LINES: usize = 64;
pub(crate) const MAX_BODY: usize = 512 * 1024;

/// One parsed request.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    /// The request target as sent: path and query, still percent-encoded.
    pub target: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the client wants the connection kept open.
    pub keep_alive: bool,
}

impl Request {
    /// The first header with this (lowercase) name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The raw path and the raw query string (empty when there is none).
    pub(crate) fn path_and_query(&self) -> (&str, &str) {
        self.target.split_once('?').unwrap_or((&self.target, ""))
    }
}

/// The content type of PVE's JSON answers.
pub(crate) const JSON: &str = "application/json;charset=UTF-8";
/// The content type of an HTML page.
pub(crate) const HTML: &str = "text/html;charset=UTF-8";

/// A response body: bytes in memory, or a large one generated while it is written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    Bytes(Vec<u8>),
    /// `head`, then `fill` bytes of `x`, then `tail`: never held in memory at once.
    Padded {
        head: Vec<u8>,
        fill: u64,
        tail: Vec<u8>,
    },
}

impl Body {
    /// The length announced in `Content-Length`.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Padded { head, fill, tail } => head.len() as u64 + fill + tail.len() as u64,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One response to send.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Response {
    pub status: u16,
    pub reason: String,
    /// Sent when the body is not empty.
    pub content_type: &'static str,
    pub body: Body,
    /// Close the connection after sending.
    pub close: bool,
    /// Send only this many bytes of the body, then close: `Content-Length` still
    /// announces all of it.
    pub cut: Option<u64>,
    /// More header lines (`ETag`, `Location`, ...), written as given.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// A JSON (or empty) response.
    pub(crate) fn json(status: u16, reason: impl Into<String>, body: Vec<u8>) -> Response {
        Response {
            status,
            reason: reason.into(),
            content_type: JSON,
            body: Body::Bytes(body),
            close: status >= 400,
            cut: None,
            headers: Vec::new(),
        }
    }

    /// The body when it is held in memory.
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Bytes(b) => Some(b),
            Body::Padded { .. } => None,
        }
    }
}

/// What the connection does with a request once the node is done with it.
#[derive(Debug)]
pub(crate) enum Outcome {
    Respond(Response),
    /// Close the socket without answering.
    Reset,
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed, or the idle timeout passed, before a request began.
    Idle,
    Io(io::Error),
    /// A malformed request: answer 400 and close.
    Bad(String),
    /// The body is larger than PVE accepts: answer 501 and close.
    TooLarge,
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads one line (without the line end) within `budget` bytes.
fn read_line<R: BufRead>(r: &mut R, budget: &mut usize) -> Result<String, ReadError> {
    let mut buf = Vec::new();
    let n = r.take(*budget as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    if !buf.ends_with(b"\n") {
        return Err(ReadError::Bad("request header too large".into()));
    }
    *budget = budget.saturating_sub(n);
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| ReadError::Bad("header is not UTF-8".into()))
}

/// Reads one request. Waiting for its first byte is where an idle connection ends.
pub(crate) fn read_request<R: BufRead>(r: &mut R) -> Result<Request, ReadError> {
    match r.fill_buf() {
        Ok([]) => return Err(ReadError::Idle),
        Ok(_) => {}
        Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::ConnectionReset => {
            return Err(ReadError::Idle)
        }
        Err(e) => return Err(e.into()),
    }
    let mut budget = MAX_HEADER_BYTES;
    let mut line = read_line(r, &mut budget)?;
    // Tolerate stray empty lines between pipelined requests, as most servers do.
    while line.is_empty() {
        line = read_line(r, &mut budget)?;
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(format!("malformed request line {line:?}")));
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReadError::Bad(format!("unsupported version {version:?}"))),
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, &mut budget)?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADER_LINES {
            return Err(ReadError::Bad("too many header lines".into()));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Bad(format!("malformed header line {line:?}")));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body: Vec::new(),
        keep_alive: false,
    };
    let connection = req.header("connection").unwrap_or("").to_ascii_lowercase();
    req.keep_alive = if http10 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    if req.header("transfer-encoding").is_some() {
        return Err(ReadError::Bad(
            "chunked request bodies are not supported".into(),
        ));
    }
    let len = match req.header("content-length") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ReadError::Bad(format!("bad content-length {v:?}")))?,
    };
    if len > MAX_BODY {
        return Err(ReadError::TooLarge);
    }
    req.body = vec![0; len];
    r.read_exact(&mut req.body)?;
    Ok(req)
}

/// Writes one response: the head and a small body in one buffer, a padded body in
/// chunks, and no more of the body than `cut` allows.
pub(crate) fn write_response<W: Write>(w: &mut W, resp: &Response) -> io::Result<()> {
    let reason: String = resp
        .reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nCache-Control: max-age=0\r\nConnection: {}\r\nPragma: no-cache\r\n\
         Server: pve-api-daemon/3.0\r\n",
        resp.status,
        reason,
        if resp.close || resp.cut.is_some() {
            "close"
        } else {
            "Keep-Alive"
        },
    );
    if !resp.body.is_empty() {
        out.push_str(&format!("Content-Type: {}\r\n", resp.content_type));
    }
    for (name, value) in &resp.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    // RFC 9110 §8.6: a 204 has no Content-Length, and a 304's would have to be the
    // length of the 200 it stands for; neither has a body.
    if !matches!(resp.status, 204 | 304) {
        out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    out.push_str("\r\n");
    let mut out = Sink {
        buf: out.into_bytes(),
        budget: resp.cut.unwrap_or(u64::MAX),
    };
    match &resp.body {
        Body::Bytes(b) => out.put(w, b)?,
        Body::Padded { head, fill, tail } => {
            out.put(w, head)?;
            let pad = [b'x'; CHUNK];
            let mut left = *fill;
            while left > 0 && out.budget > 0 {
                let n = left.min(CHUNK as u64) as usize;
                out.put(w, &pad[..n])?;
                left -= n as u64;
            }
            out.put(w, tail)?;
        }
    }
    w.write_all(&out.buf)?;
    w.flush()
}

/// Buffers what is written, flushing in chunks, and drops what goes beyond `budget`.
struct Sink {
    buf: Vec<u8>,
    budget: u64,
}

impl Sink {
    fn put<W: Write>(&mut self, w: &mut W, chunk: &[u8]) -> io::Result<()> {
        let n = chunk
            .len()
            .min(usize::try_from(self.budget).unwrap_or(usize::MAX));
        self.buf.extend_from_slice(&chunk[..n]);
        self.budget -= n as u64;
        if self.buf.len() >= CHUNK {
            w.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// How much of a padded body is written at once.
const CHUNK: usize = 64 * 1024;

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes (and `+` as a space in form data). Invalid escapes stay as
/// they are; invalid UTF-8 becomes U+FFFD.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Adds the pairs of a form body or query string to `out`. Pairs are split on `&` and
/// `;`; a key that repeats has its values joined with `\0`, as pve-http-server does
/// (which is why PVE's list splitter also splits on `\0`).
pub(crate) fn parse_form(s: &str, out: &mut BTreeMap<String, String>) {
    let mut seen = BTreeMap::<String, String>::new();
    for pair in s.split(['&', ';']) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k, true), percent_decode(v, true));
        if k.is_empty() {
            continue;
        }
        seen.entry(k)
            .and_modify(|old| {
                old.push('\0');
                old.push_str(&v);
            })
            .or_insert(v);
    }
    out.extend(seen);
}

/// Adds the members of a JSON object body to `out` as strings: booleans become `1`/`0`,
/// numbers their text, `null` is skipped, arrays are joined with `\0`.
pub(crate) fn parse_json_body(
    body: &[u8],
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    let Value::Object(map) = v else {
        return Err("JSON body is not an object".into());
    };
    fn text(v: &Value) -> Option<String> {
        match v {
            Value::Null => None,
            Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Array(items) => {
                Some(items.iter().filter_map(text).collect::<Vec<_>>().join("\0"))
            }
            Value::Object(_) => Some(v.to_string()),
        }
    }
    for (k, v) in &map {
        if let Some(t) = text(v) {
            out.insert(k.clone(), t);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: &str) -> Result<Request, ReadError> {
        read_request(&mut io::BufReader::new(raw.as_bytes()))
    }

    #[test]
    fn decodes_forms_like_pve() {
        let mut m = BTreeMap::new();
        parse_form("a=1;b=x+y&c=%3B%2B%0A&d&=z&a=2", &mut m);
        assert_eq!(m["a"], "1\u{0}2");
        assert_eq!(m["b"], "x y");
        assert_eq!(m["c"], ";+\n");
        assert_eq!(m["d"], "");
        assert_eq!(m.len(), 4);
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%4", false), "%4");
        assert_eq!(percent_decode("%zz%41", false), "%zzA");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(
            percent_decode("UPID%3Apve1%3A%40%21", false),
            "UPID:pve1:@!"
        );
    }

    #[test]
    fn json_bodies_become_strings() {
        let mut m = BTreeMap::new();
        parse_json_body(
            br#"{"onboot":true,"cores":2,"tags":"a;b","x":null}"#,
            &mut m,
        )
        .unwrap();
        assert_eq!(m["onboot"], "1");
        assert_eq!(m["cores"], "2");
        assert_eq!(m["tags"], "a;b");
        assert!(!m.contains_key("x"));
        assert!(parse_json_body(b"[1]", &mut m).is_err());
        assert!(parse_json_body(b"{", &mut m).is_err());
    }

    #[test]
    fn reads_requests_and_keep_alive() {
        let r = read("PUT /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").unwrap();
        assert_eq!(r.method, "PUT");
        assert_eq!(r.path_and_query(), ("/a", "b=1"));
        assert_eq!(r.body, b"abc");
        assert!(r.keep_alive);
        assert_eq!(r.header("host"), Some("x"));
        let r = read("GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!r.keep_alive);
        let r = read("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!r.keep_alive);
        assert!(matches!(read(""), Err(ReadError::Idle)));
        assert!(matches!(read("GET /\r\n\r\n"), Err(ReadError::Bad(_))));
        assert!(matches!(
            read("POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n"),
            Err(ReadError::TooLarge)
        ));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert!(matches!(read(&huge), Err(ReadError::Bad(_))));
    }

    #[test]
    fn writes_responses() {
        let mut out = Vec::new();
        let resp = Response::json(500, "CT 101 not running\nmore", b"{}".to_vec());
        write_response(&mut out, &resp).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 500 CT 101 not running more\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.contains("Content-Type: application/json;charset=UTF-8\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"));
    }

    #[test]
    fn writes_padded_and_cut_bodies() {
        let padded = Body::Padded {
            head: b"{\"pad\":\"".to_vec(),
            fill: 200_000,
            tail: b"\"}".to_vec(),
        };
        let mut resp = Response::json(200, "OK", Vec::new());
        resp.body = padded;
        let mut out = Vec::new();
        write_response(&mut out, &resp).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("Content-Length: 200010"), "{head}");
        assert_eq!(body.len(), 200_010);
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["pad"].as_str().unwrap().len(), 200_000);

        resp.cut = Some(5);
        let mut out = Vec::new();
        write_response(&mut out, &resp).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("Content-Length: 200010") && head.contains("Connection: close"));
        assert_eq!(body, "{\"pad");
    }
}
