//! [`RemoteError`]: why a request to a server other than Proxmox failed. Each message
//! starts with the method and the URL as shown (no query, see [`super::url`]) and never
//! holds the token sent with the request, nor anything the server sent back that
//! holds it.

use crate::pve::TransportError;
use std::fmt;

/// A failed request to the desired-state source or the report target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteError {
    /// The request cannot have reached the server: connection refused, no such host,
    /// a TLS handshake failure.
    NeverSent {
        request: String,
        source: TransportError,
    },
    /// Sent, and no (whole) answer came: a timeout, a reset.
    NoAnswer {
        request: String,
        source: TransportError,
    },
    /// The server answered with a status the agent does not take (not 2xx, not a 304
    /// it asked for, not a redirect it may follow). The reason phrase is kept; the body
    /// is not read.
    Status {
        request: String,
        status: u16,
        reason: String,
    },
    /// A redirect the agent does not follow: not https, another host, too many, or no
    /// `Location`.
    Redirect { request: String, why: String },
    /// The body is larger than the cap.
    TooLarge { request: String, limit: usize },
    /// The body was cut off: fewer bytes than announced, or a read error.
    CutOff { request: String, detail: String },
    /// The answer repeats the token sent with the request (in a header, the reason
    /// phrase or the body): it is refused unread, so that nothing of it is shown.
    Reflected { request: String },
    /// The whole exchange (with its redirects) did not end in time.
    TimedOut { request: String, secs: u64 },
}

impl RemoteError {
    /// Whether the request cannot have reached the server.
    pub fn is_never_sent(&self) -> bool {
        matches!(self, RemoteError::NeverSent { .. })
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::NeverSent { request, .. } => write!(f, "{request}: request never sent"),
            RemoteError::NoAnswer { request, .. } => write!(f, "{request}: no answer"),
            RemoteError::Status {
                request,
                status,
                reason,
            } => {
                if reason.is_empty() {
                    write!(f, "{request}: answered {status}")
                } else {
                    write!(f, "{request}: answered {status} {reason}")
                }
            }
            RemoteError::Redirect { request, why } => {
                write!(f, "{request}: redirect refused, {why}")
            }
            RemoteError::TooLarge { request, limit } => write!(
                f,
                "{request}: the answer is larger than the {limit} bytes allowed"
            ),
            RemoteError::CutOff { request, detail } => {
                write!(f, "{request}: the answer was cut off after {detail}")
            }
            RemoteError::Reflected { request } => write!(
                f,
                "{request}: the answer repeats the token sent with the request; refused unread"
            ),
            RemoteError::TimedOut { request, secs } => {
                write!(f, "{request}: no whole answer within {secs} s")
            }
        }
    }
}

impl std::error::Error for RemoteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RemoteError::NeverSent { source, .. } | RemoteError::NoAnswer { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}
