//! What a VM's task does when it ends: `qmstart` (qemu-server `src/PVE/QemuServer.pm`
//! `vm_start`, `vm_start_nolock`; `src/PVE/QemuServer/RunState.pm` `vm_resume`),
//! `qmstop` and `qmshutdown` (`vm_stop`, `_do_vm_stop`, `vm_stop_cleanup`), and
//! `qmconfig` (`src/PVE/API2/Qemu.pm` `$update_vm_api`).
//!
//! Imports `conf`, `model`, `state` and `vmupdate`.

use super::conf;
use super::model::{PowerState, QmpState, SimGuest, SimKind};
use super::state::{GuestRec, Shared, State, TaskKind};
use super::vmupdate;

/// Carries out VM task `i` at its end; `Err` is the task's exit status.
pub(crate) fn finish(shared: &Shared, st: &mut State, i: usize) -> Result<(), String> {
    let (vmid, kind, node, update) = {
        let t = &st.tasks[i];
        (t.vmid, t.kind, t.upid.node.clone(), t.update.clone())
    };
    let host_cpus = shared.opts.host_cpus;
    let quorate = st.quorate;
    let pid = st.tasks[i].upid.pid;
    let rec = st
        .guest_on(&node, vmid, SimKind::Qemu)
        .map_err(|f| f.message)?;
    let wrote = match kind {
        TaskKind::Start => start(rec, host_cpus)?,
        TaskKind::Stop => stop(rec, true)?,
        TaskKind::Shutdown { stops, fails } => {
            if !rec.running() {
                // Nothing to do, and no lock check (`_do_vm_stop` returns first).
                return Ok(());
            }
            check_lock(&rec.g)?;
            if stops {
                // A clean power-off or a kill after the timeout is cleaned up with the
                // pending changes applied; a guest that went down only after the
                // agent's wait failed is cleaned up by qmeventd, which applies none.
                stop(rec, fails.is_none())?;
                st.dirty = true;
                st.wrote(vmid);
            }
            return match fails {
                Some(text) => Err(text.to_string()),
                None => Ok(()),
            };
        }
        TaskKind::Config => {
            let u = vmupdate::parse(&update.unwrap_or_default()).map_err(|f| f.message)?;
            vmupdate::check(&rec.g, &rec.digest(), &u).map_err(|f| f.message)?;
            let mut g = rec.g.clone();
            let result = vmupdate::apply(&mut g, rec.running(), &u);
            if !quorate {
                return Err(format!(
                    "unable to open file '/etc/pve/nodes/{node}/qemu-server/{vmid}.conf.tmp.{pid}' \
                     - Permission denied"
                ));
            }
            rec.g = g;
            st.dirty = true;
            st.wrote(vmid);
            return result.map_err(|errors| {
                // The exception as a task's exit status: code, message, then each key's
                // error, newlines flattened (pve-common `Exception.pm` `stringify`).
                let keys: Vec<String> = errors.iter().map(|(k, e)| format!("{k}: {e}")).collect();
                format!("400 Parameter verification failed. {}", keys.join(" "))
            });
        }
        TaskKind::HaStart | TaskKind::HaStop | TaskKind::Bulk(_) => {
            return Err("unexpected task".into())
        }
    };
    st.dirty = true;
    if wrote {
        st.wrote(vmid);
    }
    Ok(())
}

fn check_lock(g: &SimGuest) -> Result<(), String> {
    match &g.lock {
        Some(l) => Err(format!("VM is locked ({l})")),
        None => Ok(()),
    }
}

/// `vm_start`: returns whether the config was written.
fn start(rec: &mut GuestRec, host_cpus: u32) -> Result<bool, String> {
    let vmid = rec.g.vmid;
    if rec.g.template {
        return Err("you can't start a vm if it's a template".into());
    }
    let lock = rec.g.lock.clone();
    if lock.as_deref() == Some("backup") && rec.running() {
        // A backup runs: resume the QEMU it started (`cont`, or reset and `cont` for a
        // guest that powered off), which boots a VM backed up while stopped.
        rec.g.qmp = QmpState::Running;
        return Ok(false);
    }
    let hibernated = lock.as_deref() == Some("suspended");
    if !hibernated {
        check_lock(&rec.g)?;
    }
    if rec.running() {
        return Err(format!("VM {vmid} already running"));
    }
    let resume = hibernated || rec.g.other.contains_key("vmstate");
    if resume {
        // The saved state is restored; pending changes wait for a cold start.
        for k in [
            "lock",
            "vmstate",
            "runningmachine",
            "runningcpu",
            "running-nets-host-mtu",
        ] {
            conf::set(&mut rec.g, k, None);
        }
        rec.set_status(PowerState::Running);
        rec.g.qmp = QmpState::Running;
        return Ok(true);
    }
    let wrote = conf::apply_all_pending(&mut rec.g);
    let g = rec.g.clone();
    let get = |k: &str| conf::get(&g, k);
    let sockets: u64 = get("sockets").and_then(|s| s.parse().ok()).unwrap_or(1);
    let cores: u64 = g.cores.unwrap_or(1).into();
    if sockets * cores > u64::from(host_cpus) {
        return Err(format!("MAX {host_cpus} vcpus allowed per VM on this node"));
    }
    let memory_hotplug = vmupdate::features(get("hotplug").as_deref()).contains("memory");
    if memory_hotplug && get("numa").as_deref() != Some("1") {
        return Err("NUMA needs to be enabled for memory hotplug".into());
    }
    rec.set_status(PowerState::Running);
    rec.g.qmp = if get("freeze").as_deref() == Some("1") {
        QmpState::Prelaunch
    } else {
        QmpState::Running
    };
    Ok(wrote)
}

/// `_do_vm_stop` once the guest is down or killed: nothing for a stopped VM, the lock
/// check, then off, with the pending changes applied when `apply_pending`. Returns
/// whether the config was written.
fn stop(rec: &mut GuestRec, apply_pending: bool) -> Result<bool, String> {
    if !rec.running() {
        return Ok(false);
    }
    check_lock(&rec.g)?;
    let wrote = apply_pending && conf::apply_all_pending(&mut rec.g);
    rec.set_status(PowerState::Stopped);
    rec.g.qmp = QmpState::Running;
    Ok(wrote)
}
