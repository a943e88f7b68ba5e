//! The URL provider against the simulated desired-state source over loopback HTTP:
//! conditional requests, the last good state across a restart, every kind of garbage
//! refused with the last good state kept, redirects, caps. Each assertion about cost
//! is made on the source's own request log. The same over TLS, with the real binary,
//! is in `source_run.rs`.

use super::config::TempDir;
use felhom_agent::desired::{
    last_good_path, DesiredState, Provider, Refresh, SourceError, UrlOptions, UrlProvider,
};
use felhom_agent::remote::{RemoteError, RemoteUrl};
use felhom_agent::secret::Secret;
use felhom_agent::sim::{Serve, Source, SourceOptions, SourceRecord};
use std::path::Path;
use std::time::Duration;

pub const STATE_A: &str = r#"{"guests": [{"vmid": 101, "state": "running"}]}"#;
pub const STATE_B: &str = r#"{"guests": [{"vmid": 101, "state": "running", "cores": 2}]}"#;

fn provider(source: &Source, state_dir: &Path, token: Option<&str>) -> UrlProvider {
    UrlProvider::new(UrlOptions {
        url: RemoteUrl::parse(&source.url()).unwrap(),
        token: token.map(Secret::new),
        every: Duration::from_secs(1),
        state_dir: state_dir.to_path_buf(),
        timeout: Duration::from_secs(5),
    })
}

fn plain_source(document: &str) -> Source {
    Source::start(SourceOptions::default(), document).expect("the source starts")
}

fn state(text: &str) -> DesiredState {
    DesiredState::parse(text, Path::new("test")).unwrap()
}

/// `status if-none-match` per request, for compact assertions.
fn log(requests: &[SourceRecord]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            let cond = match (&r.if_none_match, &r.if_modified_since) {
                (Some(e), _) => format!(" inm={e}"),
                (None, Some(d)) => format!(" ims={d}"),
                (None, None) => String::new(),
            };
            format!("{} {}{cond}", r.method, r.status)
        })
        .collect()
}

#[test]
fn an_unchanged_state_costs_one_304_per_fetch_and_a_change_one_200() {
    let dir = TempDir::new("source-304");
    let source = plain_source(STATE_A);
    let mut p = provider(&source, dir.path(), None);
    assert_eq!(
        p.load().unwrap(),
        DesiredState::default(),
        "nothing kept yet"
    );
    match p.refresh(true) {
        Refresh::New(s) => assert_eq!(s, state(STATE_A)),
        other => panic!("{other:?}"),
    }
    for _ in 0..3 {
        assert!(matches!(p.refresh(true), Refresh::Unchanged));
    }
    let etag = source.etag().unwrap();
    assert_eq!(
        log(&source.requests()),
        [
            "GET 200".to_string(),
            format!("GET 304 inm={etag}"),
            format!("GET 304 inm={etag}"),
            format!("GET 304 inm={etag}"),
        ]
    );
    source.set_document(STATE_B);
    match p.refresh(true) {
        Refresh::New(s) => assert_eq!(s, state(STATE_B)),
        other => panic!("{other:?}"),
    }
    let status = p.source_status().unwrap();
    assert_eq!(status.etag, source.etag());
    assert_eq!((status.error, status.from_state_dir), (None, false));
    assert_eq!(status.url, source.url());
    assert_eq!(source.requests().len(), 5);
    assert_eq!(source.requests()[4].status, 200);
}

#[test]
fn without_an_etag_if_modified_since_is_sent() {
    let dir = TempDir::new("source-ims");
    let source = plain_source("");
    source.set_validators(false, true);
    source.set_document(STATE_A);
    let mut p = provider(&source, dir.path(), None);
    assert!(matches!(p.refresh(true), Refresh::New(_)));
    assert!(matches!(p.refresh(true), Refresh::Unchanged));
    let r = source.requests();
    assert_eq!(r[0].if_modified_since, None);
    assert_eq!(r[1].if_none_match, None);
    assert!(r[1]
        .if_modified_since
        .as_deref()
        .is_some_and(|d| d.ends_with(" GMT")));
    assert_eq!(r[1].status, 304);
    // A server with no validators at all sends the state whole every time.
    source.set_validators(false, false);
    source.set_document(STATE_A);
    let mut p = provider(&source, TempDir::new("source-none").path(), None);
    assert!(matches!(p.refresh(false), Refresh::New(_)));
    assert!(matches!(p.refresh(false), Refresh::New(_)));
    let r = source.requests();
    assert!(r[2..]
        .iter()
        .all(|r| r.status == 200 && r.if_modified_since.is_none()));
}

