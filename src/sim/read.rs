//! The read-only endpoints: version, the container list and status, config and pending
//! changes of either kind of guest, and the cluster's resources (pve-container
//! `src/PVE/API2/LXC.pm` `vmlist` and `vm_pending`, `src/PVE/API2/LXC/Config.pm`
//! `vm_config`, `src/PVE/API2/LXC/Status.pm` `vm_status`, `src/PVE/LXC.pm` `vmstatus`;
//! qemu-server `src/PVE/API2/Qemu.pm` `vm_config`, `vm_pending`; pve-manager
//! `PVE/API2/Cluster.pm` `resources`). The VM list and status are in `vmread`.

use super::conf;
use super::keys::json_value;
use super::model::SimKind;
use super::reply::{Data, Fail};
use super::state::{GuestRec, Shared};
use super::usage::{counters, name, usage};
use super::vmread;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// `GET /version`.
pub(crate) fn version() -> Data {
    Data::new(json!({"version": "8.4.1", "release": "8.4", "repoid": "2a5fa54a8503f96d"}))
}

/// One entry of the LXC list (and the base of `status/current`): pve-container
/// `src/PVE/LXC.pm` `vmstatus`.
fn lxc_entry(shared: &Shared, rec: &GuestRec) -> Map<String, Value> {
    let g = &rec.g;
    let u = usage(rec);
    let mut m = Map::new();
    let vmid: Value = if shared.opts.vmid_as_string {
        g.vmid.to_string().into()
    } else {
        g.vmid.into()
    };
    m.insert("vmid".into(), vmid);
    m.insert("name".into(), name(rec).into());
    m.insert("type".into(), "lxc".into());
    m.insert("status".into(), g.status.as_str().into());
    let cpulimit = g
        .other
        .get("cpulimit")
        .filter(|c| c.parse::<f64>().unwrap_or(0.0) != 0.0);
    let cpus: Value = match (g.cores, cpulimit) {
        (Some(c), _) => c.into(),
        // Perl keeps cpulimit as text, so it goes out as a JSON string.
        (None, Some(l)) => l.clone().into(),
        (None, None) => shared.opts.host_cpus.into(),
    };
    m.insert("cpus".into(), cpus);
    m.insert("maxmem".into(), u.maxmem.into());
    m.insert("maxswap".into(), u.maxswap.into());
    m.insert("swap".into(), 0.into());
    m.insert("maxdisk".into(), u.maxdisk.into());
    counters(&mut m, &u);
    if u.running {
        m.insert("pid".into(), (10_000 + g.vmid).into());
        for p in ["cpu", "io", "memory"] {
            m.insert(format!("pressure{p}some"), 0.into());
            m.insert(format!("pressure{p}full"), 0.into());
        }
    }
    if let Some(t) = &g.tags {
        m.insert("tags".into(), t.clone().into());
    }
    if let Some(l) = &g.lock {
        m.insert("lock".into(), l.clone().into());
    }
    if g.template {
        m.insert("template".into(), 1.into());
    }
    m
}

/// `GET /nodes/{node}/lxc`: only the node's own guests.
pub(crate) fn lxc_list(shared: &Shared, node: &str) -> Data {
    let st = shared.lock();
    let list: Vec<Value> = st
        .guests
        .values()
        .filter(|r| r.g.node == node && r.g.kind == SimKind::Lxc)
        .map(|r| Value::Object(lxc_entry(shared, r)))
        .collect();
    Data::new(Value::Array(list))
}

/// `GET /nodes/{node}/lxc/{vmid}/status/current`: a list entry plus `ha`.
pub(crate) fn status(shared: &Shared, node: &str, vmid: u32) -> Result<Data, Fail> {
    let mut st = shared.lock();
    let rec = st.guest_on(node, vmid, SimKind::Lxc)?;
    let mut m = lxc_entry(shared, rec);
    let ha = match &rec.g.ha {
        // An ignored resource reads as unmanaged (pve-ha-manager `get_service_status`).
        Some(state) if state != "ignored" => json!({"managed": 1, "state": state}),
        _ => json!({"managed": 0}),
    };
    m.insert("ha".into(), ha);
    Ok(Data::new(Value::Object(m)))
}

