//! `felhom-agent run` with its desired state at a URL: the Proxmox API (the simulated
//! node) over TLS with the test CA, the desired-state source over TLS with another
//! CA, both trusted at once. What each test claims about requests is read from the
//! source's own request log.

use super::agent::{poll_until, Agent, SIGTERM};
use super::rig::{fast_sim, guest, mutations_of, Rig};
use super::source::{STATE_A, STOP_101};
use felhom_agent::sim::{
    PowerState, Serve, SimOptions, Source, SourceOptions, SourceRecord, TlsFiles,
};
use felhom_agent::status::Status;
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
const TOKEN: &str = "src-token-0000-LEAKCANARY";

pub fn cert(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/certs")
        .join(name)
}

/// A source over TLS with the source CA's certificate, on `listen` (port 0: any).
pub fn tls_source(listen: std::net::SocketAddr, document: &str) -> Source {
    Source::start(
        SourceOptions {
            listen,
            tls: Some(TlsFiles {
                cert: cert("source.pem"),
                key: cert("source.key"),
            }),
            ..SourceOptions::default()
        },
        document,
    )
    .expect("the source starts")
}

pub fn any_port() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The simulated node over TLS, with these guests; the config points at the node with
/// the test CA and at `url` for the desired state (no desired_file), asked every
/// second; `extra` overrides.
pub fn url_rig(
    tag: &str,
    guests: Vec<felhom_agent::sim::SimGuest>,
    url: &str,
    extra: serde_json::Value,
) -> Rig {
    let opts = SimOptions {
        tls: Some(TlsFiles {
            cert: cert("server.pem"),
            key: cert("server.key"),
        }),
        ..fast_sim()
    };
    let mut config = serde_json::json!({
        "desired_file": null,
        "ca_file": cert("ca.pem"),
        "desired_url": url,
        "desired_ca_file": cert("source-ca.pem"),
        "desired_interval_secs": 1,
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        config[k] = v.clone();
    }
    let rig = Rig::new(tag, opts, guests, r#"{"guests": []}"#, config);
    rig.dir.write("source.token", format!("{TOKEN}\n"), 0o600);
    rig
}

fn gets(log: &[SourceRecord]) -> Vec<&SourceRecord> {
    log.iter().filter(|r| r.method == "GET").collect()
}

fn status_json(rig: &Rig) -> Option<Status> {
    let text = std::fs::read_to_string(rig.state_dir().join("status.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Waits until status.json satisfies `cond`; returns it.
fn wait_status(rig: &Rig, what: &str, cond: impl Fn(&Status) -> bool) -> Status {
    let mut last = None;
    let ok = poll_until(T, || {
        last = status_json(rig);
        last.as_ref().is_some_and(&cond)
    });
    assert!(ok, "status.json never showed {what}: {last:?}");
    last.unwrap()
}

#[test]
fn an_unchanged_state_costs_one_304_per_fetch_and_a_change_converges_within_one_pass() {
    let source = tls_source(any_port(), STATE_A);
    let report = format!("{}/report/pve1", source.origin());
    let rig = url_rig(
        "url-cheap",
        vec![guest(101, false)],
        &source.url(),
        serde_json::json!({"report_url": report, "desired_token_file": "source.token"}),
    );
    let mut agent = Agent::run_with(
        &rig.config_path,
        rig.dir.path(),
        &["--log-level", "debug"],
        &[],
    );
    agent.wait_notify("READY=1", T);
    agent.wait_notify("STATUS=pass 1:", T);
    assert_eq!(rig.sim.guest(101).unwrap().status, PowerState::Running);
    let etag_a = source.etag().unwrap();
    assert!(
        source.wait_until(T, |log| gets(log).len() >= 6),
        "fetches go on"
    );

    // A change: fetched within a second, and the pass it brings converges it.
    source.set_document(STATE_B_CORES);
    let status = agent.wait_notify("STATUS=pass 2:", T);
    assert!(status.contains("1 actions (1 applied"), "{status}");
    assert_eq!(rig.sim.guest(101).unwrap().cores, Some(2));
    let etag_b = source.etag().unwrap();
    assert!(source.wait_until(T, |log| gets(log)
        .iter()
        .filter(|r| r.if_none_match.as_deref() == Some(&etag_b))
        .count()
        >= 2));
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());

    let log = source.requests();
    let gets = gets(&log);
    // The first fetch asks without a condition; every later one carries the ETag held.
    assert_eq!(
        (gets[0].status, gets[0].if_none_match.as_deref()),
        (200, None)
    );
    let changed = gets
        .iter()
        .position(|r| r.status == 200 && r.if_none_match.is_some())
        .unwrap();
    for r in &gets[1..changed] {
        assert_eq!(
            (r.status, r.if_none_match.as_deref()),
            (304, Some(etag_a.as_str()))
        );
    }
    assert_eq!(
        gets[changed].if_none_match.as_deref(),
        Some(etag_a.as_str())
    );
    for r in &gets[changed + 1..] {
        assert_eq!(
            (r.status, r.if_none_match.as_deref()),
            (304, Some(etag_b.as_str()))
        );
    }
    // One request per fetch: as many requests as fetches the agent took in (the very
    // last answer may have come in while the agent was stopping), about a second
    // apart, and no retry in between.
    let fetched = |result: &str| {
        agent
            .seen
            .iter()
            .filter(|l| {
                l.contains("msg=\"desired state fetched\"")
                    && l.contains(&format!("result={result}"))
            })
            .count()
    };
    let answered = |status: u16| gets.iter().filter(|r| r.status == status).count();
    let unseen = answered(304) as i64 - fetched("unchanged") as i64;
    assert!(
        unseen == 0 || (unseen == 1 && gets.last().unwrap().status == 304),
        "{unseen}"
    );
    assert_eq!(fetched("new"), answered(200));
    for pair in gets.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(800),
            "two requests {gap:?} apart"
        );
    }
    assert!(log
        .iter()
        .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))));
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start", "PUT config"]);

    // After each pass the status went to report_url: the typed document, without the
    // API token's secret.
    let reports: Vec<&SourceRecord> = log.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(reports.len(), 2, "one report per pass");
    let last: Status = serde_json::from_slice(&reports[1].body).unwrap();
    assert_eq!((last.node.as_str(), last.last_pass.pass), ("pve1", 2));
    let src = last.source.unwrap();
    assert_eq!(
        (src.url, src.etag, src.error),
        (source.url(), Some(etag_b), None)
    );
    for r in reports {
        assert_eq!(r.target, "/report/pve1");
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains(rig.sim.token_secret()) && !body.contains(TOKEN),
            "{body}"
        );
    }
}

