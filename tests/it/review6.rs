//! A sixth independent adversarial review of the agent's first promise, aimed at what
//! landed last: `journal --abandon`, reloads with a URL source, the token reflection
//! checks, the backoff and GET retries, `plan`'s waiting keys and `status`'s renderer.
//!
//! Each test here is one defect: it failed on main for that defect and no other reason
//! (the file:line references are main's as the review found it), and says how it was
//! fixed. The evidence is the
//! simulated source's request log. Nothing waits with a sleep: every wait is on a
//! condition with a deadline.

use super::source::assert_token_not_reported;

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
    // The echo, JSON-escaped, in the first of two `guests`; the second is harmless.
    const TOKEN: &str = "src/tok+0000/LEAKCANARY6";
    let escaped = TOKEN.replace('/', "\\/");
    let body =
        format!(r#"{{"guests": [{{"vmid": 101, "state": "Bearer {escaped}"}}], "guests": []}}"#);
    assert_token_not_reported("review6-dup-key-token", TOKEN, body);
}
