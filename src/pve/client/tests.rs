//! The client against a one-shot raw HTTP server: what goes on the wire, and how
//! failures are classified. The simulated node is exercised in tests/it/client.rs.

use super::*;
use crate::cancel::CancelSource;
use crate::log;
use crate::pve::error::WaitError;
use crate::pve::types::TaskOutcome;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Instant;

const SECRET: &str = "5ec12e7a-dead-beef-0000-feedfacecafe";

/// What the one-shot server does after reading a request.
enum Reply {
    Send(String),
    Close,
    Stall,
}

struct OneShot {
    addr: SocketAddr,
    handle: Option<JoinHandle<String>>,
}

impl OneShot {
    /// Accepts one connection, reads one request, then replies as told.
    fn start(reply: Reply) -> OneShot {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::Builder::new()
            .name("one-shot server".into())
            .spawn(move || {
                let (mut conn, _) = listener.accept().unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let request = read_request(&mut conn);
                match reply {
                    Reply::Send(resp) => {
                        let _ = conn.write_all(resp.as_bytes());
                    }
                    Reply::Close => {}
                    Reply::Stall => {
                        // Hold the connection until the client gives up and closes it.
                        let mut buf = [0u8; 64];
                        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                    }
                }
                request
            })
            .unwrap();
        OneShot {
            addr,
            handle: Some(handle),
        }
    }

    fn client(&self, timeout: Duration) -> Client {
        let mut opts = ClientOptions::new(
            &format!("http://{}", self.addr),
            "agent@pve!reconciler",
            Secret::new(SECRET),
        );
        opts.timeout = timeout;
        // One connection, one attempt; repeats are tested with `Scripted`.
        Client::new(opts).unwrap().with_retry(Retry::NEVER)
    }

    /// The request the server saw. A dummy connection first unblocks `accept` in
    /// case the client never connected, so the join cannot hang.
    fn request(mut self) -> String {
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        self.handle.take().unwrap().join().unwrap()
    }
}

