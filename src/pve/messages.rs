//! Recognisers for the PVE error texts the agent reacts to, from containers
//! (pve-container) and virtual machines (qemu-server) alike.
//!
//! PVE reports nearly every failure as a 500 (or as a task's exit status) with a text
//! message and no machine-readable code, so the only way to tell "locked" from "already
//! running" is the wording (docs/proxmox-api.md §5.1, §8.3, §9.7). These free functions are shared by
//! [`super::error::ApiError`] (synchronous errors) and [`TaskFailure`] (failed tasks),
//! so each wording is matched in exactly one place. Each matches anywhere in the text,
//! because a task may wrap the message (`command '...' failed: CT is locked (backup)`).

use std::fmt;

/// `CT 101 already running` (LXC, sync 500) or `VM 100 already running` (QEMU task).
pub fn is_already_running(msg: &str) -> bool {
    guest_then(msg, " already running")
}

/// `CT 101 not running` (LXC stop/shutdown of a stopped CT) or `VM 100 not running`.
pub fn is_not_running(msg: &str) -> bool {
    guest_then(msg, " not running")
}

/// The lock from `CT is locked (backup)` or QEMU's `VM is locked (backup)`.
pub fn lock_name(msg: &str) -> Option<&str> {
    ["CT is locked (", "VM is locked ("].iter().find_map(|p| {
        let start = msg.find(p)? + p.len();
        let len = msg[start..].find(')')?;
        let name = &msg[start..start + len];
        (!name.is_empty() && !name.contains(char::is_whitespace)).then_some(name)
    })
}

/// `can't lock file '/run/lock/lxc/pve-config-101.lock' - got timeout`: another
/// operation (typically a shutdown task) holds the guest's config lock.
pub fn is_lock_timeout(msg: &str) -> bool {
    msg.find("can't lock file")
        .is_some_and(|i| msg[i..].contains("got timeout"))
}

/// The optimistic-concurrency check failed. LXC: `detected modified configuration -
/// file changed by other user? Try again.`; QEMU: `checksum mismatch (file change by
/// other user?)`.
pub fn is_digest_mismatch(msg: &str) -> bool {
    msg.contains("detected modified configuration")
        || msg.contains("checksum mismatch (file change by other user?)")
}

/// `Configuration file 'nodes/pve1/lxc/999.conf' does not exist`: the guest does not
/// exist, or lives on another node. A VM's shutdown or stop task says it as `unable to
/// find configuration file for VM 100 on node 'pve1'`.
pub fn is_config_missing(msg: &str) -> bool {
    msg.find("Configuration file '")
        .is_some_and(|i| msg[i..].contains("' does not exist"))
        || msg.contains("unable to find configuration file for VM ")
}

/// `cluster not ready - no quorum?`.
pub fn is_no_quorum(msg: &str) -> bool {
    msg.contains("no quorum")
}

/// `you can't start a CT if it's a template` (QEMU: `... a vm if it's a template`).
pub fn is_template(msg: &str) -> bool {
    msg.contains("you can't start a") && msg.contains("if it's a template")
}

/// A shutdown without `forceStop` that did not stop the guest, which keeps running:
/// LXC `container did not stop`; QEMU `VM quit/powerdown failed - got timeout` (ACPI:
/// the guest did not power off in time) or `VM quit/powerdown failed` (the guest agent's
/// `guest-shutdown` timed out or failed).
pub fn is_shutdown_timeout(msg: &str) -> bool {
    msg.contains("container did not stop") || msg.contains("VM quit/powerdown failed")
}

/// `VM is paused - cannot shutdown`: a graceful shutdown (or reboot) of a VM whose QMP
/// state is `paused`, `prelaunch` or `suspended` is refused at once (qemu-server
/// `API2/Qemu.pm` `vm_shutdown`).
pub fn is_paused(msg: &str) -> bool {
    msg.contains("VM is paused - cannot shutdown")
}

