//! HTTPS against the simulator's TLS listener: the right CA works, a wrong one is
//! "never sent".
//!
//! minreq builds its TLS config once per process from `SSL_CERT_FILE`, so each CA is
//! tried in a child process: the test binary re-runs itself with only
//! `client::tls::tls_child` selected and the CA and URL in its environment.

use super::{client_with, start};
use felhom_agent::log::Chain;
use felhom_agent::pve::{trust_ca_file, ApiError};
use felhom_agent::sim::{Sim, SimOptions, TlsFiles};
use std::path::{Path, PathBuf};
use std::time::Duration;

const CHILD_CA: &str = "FELHOM_TEST_TLS_CA";
const CHILD_URL: &str = "FELHOM_TEST_TLS_URL";
const CHILD_TOKEN_ID: &str = "FELHOM_TEST_TLS_TOKEN_ID";
const CHILD_SECRET: &str = "FELHOM_TEST_TLS_SECRET";
const VERDICT: &str = "tls child verdict:";

fn cert(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/certs")
        .join(name)
}

/// In a normal run: checks that an unreadable CA file is refused before the
/// environment is touched. As a child: trusts the given CA, makes one request, and
/// prints the verdict for the parent.
#[test]
fn tls_child() {
    let (Ok(ca), Ok(url)) = (std::env::var(CHILD_CA), std::env::var(CHILD_URL)) else {
        let e = trust_ca_file(&cert("no-such-ca.pem")).unwrap_err();
        assert!(matches!(e, ApiError::Config(_)), "{e:?}");
        assert!(std::env::var_os(CHILD_CA).is_none());
        return;
    };
    let id = std::env::var(CHILD_TOKEN_ID).unwrap();
    let secret = std::env::var(CHILD_SECRET).unwrap();
    let result = trust_ca_file(Path::new(&ca))
        .and_then(|()| client_with(&url, &id, &secret, Duration::from_secs(5)).version());
    let verdict = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) if e.is_never_sent() => format!("never_sent {}", Chain(e)),
        Err(e) if e.is_no_answer() => format!("no_answer {}", Chain(e)),
        Err(e) => format!("other {}", Chain(e)),
    };
    // On its own line: libtest prints the test name without a newline first.
    println!("\n{VERDICT} {verdict}");
}

/// Runs `tls_child` in a child process trusting `ca` and returns its verdict.
fn run_tls_child(sim: &Sim, ca: &Path) -> String {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "client::tls::tls_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_CA, ca)
        .env(CHILD_URL, sim.url())
        .env(CHILD_TOKEN_ID, sim.token_id())
        .env(CHILD_SECRET, sim.token_secret())
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let reader = std::thread::Builder::new()
        .name("tls child stdout".into())
        .spawn(move || {
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out);
            let _ = tx.send(out);
        })
        .unwrap();
    let out = rx.recv_timeout(Duration::from_secs(30));
    if out.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let out = out.expect("the tls child finishes within 30 s");
    assert!(status.success(), "tls child failed: {out}");
    out.lines()
        .find_map(|l| l.split_once(VERDICT).map(|(_, v)| v))
        .unwrap_or_else(|| panic!("no verdict in the child's output: {out}"))
        .trim()
        .to_string()
}

#[test]
fn https_is_verified_against_the_trusted_ca() {
    let sim = start(SimOptions {
        tls: Some(TlsFiles {
            cert: cert("server.pem"),
            key: cert("server.key"),
        }),
        ..SimOptions::default()
    });
    assert!(sim.url().starts_with("https://"), "{}", sim.url());
    assert_eq!(run_tls_child(&sim, &cert("ca.pem")), "ok");
    let wrong = run_tls_child(&sim, &cert("other-ca.pem"));
    assert!(
        wrong.starts_with("never_sent") && wrong.contains("certificate"),
        "{wrong}"
    );
}
