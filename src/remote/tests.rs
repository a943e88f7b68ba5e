//! URL rules and redirect resolution, without a server. The exchanges themselves are
//! tested against the simulated source in tests/it/source.rs.

use super::*;

fn url(s: &str) -> RemoteUrl {
    RemoteUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn refused(s: &str, why: &str) -> RemoteUrlError {
    let e = RemoteUrl::parse(s).unwrap_err();
    assert!(e.why.contains(why), "{s}: {e}");
    e
}

#[test]
fn urls_with_a_path_and_their_shown_form() {
    let u = url("https://cp.example.com/nodes/pve1.json");
    assert_eq!(u.full(), "https://cp.example.com/nodes/pve1.json");
    assert_eq!(u.shown(), u.full());
    assert_eq!(
        (u.host(), u.origin()),
        ("cp.example.com", "https://cp.example.com")
    );
    assert!(u.is_https());
    let u = url("https://git.example.com:3000/ops/fleet/raw/branch/main/pve1.json?ref=main&x=1");
    assert_eq!(
        u.full(),
        "https://git.example.com:3000/ops/fleet/raw/branch/main/pve1.json?ref=main&x=1"
    );
    // The query may hold what a person must not see.
    assert_eq!(
        u.shown(),
        "https://git.example.com:3000/ops/fleet/raw/branch/main/pve1.json?..."
    );
    assert_eq!(format!("{u} {u:?}").matches("ref=main").count(), 0);
    assert_eq!(url("https://cp").full(), "https://cp/");
    assert_eq!(url("https://cp?a=b").full(), "https://cp/?a=b");
    assert_eq!(
        url("http://127.0.0.1:8080/d.json").full(),
        "http://127.0.0.1:8080/d.json"
    );
}

#[test]
fn refused_urls_say_why_and_show_no_secret() {
    refused("cp.example.com/x", "it must start with https://");
    refused("ftp://cp/x", "the scheme must be https or http");
    refused(
        "http://cp.example.com/x",
        "plain http is only allowed to a loopback IP address",
    );
    refused("http://localhost:8080/x", "use http://127.0.0.1");
    refused("https://[::1]/x", "IPv6");
    refused("https://cp/x#top", "remove the #fragment");
    refused("https://cp/a b", "percent-encode");
    refused("https://cp/\u{e9}", "percent-encode");
    refused("https://cp:0/x", "the port must be");
    for s in [
        "https://root:hunter2@cp/x",
        "https://root:hun/ter2@cp/x",
        "https://root:1234/ter2@cp/x",
        "https://cp/x?token=hunter2@",
    ] {
        let e = refused(s, "remove the user name and password");
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("ter2"),
            "{text}"
        );
    }
    let e = refused("ftp://cp/x?token=hunter2", "scheme");
    assert!(!format!("{e}").contains("hunter2"), "{e}");
}

#[test]
fn redirects_only_to_https_on_the_same_host() {
    let from = url("https://cp.example.com:8443/nodes/pve1.json?v=1");
    let to = |loc: &str| from.redirect(loc).map(|u| u.full());
    assert_eq!(
        to("https://cp.example.com/v2/pve1.json"),
        Ok("https://cp.example.com/v2/pve1.json".into())
    );
    assert_eq!(
        to("https://CP.example.com:9443/x"),
        Ok("https://CP.example.com:9443/x".into())
    );
    assert_eq!(
        to("/v2/pve1.json"),
        Ok("https://cp.example.com:8443/v2/pve1.json".into())
    );
    assert_eq!(
        to("pve1-new.json"),
        Ok("https://cp.example.com:8443/nodes/pve1-new.json".into())
    );
    assert_eq!(
        to("//cp.example.com/y"),
        Ok("https://cp.example.com/y".into())
    );
    let no = |loc: &str, why: &str| {
        let e = to(loc).unwrap_err();
        assert!(e.contains(why), "{loc}: {e}");
        e
    };
    no("http://cp.example.com/x", "only https is followed");
    no("http://127.0.0.1/x", "only https is followed");
    no(
        "https://evil.example.com/x",
        "another host than cp.example.com",
    );
    no("ftp://cp.example.com/x", "only https is followed");
    no("", "without a Location");
    let e = no("https://u:secret@cp.example.com/x", "user name");
    assert!(!e.contains("secret"), "{e}");
    let e = no("http://cp.example.com/x?token=secret", "only https");
    assert!(!e.contains("secret"), "{e}");
    // From a plain-http loopback source, a relative redirect stays plain: refused.
    let local = url("http://127.0.0.1:8080/d.json");
    assert!(local
        .redirect("/e.json")
        .unwrap_err()
        .contains("only https"));
    assert_eq!(
        local
            .redirect("https://127.0.0.1:8443/e.json")
            .map(|u| u.full()),
        Ok("https://127.0.0.1:8443/e.json".into())
    );
}

#[test]
fn a_token_in_the_answer_is_found() {
    let t = Secret::new("tok-123");
    assert!(head_reflects(Some(&t), "ok tok-123", &[]));
    assert!(head_reflects(
        Some(&t),
        "OK",
        &[("etag".into(), "\"tok-123\"".into())]
    ));
    assert!(!head_reflects(
        Some(&t),
        "OK",
        &[("etag".into(), "\"x\"".into())]
    ));
    assert!(!head_reflects(None, "tok-123", &[]));
    assert!(t.is_repeated_in(b"abc tok-123 def"));
    assert!(!Secret::new("").is_repeated_in(b"abc"));
}

#[test]
fn the_report_carries_the_token_only_to_the_source_origin() {
    let t = Secret::new("tok");
    let d = url("https://cp.example.com/nodes/pve1.json");
    let of = |r: &str| ReportTarget::of(Some(&url(r)), Some(&d), Some(&t)).unwrap();
    assert!(of("https://cp.example.com/report/pve1").token.is_some());
    assert!(of("https://cp.example.com:8443/report").token.is_none());
    assert!(of("https://other.example.com/report").token.is_none());
    assert!(ReportTarget::of(Some(&d), None, Some(&t))
        .unwrap()
        .token
        .is_none());
    assert!(ReportTarget::of(None, Some(&d), Some(&t)).is_none());
}

#[test]
fn a_head_that_repeats_the_token_in_any_spelling_is_refused() {
    let token = Secret::new("src/tok+0000");
    let head = |v: &str| head_reflects(Some(&token), "OK", &[("location".into(), v.into())]);
    assert!(head("https://x/src/tok+0000"));
    assert!(head("https://x/src%2Ftok%2B0000"));
    assert!(head("https://x/src%2ftok+0000"));
    assert!(!head("https://x/src%2Ftok"));
    assert!(!head_reflects(None, "OK", &[]));
    assert!(head_reflects(Some(&token), "src\\/tok+0000", &[]));
}