#[test]
fn the_last_good_state_outlives_a_restart_and_the_first_request_is_conditional() {
    let dir = TempDir::new("source-restart");
    let source = plain_source(STATE_A);
    let mut p = provider(&source, dir.path(), None);
    assert!(matches!(p.refresh(true), Refresh::New(_)));
    drop(p);
    let addr = source.addr();
    drop(source);

    // The source is gone: a new provider (a restarted agent) starts from the state
    // kept, and the failure leaves it in force.
    let p2_source_url = format!("http://127.0.0.1:{}/nodes/pve1.json", addr.port());
    let mut p = UrlProvider::new(UrlOptions {
        url: RemoteUrl::parse(&p2_source_url).unwrap(),
        token: None,
        every: Duration::from_secs(1),
        state_dir: dir.path().to_path_buf(),
        timeout: Duration::from_secs(5),
    });
    assert_eq!(p.load().unwrap(), state(STATE_A));
    assert!(p.source_status().unwrap().from_state_dir);
    match p.refresh(true) {
        Refresh::Failed(SourceError::Fetch(e)) => assert!(e.is_never_sent(), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.load().unwrap(), state(STATE_A));
    let status = p.source_status().unwrap();
    assert!(
        status
            .error
            .as_deref()
            .unwrap()
            .contains("request never sent"),
        "{status:?}"
    );
    assert!(status.error_at.is_some() && status.fetched.is_some());

    // It comes back on the same address with the same document (the same ETag: it
    // is made from the text): one conditional request, answered 304.
    let source = Source::start(
        SourceOptions {
            listen: addr,
            ..SourceOptions::default()
        },
        STATE_A,
    )
    .unwrap();
    assert!(matches!(p.refresh(true), Refresh::Unchanged));
    let etag = source.etag().unwrap();
    assert_eq!(log(&source.requests()), [format!("GET 304 inm={etag}")]);
    let status = p.source_status().unwrap();
    assert_eq!((status.error, status.from_state_dir), (None, false));
    let kept = std::fs::read_to_string(last_good_path(dir.path())).unwrap();
    assert!(kept.contains(&etag.replace('"', "\\\"")), "{kept}");
}

/// What would stop guest 101 if it were ever taken.
pub const STOP_101: &str = r#"{"guests": [{"vmid": 101, "state": "stopped"}]}"#;

#[test]
fn garbage_of_every_kind_is_refused_and_the_last_good_state_stays() {
    let dir = TempDir::new("source-garbage");
    let source = plain_source(STATE_A);
    let mut p = provider(&source, dir.path(), Some("tok-LEAKCANARY-1"));
    assert!(matches!(p.refresh(true), Refresh::New(_)));
    let kept = std::fs::read(last_good_path(dir.path())).unwrap();
    let url = source.url();
    let invalid_state = r#"{"guests": [{"vmid": 101, "state": "stopped", "memory": 1}]}"#;
    let cases: Vec<(Serve, String)> = vec![
        (
            Serve::Status(503),
            format!("GET {url}: answered 503 Service Unavailable"),
        ),
        (
            Serve::Status(401),
            format!("GET {url}: answered 401 Unauthorized"),
        ),
        (
            Serve::ContentType("text/html"),
            format!("GET {url}: the answer is \"text/html\", not JSON"),
        ),
        (
            Serve::Body("application/octet-stream", STOP_101.into()),
            "\"application/octet-stream\", not JSON".into(),
        ),
        (
            Serve::Body("application/json", b"{\"guests\": [{\"vmid\": 101".to_vec()),
            format!("{url}:1:25: invalid JSON"),
        ),
        (
            Serve::Body("application/json", invalid_state.into()),
            format!("{url}:1:57: guest 101: memory: expected an integer from 16"),
        ),
        (
            Serve::Body("application/json; charset=latin1", STOP_101.into()),
            "not JSON".into(),
        ),
        (
            Serve::Body(
                "application/json",
                b"{\"guests\": [], \"x\": \"\xff\"}".to_vec(),
            ),
            format!("{url}:1:22: the file is not valid UTF-8"),
        ),
        (
            Serve::Truncated,
            format!("GET {url}: the answer was cut off after"),
        ),
        (
            Serve::Huge(17 << 20),
            format!("GET {url}: the answer is larger than the 16777216 bytes allowed"),
        ),
        (
            Serve::Reflect,
            format!(
                "GET {url}: the answer repeats the token sent with the request; refused unread"
            ),
        ),
        (
            Serve::Redirect(302, "ftp://127.0.0.1/x".into()),
            format!("GET {url}: redirect refused, to ftp://127.0.0.1/x: only https is followed"),
        ),
    ];
    for (serve, says) in cases {
        let before = source.requests().len();
        source.set_serve(serve.clone());
        match p.refresh(true) {
            Refresh::Failed(e) => {
                let text = e.to_string();
                assert!(text.contains(&says), "{serve:?}: {text}");
                assert!(!text.contains("LEAKCANARY"), "{text}");
            }
            other => panic!("{serve:?}: {other:?}"),
        }
        assert_eq!(
            source.requests().len(),
            before + 1,
            "{serve:?}: one request"
        );
        assert_eq!(p.load().unwrap(), state(STATE_A), "{serve:?}");
        let status = p.source_status().unwrap();
        assert!(
            status.error.as_deref().unwrap().contains(&says),
            "{status:?}"
        );
        assert!(!format!("{status:?}").contains("LEAKCANARY"));
        assert_eq!(std::fs::read(last_good_path(dir.path())).unwrap(), kept);
    }
    // Every request carried the token; the source that misbehaved comes right again.
    assert!(source
        .requests()
        .iter()
        .all(|r| r.authorization.as_deref() == Some("Bearer tok-LEAKCANARY-1")));
    source.set_serve(Serve::Document);
    assert!(matches!(p.refresh(true), Refresh::Unchanged));
    assert_eq!(p.source_status().unwrap().error, None);
}

#[test]
fn redirects_are_followed_only_to_https_on_the_same_host() {
    let dir = TempDir::new("source-redirect");
    let target = plain_source(STOP_101);
    let source = plain_source(STATE_A);
    let mut p = provider(&source, dir.path(), Some("tok"));
    source.set_serve(Serve::Redirect(302, target.url()));
    match p.refresh(true) {
        Refresh::Failed(SourceError::Fetch(RemoteError::Redirect { why, .. })) => {
            assert!(why.contains("only https is followed"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    // A relative one from plain http stays plain http: refused too.
    source.set_serve(Serve::Redirect(301, "/other.json".into()));
    assert!(matches!(p.refresh(true), Refresh::Failed(_)));
    assert!(
        target.requests().is_empty(),
        "the http target was never asked"
    );
    assert_eq!(p.load().unwrap(), DesiredState::default());
    // Too many hops: a redirect to https on the same host passes the rule and ends in
    // a refused connection here, which is enough to show it was followed.
    source.set_serve(Serve::Redirect(307, "https://127.0.0.1:1/x".into()));
    match p.refresh(true) {
        Refresh::Failed(SourceError::Fetch(e)) => {
            assert!(e.is_never_sent(), "{e}");
            assert!(
                e.to_string().starts_with("GET https://127.0.0.1:1/x: "),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A source that serves `body` once the agent has converged 101 on a first state: the
/// agent (the real binary, with `token` for the source and a `report_url` on another
/// origin) fetches it and passes again. Asserts that the token never reached the report
/// target, in a header or in a body, and that the body caused no action.
pub fn assert_token_not_reported(tag: &str, token: &str, body: String) {
    use super::agent::{Agent, SIGTERM, SIGUSR1};
    use super::rig::{fast_sim, guest, mutations_of, Rig};
    use felhom_agent::sim::{Serve, Source, SourceOptions};
    const T: std::time::Duration = std::time::Duration::from_secs(30);
    assert!(
        !body.contains(token),
        "the body spells the token some other way"
    );
    let source = Source::start(SourceOptions::default(), STATE_A).expect("the source starts");
    let report = Source::start(SourceOptions::default(), STATE_A).expect("the target starts");
    let rig = Rig::new(
        tag,
        fast_sim(),
        vec![guest(101, false)],
        r#"{"guests": []}"#,
        serde_json::json!({
            "desired_file": null,
            "desired_url": source.url(),
            "desired_token_file": "source.token",
            "desired_interval_secs": 1,
            "report_url": format!("{}/report/pve1", report.origin()),
        }),
    );
    rig.dir.write("source.token", format!("{token}\n"), 0o600);
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("STATUS=pass 1:", T);
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);

    source.set_serve(Serve::Body("application/json", body.into_bytes()));
    let asked = source.requests().len();
    assert!(source.wait_until(T, |log| log.len() > asked));
    agent.signal(SIGUSR1);
    agent.wait_notify("STATUS=pass 2:", T);
    assert!(
        report.wait_until(T, |log| log.iter().filter(|r| r.method == "POST").count()
            >= 2),
        "two reports"
    );
    agent.signal(SIGTERM);
    assert!(agent.wait_exit(T).success());
    assert!(
        report.requests().iter().all(|r| r.authorization.is_none()),
        "the token is withheld from the report's origin"
    );
    let leaked: Vec<String> = report
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .filter(|b| b.contains(token))
        .collect();
    assert!(
        leaked.is_empty(),
        "the desired-state token reached report_url's server:\n{}",
        leaked.join("\n")
    );
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);
}
