//! `POST /nodes/{node}/qemu/{vmid}/status/start|stop|shutdown` (qemu-server
//! `src/PVE/API2/Qemu.pm` `vm_start`, `vm_stop`, `vm_shutdown`).
//!
//! Synchronous checks: root-only parameters (400), the VM must be on this node (500),
//! quorum for a start (500), and a graceful shutdown of a VM whose QMP state is
//! `paused`, `prelaunch` or `suspended` is refused (500 `VM is paused - cannot
//! shutdown`) unless `forceStop` turns it into a stop. HA-managed VMs get an
//! `hastart`/`hastop` task that only files a request. Any other call starts a `qm*` task
//! at once; the task takes the config lock itself (waiting up to `lock_wait`) and the
//! lock, template and run state are checked when it ends (`vmrun`). Unlike a container,
//! a VM refuses neither a start when it runs nor a stop when it is stopped: the start's
//! task fails with `VM <vmid> already running`, the stop's task succeeds doing nothing.
//!
//! How a shutdown ends is decided when it starts (qemu-server `QemuServer.pm`
//! `_do_vm_stop`): through the guest agent when the config enables `agent` and one
//! answers in the guest, else by ACPI; the guest is down after `shutdown_duration`
//! unless it ignores ACPI or its vCPUs do not run; past `timeout` the VM is killed with
//! `forceStop`, else the task fails and the VM keeps running.
//!
//! (Real PVE lets a start of a VM that is not on the node get as far as its task, which
//! fails with the same text; one answer keeps the agent's handling simple to test.)

use super::conf;
use super::model::{QmpState, SimGuest, SimKind};
use super::power::Op;
use super::reply::{Data, Fail};
use super::schema::Kind;
use super::state::{Shared, TaskKind};
use super::tasks::{self, NewTask};
use std::collections::BTreeMap;
use std::time::Duration;

const BOOL: Kind = Kind::Bool;
const STR: Kind = Kind::Str { max_len: None };
const SECS: Kind = Kind::Int { min: 0, max: None };

/// The parameters each call accepts on a VM.
pub(crate) fn params(op: Op) -> &'static [(&'static str, Kind)] {
    match op {
        Op::Start => &[
            ("skiplock", BOOL),
            ("stateuri", STR),
            ("migratedfrom", STR),
            ("migration_type", Kind::Enum(&["secure", "insecure"])),
            ("migration_network", STR),
            ("machine", STR),
            ("force-cpu", STR),
            ("targetstorage", STR),
            ("timeout", SECS),
            ("with-conntrack-state", BOOL),
            ("nets-host-mtu", STR),
        ],
        Op::Stop => &[
            ("skiplock", BOOL),
            ("migratedfrom", STR),
            ("timeout", SECS),
            ("keepActive", BOOL),
            ("overrule-shutdown", BOOL),
        ],
        Op::Shutdown => &[
            ("skiplock", BOOL),
            ("timeout", SECS),
            ("forceStop", BOOL),
            ("keepActive", BOOL),
        ],
    }
}

/// The parameters only `root@pam` may set (a token never is root@pam).
fn root_only(op: Op) -> &'static [&'static str] {
    match op {
        Op::Start => &[
            "stateuri",
            "skiplock",
            "migratedfrom",
            "migration_type",
            "migration_network",
            "targetstorage",
            "force-cpu",
            "with-conntrack-state",
            "nets-host-mtu",
        ],
        Op::Stop => &["skiplock", "keepActive", "migratedfrom"],
        Op::Shutdown => &["skiplock", "keepActive"],
    }
}

