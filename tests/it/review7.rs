//! A seventh independent adversarial review, aimed at the secrets: the desired-state
//! source's token reflected in ways the reflection checks of src/remote/mod.rs miss.
//!
//! Each test here is one defect: it fails on main for that defect and no other reason
//! (the file:line references are main's as the review found it). The evidence is what
//! a server saw (the report target's request log) or what the agent wrote. Nothing
//! waits with a sleep: every wait is on a condition with a deadline.

use super::agent::{Agent, SIGTERM, SIGUSR1};
use super::rig::{fast_sim, guest, mutations_of, Rig};
use super::source::STATE_A;
use felhom_agent::sim::{Serve, Source, SourceOptions};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Defect 1: a source answer that is *not* valid JSON but repeats the token
/// JSON-escaped in an object key gets the decoded token quoted into the syntax error,
/// and from there into the source's error in status.json, the log and the report
/// posted to `report_url` (whose origin is never given the token).
///
/// `remote::json_reflects` (src/remote/mod.rs:135-147) returns false for any text that
/// does not parse ("a text that is not JSON is not looked into: nothing in it is
/// decoded, so the raw check of the body covers it"). But the parser *does* decode
/// before it fails: `Parser::object` (src/json/mod.rs:259-265) reads the key with its
/// escapes decoded and, when no ':' follows, says `expected ':' after the key
/// "<decoded key>", found ...` (`quote` cuts at 40 characters, so a token of up to 40
/// characters shows whole). The raw byte check (src/remote/mod.rs:217-223) sees only
/// `src\/tok...`, so the body `{"src\/tok..." 1}` passes every check and
/// `UrlProvider::take` (src/desired/provider_url.rs:119-130) hands it to
/// `DesiredState::parse`, whose error is kept as the source's error.
///
/// Fix idea: make the reflection check independent of the parse succeeding: scan the
/// text for the token after decoding every JSON string escape the lexer would decode
/// (a lenient unescape of the whole text), or have `json_reflects` run on the parse
/// error's message too (and on any `SyntaxError` before it is rendered); simplest,
/// check every rendered problem/message for the token before it is kept.
#[test]
fn a_token_escaped_in_the_key_of_a_broken_document_is_not_quoted() {
    const TOKEN: &str = "src/tok+0000/LEAKCANARY7";
    let source = Source::start(SourceOptions::default(), STATE_A).expect("the source starts");
    let report = Source::start(SourceOptions::default(), STATE_A).expect("the target starts");
    let rig = Rig::new(
        "review7-key-token",
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

    // The echo, JSON-escaped, as a key with no ':' after it: not JSON at all.
    let body = format!(r#"{{"{}" 1}}"#, TOKEN.replace('/', "\\/"));
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
