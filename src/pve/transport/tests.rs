//! Error classification, body reading and response interpretation, without a server.

use super::*;
use std::io;

/// An error with a given text, standing in for the rustls error inside an io error.
#[derive(Debug)]
struct Inner(&'static str, Option<Box<Inner>>);

impl std::fmt::Display for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Inner {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1.as_deref().map(|e| e as _)
    }
}

fn tls(text: &'static str) -> minreq::Error {
    minreq::Error::IoError(io::Error::new(
        io::ErrorKind::InvalidData,
        Inner(text, None),
    ))
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
        tls("invalid peer certificate: UnknownIssuer"),
        tls("invalid peer certificate: certificate not valid for name \"pve1\"; certificate is only valid for DnsName(\"pve2\")"),
        tls("invalid peer certificate: certificate expired: verification time 1 (UNIX), but certificate is not valid after 0 (1 seconds ago)"),
        tls("received fatal alert: UnknownCA"),
        tls("received fatal alert: HandshakeFailure"),
        tls("peer is incompatible: NoCipherSuitesInCommon"),
        tls("peer sent no certificates"),
        E::IoError(io::Error::new(
            io::ErrorKind::InvalidData,
            Inner("wrapped", Some(Box::new(Inner("invalid peer certificate: BadEncoding", None)))),
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
        tls("cannot decrypt peer's message"),
        tls("received fatal alert: CloseNotify"),
        tls("received corrupt message of type InvalidContentType"),
        // The text alone, without InvalidData, is no handshake failure.
        io(
            io::ErrorKind::Other,
            "invalid peer certificate: UnknownIssuer",
        ),
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

#[test]
fn tls_failures_say_what_is_wrong() {
    let said = |text| crate::log::Chain(&transport_error("GET /version", &tls(text))).to_string();
    assert_eq!(
        said("invalid peer certificate: UnknownIssuer"),
        "GET /version: request never sent: tls handshake failed, the server's certificate is \
         not signed by the trusted CA (check ca_file): invalid peer certificate: UnknownIssuer"
    );
    assert!(said("invalid peer certificate: certificate not valid for name \"x\"; certificate is only valid for DnsName(\"y\")")
        .contains("not valid for the host in api_url"));
    assert!(said("invalid peer certificate: certificate expired: verification time 2 (UNIX), but certificate is not valid after 1 (1 seconds ago)")
        .contains("the server's certificate has expired"));
    assert!(said("invalid peer certificate: NotValidYet").contains("check this node's clock"));
    assert!(said("received fatal alert: HandshakeFailure")
        .contains("the server refused or failed the handshake"));
}

/// The texts matched above are rustls' own: checked against the real error values,
/// where rustls is in the build.
#[cfg(feature = "sim")]
#[test]
fn handshake_texts_match_rustls() {
    use rustls::{AlertDescription as A, CertificateError as C, Error as T};
    let never = [
        T::InvalidCertificate(C::UnknownIssuer),
        T::InvalidCertificate(C::Expired),
        T::InvalidCertificate(C::NotValidForName),
        T::InvalidCertificate(C::BadSignature),
        T::NoCertificatesPresented,
        T::UnsupportedNameType,
        T::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon),
        T::InappropriateHandshakeMessage {
            expect_types: vec![rustls::HandshakeType::ServerHello],
            got_type: rustls::HandshakeType::Finished,
        },
        T::InvalidCertRevocationList(rustls::CertRevocationListError::BadSignature),
        T::AlertReceived(A::HandshakeFailure),
        T::AlertReceived(A::ProtocolVersion),
        T::AlertReceived(A::InsufficientSecurity),
        T::AlertReceived(A::BadCertificate),
        T::AlertReceived(A::UnsupportedCertificate),
        T::AlertReceived(A::CertificateRevoked),
        T::AlertReceived(A::CertificateExpired),
        T::AlertReceived(A::CertificateUnknown),
        T::AlertReceived(A::UnknownCA),
    ];
    for e in never {
        let err = minreq::Error::IoError(io::Error::new(io::ErrorKind::InvalidData, e));
        assert!(never_sent(&err), "{err:?}");
    }
    let no_answer = [
        T::DecryptError,
        T::AlertReceived(A::CloseNotify),
        T::AlertReceived(A::DecodeError),
        T::PeerMisbehaved(rustls::PeerMisbehaved::TooMuchEarlyDataReceived),
        T::General("x".into()),
    ];
    for e in no_answer {
        let err = minreq::Error::IoError(io::Error::new(io::ErrorKind::InvalidData, e));
        assert!(!never_sent(&err), "{err:?}");
    }
    let hint = |e: T| tls_hint(&e.to_string(), API_KEYS);
    assert!(hint(T::InvalidCertificate(C::UnknownIssuer)).contains("trusted CA"));
    assert!(hint(T::InvalidCertificate(C::NotValidForName)).contains("host in api_url"));
    assert!(hint(T::InvalidCertificate(C::Expired)).contains("expired"));
    assert!(hint(T::InvalidCertificate(C::NotValidYet)).contains("clock"));
}

#[test]
fn bodies_are_capped_and_checked_for_length() {
    let read = |body: &[u8], expected: Option<u64>, limit| read_body(body, expected, limit);
    assert_eq!(read(b"hello", Some(5), 10), Ok(b"hello".to_vec()));
    assert_eq!(read(b"hello", None, 5), Ok(b"hello".to_vec()));
    assert_eq!(read(b"hello", None, 4), Err(BodyError::TooLarge));
    assert_eq!(read(b"", Some(11), 10), Err(BodyError::TooLarge));
    assert_eq!(
        read(b"hel", Some(5), 10),
        Err(BodyError::CutOff("3 of 5 bytes".into()))
    );
    /// Three bytes, then a reset.
    struct Resets(usize);
    impl Read for Resets {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                self.0 = 1;
                buf[..3].copy_from_slice(b"abc");
                Ok(3)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "connection reset by peer",
                ))
            }
        }
    }
    assert_eq!(
        read_body(Resets(0), Some(9), 10),
        Err(BodyError::CutOff(
            "3 of 9 bytes (connection reset by peer)".into()
        ))
    );
    assert_eq!(
        read_body(Resets(0), None, 10),
        Err(BodyError::CutOff(
            "3 bytes (connection reset by peer)".into()
        ))
    );
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(announced_length(&h(&[("content-length", "42")])), Some(42));
    assert_eq!(
        announced_length(&h(&[
            ("content-length", "42"),
            ("transfer-encoding", "chunked")
        ])),
        None
    );
    assert_eq!(announced_length(&h(&[])), None);
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
    // JSON that ends early was cut off, whatever the transfer framing said.
    for cut in [r#"{"data":[1,"#, "", r#"{"data":"UPID:pve1:"#] {
        let e = answer(200, "OK", cut).unwrap_err();
        assert!(e.is_truncated() && e.is_outcome_unknown(), "{cut:?}: {e:?}");
    }
    let e = answer(200, "OK", r#"{"data":1}x"#).unwrap_err();
    assert!(matches!(e, ApiError::Decode { .. }), "{e:?}");
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
    let r = interpret::<Value>(
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
