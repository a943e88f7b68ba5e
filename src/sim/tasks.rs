//! Worker tasks: creating them (a UPID per task, as pve-common `RESTEnvironment.pm`
//! `fork_worker` does), finishing them when they fall due, HA requests that change a
//! guest later, the node's own `startall`/`stopall`, and the task status and task list
//! endpoints (pve-manager `PVE/API2/Tasks.pm` `read_task_status`, `node_tasks`).

use super::conf;
use super::model::{BulkTask, PowerState, QmpState, SimKind};
use super::reply::{Data, Fail};
use super::schema;
use super::state::{lock_timeout, HaEvent, Shared, State, Task, TaskKind};
use super::upid::SimUpid;
use super::vmrun;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A task to start.
pub(crate) struct NewTask<'a> {
    /// The request that starts it (its record notes the UPID).
    pub request: u64,
    pub node: &'a str,
    pub vmid: u32,
    /// The kind of guest it is about.
    pub guest: SimKind,
    pub kind: TaskKind,
    /// How long it runs (once it has the config lock, if it needs it).
    pub duration: Duration,
    /// The parameters of a config update task.
    pub update: Option<BTreeMap<String, String>>,
}

/// Starts a task and returns its UPID. A task that needs the guest's config lock while
/// another task holds it waits for it, up to `lock_wait`.
pub(crate) fn spawn(shared: &Shared, st: &mut State, t: NewTask) -> SimUpid {
    let upid = new_upid(
        shared,
        st,
        t.node,
        t.kind.type_name(t.guest),
        &t.vmid.to_string(),
        &shared.opts.token_id,
    );
    let now = Instant::now();
    let holds_lock = t.kind.holds_lock(t.guest);
    let waits_for_lock = holds_lock && st.flock_held(t.vmid);
    st.tasks.push(Task {
        upid: upid.clone(),
        vmid: t.vmid,
        guest: t.guest,
        kind: t.kind,
        due: now
            + if waits_for_lock {
                shared.opts.lock_wait
            } else {
                t.duration
            },
        run_for: t.duration,
        exit: None,
        endtime: None,
        ended: None,
        holds_lock,
        waits_for_lock,
        update: t.update,
    });
    let text = upid.to_string();
    if let Some(r) = st.request_mut(t.request) {
        r.task = Some(text.clone());
    }
    st.tasks_started.entry(t.vmid).or_default().push(text);
    st.max_tasks = st.max_tasks.max(st.running_tasks());
    st.trim_tasks();
    upid
}

/// A UPID for a worker forked now: the next pid, and the process start in clock ticks
/// (100 Hz) since the node booted.
fn new_upid(
    shared: &Shared,
    st: &mut State,
    node: &str,
    kind: &str,
    id: &str,
    user: &str,
) -> SimUpid {
    let pid = st.next_pid;
    st.next_pid = if pid >= 0x003F_FFFF {
        0x0001_0000
    } else {
        pid + 1
    };
    let ticks = shared.started.elapsed().as_millis() as u64 / 10;
    SimUpid {
        node: node.to_string(),
        pid,
        pstart: 0x0100_0000 + ticks,
        starttime: crate::time::unix_now(),
        kind: kind.to_string(),
        id: id.to_string(),
        user: user.to_string(),
    }
}

/// Starts the node's own `startall` or `stopall` on `node`, running for `run_for`, and
/// returns its UPID. `pve-guests.service` runs it through `pvesh` as `root@pam`, and
/// `fork_worker` is given no id (pve-manager `PVE/API2/Nodes.pm`: `fork_worker('startall',
/// undef, $authuser, ...)`), so the UPID's id is empty. It starts and stops no guest here:
/// it stands for the node's bulk run, which is all the agent looks at.
pub(crate) fn spawn_bulk(
    shared: &Shared,
    st: &mut State,
    node: &str,
    kind: BulkTask,
    run_for: Duration,
) -> SimUpid {
    let upid = new_upid(shared, st, node, kind.type_name(), "", "root@pam");
    st.tasks.push(Task {
        upid: upid.clone(),
        vmid: 0,
        guest: SimKind::Lxc,
        kind: TaskKind::Bulk(kind),
        due: Instant::now() + run_for,
        run_for,
        exit: None,
        endtime: None,
        ended: None,
        holds_lock: false,
        waits_for_lock: false,
        update: None,
    });
    st.max_tasks = st.max_tasks.max(st.running_tasks());
    st.trim_tasks();
    upid
}

/// Ends the running shutdown tasks of `vmid` (stop with `overrule-shutdown=1`); the
/// worker dies on SIGTERM with `received interrupt`.
pub(crate) fn abort_shutdowns(st: &mut State, vmid: u32) -> usize {
    let mut n = 0;
    for t in st.tasks.iter_mut() {
        if t.running() && t.vmid == vmid && matches!(t.kind, TaskKind::Shutdown { .. }) {
            t.finish("received interrupt".to_string());
            n += 1;
        }
    }
    n
}

