//! The client against a scripted raw TCP server, for faults the simulated node does not
//! make: bodies cut off or far too large, and failures that clear after N attempts.
//!
//! Each connection gets the next reply of the script; every request read is reported
//! on a channel, so a test can wait for one with a deadline.

use felhom_agent::action::Params;
use felhom_agent::cancel::CancelSource;
use felhom_agent::pve::{ApiError, Client, ClientOptions, PowerOp, Retry, Vmid, MAX_BODY_BYTES};
use felhom_agent::secret::Secret;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the server does with one connection after reading its request.
enum Reply {
    /// Writes these bytes and closes.
    Bytes(String),
    /// Closes without a word.
    Close,
    /// Writes the head, then `len` bytes of body (or until the client goes away).
    Flood { head: String, len: usize },
}

fn ok(body: &str) -> Reply {
    Reply::Bytes(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

fn status(code: u16, reason: &str) -> Reply {
    Reply::Bytes(format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Length: 13\r\n\r\n{{\"data\":null}}"
    ))
}

const VERSION: &str = r#"{"data":{"version":"8.2.4","release":"8.2"}}"#;

struct Scripted {
    addr: SocketAddr,
    requests: crossbeam_channel::Receiver<String>,
    handle: Option<JoinHandle<()>>,
}

impl Scripted {
    fn start(script: Vec<Reply>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new()
            .name("scripted server".into())
            .spawn(move || {
                for reply in script {
                    let Ok((mut conn, _)) = listener.accept() else {
                        return;
                    };
                    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let request = read_request(&mut conn);
                    if request.is_empty() {
                        return; // the unblocking connection of `finish`
                    }
                    let _ = tx.send(request);
                    match reply {
                        Reply::Bytes(b) => {
                            let _ = conn.write_all(b.as_bytes());
                        }
                        Reply::Close => {}
                        Reply::Flood { head, len } => {
                            let _ = conn.write_all(head.as_bytes());
                            let chunk = vec![b' '; 1 << 16];
                            let mut sent = 0;
                            while sent < len {
                                let n = chunk.len().min(len - sent);
                                if conn.write_all(&chunk[..n]).is_err() {
                                    break;
                                }
                                sent += n;
                            }
                        }
                    }
                }
            })
            .unwrap();
        Scripted {
            addr,
            requests: rx,
            handle: Some(handle),
        }
    }

    fn client(&self, retry: Retry) -> Client {
        let mut opts = ClientOptions::new(
            &format!("http://{}", self.addr),
            "agent@pve!reconciler",
            Secret::new("5ec12e7a-dead-beef-0000-feedfacecafe"),
        );
        opts.timeout = Duration::from_secs(5);
        Client::new(opts).unwrap().with_retry(retry)
    }

    /// Stops the server and returns the first line of every request it read.
    fn finish(mut self) -> Vec<String> {
        self.stop();
        self.requests
            .try_iter()
            .map(|r| r.lines().next().unwrap_or_default().to_string())
            .collect()
    }

    fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // Unblocks a pending accept; the server takes an empty request as "stop".
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            handle.join().expect("the scripted server does not panic");
        }
    }
}

/// A test that fails early still joins its server.
impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_request(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                return String::from_utf8_lossy(&buf).to_string();
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&buf).to_string(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Short pauses, so that the tests do not wait on the default backoff.
const QUICK: Retry = Retry {
    tries: 3,
    first_backoff: Duration::from_millis(20),
    max_backoff: Duration::from_millis(40),
};

fn start_101(c: &Client) -> Result<felhom_agent::pve::Upid, ApiError> {
    c.lxc_power(
        "pve1",
        Vmid::new(101).unwrap(),
        PowerOp::Start,
        &Params::new(),
    )
}

#[test]
fn a_body_shorter_than_its_content_length_is_cut_off() {
    let server = Scripted::start(vec![Reply::Bytes(
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"data\":\"UPID:pve1:".into(),
    )]);
    let e = start_101(&server.client(QUICK)).unwrap_err();
    assert_eq!(server.finish().len(), 1, "a mutation is not repeated");
    assert!(e.is_truncated() && e.is_outcome_unknown(), "{e:?}");
    assert_eq!(
        e.to_string(),
        "POST /nodes/pve1/lxc/101/status/start: the answer (http 200) was cut off after \
         19 of 100 bytes, outcome unknown"
    );
}

#[test]
fn a_chunked_body_that_ends_early_is_cut_off() {
    let server = Scripted::start(vec![Reply::Bytes(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{\"data\":\r\n".into(),
    )]);
    let e = server.client(Retry::NEVER).version().unwrap_err();
    server.finish();
    assert!(e.is_truncated() && e.is_retryable_read(), "{e:?}");
    assert!(e.to_string().contains("8 bytes, inside its JSON"), "{e}");
}

#[test]
fn an_80_mib_body_is_refused_without_reading_it_all() {
    const LEN: usize = 80 << 20;
    let server = Scripted::start(vec![
        // Announced: refused from the header.
        Reply::Flood {
            head: format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n"),
            len: LEN,
        },
        // Not announced (read until close): refused after the limit.
        Reply::Flood {
            head: "HTTP/1.1 200 OK\r\n\r\n".into(),
            len: LEN,
        },
    ]);
    let c = server.client(QUICK);
    for _ in 0..2 {
        let started = Instant::now();
        let e = c.get_raw("/cluster/resources").unwrap_err();
        assert!(
            matches!(e, ApiError::TooLarge { status: 200, limit, .. } if limit == MAX_BODY_BYTES),
            "{e:?}"
        );
        assert!(!e.is_retryable_read(), "the same body would come again");
        assert!(started.elapsed() < Duration::from_secs(4));
    }
    assert_eq!(server.finish().len(), 2);
}

#[test]
fn reads_are_repeated_until_they_succeed() {
    let server = Scripted::start(vec![
        Reply::Close,
        status(596, "Connection timed out"),
        ok(VERSION),
    ]);
    let v = server.client(QUICK).version().unwrap();
    assert_eq!(v.version, "8.2.4");
    let seen = server.finish();
    assert_eq!(seen, vec!["GET /api2/json/version HTTP/1.1"; 3]);
}

#[test]
fn a_cut_off_read_is_repeated_and_tries_are_bounded() {
    let cut = || Reply::Bytes("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"da".into());
    let server = Scripted::start(vec![cut(), ok(VERSION)]);
    assert!(server.client(QUICK).version().is_ok());
    assert_eq!(server.finish().len(), 2);

    let server = Scripted::start(vec![Reply::Close, Reply::Close, Reply::Close, ok(VERSION)]);
    let e = server.client(QUICK).version().unwrap_err();
    assert!(e.is_no_answer(), "{e:?}");
    assert_eq!(server.finish().len(), 3, "three tries, then the error");
}

#[test]
fn permanent_errors_are_not_repeated() {
    let server = Scripted::start(vec![
        status(501, "Method not implemented"),
        status(400, "Parameter verification failed."),
        ok(r#"{"data":{"version":7}}"#),
        ok(VERSION),
    ]);
    let c = server.client(QUICK);
    assert_eq!(
        c.get_raw("/nodes/pve1/foo").unwrap_err().status(),
        Some(501)
    );
    assert_eq!(c.version().unwrap_err().status(), Some(400));
    // `version` as a number decodes (Perl); a wrong type elsewhere is Decode. Either
    // way one request.
    assert!(c.version().is_ok());
    assert_eq!(server.finish().len(), 3);
}

#[test]
fn a_mutation_that_may_have_arrived_is_never_repeated() {
    let server = Scripted::start(vec![Reply::Close, ok(r#"{"data":null}"#)]);
    let e = start_101(&server.client(QUICK)).unwrap_err();
    assert!(e.is_no_answer() && e.is_outcome_unknown(), "{e:?}");
    assert_eq!(
        server.finish(),
        vec!["POST /api2/json/nodes/pve1/lxc/101/status/start HTTP/1.1"]
    );

    let server = Scripted::start(vec![status(503, "Service Unavailable"), ok("")]);
    let e = start_101(&server.client(QUICK)).unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert_eq!(server.finish().len(), 1);
}

#[test]
fn a_mutation_never_sent_is_repeated() {
    // A closed port refuses every attempt: each one is never sent, so all are made.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Client::new(ClientOptions::new(
        &format!("http://127.0.0.1:{port}"),
        "agent@pve!reconciler",
        Secret::new("s"),
    ))
    .unwrap()
    .with_retry(Retry {
        tries: 3,
        first_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_millis(200),
    });
    let started = Instant::now();
    let e = start_101(&c).unwrap_err();
    assert!(e.is_never_sent(), "{e:?}");
    // Two pauses of 100-200 ms each show that three attempts were made.
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn shutdown_stops_the_pause_between_tries_at_once() {
    let server = Scripted::start(vec![Reply::Close, ok(VERSION)]);
    let mut source = CancelSource::new();
    let c = server
        .client(Retry {
            tries: 3,
            first_backoff: Duration::from_secs(20),
            max_backoff: Duration::from_secs(20),
        })
        .with_cancel(source.token());
    let requests = server.requests.clone();
    let started = Instant::now();
    std::thread::scope(|s| {
        let canceller = std::thread::Builder::new()
            .name("canceller".into())
            .spawn_scoped(s, move || {
                let first = requests.recv_timeout(Duration::from_secs(5));
                source.cancel();
                first.is_ok()
            })
            .unwrap();
        let e = c.version().unwrap_err();
        assert!(e.is_no_answer(), "{e:?}");
        assert!(
            canceller.join().unwrap(),
            "the first attempt reached the server"
        );
    });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        server.finish().len(),
        0,
        "the canceller took the only request"
    );
}