/// A failed monitor or guest agent command: `VM 100 qmp command 'query-status' failed -
/// got timeout`, `VM 100 qga command 'guest-shutdown' failed - ...` (the `qga` form since
/// qemu-server 9.0.26; before, agent commands said `qmp` too), and the syslog form `VM
/// 100 qmp command failed - ...`.
pub fn is_qmp_failure(msg: &str) -> bool {
    vm_then(msg, " qmp command") || vm_then(msg, " qga command")
}

/// `balloon value too large (must be smaller than assigned memory)`: `memory` below the
/// `balloon` target, which must change in the same request.
pub fn is_balloon_too_large(msg: &str) -> bool {
    msg.contains("balloon value too large")
}

/// `hotplug problem - ...`: a change a running VM could not take live. It is the value
/// of a 400's per-key `errors`, and in a `qmconfig` task's exit status (`400 Parameter
/// verification failed. memory: hotplug problem - ...`).
pub fn is_hotplug_problem(msg: &str) -> bool {
    msg.contains("hotplug problem - ")
}

/// `MAX 8 vcpus allowed per VM on this node`: a start of a VM with more sockets × cores
/// than the host has CPUs (config writes do not check it).
pub fn is_too_many_vcpus(msg: &str) -> bool {
    msg.contains(" vcpus allowed per VM on this node")
}

/// `service 'ct:101' in error state, must be disabled and fixed first` (HA).
pub fn is_ha_error_state(msg: &str) -> bool {
    msg.contains("in error state, must be disabled and fixed first")
}

/// Whether `msg` has `CT <digits>` or `VM <digits>` immediately followed by `suffix`.
fn guest_then(msg: &str, suffix: &str) -> bool {
    labelled_then(msg, &["CT ", "VM "], suffix)
}

/// Whether `msg` has `VM <digits>` immediately followed by `suffix`.
fn vm_then(msg: &str, suffix: &str) -> bool {
    labelled_then(msg, &["VM "], suffix)
}

fn labelled_then(msg: &str, labels: &[&str], suffix: &str) -> bool {
    msg.match_indices(suffix).any(|(i, _)| {
        let head = &msg[..i];
        let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        digits > 0 && {
            let before = &head[..head.len() - digits];
            labels.iter().any(|l| before.ends_with(l))
        }
    })
}

/// What a failed task's exit status (or a synchronous error message) means to the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskFailure {
    /// The guest holds this lock (`backup`, `migrate`, ...): skip it and retry later.
    Locked(String),
    /// Start of a running guest: already converged.
    AlreadyRunning,
    /// Stop or shutdown of a stopped guest: already converged.
    NotRunning,
    /// The config lock was held by another operation for 10 s.
    LockTimeout,
    /// The config changed since it was read.
    DigestMismatch,
    /// The guest is not (or no longer) on this node.
    ConfigMissing,
    /// The cluster has no quorum.
    NoQuorum,
    /// The guest is a template and cannot be started.
    Template,
    /// A graceful shutdown did not finish in time; the guest is still running.
    ShutdownTimeout,
    /// The HA resource is in `error` state.
    HaErrorState,
    /// A graceful shutdown of a paused, prelaunch or guest-suspended VM was refused.
    Paused,
    /// A VM monitor or guest agent command failed (`qmp`/`qga command ... failed`).
    QmpFailed,
    /// `memory` would go below `balloon`.
    BalloonTooLarge,
    /// A running VM could not take a change live (`hotplug problem - ...`).
    HotplugProblem,
    /// A start of a VM with more vCPUs than the host has CPUs.
    TooManyVcpus,
    /// Anything else.
    Other,
}

