//! `PUT` and `POST /nodes/{node}/qemu/{vmid}/config` (qemu-server
//! `src/PVE/API2/Qemu.pm` `update_vm`, `update_vm_async`, `$update_vm_api`).
//!
//! Both: the parameter schema was checked by the router (400) → the request's own
//! checks (`vmupdate::parse`: root-only `skiplock` 400, `no options specified` 500, the
//! `delete`/`revert` lists 400) → before any lock, the VM must be on this node, then
//! the digest (500 `checksum mismatch (file change by other user?)`), the VM's lock
//! (500 `VM is locked (...)`) and the balloon check (500).
//!
//! PUT then waits for the config lock (500 after `lock_wait`), checks again, applies
//! (`vmupdate::apply`) and answers `null`, or 400 naming the keys a running VM could not
//! take live (what succeeded stays applied). Without quorum the write fails (500).
//!
//! POST starts a `qmconfig` task at once instead, which does the same under the lock;
//! its failures are the task's exit status. With `background_delay` the call waits up to
//! that many seconds for the task: `null` if it ended well, 500 `failed to update VM
//! <vmid>: <exit status>` if it failed, its UPID if it still runs.

use super::model::SimKind;
use super::reply::{Data, Fail};
use super::state::{Shared, TaskKind};
use super::tasks::{self, NewTask};
use super::vmupdate;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Handles the PUT.
pub(crate) fn put(
    shared: &Shared,
    node: &str,
    vmid: u32,
    params: &BTreeMap<String, String>,
) -> Result<Data, Fail> {
    let u = vmupdate::parse(params)?;
    let mut st = shared.lock();
    {
        let rec = st.guest_on(node, vmid, SimKind::Qemu)?;
        vmupdate::check(&rec.g, &rec.digest(), &u)?;
    }
    let mut st = shared.wait_flock(st, vmid, SimKind::Qemu)?;
    let quorate = st.quorate;
    let pid = 20_000 + st.next_seq;
    let rec = st.guest_on(node, vmid, SimKind::Qemu)?;
    vmupdate::check(&rec.g, &rec.digest(), &u)?;
    let mut g = rec.g.clone();
    let result = vmupdate::apply(&mut g, rec.running(), &u);
    if !quorate {
        return Err(Fail::server(format!(
            "unable to open file '/etc/pve/nodes/{node}/qemu-server/{vmid}.conf.tmp.{pid}' - \
             Permission denied"
        )));
    }
    rec.g = g;
    st.wrote(vmid);
    shared.changed(&mut st);
    result.map_err(Fail::params)?;
    Ok(Data::null())
}

/// Handles the POST for request `seq`.
pub(crate) fn post(
    shared: &Shared,
    seq: u64,
    node: &str,
    vmid: u32,
    params: &BTreeMap<String, String>,
) -> Result<Data, Fail> {
    let u = vmupdate::parse(params)?;
    let delay = params
        .get("background_delay")
        .and_then(|d| d.parse::<u64>().ok());
    let mut st = shared.lock();
    {
        let rec = st.guest_on(node, vmid, SimKind::Qemu)?;
        vmupdate::check(&rec.g, &rec.digest(), &u)?;
    }
    let upid = tasks::spawn(
        shared,
        &mut st,
        NewTask {
            request: seq,
            node,
            vmid,
            guest: SimKind::Qemu,
            kind: TaskKind::Config,
            duration: shared.opts.config_task_duration,
            update: Some(params.clone()),
        },
    );
    shared.changed(&mut st);
    let Some(delay) = delay else {
        return Ok(Data::new(upid.to_string().into()));
    };
    let deadline = Instant::now() + Duration::from_secs(delay);
    let exit = loop {
        let task = st.tasks.iter().find(|t| t.upid == upid);
        if let Some(exit) = task.and_then(|t| t.exit.clone()) {
            break Some(exit);
        }
        let now = Instant::now();
        if now >= deadline || st.shutting_down || task.is_none() {
            break None;
        }
        st = shared
            .cond
            .wait_timeout(st, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    };
    match exit {
        Some(exit) if exit == "OK" || exit.starts_with("WARNINGS: ") => Ok(Data::null()),
        Some(exit) => Err(Fail::server(format!("failed to update VM {vmid}: {exit}"))),
        None => Ok(Data::new(upid.to_string().into())),
    }
}
