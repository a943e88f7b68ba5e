//! Base URL rules, error classification and response interpretation, without a server.

use super::*;
use std::io;

#[test]
fn base_urls() {
    let ok = |u: &str, origin: &str, https: bool| {
        let b = parse_base_url(u).unwrap_or_else(|e| panic!("{u}: {e}"));
        assert_eq!(b.origin, origin, "{u}");
        assert_eq!(b.https, https, "{u}");
    };
    ok("https://127.0.0.1:8006", "https://127.0.0.1:8006", true);
    ok(
        "https://pve1.example.com:8006/",
        "https://pve1.example.com:8006",
        true,
    );
    ok("HTTPS://pve1:8006/api2/json/", "https://pve1:8006", true);
    ok("https://pve1", "https://pve1", true);
    ok("http://127.0.0.1:8006", "http://127.0.0.1:8006", false);
    ok("http://127.1.2.3:1", "http://127.1.2.3:1", false);
    ok("http://localhost:8006", "http://localhost:8006", false);
    ok("http://LocalHost.:8006", "http://LocalHost.:8006", false);

    let err = |u: &str, part: &str| {
        let e = parse_base_url(u).unwrap_err();
        assert!(matches!(e, ApiError::Config(_)), "{u}");
        assert!(e.to_string().contains(part), "{u}: {e}");
    };
    err("ftp://pve1", "must start with https://");
    err("pve1:8006", "must start with https://");
    err(
        "http://10.0.0.1:8006",
        "plain http is only allowed to a loopback address",
    );
    err(
        "http://pve1:8006",
        "plain http is only allowed to a loopback address",
    );
    err("http://128.0.0.1:8006", "plain http is only allowed");
    err("https://pve1:8006/api2/extjs", "has a path");
    err("https://pve1:8006?x=1", "has a path");
    err("https://pve1:0", "port");
    err("https://pve1:99999", "port");
    err("https://pve1:abc", "port");
    err("https://:8006", "not a host name");
    err("https://pve 1:8006", "not a host name");
    err(
        "https://[::1]:8006",
        "ipv6 address literals are not supported",
    );
    let e = parse_base_url("https://root:hunter2@pve1:8006").unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn loopback_hosts() {
    for h in [
        "localhost",
        "LOCALHOST",
        "127.0.0.1",
        "127.255.0.9",
        "::1",
        "[::1]",
    ] {
        assert!(is_loopback_host(h), "{h}");
    }
    for h in [
        "10.0.0.1",
        "128.0.0.1",
        "localhost.example.com",
        "::2",
        "pve1",
        "0.0.0.0",
    ] {
        assert!(!is_loopback_host(h), "{h}");
    }
}

#[test]
fn classifies_transport_failures() {
    use minreq::Error as E;
    let io = |k: io::ErrorKind, m: &str| E::IoError(io::Error::new(k, m.to_string()));
    let never = [
        E::AddressNotFound,
        io(io::ErrorKind::ConnectionRefused, "connection refused"),
        io(io::ErrorKind::HostUnreachable, "no route to host"),
        io(io::ErrorKind::NetworkUnreachable, "network is unreachable"),
        io(
            io::ErrorKind::Other,
            "failed to lookup address information: Name or service not known",
        ),
        E::RustlsCreateConnection(rustls::Error::General("no ca".into())),
        E::IoError(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        )),
        E::IoError(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        )),
    ];
    for e in &never {
        assert!(never_sent(e), "{e:?} should be never sent");
        assert!(transport_error("GET /version", e).is_never_sent());
    }
    let no_answer = [
        io(
            io::ErrorKind::TimedOut,
            "the timeout of the request was reached",
        ),
        io(io::ErrorKind::TimedOut, "connection timed out"),
        io(io::ErrorKind::ConnectionReset, "connection reset by peer"),
        io(io::ErrorKind::BrokenPipe, "broken pipe"),
        io(io::ErrorKind::UnexpectedEof, "eof"),
        io(
            io::ErrorKind::WouldBlock,
            "resource temporarily unavailable",
        ),
        E::IoError(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::DecryptError,
        )),
        E::IoError(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CloseNotify),
        )),
        E::MalformedContentLength,
        E::HeadersOverflow,
        E::InvalidUtf8InResponse,
    ];
    for e in &no_answer {
        assert!(!never_sent(e), "{e:?} should be no answer");
        let api = transport_error("PUT /nodes/pve1/lxc/101/config", e);
        assert!(matches!(api, ApiError::NoAnswer { .. }), "{api:?}");
    }
}