/// Runs the call for request `seq`; the result is the task's UPID.
pub(crate) fn run(
    shared: &Shared,
    seq: u64,
    node: &str,
    vmid: u32,
    op: Op,
    params: &BTreeMap<String, String>,
) -> Result<Data, Fail> {
    let flag = |k: &str| params.get(k).map(String::as_str) == Some("1");
    for p in root_only(op) {
        // Perl truth: a set, non-empty value other than `0`.
        if params.get(*p).is_some_and(|v| !v.is_empty() && v != "0") {
            return Err(Fail::param(p, "Only root may use this option."));
        }
    }
    let opts = &shared.opts;
    let mut st = shared.lock();
    let quorate = st.quorate;
    let rec = st.guest_on(node, vmid, SimKind::Qemu)?;
    let g = rec.g.clone();
    let running = rec.running();
    let ha_managed = g.ha.as_deref().is_some_and(|s| s != "ignored");
    if op == Op::Start && !quorate {
        return Err(Fail::server("cluster not ready - no quorum?"));
    }
    let paused = running
        && matches!(
            g.qmp,
            QmpState::Paused | QmpState::Prelaunch | QmpState::Suspended
        );
    if op == Op::Shutdown && paused && !flag("forceStop") {
        return Err(Fail::server("VM is paused - cannot shutdown"));
    }
    let task = |kind, duration| NewTask {
        request: seq,
        node,
        vmid,
        guest: SimKind::Qemu,
        kind,
        duration,
        update: None,
    };
    if ha_managed {
        if op == Op::Stop && flag("overrule-shutdown") {
            return Err(Fail::param(
                "overrule-shutdown",
                "Not applicable for HA resources.",
            ));
        }
        let kind = match op {
            Op::Start => TaskKind::HaStart,
            Op::Stop | Op::Shutdown => TaskKind::HaStop,
        };
        let upid = tasks::spawn(shared, &mut st, task(kind, opts.ha_task_duration));
        shared.changed(&mut st);
        return Ok(Data::new(upid.to_string().into()));
    }
    if op == Op::Stop && flag("overrule-shutdown") {
        tasks::abort_shutdowns(&mut st, vmid);
    }
    let (kind, duration) = match op {
        Op::Start => (TaskKind::Start, opts.task_duration),
        Op::Stop => (TaskKind::Stop, opts.task_duration),
        // A paused VM with forceStop is stopped instead, still as a `qmshutdown`.
        Op::Shutdown if paused || !running => (
            TaskKind::Shutdown {
                stops: true,
                fails: None,
            },
            opts.task_duration,
        ),
        Op::Shutdown => shutdown(shared, &g, params),
    };
    let upid = tasks::spawn(shared, &mut st, task(kind, duration));
    shared.changed(&mut st);
    Ok(Data::new(upid.to_string().into()))
}

/// How a graceful shutdown of running VM `g` ends, and when.
fn shutdown(
    shared: &Shared,
    g: &SimGuest,
    params: &BTreeMap<String, String>,
) -> (TaskKind, Duration) {
    let force = params.get("forceStop").map(String::as_str) == Some("1");
    // The call's `timeout`, else the config's `startup` `down=` unless 0.
    let asked: Option<u64> = params
        .get("timeout")
        .and_then(|t| t.parse().ok())
        .or_else(|| startup_down(g));
    let wait = Duration::from_secs(asked.unwrap_or(60));
    let takes = shared.opts.shutdown_duration;
    let end = |stops: bool, fails: Option<&'static str>| TaskKind::Shutdown { stops, fails };
    if conf::agent_enabled(g) && g.guest_agent {
        // `guest-shutdown` returns when QEMU exits or its own timeout passes: the one
        // asked, or QMPClient's 10 minutes when none (or 0) is.
        let agent_wait = match asked {
            Some(t) if t > 0 => Duration::from_secs(t),
            _ => Duration::from_secs(600),
        };
        if takes <= agent_wait {
            // Down in time; with a timeout of 0 the wait loop after it still says the
            // time is up.
            let late = asked == Some(0) && !force;
            let fails = late.then_some("VM quit/powerdown failed - got timeout");
            return (end(true, fails), takes);
        }
        let fails = (!force).then_some("VM quit/powerdown failed");
        return (end(force, fails), agent_wait);
    }
    let reacts = !g.ignores_acpi && g.qmp == QmpState::Running;
    if reacts && takes <= wait {
        return (end(true, None), takes);
    }
    let fails = (!force).then_some("VM quit/powerdown failed - got timeout");
    (end(force, fails), wait)
}

/// The `down=` of the config's `startup`, when set and not 0.
fn startup_down(g: &SimGuest) -> Option<u64> {
    g.other
        .get("startup")?
        .split(',')
        .find_map(|p| p.strip_prefix("down="))
        .and_then(|v| v.parse().ok())
        .filter(|d| *d > 0)
}
