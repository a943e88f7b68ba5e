//! `POST /nodes/{node}/lxc/{vmid}/status/start|stop|shutdown` (pve-container
//! `src/PVE/API2/LXC/Status.pm` `vm_start`, `vm_stop`, `vm_shutdown`).
//!
//! Synchronous checks first (`already running`, `not running`, quorum for a start), then
//! HA-managed guests get an `hastart`/`hastop` task that only files a request, and other
//! guests take the config lock (waiting for a running shutdown) and get a `vz*` task.
//! Locks and templates fail inside the task, when it finishes.
//!
//! A guest whose config is on another node gets 500 `Configuration file
//! 'nodes/<node>/lxc/<vmid>.conf' does not exist` for every call, before anything else.
//! (Real PVE lets a start get as far as its task, which then fails with that text, and
//! answers a stop with `CT <vmid> not running`; either way the call fails, and one
//! answer keeps the agent's handling simple to test.)

use super::model::SimKind;
use super::reply::{Data, Fail};
use super::schema::Kind;
use super::state::{Shared, TaskKind};
use super::tasks::{self, NewTask};
use std::collections::BTreeMap;
use std::time::Duration;

/// The power call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Start,
    Stop,
    Shutdown,
}

impl Op {
    /// From the last path segment.
    pub(crate) fn parse(s: &str) -> Option<Op> {
        match s {
            "start" => Some(Op::Start),
            "stop" => Some(Op::Stop),
            "shutdown" => Some(Op::Shutdown),
            _ => None,
        }
    }

    /// The parameters the call accepts on a container.
    pub(crate) fn params(self) -> &'static [(&'static str, Kind)] {
        match self {
            Op::Start => &[("skiplock", Kind::Bool), ("debug", Kind::Bool)],
            Op::Stop => &[("skiplock", Kind::Bool), ("overrule-shutdown", Kind::Bool)],
            Op::Shutdown => &[
                ("timeout", Kind::Int { min: 0, max: None }),
                ("forceStop", Kind::Bool),
            ],
        }
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
    // A token is never `root@pam`, not even root's own.
    if flag("skiplock") {
        return Err(Fail::param("skiplock", "Only root may use this option."));
    }
    let mut st = shared.lock();
    let quorate = st.quorate;
    let rec = st.guest_on(node, vmid, SimKind::Lxc)?;
    let running = rec.running();
    let ha_managed = rec.g.ha.as_deref().is_some_and(|s| s != "ignored");
    match op {
        Op::Start if running => return Err(Fail::server(format!("CT {vmid} already running"))),
        Op::Start if !quorate => return Err(Fail::server("cluster not ready - no quorum?")),
        Op::Stop | Op::Shutdown if !running => {
            return Err(Fail::server(format!("CT {vmid} not running")))
        }
        _ => {}
    }
    let opts = &shared.opts;
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
        let upid = tasks::spawn(
            shared,
            &mut st,
            NewTask {
                request: seq,
                node,
                vmid,
                guest: SimKind::Lxc,
                kind,
                duration: opts.ha_task_duration,
                update: None,
            },
        );
        shared.changed(&mut st);
        return Ok(Data::new(upid.to_string().into()));
    }
    if op == Op::Stop && flag("overrule-shutdown") && tasks::abort_shutdowns(&mut st, vmid) > 0 {
        shared.changed(&mut st);
    }
    let mut st = shared.wait_flock(st, vmid, SimKind::Lxc)?;
    let (kind, duration) = match op {
        Op::Start => (TaskKind::Start, opts.task_duration),
        Op::Stop => (TaskKind::Stop, opts.task_duration),
        Op::Shutdown => {
            let secs = params
                .get("timeout")
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(60);
            let timeout = Duration::from_secs(secs);
            if timeout < opts.shutdown_duration {
                // The guest does not make it in time: killed with forceStop, else the
                // task gives up and the guest keeps running.
                let stops = flag("forceStop");
                let fails = (!stops).then_some("container did not stop");
                (TaskKind::Shutdown { stops, fails }, timeout)
            } else {
                let clean = TaskKind::Shutdown {
                    stops: true,
                    fails: None,
                };
                (clean, opts.shutdown_duration)
            }
        }
    };
    let upid = tasks::spawn(
        shared,
        &mut st,
        NewTask {
            request: seq,
            node,
            vmid,
            guest: SimKind::Lxc,
            kind,
            duration,
            update: None,
        },
    );
    shared.changed(&mut st);
    Ok(Data::new(upid.to_string().into()))
}