/// STATE_A with two cores for guest 101.
const STATE_B_CORES: &str = r#"{"guests": [{"vmid": 101, "state": "running", "cores": 2}]}"#;

/// Reads the metrics file and returns the value of `name` (no labels), if present.
fn metric(path: &Path, name: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn the_source_going_away_a_restart_and_its_return_end_converged_with_nothing_taken_from_garbage() {
    let source = tls_source(any_port(), STATE_A);
    let addr = source.addr();
    let url = source.url();
    let rig = url_rig(
        "url-away",
        vec![guest(101, false)],
        &url,
        serde_json::json!({"metrics_file": "metrics.prom"}),
    );
    let metrics = rig.dir.path().join("metrics.prom");
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("STATUS=pass 1:", T);
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);

    // Garbage of every kind, each saying "stop 101": none of it is taken.
    let bad_state = r#"{"guests": [{"vmid": 101, "state": "stopped", "cores": 0}]}"#;
    let garbage = [
        (Serve::Status(500), "answered 500"),
        (Serve::ContentType("text/html"), "not JSON"),
        (
            Serve::Body(
                "application/json",
                br#"{"guests": [{"vmid": 101, "state": "stopped""#.to_vec(),
            ),
            "invalid JSON",
        ),
        (
            Serve::Body("application/json", bad_state.into()),
            "cores: expected an integer",
        ),
        (Serve::Body("text/html", STOP_101.into()), "not JSON"),
        (Serve::Huge(20 << 20), "larger than"),
    ];
    for (serve, says) in garbage {
        source.set_serve(serve);
        let status = wait_status(&rig, says, |s| {
            s.source
                .as_ref()
                .and_then(|s| s.error.as_deref())
                .is_some_and(|e| e.contains(says))
        });
        let src = status.source.unwrap();
        assert!(src.error_at.is_some() && src.confirmed.is_some(), "{src:?}");
    }
    source.set_document(STOP_101);
    source.set_serve(Serve::Truncated);
    wait_status(&rig, "a cut-off answer", |s| {
        s.source
            .as_ref()
            .and_then(|s| s.error.as_deref())
            .is_some_and(|e| e.contains("cut off"))
    });
    assert_eq!(
        mutations_of(&rig.sim, 101),
        ["POST start"],
        "nothing taken from garbage"
    );

    // The source goes away; someone stops the guest meanwhile; the agent restarts.
    drop(source);
    wait_status(&rig, "the source gone", |s| {
        s.source
            .as_ref()
            .and_then(|s| s.error.as_deref())
            .is_some_and(|e| e.contains("request never sent"))
    });
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
    rig.sim.add_guest(guest(101, false));
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    // It converges to the last good state it knew, and says how old that is.
    let line = agent.wait_notify("STATUS=pass 1:", T);
    assert!(
        line.contains("1 applied") && line.contains("; desired source failing, state in force "),
        "{line}"
    );
    assert_eq!(rig.sim.guest(101).unwrap().status, PowerState::Running);
    let status = status_json(&rig).unwrap();
    let src = status.source.clone().unwrap();
    assert!(src.from_state_dir && src.age_secs.is_some(), "{src:?}");
    assert!(src.error.unwrap().contains("request never sent"));
    assert_eq!(metric(&metrics, "felhom_desired_source_error"), Some(1.0));
    assert!(metric(&metrics, "felhom_desired_age_seconds").is_some());
    let shown = rig.bin(&["status"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("kept from an earlier run") && text.contains("failing since"),
        "{text}"
    );

    // The source comes back, on the same address, with a new state.
    let source = tls_source(
        addr,
        r#"{"guests": [{"vmid": 101, "state": "running", "cores": 3}]}"#,
    );
    let line = agent.wait_notify("STATUS=pass 2:", T);
    assert!(!line.contains("failing"), "{line}");
    assert_eq!(rig.sim.guest(101).unwrap().cores, Some(3));
    assert!(poll_until(T, || metric(
        &metrics,
        "felhom_desired_source_error"
    ) == Some(0.0)));
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
    assert_eq!(
        mutations_of(&rig.sim, 101),
        ["POST start", "POST start", "PUT config"]
    );
    assert_eq!(gets(&source.requests())[0].status, 200);
}

fn source_error(s: &Status) -> &str {
    s.source
        .as_ref()
        .and_then(|s| s.error.as_deref())
        .unwrap_or("")
}

#[test]
fn a_redirect_to_http_is_refused_and_one_to_https_on_the_same_host_followed() {
    // Where the redirects point: plain http on the same host name, https on another
    // name for the same address, https on the same host.
    let plain = Source::start(SourceOptions::default(), STATE_A).unwrap();
    let plain_url = format!("http://localhost:{}/nodes/pve1.json", plain.addr().port());
    let target = tls_source(any_port(), STATE_A);
    let other_host = format!("https://127.0.0.1:{}/nodes/pve1.json", target.addr().port());
    let source = tls_source(any_port(), STOP_101);
    source.set_serve(Serve::Redirect(302, plain_url.clone()));
    let rig = url_rig(
        "url-redirect",
        vec![guest(101, false)],
        &source.url(),
        serde_json::json!({}),
    );
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("STATUS=pass 1:", T);
    let status = wait_status(&rig, "the refused redirect", |s| {
        source_error(s).contains("redirect refused")
    });
    assert!(
        source_error(&status).contains(&format!(
            "to {plain_url}: only https is followed, on the same host"
        )),
        "{status:?}"
    );
    source.set_serve(Serve::Redirect(301, other_host.clone()));
    wait_status(&rig, "the other host refused", |s| {
        source_error(s).contains(&format!("to {other_host}: another host than localhost"))
    });
    assert!(plain.requests().is_empty() && target.requests().is_empty());
    assert!(rig.sim.mutations().is_empty(), "nothing to act on yet");

    source.set_serve(Serve::Redirect(307, target.url()));
    let line = agent.wait_notify("STATUS=pass 2:", T);
    assert!(line.contains("1 applied"), "{line}");
    assert_eq!(rig.sim.guest(101).unwrap().status, PowerState::Running);
    // The next fetch goes the same way, conditionally, and costs the target a 304.
    assert!(target.wait_until(T, |log| log.iter().any(|r| r.status == 304)));
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
    let t = target.requests();
    assert_eq!((t[0].status, t[0].if_none_match.is_none()), (200, true));
    assert_eq!(t[1].if_none_match, target.etag());
    assert!(plain.requests().is_empty(), "plain http was never asked");
}

#[test]
fn the_source_is_trusted_by_desired_ca_file_or_the_system_roots_and_the_api_by_its_ca() {
    // desired_ca_file is tried in the tests above; here there is none, and the system
    // roots the agent starts with (SSL_CERT_FILE) are what vouches for the source.
    let source = tls_source(any_port(), STATE_A);
    let rig = url_rig(
        "url-trust",
        vec![guest(101, false)],
        &source.url(),
        serde_json::json!({"desired_ca_file": null}),
    );
    let check = |roots: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_felhom-agent"))
            .args(["check", "--config"])
            .arg(&rig.config_path)
            .env("SSL_CERT_FILE", roots)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        (o.status.code(), out + &String::from_utf8_lossy(&o.stderr))
    };

    // System roots that know the source's CA, combined with the Proxmox CA: both work.
    let roots = cert("source-ca.pem").display().to_string();
    let (code, said) = check(&roots);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("1 guests desired, source url {}", source.url())),
        "{said}"
    );
    let mut agent = Agent::run(
        &rig.config_path,
        rig.dir.path(),
        &[("SSL_CERT_FILE", &roots)],
    );
    let line = agent.wait_notify("STATUS=pass 1:", T);
    assert!(line.contains("1 applied"), "{line}");
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());

    // System roots that do not know it: the source is refused, and the API, trusted
    // through ca_file, still works: the guest stopped meanwhile is started again from
    // the state kept.
    rig.sim.add_guest(guest(101, false));
    let asked = gets(&source.requests()).len();
    let other = cert("other-ca.pem").display().to_string();
    let mut agent = Agent::run(
        &rig.config_path,
        rig.dir.path(),
        &[("SSL_CERT_FILE", &other)],
    );
    let line = agent.wait_notify("STATUS=pass 1:", T);
    assert!(
        line.contains("1 applied") && line.contains("desired source failing"),
        "{line}"
    );
    let status = status_json(&rig).unwrap();
    assert!(
        source_error(&status).contains(
            "request never sent: tls handshake failed, the server's certificate is not signed by the trusted CA (check desired_ca_file)"
        ),
        "{status:?}"
    );
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start", "POST start"]);
    assert_eq!(
        gets(&source.requests()).len(),
        asked,
        "no request got through"
    );
    let bundle = std::fs::read_to_string(rig.state_dir().join("tls-trust.pem")).unwrap();
    let pem = |name: &str| std::fs::read_to_string(cert(name)).unwrap();
    assert!(bundle.contains(pem("ca.pem").trim()) && bundle.contains(pem("other-ca.pem").trim()));

    // `check` says when the source answers an invalid state (2) or is down (1).
    source.set_serve(Serve::Body(
        "application/json",
        br#"{"guests": [{"vmid": 0}]}"#.to_vec(),
    ));
    let (code, err) = check(&roots);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:1:22: guests[0]: vmid:", source.url())),
        "{err}"
    );
    drop(source);
    let (code, err) = check(&roots);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("request never sent"), "{err}");
}
