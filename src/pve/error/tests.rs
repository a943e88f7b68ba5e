//! The error classes and their recognisers.

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
