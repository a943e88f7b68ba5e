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
mod tests {
    use super::*;
    use crate::log::Chain;

    fn http(status: u16, message: &str) -> ApiError {
        ApiError::Http {
            status,
            message: message.into(),
            errors: BTreeMap::new(),
        }
    }

    #[test]
    fn recognisers_on_http_errors() {
        assert!(http(500, "CT 101 already running").is_already_running());
        assert!(http(500, "CT 101 not running").is_not_running());
        assert_eq!(
            http(500, "CT is locked (backup)").lock_name(),
            Some("backup")
        );
        assert_eq!(
            http(500, "VM is locked (migrate)").lock_name(),
            Some("migrate")
        );
        assert!(http(
            500,
            "can't lock file '/run/lock/lxc/pve-config-101.lock' - got timeout"
        )
        .is_lock_timeout());
        assert!(http(
            500,
            "detected modified configuration - file changed by other user? Try again."
        )
        .is_digest_mismatch());
        assert!(http(500, "checksum mismatch (file change by other user?)").is_digest_mismatch());
        assert!(http(
            500,
            "Configuration file 'nodes/pve1/lxc/999.conf' does not exist"
        )
        .is_config_missing());
        assert!(http(500, "cluster not ready - no quorum?").is_no_quorum());
        assert!(http(401, "Authentication failed!").is_unauthorized());
        assert!(http(403, "Permission check failed (/vms/101, VM.PowerMgmt)").is_forbidden());
        assert!(!http(400, "Parameter verification failed.").is_param_error());
        let mut errors = BTreeMap::new();
        errors.insert(
            "onboot".to_string(),
            "type check ('boolean') failed - got 'true'".to_string(),
        );
        let e = ApiError::Http {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors,
        };
        assert!(e.is_param_error());
        assert_eq!(
            e.to_string(),
            "http 400: Parameter verification failed. (onboot: type check ('boolean') failed - got 'true')"
        );
        assert!(http(500, "VM is paused - cannot shutdown").is_paused());
        assert!(http(
            500,
            "balloon value too large (must be smaller than assigned memory)"
        )
        .is_balloon_too_large());
        assert!(http(500, "VM 100 qga command 'guest-ping' failed - got timeout").is_qmp_failure());
        assert_eq!(
            http(500, "VM 100 not running").failure(),
            Some(crate::pve::TaskFailure::NotRunning)
        );
        let mut errors = BTreeMap::new();
        errors.insert(
            "memory".to_string(),
            "hotplug problem - memory can't be lower than 1024 MB".to_string(),
        );
        errors.insert("onboot".to_string(), "type check failed".to_string());
        let hot = ApiError::Http {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors,
        };
        assert_eq!(
            hot.hotplug_problems(),
            [(
                "memory",
                "hotplug problem - memory can't be lower than 1024 MB"
            )]
        );
        assert_eq!(hot.failure(), Some(crate::pve::TaskFailure::HotplugProblem));
        assert!(http(500, "x").hotplug_problems().is_empty());
        // Recognisers never fire on transport errors.
        let t = ApiError::NoAnswer {
            request: "POST /x".into(),
            source: TransportError::new("CT 101 already running"),
        };
        assert!(!t.is_already_running());
        assert_eq!(t.status(), None);
    }

    #[test]
    fn transient_classes() {
        let never = ApiError::NeverSent {
            request: "GET /version".into(),
            source: TransportError::new("connection refused"),
        };
        assert!(never.is_never_sent() && never.is_retryable_read());
        assert!(http(596, "Connection timed out").is_retryable_read());
        assert!(http(595, "Connection refused").is_retryable_read());
        assert!(http(500, "x").is_retryable_read());
        assert!(!http(501, "Method 'GET /foo' not implemented").is_retryable_read());
        assert!(!http(400, "no such task").is_retryable_read());
        assert!(!ApiError::Config("x".into()).is_retryable_read());
        let cut = ApiError::Truncated {
            request: "POST /nodes/pve1/lxc/101/status/start".into(),
            status: 200,
            detail: "12 of 80 bytes".into(),
        };
        assert!(cut.is_truncated() && cut.is_retryable_read() && cut.is_outcome_unknown());
        assert_eq!(
            cut.to_string(),
            "POST /nodes/pve1/lxc/101/status/start: the answer (http 200) was cut off \
             after 12 of 80 bytes, outcome unknown"
        );
        let big = ApiError::TooLarge {
            request: "GET /cluster/resources".into(),
            status: 200,
            limit: 16 << 20,
        };
        assert!(!big.is_retryable_read() && big.is_outcome_unknown());
    }

    #[test]
    fn display_chains_the_cause() {
        let e = ApiError::NeverSent {
            request: "GET /version".into(),
            source: TransportError::new("connection refused (os error 111)"),
        };
        assert_eq!(
            Chain(&e).to_string(),
            "GET /version: request never sent: connection refused (os error 111)"
        );
        let w = WaitError::Api(http(400, "no such task"));
        assert_eq!(
            Chain(&w).to_string(),
            "cannot read the task status: http 400: no such task"
        );
    }
}