/// Finishes every task and HA request that is due at `now`, and lets tasks waiting for a
/// config lock take it once it is free. Returns whether anything changed.
pub(crate) fn advance(shared: &Shared, st: &mut State, now: Instant) -> bool {
    let mut changed = false;
    for i in 0..st.tasks.len() {
        let t = &st.tasks[i];
        if !(t.running() && t.waits_for_lock) {
            continue;
        }
        let (vmid, guest) = (t.vmid, t.guest);
        if !st.flock_held(vmid) {
            let t = &mut st.tasks[i];
            t.waits_for_lock = false;
            t.due = now + t.run_for;
            changed = true;
        } else if t.due <= now {
            st.tasks[i].finish(lock_timeout(guest, vmid));
            changed = true;
        }
    }
    for i in 0..st.tasks.len() {
        let t = &st.tasks[i];
        let due = t.running() && !t.waits_for_lock && t.due <= now;
        if due && !st.faults.hang_tasks.contains(&t.vmid) {
            let exit = match outcome(shared, st, i, now) {
                Ok(()) => "OK".to_string(),
                Err(e) => e,
            };
            st.tasks[i].finish(exit);
            changed = true;
        }
    }
    let (due, later): (Vec<HaEvent>, Vec<HaEvent>) =
        st.ha_events.drain(..).partition(|e| e.due <= now);
    st.ha_events = later;
    for e in due {
        changed = true;
        if let Some(rec) = st.guests.get_mut(&e.vmid) {
            let blocked = rec.g.template || rec.g.lock.is_some();
            let target = if e.start {
                PowerState::Running
            } else {
                PowerState::Stopped
            };
            if !blocked && rec.g.status != target {
                let wrote = conf::apply_all_pending(&mut rec.g);
                rec.set_status(target);
                rec.g.qmp = QmpState::Running;
                st.dirty = true;
                if wrote {
                    st.wrote(e.vmid);
                }
            }
        }
    }
    changed
}

/// When the next task or HA request falls due (hanging tasks excluded; a task waiting
/// for a lock falls due when it gives up).
pub(crate) fn next_due(st: &State) -> Option<Instant> {
    let tasks = st
        .tasks
        .iter()
        .filter(|t| t.running() && !st.faults.hang_tasks.contains(&t.vmid))
        .map(|t| t.due);
    tasks.chain(st.ha_events.iter().map(|e| e.due)).min()
}

/// What task `i` does to its guest when it finishes; `Err` is the task's error text.
fn outcome(shared: &Shared, st: &mut State, i: usize, now: Instant) -> Result<(), String> {
    let (vmid, guest, kind, node) = {
        let t = &st.tasks[i];
        (t.vmid, t.guest, t.kind, t.upid.node.clone())
    };
    if matches!(kind, TaskKind::Bulk(_)) {
        return Ok(());
    }
    if let Some(msg) = st.faults.fail_tasks.get(&vmid) {
        return Err(msg.clone());
    }
    if matches!(kind, TaskKind::HaStart | TaskKind::HaStop) {
        return ha_request(
            shared,
            st,
            &node,
            vmid,
            guest,
            kind == TaskKind::HaStart,
            now,
        );
    }
    if guest == SimKind::Qemu {
        return vmrun::finish(shared, st, i);
    }
    let rec = st.guest_on(&node, vmid, guest).map_err(|f| f.message)?;
    let check_lock = |mounted_ok: bool| match &rec.g.lock {
        Some(l) if !(mounted_ok && l == "mounted") => Err(format!("CT is locked ({l})")),
        _ => Ok(()),
    };
    let target = match kind {
        TaskKind::Start => {
            if rec.g.template {
                return Err("you can't start a CT if it's a template".into());
            }
            check_lock(true)?;
            PowerState::Running
        }
        TaskKind::Stop => {
            check_lock(true)?;
            PowerState::Stopped
        }
        TaskKind::Shutdown { stops, fails } => {
            check_lock(false)?;
            if !stops {
                return Err(fails.unwrap_or("container did not stop").into());
            }
            PowerState::Stopped
        }
        TaskKind::Config | TaskKind::HaStart | TaskKind::HaStop | TaskKind::Bulk(_) => {
            return Err("unexpected task".into())
        }
    };
    // A start applies pending changes first; any stop applies them in the poststop hook.
    if rec.g.status != target {
        let wrote = conf::apply_all_pending(&mut rec.g);
        rec.set_status(target);
        st.dirty = true;
        if wrote {
            st.wrote(vmid);
        }
    }
    Ok(())
}