/// `GET /nodes/{node}/{lxc|qemu}/{vmid}/config`: set keys only, pending merged in
/// unless `current=1`, plus `digest`.
pub(crate) fn config(
    shared: &Shared,
    kind: SimKind,
    node: &str,
    vmid: u32,
    params: &BTreeMap<String, String>,
) -> Result<Data, Fail> {
    let current = params.get("current").map(String::as_str) == Some("1");
    if let Some(snap) = params.get("snapshot") {
        if current {
            let msg = "cannot use 'snapshot' parameter with 'current'";
            return Err(Fail::params(BTreeMap::from([
                ("snapshot".to_string(), msg.to_string()),
                ("current".to_string(), msg.to_string()),
            ])));
        }
        shared.lock().guest_on(node, vmid, kind)?;
        return Err(Fail::server(format!("snapshot '{snap}' does not exist")));
    }
    let mut st = shared.lock();
    let rec = st.guest_on(node, vmid, kind)?;
    let g = &rec.g;
    let mut values = conf::active(g);
    if let Some(d) = &g.description {
        values.insert("description".into(), d.clone());
    }
    if !current {
        values.extend(conf::pending_values(g));
        for k in conf::pending_deletes(g) {
            values.remove(&k);
        }
    }
    let mut m: Map<String, Value> = values
        .iter()
        .map(|(k, v)| (k.clone(), json_value(kind, k, v)))
        .collect();
    m.insert("digest".into(), rec.digest().into());
    Ok(Data::new(Value::Object(m)))
}

/// `GET /nodes/{node}/{lxc|qemu}/{vmid}/pending`: `{key, value?, pending?, delete?}` per
/// key, the config key `digest` included.
pub(crate) fn pending(shared: &Shared, kind: SimKind, node: &str, vmid: u32) -> Result<Data, Fail> {
    let mut st = shared.lock();
    let rec = st.guest_on(node, vmid, kind)?;
    let g = &rec.g;
    let mut current = conf::active(g);
    if let Some(d) = &g.description {
        current.insert("description".into(), d.clone());
    }
    current.insert("digest".into(), rec.digest());
    let pending = conf::pending_values(g);
    let deletes = conf::pending_deletes(g);
    let mut keys: Vec<&String> = current.keys().chain(pending.keys()).collect();
    keys.extend(deletes.iter());
    keys.sort();
    keys.dedup();
    let items: Vec<Value> = keys
        .into_iter()
        .map(|k| {
            let mut item = Map::new();
            item.insert("key".into(), k.clone().into());
            if let Some(v) = current.get(k) {
                item.insert("value".into(), json_value(kind, k, v));
            }
            if let Some(v) = pending.get(k) {
                item.insert("pending".into(), json_value(kind, k, v));
            }
            if deletes.contains(k) {
                item.insert("delete".into(), 1.into());
            }
            Value::Object(item)
        })
        .collect();
    Ok(Data::new(Value::Array(items)))
}

/// `GET /cluster/resources`: guests on every node (and the nodes unless `type=vm`). A
/// VM's `status` is its QMP state (pve-manager `PVE/Service/pvestatd.pm`
/// `update_qemu_status`), served live rather than ~10 s stale.
pub(crate) fn cluster_resources(shared: &Shared, params: &BTreeMap<String, String>) -> Data {
    let kind = params.get("type").map(String::as_str);
    let st = shared.lock();
    let mut out = Vec::new();
    if kind.is_none() || kind == Some("vm") {
        for rec in st.guests.values() {
            let g = &rec.g;
            let u = usage(rec);
            let mut m = Map::new();
            let t = g.kind.as_str();
            m.insert("id".into(), format!("{t}/{}", g.vmid).into());
            m.insert("vmid".into(), g.vmid.into());
            m.insert("type".into(), t.into());
            m.insert("node".into(), g.node.clone().into());
            m.insert("name".into(), name(rec).into());
            m.insert("template".into(), u8::from(g.template).into());
            let maxcpu = match g.kind {
                SimKind::Qemu => {
                    m.insert("status".into(), vmread::qmpstatus(rec).into());
                    json!(super::usage::vm_cpus(g, shared.opts.host_cpus))
                }
                SimKind::Lxc => {
                    m.insert("status".into(), g.status.as_str().into());
                    match (g.cores, g.other.get("cpulimit")) {
                        (Some(c), _) => json!(c),
                        (None, Some(l)) if l.parse::<f64>().unwrap_or(0.0) > 0.0 => {
                            json!(l.parse::<f64>().unwrap_or(0.0))
                        }
                        _ => json!(shared.opts.host_cpus),
                    }
                }
            };
            m.insert("maxcpu".into(), maxcpu);
            m.insert("maxmem".into(), u.maxmem.into());
            m.insert("maxdisk".into(), u.maxdisk.into());
            counters(&mut m, &u);
            if let Some(t) = &g.tags {
                m.insert("tags".into(), t.clone().into());
            }
            if let Some(l) = &g.lock {
                m.insert("lock".into(), l.clone().into());
            }
            if let Some(h) = &g.ha {
                m.insert("hastate".into(), h.clone().into());
            }
            out.push(Value::Object(m));
        }
    }
    if kind.is_none() || kind == Some("node") {
        for n in &shared.opts.nodes {
            // A member that is down (pve-manager `PVE/API2Tools.pm` `extract_node_stats`).
            let status = if st.offline.contains(n) {
                "offline"
            } else {
                "online"
            };
            out.push(json!({
                "id": format!("node/{n}"), "type": "node", "node": n, "status": status,
                "maxcpu": shared.opts.host_cpus,
            }));
        }
    }
    Data::new(Value::Array(out))
}
