//! A rewriting proxy for the review tests: plain HTTP/1.1 on loopback in front of the
//! simulated node, one connection per request, that hands every answer's body to a
//! test's function and sends on what it returns. It models what the simulator's own
//! fault rules cannot say: an answer that is well-formed JSON but wrong (a power call
//! answered with `null`, a guest listed with a status PVE never reports, a start-all
//! in the node's active task list).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// `(method, path with query, body)` to the body to send instead, or `None` to pass
/// the answer on unchanged.
pub type Rewrite = dyn Fn(&str, &str, &[u8]) -> Option<Vec<u8>> + Send + Sync;

pub struct Proxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr, rewrite: Arc<Rewrite>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (stop, conns) = (stop.clone(), conns.clone());
            std::thread::Builder::new()
                .name("review proxy accept".into())
                .spawn(move || {
                    for client in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(client) = client else { continue };
                        let rewrite = rewrite.clone();
                        let conn = std::thread::Builder::new()
                            .name("review proxy conn".into())
                            .spawn(move || {
                                let _ = serve(client, upstream, &*rewrite);
                            })
                            .expect("proxy connection thread starts");
                        conns.lock().unwrap().push(conn);
                    }
                })
                .expect("proxy thread starts")
        };
        Proxy {
            addr,
            stop,
            accept: Some(accept),
            conns,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // One connection wakes the accept loop to see `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for t in self.conns.lock().unwrap().drain(..) {
            let _ = t.join();
        }
    }
}

/// Reads up to the end of the head, then as many body bytes as Content-Length says.
fn read_message(s: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}

/// The head without the headers named in `drop`, and without the blank line that ends
/// it.
fn head_without(head: &str, drop: &[&str]) -> String {
    head.trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|l| {
            !l.split_once(':')
                .is_some_and(|(k, _)| drop.iter().any(|d| k.trim().eq_ignore_ascii_case(d)))
        })
        .map(|l| format!("{l}\r\n"))
        .collect()
}

fn serve(mut client: TcpStream, upstream: SocketAddr, rewrite: &Rewrite) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let (head, body) = read_message(&mut client)?;
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut request = head_without(&head, &["connection"]).into_bytes();
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    request.extend_from_slice(&body);
    up.write_all(&request)?;
    let (head, body) = read_message(&mut up)?;
    let path = target.strip_prefix("/api2/json").unwrap_or(&target);
    let body = rewrite(&method, path, &body).unwrap_or(body);
    let mut answer = head_without(&head, &["connection", "content-length"]).into_bytes();
    answer.extend_from_slice(
        format!(
            "Connection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    answer.extend_from_slice(&body);
    client.write_all(&answer)?;
    Ok(())
}