/// An `hastart`/`hastop` task: files the request with the HA stack, which carries it
/// out `ha_apply_delay` later (pve-ha-manager `ha-manager set`, `crm-command stop`).
fn ha_request(
    shared: &Shared,
    st: &mut State,
    node: &str,
    vmid: u32,
    guest: SimKind,
    start: bool,
    now: Instant,
) -> Result<(), String> {
    let quorate = st.quorate;
    let rec = st.guest_on(node, vmid, guest).map_err(|f| f.message)?;
    if rec.g.ha.as_deref() == Some("error") {
        let sid = match guest {
            SimKind::Lxc => "ct",
            SimKind::Qemu => "vm",
        };
        return Err(format!(
            "service '{sid}:{vmid}' in error state, must be disabled and fixed first"
        ));
    }
    if !quorate {
        return Err("cluster not ready - no quorum?".into());
    }
    rec.g.ha = Some(if start { "started" } else { "stopped" }.to_string());
    st.dirty = true;
    st.ha_events.push(HaEvent {
        due: now + shared.opts.ha_apply_delay,
        vmid,
        start,
    });
    Ok(())
}

fn upid_fields(u: &SimUpid) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("upid".into(), u.to_string().into());
    m.insert("node".into(), u.node.clone().into());
    m.insert("pid".into(), u.pid.into());
    m.insert("pstart".into(), u.pstart.into());
    m.insert("starttime".into(), u.starttime.into());
    m.insert("type".into(), u.kind.clone().into());
    m.insert("id".into(), u.id.clone().into());
    m
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
pub(crate) fn status(st: &State, node: &str, upid: &str) -> Result<Data, Fail> {
    let parsed =
        SimUpid::parse(upid).ok_or_else(|| Fail::param("upid", "unable to parse worker upid"))?;
    let task = st
        .tasks
        .iter()
        .find(|t| t.upid == parsed && t.upid.node == node)
        .ok_or_else(|| Fail::param("upid", "no such task"))?;
    let mut m = upid_fields(&task.upid);
    match task.upid.user.split_once('!') {
        Some((user, token)) => {
            m.insert("user".into(), user.into());
            m.insert("tokenid".into(), token.into());
        }
        None => {
            m.insert("user".into(), task.upid.user.clone().into());
        }
    }
    match &task.exit {
        None => {
            m.insert("status".into(), "running".into());
        }
        Some(exit) => {
            m.insert("status".into(), "stopped".into());
            m.insert("exitstatus".into(), exit.clone().into());
        }
    }
    Ok(Data::new(Value::Object(m)))
}

fn is_error(exit: &str) -> bool {
    exit != "OK" && !exit.starts_with("WARNINGS: ")
}

fn status_class(exit: &str) -> &'static str {
    if exit == "OK" {
        "ok"
    } else if exit.starts_with("WARNINGS: ") {
        "warning"
    } else if exit == "unexpected status" {
        "unknown"
    } else {
        "error"
    }
}

/// `GET /nodes/{node}/tasks`: newest first, with `total`. `source` defaults to
/// `archive` (finished tasks), as in PVE.
pub(crate) fn list(st: &State, node: &str, p: &BTreeMap<String, String>) -> Result<Data, Fail> {
    let num = |k: &str| p.get(k).and_then(|v| v.parse::<i64>().ok());
    let source = p.get("source").map(String::as_str).unwrap_or("archive");
    let statuses: Option<Vec<String>> = p
        .get("statusfilter")
        .map(|s| schema::split_list(&s.to_lowercase()));
    let errors_only = p.get("errors").map(String::as_str) == Some("1");
    let user_filter = p.get("userfilter").map(|u| u.to_lowercase());
    let matches = |t: &&Task| {
        let u = &t.upid;
        let source_ok = match source {
            "active" => t.running(),
            "all" => true,
            _ => !t.running(),
        };
        source_ok
            && u.node == node
            && p.get("vmid").is_none_or(|v| *v == u.id)
            && p.get("typefilter").is_none_or(|v| *v == u.kind)
            && user_filter
                .as_ref()
                .is_none_or(|f| u.user.to_lowercase().contains(f.as_str()))
            && num("since").is_none_or(|s| u.starttime >= s)
            && num("until").is_none_or(|s| u.starttime <= s)
            && (!errors_only || t.exit.as_deref().is_some_and(is_error))
            && statuses.as_ref().is_none_or(|want| {
                t.exit
                    .as_deref()
                    .is_some_and(|e| want.iter().any(|w| w == status_class(e)))
            })
    };
    let all: Vec<&Task> = st.tasks.iter().rev().filter(matches).collect();
    let start = num("start").unwrap_or(0).max(0) as usize;
    let limit = num("limit").unwrap_or(50).max(0) as usize;
    let entries: Vec<Value> = all
        .iter()
        .skip(start)
        .take(limit)
        .map(|t| {
            let mut m = upid_fields(&t.upid);
            m.insert("user".into(), t.upid.user.clone().into());
            let status = t.exit.clone().unwrap_or_else(|| "RUNNING".to_string());
            m.insert("status".into(), status.into());
            if let Some(end) = t.endtime {
                m.insert("endtime".into(), end.into());
            }
            Value::Object(m)
        })
        .collect();
    Ok(Data {
        data: json!(entries),
        total: Some(all.len()),
    })
}
