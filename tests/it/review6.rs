//! A sixth independent adversarial review of the agent's first promise, aimed at what
//! landed last: `journal --abandon`, reloads with a URL source, the token reflection
//! checks, the backoff and GET retries, `plan`'s waiting keys and `status`'s renderer.
//!
//! Each test here is one defect: it failed on main for that defect and no other reason
//! (the file:line references are main's as the review found it), and says how it was
//! fixed. The evidence is the
//! simulated source's request log. Nothing waits with a sleep: every wait is on a
//! condition with a deadline.

use super::agent::{Agent, SIGTERM, SIGUSR1};
use super::rig::{fast_sim, guest, mutations_of, Rig};
use super::source::STATE_A;
use felhom_agent::sim::{Serve, Source, SourceOptions};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Defect 1: a document that repeats a key leaks the token through `json_reflects`.
/// A source that echoes the token JSON-escaped inside the *first* of two `guests`
/// members (`{"guests": [{"vmid": 101, "state": "Bearer src\/tok..."}], "guests": []}`)
/// gets it quoted into the source's error, and from there into status.json, the log
/// and the report posted to `report_url`, whose origin never gets the token.
///
/// `remote::json_reflects` (src/remote/mod.rs:132-146) decodes the text with
/// `serde_json::Value`, whose maps keep the *last* of duplicate keys, so the first
/// `guests` (and the escaped token in it) is never looked at. The agent's own parser
/// keeps members in file order, duplicates included (src/json/mod.rs:8-9), and
/// `diag::known_members` (src/json/diag.rs:104-130) keeps the *first* occurrence and
/// validates it: the problem for `state` quotes the decoded token, which
/// `UrlProvider::failed` (src/desired/provider_url.rs:94-97) keeps as the source's
/// error. The promise broken: "secrets never leak" (README, Desired state from a URL:
/// "an answer that repeats it is refused unread").
///
/// Fixed: `remote::json_reflects` walks the tree the agent's own parser builds
/// (`crate::json`: every member in file order, duplicates included), not a serde_json
/// `Value`.
#[test]
fn a_token_in_the_first_of_two_duplicate_keys_is_refused_unread() {
    const TOKEN: &str = "src/tok+0000/LEAKCANARY6";
    let source = Source::start(SourceOptions::default(), STATE_A).expect("the source starts");
    let report = Source::start(SourceOptions::default(), STATE_A).expect("the target starts");
    let rig = Rig::new(
        "review6-dup-key-token",
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
    rig.dir.write("source.token", format!("{TOKEN}\n"), 0o600);
    let mut agent = Agent::run(&rig.config_path, rig.dir.path(), &[]);
    agent.wait_notify("STATUS=pass 1:", T);
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);

    // The echo, JSON-escaped, in the first of two `guests`; the second is harmless.
    let escaped = TOKEN.replace('/', "\\/");
    let body =
        format!(r#"{{"guests": [{{"vmid": 101, "state": "Bearer {escaped}"}}], "guests": []}}"#);
    assert!(!body.contains(TOKEN));
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
        .filter(|b| b.contains(TOKEN))
        .collect();
    assert!(
        leaked.is_empty(),
        "the desired-state token reached report_url's server:\n{}",
        leaked.join("\n")
    );
    assert_eq!(mutations_of(&rig.sim, 101), ["POST start"]);
}