fn answer(status: u16, reason: &str, body: &str) -> Result<Value, ApiError> {
    interpret(
        "GET /x",
        &Answer {
            status,
            reason,
            has_headers: true,
            body: body.as_bytes(),
        },
    )
}

fn http_message(r: Result<Value, ApiError>) -> (u16, String, BTreeMap<String, String>) {
    match r {
        Err(ApiError::Http {
            status,
            message,
            errors,
        }) => (status, message, errors),
        other => panic!("expected an http error, got {other:?}"),
    }
}

#[test]
fn unwraps_the_data_envelope() {
    assert_eq!(
        answer(200, "OK", r#"{"data":[1,2]}"#).unwrap(),
        serde_json::json!([1, 2])
    );
    assert_eq!(answer(200, "OK", r#"{"data":null}"#).unwrap(), Value::Null);
    assert_eq!(
        answer(200, "OK", r#"{"data":"UPID:x","total":3}"#).unwrap(),
        serde_json::json!("UPID:x")
    );
    let e = answer(200, "OK", r#"{"nodata":1}"#).unwrap_err();
    assert!(
        matches!(&e, ApiError::Decode { request, .. } if request == "GET /x"),
        "{e:?}"
    );
    let e = answer(200, "OK", "<html>").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("GET /x: cannot decode the response"),
        "{e}"
    );
}

#[test]
fn error_message_sources_in_order() {
    // Modern PVE: the body's message wins, trailing newline trimmed.
    let (s, m, _) = http_message(answer(
        500,
        "CT 101 already running",
        "{\"data\":null,\"message\":\"CT 101 already running\\n\"}",
    ));
    assert_eq!((s, m.as_str()), (500, "CT 101 already running"));
    // Legacy PVE: only the reason phrase carries it.
    let (_, m, _) = http_message(answer(500, "CT is locked (backup)", r#"{"data":null}"#));
    assert_eq!(m, "CT is locked (backup)");
    // The http server's own errors: a plain-text body.
    let (s, m, _) = http_message(answer(
        501,
        "",
        "Method 'GET /nodes/pve1/foo' not implemented\n",
    ));
    assert_eq!(
        (s, m.as_str()),
        (501, "Method 'GET /nodes/pve1/foo' not implemented")
    );
    // 401: empty body, reason only.
    let (_, m, _) = http_message(answer(401, "Authentication failed!", ""));
    assert_eq!(m, "Authentication failed!");
    // Nothing at all: the canonical reason.
    let (_, m, _) = http_message(answer(596, "", ""));
    assert_eq!(
        m,
        "Errors during TLS negotiation, request sending and header processing"
    );
    let (_, m, _) = http_message(answer(500, "", r#"{"data":null}"#));
    assert_eq!(m, "Internal Server Error");
    let (_, m, _) = http_message(answer(500, "", r#"{"data":null,"message":""}"#));
    assert_eq!(m, "Internal Server Error");
}

#[test]
fn parameter_errors_are_kept() {
    let (s, m, errors) = http_message(answer(
        400,
        "Parameter verification failed.",
        r#"{"data":null,"errors":{"onboot":"type check ('boolean') failed - got 'true'\n","x":1}}"#,
    ));
    assert_eq!(s, 400);
    assert_eq!(m, "Parameter verification failed.");
    assert_eq!(
        errors["onboot"],
        "type check ('boolean') failed - got 'true'"
    );
    assert_eq!(errors["x"], "1");
}

#[test]
fn a_connection_closed_before_the_status_line_is_no_answer() {
    let r = interpret(
        "POST /nodes/pve1/lxc/101/status/start",
        &Answer {
            status: 503,
            reason: NO_STATUS_LINE,
            has_headers: false,
            body: b"",
        },
    );
    assert!(matches!(r, Err(ApiError::NoAnswer { .. })), "{r:?}");
    // A real 503 from a server is an answer.
    let (s, _, _) = http_message(answer(503, "Service Unavailable", ""));
    assert_eq!(s, 503);
}
