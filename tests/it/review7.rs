//! A seventh independent adversarial review, aimed at the secrets: the desired-state
//! source's token reflected in ways the reflection checks of src/remote/mod.rs miss.
//!
//! Each test here is one defect: it failed on main for that defect and no other reason
//! (the file:line references are main's as the review found it), and says how it was
//! fixed. The evidence is what
//! a server saw (the report target's request log) or what the agent wrote. Nothing
//! waits with a sleep: every wait is on a condition with a deadline.

use super::proxy::{Proxy, Rewrite};
use super::rig::{fast_sim, guest, point_config_at, Rig};
use super::source::assert_token_not_reported;
use felhom_agent::sim::{Effect, FaultRule, Faults, Match, SimOptions};
use std::sync::Arc;

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
/// Fixed: the check of the body no longer depends on a parse: `Secret::is_repeated_in`
/// looks for the token as it is, with every JSON escape undone leniently over the whole
/// text, and percent-decoded, before anything is parsed.
#[test]
fn a_token_escaped_in_the_key_of_a_broken_document_is_not_quoted() {
    // The echo, JSON-escaped, as a key with no ':' after it: not JSON at all.
    const TOKEN: &str = "src/tok+0000/LEAKCANARY7";
    let body = format!(r#"{{"{}" 1}}"#, TOKEN.replace('/', "\\/"));
    assert_token_not_reported("review7-key-token", TOKEN, body);
}

/// Defect 2: the API token's secret, echoed by a proxy or gateway in front of the node
/// into its error answer, is quoted whole into the agent's error, and from there into
/// `plan`'s output (and the log, status.json, the report).
///
/// Gateways in front of pveproxy answer errors with a JSON `message` of their own, and
/// some repeat the request's headers or the credential they refused. `http_error`
/// (src/pve/transport.rs:283-317) takes the body's `message` first (then the reason
/// phrase, then a non-JSON body up to 1024 characters) and nothing looks whether it
/// repeats the `Authorization` header: unlike the desired-state source
/// (`head_reflects`, the raw body check, `json_reflects` in src/remote/mod.rs), the
/// Proxmox client has no reflection check at all. The same goes for the `errors` map
/// of a 400, a reason phrase, a non-JSON body under an empty reason, and a 2xx that
/// does not decode (src/pve/envelope.rs:34-53: serde's message quotes a string of the
/// wrong type whole).
///
/// Fixed: the Proxmox client looks at every answer's head and body for the secret
/// (`Secret::is_repeated_in`) before anything of it is decoded or quoted; such an answer
/// keeps its class (a 2xx is undecodable, another status an HTTP error) with a message
/// of its own (src/pve/request.rs, `attempt`).
#[test]
fn an_error_page_that_echoes_the_api_token_is_not_quoted() {
    let opts = SimOptions {
        token_secret: "7e3a91c4-LEAKCANARY7-4f0d-b2e8-c51a6d09f3b7".to_string(),
        ..fast_sim()
    };
    let rig = Rig::new(
        "review7-api-echo",
        opts,
        vec![guest(101, false)],
        r#"{"guests": [{"vmid": 101, "state": "running"}]}"#,
        serde_json::json!({}),
    );
    let secret = rig.sim.token_secret().to_string();
    let header = format!("PVEAPIToken={}={}", rig.sim.token_id(), secret);
    // Every GET fails with a 500 (as a backend behind the proxy would), and the proxy
    // answers it with its own JSON error, whose message lists the request's headers.
    rig.sim.set_faults(Faults::rule(FaultRule::new(
        Match::method("GET"),
        Effect::StatusBefore(500),
    )));
    let page = serde_json::json!({
        "data": null,
        "message": format!("upstream error; request headers: Authorization: {header}"),
    })
    .to_string();
    let rewrite: Arc<Rewrite> = Arc::new(move |_, _, _| Some(page.clone().into_bytes()));
    let proxy = Proxy::start(rig.sim.addr(), rewrite);
    point_config_at(&rig, &proxy.url());
    let out = rig.bin(&["plan", "--json"]);
    drop(proxy);
    assert!(
        rig.sim.requests().iter().any(|r| r.status == 500),
        "the node answered 500s"
    );
    assert!(rig.sim.mutations().is_empty());
    let shown = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !shown.contains(&secret),
        "the API token's secret was shown by `plan --json`:\n{shown}"
    );
}
