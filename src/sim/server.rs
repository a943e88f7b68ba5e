//! The listener: one `sim accept` thread, and a `sim conn N` thread per connection that
//! reads requests, hands them to the router and writes the answers.
//!
//! A connection is kept alive between requests (up to 100, as pveproxy does) unless the
//! client asks otherwise or the status is 400 or more; it is closed after 5 s idle.
//!
//! A request is read whole before it is handed on, and nothing watches the socket while
//! the node works on it: a client that goes away does not stop the work, only the
//! answer finds the socket closed.
//!
//! The top layer of the node: it imports only the leaves; what a request gets is the
//! [`Handler`]'s business (the node's router, or the desired-state source of
//! [`super::source`]).

use super::http::{self, Outcome, ReadError, Request, Response};
use crate::cancel::Cancel;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// pve-http-server's default idle timeout.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// pveproxy's `keep_alive => 100`.
const MAX_REQUESTS_PER_CONN: usize = 100;

/// A plain or TLS byte stream.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// What answers the requests of one server.
pub(crate) trait Handler: Send + Sync + 'static {
    /// The answer to one request, or a reset.
    fn handle(&self, req: &Request) -> Outcome;
    /// Cancelled at shutdown: ends the connections between requests.
    fn cancel(&self) -> &Cancel;
}

/// Accepts connections until `stop` is set (the owner then connects once to wake it),
/// then closes every open connection and joins its thread.
pub(crate) fn accept_loop<H: Handler>(
    shared: Arc<H>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: Arc<AtomicBool>,
) {
    let mut conns: Vec<(TcpStream, JoinHandle<()>)> = Vec::new();
    let mut n: u64 = 0;
    for incoming in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // Join the threads of connections that have ended.
        let (done, live): (Vec<_>, Vec<_>) = conns.into_iter().partition(|(_, h)| h.is_finished());
        conns = live;
        for (_, h) in done {
            let _ = h.join();
        }
        let sock = match incoming {
            Ok(s) => s,
            Err(e) => {
                crate::log::warn("sim: accept failed", &[("err", &e)]);
                // Out of descriptors and the like: back off instead of spinning.
                shared.cancel().wait(Duration::from_millis(50));
                continue;
            }
        };
        n += 1;
        let Ok(handle_sock) = sock.try_clone() else {
            continue;
        };
        let (shared2, tls2) = (shared.clone(), tls.clone());
        match thread::Builder::new()
            .name(format!("sim conn {n}"))
            .spawn(move || serve(shared2, sock, tls2))
        {
            Ok(h) => conns.push((handle_sock, h)),
            Err(e) => crate::log::warn("sim: cannot spawn connection thread", &[("err", &e)]),
        }
    }
    for (sock, _) in &conns {
        let _ = sock.shutdown(Shutdown::Both);
    }
    for (_, h) in conns {
        let _ = h.join();
    }
}

fn plain(status: u16, reason: &str) -> Response {
    let mut r = Response::json(status, reason, Vec::new());
    r.close = true;
    r
}

/// Serves one connection until it closes, errs, idles out or the sim shuts down.
fn serve<H: Handler>(shared: Arc<H>, sock: TcpStream, tls: Option<Arc<rustls::ServerConfig>>) {
    let _ = sock.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = sock.set_write_timeout(Some(IDLE_TIMEOUT));
    let _ = sock.set_nodelay(true);
    let Ok(raw) = sock.try_clone() else {
        return;
    };
    let stream: Box<dyn Stream> = match tls {
        None => Box::new(sock),
        Some(cfg) => match rustls::ServerConnection::new(cfg) {
            Ok(conn) => Box::new(rustls::StreamOwned::new(conn, sock)),
            Err(e) => {
                crate::log::warn("sim: tls session failed", &[("err", &e)]);
                return;
            }
        },
    };
    let mut reader = BufReader::new(stream);
    let mut served = 0;
    while !shared.cancel().is_cancelled() {
        let resp = match http::read_request(&mut reader) {
            Ok(req) => {
                served += 1;
                match shared.handle(&req) {
                    Outcome::Reset => break,
                    Outcome::Respond(mut r) => {
                        r.close |= !req.keep_alive || served >= MAX_REQUESTS_PER_CONN;
                        r
                    }
                }
            }
            Err(ReadError::Idle) => break,
            Err(ReadError::Io(e)) => {
                crate::log::debug("sim: connection read failed", &[("err", &e)]);
                break;
            }
            Err(ReadError::Bad(msg)) => {
                crate::log::debug("sim: malformed request", &[("err", &msg)]);
                plain(400, "Bad Request")
            }
            Err(ReadError::TooLarge) => plain(501, "for data too large"),
        };
        if http::write_response(reader.get_mut(), &resp).is_err() || resp.close {
            break;
        }
    }
    let _ = raw.shutdown(Shutdown::Both);
}