fn read_request(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
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

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn ok_json(body: &str) -> Reply {
    Reply::Send(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

fn vmid(n: u64) -> Vmid {
    Vmid::new(n).unwrap()
}

#[test]
fn set_config_sends_a_form_with_the_token_header() {
    let server = OneShot::start(ok_json(r#"{"data":null}"#));
    let client = server.client(Duration::from_secs(5));
    let mut p = Params::new();
    p.insert("tags".into(), "prod;web".into());
    p.insert("description".into(), "managed by reconciler\nline 2".into());
    p.insert("onboot".into(), "1".into());
    p.insert("delete".into(), "cores,swap".into());
    p.insert("digest".into(), "0f3c".into());
    let res = client.lxc_set_config("pve1", vmid(101), &p);
    let req = server.request();
    assert_eq!(res.unwrap(), None);
    assert!(
        req.starts_with("PUT /api2/json/nodes/pve1/lxc/101/config HTTP/1.1\r\n"),
        "{req}"
    );
    assert!(
        req.contains(&format!(
            "\r\nAuthorization: PVEAPIToken=agent@pve!reconciler={SECRET}\r\n"
        )),
        "{req}"
    );
    assert!(
        req.contains("\r\nContent-Type: application/x-www-form-urlencoded\r\n"),
        "{req}"
    );
    assert!(
        req.ends_with(
            "\r\n\r\ndelete=cores%2Cswap&description=managed%20by%20reconciler%0Aline%202\
             &digest=0f3c&onboot=1&tags=prod%3Bweb"
        ),
        "{req}"
    );
}

#[test]
fn power_returns_the_task_id() {
    let upid = "UPID:pve1:0001A2B3:0456789A:6650F1C2:vzshutdown:101:agent@pve!reconciler:";
    let server = OneShot::start(ok_json(&format!(r#"{{"data":"{upid}"}}"#)));
    let client = server.client(Duration::from_secs(5));
    let mut p = Params::new();
    p.insert("timeout".into(), "60".into());
    p.insert("forceStop".into(), "1".into());
    let res = client.lxc_power("pve1", vmid(101), PowerOp::Shutdown, &p);
    let req = server.request();
    assert_eq!(res.unwrap().to_string(), upid);
    assert!(req.starts_with("POST /api2/json/nodes/pve1/lxc/101/status/shutdown HTTP/1.1"));
    assert!(req.ends_with("\r\n\r\nforceStop=1&timeout=60"), "{req}");
}

#[test]
fn task_status_goes_to_the_node_in_the_upid() {
    let upid: Upid = "UPID:pve2:0001A2B3:0456789A:6650F1C2:vzstart:101:agent@pve!reconciler:"
        .parse()
        .unwrap();
    let body = format!(r#"{{"data":{{"upid":"{upid}","status":"stopped","exitstatus":"OK"}}}}"#);
    let server = OneShot::start(ok_json(&body));
    let client = server.client(Duration::from_secs(5));
    let res = client.task_status(&upid);
    let req = server.request();
    assert_eq!(res.unwrap().outcome(), Some(TaskOutcome::Ok));
    assert!(
        req.starts_with(
            "GET /api2/json/nodes/pve2/tasks/UPID%3Apve2%3A0001A2B3%3A0456789A%3A6650F1C2\
             %3Avzstart%3A101%3Aagent%40pve%21reconciler%3A/status HTTP/1.1"
        ),
        "{req}"
    );
}

#[test]
fn queries_are_encoded() {
    let server = OneShot::start(ok_json(r#"{"data":[]}"#));
    let client = server.client(Duration::from_secs(5));
    let q = TaskQuery {
        vmid: Some(vmid(101)),
        typefilter: Some("vzstart".into()),
        since: Some(1716580802),
        source: Some("all".into()),
        limit: Some(50),
    };
    let res = client.tasks("pve1", &q);
    let req = server.request();
    assert_eq!(res.unwrap(), vec![]);
    assert!(
        req.starts_with(
            "GET /api2/json/nodes/pve1/tasks?vmid=101&typefilter=vzstart&since=1716580802\
             &source=all&limit=50 HTTP/1.1"
        ),
        "{req}"
    );
}

#[test]
fn a_connection_closed_without_answer_is_no_answer() {
    let server = OneShot::start(Reply::Close);
    let client = server.client(Duration::from_secs(5));
    let res = client.lxc_power("pve1", vmid(101), PowerOp::Start, &Params::new());
    server.request();
    let e = res.unwrap_err();
    assert!(e.is_no_answer(), "{e:?}");
}

#[test]
fn a_stalled_server_is_no_answer_after_the_timeout() {
    let server = OneShot::start(Reply::Stall);
    let client = server.client(Duration::from_millis(300));
    let started = Instant::now();
    let res = client.version();
    let took = started.elapsed();
    let e = res.unwrap_err();
    server.request();
    assert!(e.is_no_answer(), "{e:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "rounded up to one second: {took:?}"
    );
}

#[test]
fn a_closed_port_is_never_sent_and_nothing_leaks_the_secret() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = ClientOptions::new(
        &format!("http://127.0.0.1:{port}"),
        "agent@pve!reconciler",
        Secret::new(SECRET),
    );
    let shown_opts = format!("{opts:?}");
    let client = Client::new(opts).unwrap();
    let e = client.version().unwrap_err();
    assert!(e.is_never_sent(), "{e:?}");
    let mut shown = vec![
        shown_opts,
        format!("{client:?}"),
        format!("{e}"),
        format!("{e:?}"),
        format!("{}", log::Chain(&e)),
    ];
    let w = WaitError::Api(e);
    shown.push(format!("{w} {w:?} {}", log::Chain(&w)));
    for s in &shown {
        assert!(!s.contains(SECRET), "secret leaked: {s}");
    }
    assert!(shown[1].contains("agent@pve!reconciler"), "{}", shown[1]);
    assert!(
        shown[1].contains(&format!("http://127.0.0.1:{port}")),
        "{}",
        shown[1]
    );
}

#[test]
fn new_checks_the_options_without_echoing_the_secret() {
    let new = |url: &str, id: &str, secret: &str| {
        Client::new(ClientOptions::new(url, id, Secret::new(secret)))
    };
    assert!(new("https://127.0.0.1:8006", "agent@pve!reconciler", SECRET).is_ok());
    for id in [
        "agent@pve",
        "agent!tok",
        "@pve!tok",
        "agent@pve!",
        "a b@pve!t",
        "a@pve!t=x",
    ] {
        let e = new("https://127.0.0.1:8006", id, SECRET).unwrap_err();
        assert!(e.to_string().contains("USER@REALM!TOKENID"), "{id}: {e}");
    }
    for secret in ["", "has space", "semi;colon", "new\nline"] {
        let e = new("https://127.0.0.1:8006", "agent@pve!reconciler", secret).unwrap_err();
        assert!(matches!(e, ApiError::Config(_)));
        if !secret.is_empty() {
            assert!(!format!("{e} {e:?}").contains(secret), "{e}");
        }
    }
    let e = new("http://192.168.1.10:8006", "agent@pve!reconciler", SECRET).unwrap_err();
    assert!(e.to_string().contains("plain http is only allowed"), "{e}");
    let e = new("http://localhost:8006", "agent@pve!reconciler", SECRET).unwrap_err();
    assert!(e.to_string().contains("use http://127.0.0.1"), "{e}");
    let e = new("https://[::1]:8006", "agent@pve!reconciler", SECRET).unwrap_err();
    assert!(e.to_string().contains("IPv6 address literals"), "{e}");
    let e = new(
        "https://root:hunter2@pve1:8006",
        "agent@pve!reconciler",
        SECRET,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid api url \"https://***@pve1:8006\": remove the user name and password, \
         the agent authenticates with its API token"
    );
}

#[test]
fn timeouts_are_whole_seconds_rounded_up() {
    assert_eq!(whole_seconds(Duration::ZERO), 1);
    assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
    assert_eq!(whole_seconds(Duration::from_secs(1)), 1);
    assert_eq!(whole_seconds(Duration::from_millis(1001)), 2);
    assert_eq!(whole_seconds(Duration::from_secs(30)), 30);
}

#[test]
fn a_cancelled_wait_returns_at_once_without_polling() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(ClientOptions::new(
        &format!("http://127.0.0.1:{port}"),
        "agent@pve!reconciler",
        Secret::new(SECRET),
    ))
    .unwrap();
    let upid: Upid = "UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:101:agent@pve!reconciler:"
        .parse()
        .unwrap();
    let mut src = CancelSource::new();
    src.cancel();
    let opts = WaitOptions {
        deadline: Instant::now() + Duration::from_secs(30),
        cancel: src.token(),
    };
    assert_eq!(client.wait_task(&upid, &opts), Err(WaitError::Cancelled));
    // Against a closed port every poll is "never sent", retried until the deadline.
    let opts = WaitOptions {
        deadline: Instant::now() + Duration::from_millis(500),
        cancel: crate::cancel::Cancel::never(),
    };
    let started = Instant::now();
    assert_eq!(client.wait_task(&upid, &opts), Err(WaitError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A config update's answer: null, or (for a VM's `POST` only) the UPID of its own
/// `qmconfig` task; any other task is refused as undecodable, never waited on.
#[test]
fn a_config_update_answer_names_its_own_task_or_none() {
    use crate::pve::client::{task_id, ConfigTask};
    let vm = |n: u64| Vmid::new(n).unwrap();
    let own = ConfigTask {
        node: "pve1",
        vmid: vm(201),
        kind: "qmconfig",
    };
    let upid = |node: &str, kind: &str, id: u64| {
        serde_json::Value::String(format!(
            "UPID:{node}:0001A2B3:0456789A:6650F1C2:{kind}:{id}:agent@pve!t:"
        ))
    };
    let check = |data, task| match task_id("POST /x", data, task) {
        Ok(u) => format!("ok {}", u.map_or("none".into(), |u| u.kind)),
        Err(e) => {
            assert!(e.is_outcome_unknown(), "{e:?}");
            e.to_string()
        }
    };
    assert_eq!(check(serde_json::Value::Null, None), "ok none");
    assert_eq!(check(serde_json::Value::Null, Some(own)), "ok none");
    assert_eq!(
        check(upid("pve1", "qmconfig", 201), Some(own)),
        "ok qmconfig"
    );
    for (data, task, why) in [
        (
            upid("pve1", "vzstart", 102),
            Some(own),
            "its id is \"102\", not guest 201",
        ),
        (
            upid("pve1", "qmstart", 201),
            Some(own),
            "its type is \"qmstart\", not qmconfig",
        ),
        (
            upid("pve2", "qmconfig", 201),
            Some(own),
            "it runs on node \"pve2\", not on \"pve1\"",
        ),
        (
            upid("pve1", "qmconfig", 201),
            None,
            "the call starts no task",
        ),
    ] {
        let got = check(data, task);
        assert!(got.contains(why), "{got}");
    }
    assert!(check(serde_json::json!(7), Some(own)).contains("expected a task id or null"));
}
