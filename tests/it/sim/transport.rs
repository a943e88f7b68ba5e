//! Connections, TLS, the state file and the `felhom-agent sim` binary.

use super::*;
use felhom_agent::sim::{PowerState, TlsFiles};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;

fn cert(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/certs")
        .join(name)
}

#[test]
fn keep_alive_until_an_error_closes_the_connection() {
    let sim = start(vec![guest(101, true)]);
    let mut s = connect(sim.addr());
    let a = auth(&sim);
    let req = |path: &str| format!("GET /api2/json{path} HTTP/1.1\r\nHost: x\r\n{a}\r\n");
    let pipelined = req("/version") + &req("/nodes/pve1/lxc/101/config");
    s.write_all(pipelined.as_bytes()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let first = read_response(&mut r).unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.header("connection"), Some("Keep-Alive"));
    assert_eq!(read_response(&mut r).unwrap().status, 200);
    s.write_all(req("/nodes/pve1/nope").as_bytes()).unwrap();
    let err = read_response(&mut r).unwrap();
    assert_eq!(err.status, 501);
    assert!(err.closes());
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the server closed after the error");
}

#[test]
fn malformed_and_oversized_requests() {
    let sim = start(vec![]);
    let mut s = connect(sim.addr());
    s.write_all(b"NONSENSE\r\n\r\n").unwrap();
    let r = read_response(&mut BufReader::new(s)).unwrap();
    assert_eq!(r.status, 400);
    let mut s = connect(sim.addr());
    let big = format!(
        "PUT /api2/json/version HTTP/1.1\r\n{}Content-Length: {}\r\n\r\n",
        auth(&sim),
        600 * 1024
    );
    s.write_all(big.as_bytes()).unwrap();
    let r = read_response(&mut BufReader::new(s)).unwrap();
    assert_eq!((r.status, r.reason.as_str()), (501, "for data too large"));
}

fn tls_get(sim: &Sim, ca: &Path) -> io::Result<Resp> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, connect(sim.addr()));
    let req = format!(
        "GET /api2/json/version HTTP/1.1\r\nHost: localhost\r\n{}Connection: close\r\n\r\n",
        auth(sim)
    );
    tls.write_all(req.as_bytes())?;
    read_response(&mut BufReader::new(tls))
}

#[test]
fn tls_works_with_the_test_ca_and_fails_with_another() {
    let sim = start_with(|o| {
        o.tls = Some(TlsFiles {
            cert: cert("server.pem"),
            key: cert("server.key"),
        })
    });
    assert!(sim.url().starts_with("https://localhost:"), "{}", sim.url());
    let r = tls_get(&sim, &cert("ca.pem")).expect("handshake with the right CA");
    assert_eq!(r.data()["version"], "8.4.1");
    let err = tls_get(&sim, &cert("other-ca.pem")).unwrap_err();
    assert!(
        err.to_string().contains("certificate"),
        "expected a certificate error, got {err}"
    );
    // Plain HTTP to the TLS port gets no answer.
    assert!(send(sim.addr(), "GET", "/api2/json/version", &auth(&sim), "").is_err());
}

#[test]
fn tls_needs_readable_files() {
    let err = Sim::start(SimOptions {
        tls: Some(TlsFiles {
            cert: cert("missing.pem"),
            key: cert("server.key"),
        }),
        ..SimOptions::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[test]
fn the_state_file_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("felhom-sim-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("guests.json");
    let opts = |p: &Path| SimOptions {
        state_file: Some(p.to_path_buf()),
        ..SimOptions::default()
    };
    let sim = Sim::start(opts(&path)).unwrap();
    assert!(sim.guests().is_empty());
    sim.add_guest(guest(101, false));
    assert_eq!(
        put(&sim, "/nodes/pve1/lxc/101/config", "cores=3").status,
        200
    );
    let upid = upid_of(&post(&sim, "/nodes/pve1/lxc/101/status/start", ""));
    finished(&sim, &upid);
    sim.shutdown();
    let sim = Sim::start(opts(&path)).unwrap();
    let g = sim.guest(101).expect("guest reloaded");
    assert_eq!((g.cores, g.status), (Some(3), PowerState::Running));
    sim.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_sim_binary_prints_its_url_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
        .args(["sim", "--guests", "20", "--listen", "127.0.0.1:0"])
        .args(["--token", "agent@pve!cli=cli-secret"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn felhom-agent sim");
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let (line_tx, lines) = crossbeam_channel::unbounded();
    let reader = thread::Builder::new()
        .name("sim stdout".into())
        .spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        })
        .unwrap();
    let first = lines.recv_timeout(DEADLINE).expect("a first line");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"));
    let rest: Vec<String> = (0..3)
        .map(|_| lines.recv_timeout(DEADLINE).unwrap())
        .collect();
    assert_eq!(rest[0], "token id: agent@pve!cli");
    assert_eq!(rest[1], "token secret: cli-secret");
    assert!(rest[2].starts_with("curl "), "{}", rest[2]);
    let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let r = send(
        addr,
        "GET",
        "/api2/json/nodes/pve1/lxc",
        "Authorization: PVEAPIToken=agent@pve!cli=cli-secret\r\n",
        "",
    )
    .unwrap();
    assert_eq!(r.data().as_array().unwrap().len(), 20);
    // Guest 100 of the fleet runs: starting it is an intent sent twice, which the node
    // reports at exit instead of panicking.
    let r = send(
        addr,
        "POST",
        "/api2/json/nodes/pve1/lxc/100/status/start",
        "Authorization: PVEAPIToken=agent@pve!cli=cli-secret\r\n",
        "",
    )
    .unwrap();
    assert_eq!(r.status, 500);

    let (exit_tx, exit) = crossbeam_channel::bounded(1);
    let waiter = thread::Builder::new()
        .name("sim wait".into())
        .spawn(move || {
            let _ = exit_tx.send(child.wait());
        })
        .unwrap();
    let kill = |sig: &str| {
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
    };
    assert!(kill("-TERM").success());
    let status = match exit.recv_timeout(DEADLINE) {
        Ok(s) => s.unwrap(),
        Err(_) => {
            kill("-KILL");
            panic!("felhom-agent sim did not stop on SIGTERM");
        }
    };
    assert!(status.success(), "{status:?}");
    waiter.join().unwrap();
    reader.join().unwrap();
    let audit: Vec<String> = lines.try_iter().collect();
    assert!(
        audit[0].starts_with("the node's audit: 1 violation(s)"),
        "{audit:?}"
    );
    assert!(
        audit[1].contains("guest 100: intent sent twice: #1 POST /nodes/pve1/lxc/100/status/start"),
        "{audit:?}"
    );
}