impl TaskFailure {
    /// Classifies a message, most specific wording first.
    pub fn classify(msg: &str) -> TaskFailure {
        if let Some(lock) = lock_name(msg) {
            TaskFailure::Locked(lock.to_string())
        } else if is_lock_timeout(msg) {
            TaskFailure::LockTimeout
        } else if is_paused(msg) {
            TaskFailure::Paused
        } else if is_hotplug_problem(msg) {
            // Before the QMP check: the hotplug text usually quotes a failed command.
            TaskFailure::HotplugProblem
        } else if is_shutdown_timeout(msg) {
            // Before the QMP check too: the text names the outcome, the guest still runs.
            TaskFailure::ShutdownTimeout
        } else if is_qmp_failure(msg) {
            // Before "not running": `VM 100 qmp command 'x' failed - VM 100 not running`
            // is a failed command, not a converged stop.
            TaskFailure::QmpFailed
        } else if is_already_running(msg) {
            TaskFailure::AlreadyRunning
        } else if is_not_running(msg) {
            TaskFailure::NotRunning
        } else if is_digest_mismatch(msg) {
            TaskFailure::DigestMismatch
        } else if is_config_missing(msg) {
            TaskFailure::ConfigMissing
        } else if is_no_quorum(msg) {
            TaskFailure::NoQuorum
        } else if is_template(msg) {
            TaskFailure::Template
        } else if is_ha_error_state(msg) {
            TaskFailure::HaErrorState
        } else if is_balloon_too_large(msg) {
            TaskFailure::BalloonTooLarge
        } else if is_too_many_vcpus(msg) {
            TaskFailure::TooManyVcpus
        } else {
            TaskFailure::Other
        }
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskFailure::Locked(lock) => write!(f, "locked ({lock})"),
            TaskFailure::AlreadyRunning => f.write_str("already running"),
            TaskFailure::NotRunning => f.write_str("not running"),
            TaskFailure::LockTimeout => f.write_str("config lock timeout"),
            TaskFailure::DigestMismatch => f.write_str("digest mismatch"),
            TaskFailure::ConfigMissing => f.write_str("config missing"),
            TaskFailure::NoQuorum => f.write_str("no quorum"),
            TaskFailure::Template => f.write_str("template"),
            TaskFailure::ShutdownTimeout => f.write_str("shutdown timeout"),
            TaskFailure::HaErrorState => f.write_str("ha error state"),
            TaskFailure::Paused => f.write_str("paused"),
            TaskFailure::QmpFailed => f.write_str("qmp command failed"),
            TaskFailure::BalloonTooLarge => f.write_str("balloon too large"),
            TaskFailure::HotplugProblem => f.write_str("hotplug problem"),
            TaskFailure::TooManyVcpus => f.write_str("too many vcpus"),
            TaskFailure::Other => f.write_str("other"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(msg: &str, want: TaskFailure) {
        assert_eq!(TaskFailure::classify(msg), want, "{msg:?}");
    }

    #[test]
    fn every_message_in_the_reference() {
        use TaskFailure::*;
        check("CT 101 already running", AlreadyRunning);
        check("CT 101 already running\n", AlreadyRunning);
        check("VM 100 already running", AlreadyRunning);
        check("CT 101 not running", NotRunning);
        check("VM 100 not running", NotRunning);
        check("CT is locked (backup)", Locked("backup".into()));
        check(
            "CT is locked (snapshot-delete)",
            Locked("snapshot-delete".into()),
        );
        check("VM is locked (migrate)", Locked("migrate".into()));
        check(
            "command 'lxc-start' failed: CT is locked (mounted)",
            Locked("mounted".into()),
        );
        check(
            "can't lock file '/run/lock/lxc/pve-config-101.lock' - got timeout",
            LockTimeout,
        );
        check(
            "detected modified configuration - file changed by other user? Try again.",
            DigestMismatch,
        );
        check(
            "checksum mismatch (file change by other user?)",
            DigestMismatch,
        );
        check(
            "Configuration file 'nodes/pve1/lxc/999.conf' does not exist",
            ConfigMissing,
        );
        check(
            "Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist",
            ConfigMissing,
        );
        check("cluster not ready - no quorum?", NoQuorum);
        check("you can't start a CT if it's a template", Template);
        check("you can't start a vm if it's a template", Template);
        check("container did not stop", ShutdownTimeout);
        check("VM quit/powerdown failed - got timeout", ShutdownTimeout);
        check(
            "service 'ct:101' in error state, must be disabled and fixed first",
            HaErrorState,
        );
        check("unexpected status", Other);
        check("no options specified", Other);
        check("Parameter verification failed.", Other);
    }

    #[test]
    fn every_vm_message_in_the_reference() {
        use TaskFailure::*;
        check("VM is locked (backup)", Locked("backup".into()));
        check("VM is locked (suspended)", Locked("suspended".into()));
        check("VM 100 already running", AlreadyRunning);
        check("VM 100 already running\n", AlreadyRunning);
        check("VM 100 not running", NotRunning);
        check(
            "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout",
            LockTimeout,
        );
        check("VM is paused - cannot shutdown", Paused);
        check("VM quit/powerdown failed - got timeout", ShutdownTimeout);
        check("VM quit/powerdown failed", ShutdownTimeout);
        // Before and since qemu-server 9.0.26.
        check(
            "VM 100 qmp command 'guest-shutdown' failed - got timeout",
            QmpFailed,
        );
        check(
            "VM 100 qga command 'guest-shutdown' failed - got timeout",
            QmpFailed,
        );
        check(
            "VM 100 qmp command 'query-status' failed - unable to connect to VM 100 qmp \
             socket - timeout after 51 retries",
            QmpFailed,
        );
        check(
            "VM 100 qmp command 'cont' failed - VM 100 not running",
            QmpFailed,
        );
        check("VM 100 qmp command failed - got timeout", QmpFailed);
        check(
            "balloon value too large (must be smaller than assigned memory)",
            BalloonTooLarge,
        );
        check(
            "400 Parameter verification failed. memory: hotplug problem - VM 100 qmp \
             command 'device_add' failed - got timeout",
            HotplugProblem,
        );
        check(
            "hotplug problem - you can't add more vcpus than maxcpus",
            HotplugProblem,
        );
        check("MAX 8 vcpus allowed per VM on this node", TooManyVcpus);
        check("you can't start a vm if it's a template", Template);
        check(
            "unable to find configuration file for VM 100 on node 'pve1'",
            ConfigMissing,
        );
        check(
            "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist",
            ConfigMissing,
        );
        check(
            "service 'vm:100' in error state, must be disabled and fixed first",
            HaErrorState,
        );
        // The failed guest agent ping is a warning in the task log, not an error.
        check("QEMU Guest Agent is not running - got timeout", Other);
    }

    #[test]
    fn near_misses_are_not_recognised() {
        assert!(!is_already_running("already running"));
        assert!(!is_already_running("CT already running"));
        assert!(!is_already_running("XCT 101 running"));
        assert!(!is_not_running("CT abc not running"));
        assert!(is_not_running("startup: CT 101 not running"));
        assert_eq!(lock_name("CT is locked ()"), None);
        assert_eq!(lock_name("CT is locked (backup"), None);
        assert_eq!(lock_name("CT is not locked"), None);
        assert!(!is_lock_timeout("got timeout"));
        assert!(!is_lock_timeout("can't lock file '/x' - permission denied"));
        assert!(!is_config_missing("Configuration file 'x' exists"));
        assert!(!is_qmp_failure("qmp command failed"));
        assert!(!is_qmp_failure("CT 101 qmp command 'x' failed"));
        assert!(!is_qmp_failure("VM abc qmp command 'x' failed"));
        assert!(is_qmp_failure(
            "warning: VM 7 qga command 'guest-ping' failed"
        ));
        assert!(!is_paused("VM is paused"));
        assert!(!is_hotplug_problem("hotplug problem"));
    }
}
