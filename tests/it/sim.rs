//! Integration tests of the simulated node, driven over raw HTTP on std::net (not the
//! crate's client), so that they check the wire format itself.

mod api;
mod audit;
mod config;
mod faults;
mod nodes;
mod tasks;
mod transport;
mod vm_api;
mod vm_audit;
mod vm_config;
mod vm_power;

use felhom_agent::sim::{Sim, SimGuest, SimOptions};
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Generous: only reached when something is broken.
pub(crate) const DEADLINE: Duration = Duration::from_secs(5);

/// A parsed HTTP response.
#[derive(Debug)]
pub(crate) struct Resp {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `data` of a 200 response.
    pub(crate) fn data(&self) -> Value {
        assert_eq!(
            self.status,
            200,
            "{} {}: {}",
            self.status,
            self.reason,
            String::from_utf8_lossy(&self.body)
        );
        self.json()["data"].clone()
    }

    /// The per-parameter error of a 400 for `key`.
    pub(crate) fn param_error(&self, key: &str) -> String {
        assert_eq!(
            self.status,
            400,
            "{}: {}",
            self.reason,
            String::from_utf8_lossy(&self.body)
        );
        self.json()["errors"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no error for {key}: {}", self.json()))
            .to_string()
    }

    pub(crate) fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
    }
}

/// Reads one response (the body by Content-Length).
pub(crate) fn read_response(r: &mut impl BufRead) -> io::Result<Resp> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let _version = parts.next();
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':').expect("header line");
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = Resp {
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    let len: usize = resp
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    resp.body = vec![0; len];
    r.read_exact(&mut resp.body)?;
    Ok(resp)
}

/// Connects with read and write timeouts, so that no test can hang.
pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to sim");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s
}

/// The Authorization header for the sim's token.
pub(crate) fn auth(sim: &Sim) -> String {
    format!(
        "Authorization: PVEAPIToken={}={}\r\n",
        sim.token_id(),
        sim.token_secret()
    )
}

/// Sends one request with extra header lines (each ending in CRLF) and a body, on a
/// fresh connection.
pub(crate) fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &str,
    body: &str,
) -> io::Result<Resp> {
    let mut s = connect(addr);
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    read_response(&mut BufReader::new(s))
}

/// An authenticated call; `path` is below `/api2/json`, `form` a form body.
pub(crate) fn call(sim: &Sim, method: &str, path: &str, form: &str) -> Resp {
    let target = format!("/api2/json{path}");
    let headers = format!(
        "{}Content-Type: application/x-www-form-urlencoded\r\n",
        auth(sim)
    );
    send(sim.addr(), method, &target, &headers, form).expect("request")
}

pub(crate) fn get(sim: &Sim, path: &str) -> Resp {
    call(sim, "GET", path, "")
}

pub(crate) fn post(sim: &Sim, path: &str, form: &str) -> Resp {
    call(sim, "POST", path, form)
}

pub(crate) fn put(sim: &Sim, path: &str, form: &str) -> Resp {
    call(sim, "PUT", path, form)
}

/// A sim with test defaults changed by `f`.
pub(crate) fn start_with(f: impl FnOnce(&mut SimOptions)) -> Sim {
    let mut opts = SimOptions::default();
    f(&mut opts);
    Sim::start(opts).expect("start sim")
}

/// A sim with test defaults and these guests.
pub(crate) fn start(guests: Vec<SimGuest>) -> Sim {
    let sim = start_with(|_| {});
    for g in guests {
        sim.add_guest(g);
    }
    sim
}

/// A guest on pve1 in the given state.
pub(crate) fn guest(vmid: u32, running: bool) -> SimGuest {
    let mut g = SimGuest::new(vmid, "pve1");
    if running {
        g.status = felhom_agent::sim::PowerState::Running;
    }
    g
}

/// Waits until no task runs, then returns the status of task `upid`.
pub(crate) fn finished(sim: &Sim, upid: &str) -> Value {
    assert!(
        sim.wait_until(DEADLINE, |s| s.running_tasks() == 0),
        "tasks still running"
    );
    task_status(sim, upid)
}

pub(crate) fn task_status(sim: &Sim, upid: &str) -> Value {
    let node = upid.split(':').nth(1).unwrap();
    let seg: String = upid
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    get(sim, &format!("/nodes/{node}/tasks/{seg}/status")).data()
}

/// The UPID a power call returned.
pub(crate) fn upid_of(resp: &Resp) -> String {
    resp.data().as_str().expect("a UPID string").to_string()
}
