//! The client's errors. The first thing each one says is whether the request can have
//! reached Proxmox: [`ApiError::NeverSent`] is safe to retry, [`ApiError::NoAnswer`] has
//! an unknown outcome and must not be assumed to have failed (model: proxmox-rs
//! `proxmox-client/src/error.rs`).
//!
//! No variant ever holds the Authorization header or the token secret: the header is
//! built inside the request function and dropped with the request.

use super::messages;
use std::collections::BTreeMap;
use std::fmt;

/// The lower-level reason for a transport failure (`connection refused`, `the timeout
/// of the request was reached`, ...), kept as text so that [`ApiError`] stays `Clone`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportError {
    detail: String,
}

impl TransportError {
    pub fn new(detail: impl Into<String>) -> TransportError {
        TransportError {
            detail: detail.into(),
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for TransportError {}

/// A failed Proxmox API call.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiError {
    /// The request cannot have reached the server (connection refused, address not
    /// found, TLS handshake or certificate failure). Safe to retry.
    NeverSent {
        /// `GET /nodes/pve1/lxc`.
        request: String,
        source: TransportError,
    },
    /// The request may have been received, but no answer came (timeout, reset, closed
    /// without a response). The outcome is unknown: a mutation may have happened.
    NoAnswer {
        request: String,
        source: TransportError,
    },
    /// Proxmox answered with an error status.
    Http {
        status: u16,
        /// The body's `message`, else the reason phrase, else the body text, else the
        /// canonical reason; trailing newlines trimmed.
        message: String,
        /// Per-parameter errors of a 400 (`{"onboot": "type check ..."}`).
        errors: BTreeMap<String, String>,
    },
    /// A 2xx whose body did not decode.
    Decode { request: String, detail: String },
    /// An answer came (its status line and headers) but its body was cut off: fewer
    /// bytes than its Content-Length, a read error mid-body, or JSON that ends early.
    /// For a mutation the outcome is unknown: the node received the call.
    Truncated {
        request: String,
        status: u16,
        /// `412 of 1024 bytes`, with the read error when there was one.
        detail: String,
    },
    /// An answer whose body is larger than the client reads (16 MiB, far above any real
    /// answer). Reading stopped at the limit.
    TooLarge {
        request: String,
        status: u16,
        limit: usize,
    },
    /// The client was configured wrongly: bad base URL, plain http to a non-loopback
    /// host, unreadable CA file, malformed token id.
    Config(String),
}

impl ApiError {
    /// Whether the request cannot have reached the server, so that retrying is safe.
    pub fn is_never_sent(&self) -> bool {
        matches!(self, ApiError::NeverSent { .. })
    }

    /// Whether the request may have reached the server without an answer coming back.
    pub fn is_no_answer(&self) -> bool {
        matches!(self, ApiError::NoAnswer { .. })
    }

    /// The HTTP status, for [`ApiError::Http`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's message, for [`ApiError::Http`].
    pub fn message(&self) -> Option<&str> {
        match self {
            ApiError::Http { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The per-parameter errors of a 400 (empty otherwise).
    pub fn param_errors(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            ApiError::Http { errors, .. } if !errors.is_empty() => Some(errors),
            _ => None,
        }
    }

    fn message_matches(&self, f: fn(&str) -> bool) -> bool {
        self.message().is_some_and(f)
    }

    /// `CT 101 already running`: a start that is already converged.
    pub fn is_already_running(&self) -> bool {
        self.message_matches(messages::is_already_running)
    }

    /// `CT 101 not running`: a stop or shutdown that is already converged.
    pub fn is_not_running(&self) -> bool {
        self.message_matches(messages::is_not_running)
    }

    /// The lock named by `CT is locked (backup)` (or QEMU's `VM is locked (...)`).
    pub fn lock_name(&self) -> Option<&str> {
        self.message().and_then(messages::lock_name)
    }

    /// `can't lock file ... got timeout`.
    pub fn is_lock_timeout(&self) -> bool {
        self.message_matches(messages::is_lock_timeout)
    }

    /// The config digest did not match (LXC and QEMU wordings).
    pub fn is_digest_mismatch(&self) -> bool {
        self.message_matches(messages::is_digest_mismatch)
    }

    /// `Configuration file '...' does not exist`: no such guest on this node.
    pub fn is_config_missing(&self) -> bool {
        self.message_matches(messages::is_config_missing)
    }

    /// `cluster not ready - no quorum?`.
    pub fn is_no_quorum(&self) -> bool {
        self.message_matches(messages::is_no_quorum)
    }

    /// `VM is paused - cannot shutdown`: a VM that is paused, in prelaunch or suspended
    /// by its guest refuses a graceful shutdown.
    pub fn is_paused(&self) -> bool {
        self.message_matches(messages::is_paused)
    }

    /// `balloon value too large (...)`: a VM's `memory` would go below its `balloon`.
    pub fn is_balloon_too_large(&self) -> bool {
        self.message_matches(messages::is_balloon_too_large)
    }

    /// `VM 100 qmp command '...' failed - ...` (or `qga`): a monitor or guest agent
    /// command failed.
    pub fn is_qmp_failure(&self) -> bool {
        self.message_matches(messages::is_qmp_failure)
    }

    /// The keys a running VM could not take live, with their `hotplug problem - ...`
    /// texts, from a 400's per-key errors (a synchronous VM config update). Empty for
    /// any other error.
    pub fn hotplug_problems(&self) -> Vec<(&str, &str)> {
        match self {
            ApiError::Http { errors, .. } => errors
                .iter()
                .filter(|(_, e)| messages::is_hotplug_problem(e))
                .map(|(k, e)| (k.as_str(), e.as_str()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// 401: missing, wrong or expired token.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }

    /// 403: the token lacks a privilege.
    pub fn is_forbidden(&self) -> bool {
        self.status() == Some(403)
    }

    /// 400 with per-parameter errors.
    pub fn is_param_error(&self) -> bool {
        self.status() == Some(400) && self.param_errors().is_some()
    }

    /// Whether the answer's body was cut off ([`ApiError::Truncated`]).
    pub fn is_truncated(&self) -> bool {
        matches!(self, ApiError::Truncated { .. })
    }

    /// Whether a read may simply be repeated because the failure can clear: never
    /// sent, no answer, a body cut off, or a 5xx other than 501 (a 500 from a read, or
    /// 595-599 when pveproxy could not reach the backend). A body that does not decode
    /// or is too large would come back the same.
    pub fn is_retryable_read(&self) -> bool {
        match self {
            ApiError::NeverSent { .. } | ApiError::NoAnswer { .. } | ApiError::Truncated { .. } => {
                true
            }
            ApiError::Http { status, .. } => (500..600).contains(status) && *status != 501,
            ApiError::Decode { .. } | ApiError::TooLarge { .. } | ApiError::Config(_) => false,
        }
    }

    /// Whether a mutation that failed this way may still have been carried out, so its
    /// outcome must be read from the node before anything else is sent for the guest:
    /// no answer came; an answer came whose body cannot be read (it does not decode,
    /// was cut off, or is too large: the node received the call); a proxy in front of
    /// the API gave up (502, 503, 504); or pveproxy lost its backend mid-request (596,
    /// 597, 599: the call goes on in pvedaemon). A 595 never reached pvedaemon, and
    /// "never sent" is provably not carried out.
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            ApiError::NoAnswer { .. }
            | ApiError::Decode { .. }
            | ApiError::Truncated { .. }
            | ApiError::TooLarge { .. } => true,
            ApiError::Http { status, .. } => matches!(status, 502 | 503 | 504 | 596 | 597 | 599),
            ApiError::NeverSent { .. } | ApiError::Config(_) => false,
        }
    }

    /// The message classified, for [`ApiError::Http`]. A 400 whose message says only
    /// `Parameter verification failed.` is classified by its per-key errors when one of
    /// them is recognised (a VM's `hotplug problem - ...`).
    pub fn failure(&self) -> Option<messages::TaskFailure> {
        let own = messages::TaskFailure::classify(self.message()?);
        if own != messages::TaskFailure::Other {
            return Some(own);
        }
        let by_key = self.param_errors().and_then(|errors| {
            errors
                .values()
                .map(|e| messages::TaskFailure::classify(e))
                .find(|f| *f != messages::TaskFailure::Other)
        });
        Some(by_key.unwrap_or(own))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::NeverSent { request, .. } => write!(f, "{request}: request never sent"),
            ApiError::NoAnswer { request, .. } => {
                write!(f, "{request}: no answer, outcome unknown")
            }
            ApiError::Http {
                status,
                message,
                errors,
            } => {
                write!(f, "http {status}: {message}")?;
                let mut sep = " (";
                for (param, err) in errors {
                    write!(f, "{sep}{param}: {err}")?;
                    sep = "; ";
                }
                if !errors.is_empty() {
                    f.write_str(")")?;
                }
                Ok(())
            }
            ApiError::Decode { request, detail } => {
                write!(f, "{request}: cannot decode the response: {detail}")
            }
            ApiError::Truncated {
                request,
                status,
                detail,
            } => write!(
                f,
                "{request}: the answer (http {status}) was cut off after {detail}, outcome unknown"
            ),
            ApiError::TooLarge {
                request,
                status,
                limit,
            } => write!(
                f,
                "{request}: the answer (http {status}) is larger than {limit} bytes, not read"
            ),
            ApiError::Config(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApiError::NeverSent { source, .. } | ApiError::NoAnswer { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why [`super::client::Client::wait_task`] returned without an outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum WaitError {
    /// The deadline passed while the task was still running (or unreachable).
    Timeout,
    /// The cancel token fired.
    Cancelled,
    /// Reading the task status failed with a permanent error.
    Api(ApiError),
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Timeout => f.write_str("timed out waiting for the task"),
            WaitError::Cancelled => f.write_str("cancelled while waiting for the task"),
            WaitError::Api(_) => f.write_str("cannot read the task status"),
        }
    }
}

impl std::error::Error for WaitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WaitError::Api(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ApiError> for WaitError {
    fn from(e: ApiError) -> Self {
        WaitError::Api(e)
    }
}

#[cfg(test)]
mod tests;
