//! The VM list and status (qemu-server `src/PVE/API2/Qemu.pm` `vmlist`, `vm_status`;
//! `src/PVE/QemuServer.pm` `vmstatus`).
//!
//! `status` only says whether a QEMU process exists. The QMP run state (`qmpstatus`)
//! comes with `full=1` and always with `status/current`; the simulated monitor always
//! answers.

use super::conf;
use super::model::SimKind;
use super::reply::{Data, Fail};
use super::state::{GuestRec, Shared};
use super::usage::{counters, name, usage, vm_cpus, MIB};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A VM's QMP state as PVE reports it: its run state while the process runs, else
/// `stopped` (PVE's fallback).
pub(crate) fn qmpstatus(rec: &GuestRec) -> &'static str {
    if rec.running() {
        rec.g.qmp.as_str()
    } else {
        "stopped"
    }
}

/// One entry of the list, from the active config (pending not merged) and the process.
fn entry(shared: &Shared, rec: &GuestRec, full: bool) -> Map<String, Value> {
    let g = &rec.g;
    let u = usage(rec);
    let mut m = Map::new();
    m.insert("vmid".into(), g.vmid.into());
    m.insert("name".into(), name(rec).into());
    m.insert("status".into(), g.status.as_str().into());
    m.insert("cpus".into(), vm_cpus(g, shared.opts.host_cpus).into());
    m.insert("maxmem".into(), (g.memory.unwrap_or(512) * MIB).into());
    m.insert("maxdisk".into(), u.maxdisk.into());
    counters(&mut m, &u);
    m.insert("disk".into(), 0.into());
    m.insert("memhost".into(), m["mem"].clone());
    if !full {
        m.remove("diskread");
        m.remove("diskwrite");
    }
    let balloon = conf::get(g, "balloon").and_then(|b| b.parse::<u64>().ok());
    if let Some(b) = balloon.filter(|b| *b > 0) {
        m.insert("balloon_min".into(), (b * MIB).into());
        let shares = conf::get(g, "shares").and_then(|s| s.parse::<u64>().ok());
        m.insert("shares".into(), shares.unwrap_or(1000).into());
    }
    if u.running {
        m.insert("pid".into(), (30_000 + g.vmid).into());
        for p in ["cpu", "io", "memory"] {
            m.insert(format!("pressure{p}some"), 0.into());
            m.insert(format!("pressure{p}full"), 0.into());
        }
        if full {
            m.insert("running-machine".into(), "pc-i440fx-9.2+pve1".into());
            m.insert("running-qemu".into(), "9.2.0".into());
            if balloon != Some(0) {
                m.insert("balloon".into(), (g.memory.unwrap_or(512) * MIB).into());
            }
        }
    }
    if full {
        m.insert("qmpstatus".into(), qmpstatus(rec).into());
    }
    if let Some(l) = &g.lock {
        m.insert("lock".into(), l.clone().into());
    }
    if let Some(t) = &g.tags {
        m.insert("tags".into(), t.clone().into());
    }
    if g.template {
        m.insert("template".into(), 1.into());
    }
    if g.other.keys().any(|k| k.starts_with("serial")) {
        m.insert("serial".into(), 1.into());
    }
    m
}

/// `GET /nodes/{node}/qemu[?full=1]`: only the node's own VMs.
pub(crate) fn list(shared: &Shared, node: &str, params: &BTreeMap<String, String>) -> Data {
    let full = params.get("full").map(String::as_str) == Some("1");
    let st = shared.lock();
    let list: Vec<Value> = st
        .guests
        .values()
        .filter(|r| r.g.node == node && r.g.kind == SimKind::Qemu)
        .map(|r| Value::Object(entry(shared, r, full)))
        .collect();
    Data::new(Value::Array(list))
}

/// `GET /nodes/{node}/qemu/{vmid}/status/current`: a full list entry plus `ha` and
/// `agent` (enabled in the config, whether or not one answers).
pub(crate) fn status(shared: &Shared, node: &str, vmid: u32) -> Result<Data, Fail> {
    let mut st = shared.lock();
    let rec = st.guest_on(node, vmid, SimKind::Qemu)?;
    let mut m = entry(shared, rec, true);
    let ha = match &rec.g.ha {
        // An ignored resource reads as unmanaged (pve-ha-manager `get_service_status`).
        Some(state) if state != "ignored" => json!({"managed": 1, "state": state}),
        _ => json!({"managed": 0}),
    };
    m.insert("ha".into(), ha);
    if conf::agent_enabled(&rec.g) {
        m.insert("agent".into(), 1.into());
    }
    Ok(Data::new(Value::Object(m)))
}
