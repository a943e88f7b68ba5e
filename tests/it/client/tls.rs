//! HTTPS against the simulator's TLS listener: the right CA works; a certificate from
//! another CA, for another host, or expired is "never sent", with a message that says
//! which.
//!
//! minreq builds its TLS config once per process from `SSL_CERT_FILE`, so each CA is
//! tried in a child process: the test binary re-runs itself with only
//! `client::tls::tls_child` selected and the CA and URLs in its environment.

use super::{client_with, start};
use felhom_agent::log::Chain;
use felhom_agent::pve::{trust_ca_file, ApiError, Retry};
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
/// environment is touched. As a child: trusts the given CA, makes one request to each
/// of the space-separated URLs, and prints a verdict for each for the parent.
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
    let trusted = trust_ca_file(Path::new(&ca));
    for url in url.split(' ') {
        // One attempt: a handshake failure is never sent, so it would be repeated.
        let result = trusted.clone().and_then(|()| {
            client_with(url, &id, &secret, Duration::from_secs(5))
                .with_retry(Retry::NEVER)
                .version()
        });
        let verdict = match &result {
            Ok(_) => "ok".to_string(),
            Err(e) if e.is_never_sent() => format!("never_sent {}", Chain(e)),
            Err(e) if e.is_no_answer() => format!("no_answer {}", Chain(e)),
            Err(e) => format!("other {}", Chain(e)),
        };
        // On its own line: libtest prints the test name without a newline first.
        println!("\n{VERDICT} {verdict}");
    }
}

/// Runs `tls_child` in a child process trusting `ca` and returns its verdict for each
/// simulator.
fn run_tls_child(sims: &[&Sim], ca: &Path) -> Vec<String> {
    let urls: Vec<String> = sims.iter().map(|s| s.url()).collect();
    let sim = sims[0];
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
        .env(CHILD_URL, urls.join(" "))
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
    let verdicts: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_once(VERDICT).map(|(_, v)| v.trim().to_string()))
        .collect();
    assert_eq!(verdicts.len(), sims.len(), "a verdict per url: {out}");
    verdicts
}

fn tls_sim(cert: &str, key: &str) -> Sim {
    start(SimOptions {
        tls: Some(TlsFiles {
            cert: self::cert(cert),
            key: self::cert(key),
        }),
        ..SimOptions::default()
    })
}

#[test]
fn https_is_verified_against_the_trusted_ca() {
    let good = tls_sim("server.pem", "server.key");
    let wrong_host = tls_sim("wrong-host.pem", "wrong-host.key");
    let expired = tls_sim("expired.pem", "expired.key");
    assert!(good.url().starts_with("https://"), "{}", good.url());

    let verdicts = run_tls_child(&[&good, &wrong_host, &expired], &cert("ca.pem"));
    assert_eq!(verdicts[0], "ok");
    let says = |v: &str, what: &str| {
        assert!(
            v.starts_with("never_sent GET /version: request never sent: tls handshake failed, ")
                && v.contains(what),
            "{v}"
        );
    };
    says(
        &verdicts[1],
        "the server's certificate is not valid for the host in api_url",
    );
    says(&verdicts[2], "the server's certificate has expired");

    let verdicts = run_tls_child(&[&good], &cert("other-ca.pem"));
    says(
        &verdicts[0],
        "the server's certificate is not signed by the trusted CA (check ca_file)",
    );
    // Nothing reached the simulators but the one good request.
    assert_eq!(good.requests().len(), 1);
    assert!(wrong_host.requests().is_empty() && expired.requests().is_empty());
}
