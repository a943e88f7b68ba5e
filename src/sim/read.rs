//! The read-only endpoints: version, guest lists, config, status and pending changes
//! (pve-container `src/PVE/API2/LXC.pm` `vmlist` and `vm_pending`,
//! `src/PVE/API2/LXC/Config.pm` `vm_config`, `src/PVE/API2/LXC/Status.pm` `vm_status`,
//! `src/PVE/LXC.pm` `vmstatus`; pve-manager `PVE/API2/Cluster.pm` `resources`).

use super::conf;
use super::reply::{Data, Fail};
use super::schema::json_value;
use super::state::{GuestRec, Shared};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const MIB: u64 = 1024 * 1024;

/// `GET /version`.
pub(crate) fn version() -> Data {
    Data::new(json!({"version": "8.4.1", "release": "8.4", "repoid": "2a5fa54a8503f96d"}))
}

/// Parses a PVE disk size (`8G`, `512M`, `1.5T`, plain bytes).
fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<f64>().ok().map(|n| (n * mult as f64) as u64)
}

/// Usage figures of a guest: made up, but zero when stopped, as PVE reports them.
struct Usage {
    maxmem: u64,
    maxswap: u64,
    maxdisk: u64,
    uptime: u64,
    running: bool,
}

fn usage(rec: &GuestRec) -> Usage {
    let g = &rec.g;
    let maxdisk = g
        .other
        .get("rootfs")
        .and_then(|r| r.split(',').find_map(|p| p.strip_prefix("size=")))
        .and_then(parse_size)
        .unwrap_or(4 << 30);
    Usage {
        maxmem: g.memory.unwrap_or(512) * MIB,
        maxswap: g.swap.unwrap_or(0) * MIB,
        maxdisk,
        uptime: rec.running_since.map_or(0, |t| t.elapsed().as_secs()),
        running: rec.running(),
    }
}

fn name(rec: &GuestRec) -> String {
    match &rec.g.hostname {
        Some(h) => h.chars().filter(|c| !c.is_whitespace()).collect(),
        None => format!("CT{}", rec.g.vmid),
    }
}

fn counters(m: &mut Map<String, Value>, u: &Usage) {
    let on = |v: u64| if u.running { v } else { 0 };
    m.insert("mem".into(), on(u.maxmem / 8).into());
    m.insert("disk".into(), on(u.maxdisk / 10).into());
    m.insert("uptime".into(), u.uptime.into());
    m.insert("cpu".into(), if u.running { 0.012 } else { 0.0 }.into());
    m.insert("netin".into(), on(u.uptime * 1500 + 1).into());
    m.insert("netout".into(), on(u.uptime * 700 + 1).into());
    m.insert("diskread".into(), on(u.uptime * 4096).into());
    m.insert("diskwrite".into(), on(u.uptime * 2048).into());
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
        .filter(|r| r.g.node == node)
        .map(|r| Value::Object(lxc_entry(shared, r)))
        .collect();
    Data::new(Value::Array(list))
}

/// `GET /nodes/{node}/lxc/{vmid}/status/current`: a list entry plus `ha`.
pub(crate) fn status(shared: &Shared, node: &str, vmid: u32) -> Result<Data, Fail> {
    let mut st = shared.lock();
    let rec = st.guest_on(node, vmid)?;
    let mut m = lxc_entry(shared, rec);
    let ha = match &rec.g.ha {
        Some(state) => json!({"managed": 1, "state": state}),
        None => json!({"managed": 0}),
    };
    m.insert("ha".into(), ha);
    Ok(Data::new(Value::Object(m)))
}

/// `GET /nodes/{node}/lxc/{vmid}/config`: set keys only, pending merged in unless
/// `current=1`, plus `digest`.
pub(crate) fn config(
    shared: &Shared,
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
        shared.lock().guest_on(node, vmid)?;
        return Err(Fail::server(format!("snapshot '{snap}' does not exist")));
    }
    let mut st = shared.lock();
    let rec = st.guest_on(node, vmid)?;
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
        .map(|(k, v)| (k.clone(), json_value(k, v)))
        .collect();
    m.insert("digest".into(), rec.digest().into());
    Ok(Data::new(Value::Object(m)))
}

/// `GET /nodes/{node}/lxc/{vmid}/pending`: `{key, value?, pending?, delete?}` per key.
pub(crate) fn pending(shared: &Shared, node: &str, vmid: u32) -> Result<Data, Fail> {
    let mut st = shared.lock();
    let rec = st.guest_on(node, vmid)?;
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
                item.insert("value".into(), json_value(k, v));
            }
            if let Some(v) = pending.get(k) {
                item.insert("pending".into(), json_value(k, v));
            }
            if deletes.contains(k) {
                item.insert("delete".into(), 1.into());
            }
            Value::Object(item)
        })
        .collect();
    Ok(Data::new(Value::Array(items)))
}

/// `GET /cluster/resources`: guests on every node (and the nodes unless `type=vm`).
pub(crate) fn cluster_resources(shared: &Shared, params: &BTreeMap<String, String>) -> Data {
    let kind = params.get("type").map(String::as_str);
    let st = shared.lock();
    let mut out = Vec::new();
    if kind.is_none() || kind == Some("vm") {
        for rec in st.guests.values() {
            let g = &rec.g;
            let u = usage(rec);
            let mut m = Map::new();
            m.insert("id".into(), format!("lxc/{}", g.vmid).into());
            m.insert("vmid".into(), g.vmid.into());
            m.insert("type".into(), "lxc".into());
            m.insert("node".into(), g.node.clone().into());
            m.insert("status".into(), g.status.as_str().into());
            m.insert("name".into(), name(rec).into());
            m.insert("template".into(), u8::from(g.template).into());
            let maxcpu = match (g.cores, g.other.get("cpulimit")) {
                (Some(c), _) => json!(c),
                (None, Some(l)) if l.parse::<f64>().unwrap_or(0.0) > 0.0 => {
                    json!(l.parse::<f64>().unwrap_or(0.0))
                }
                _ => json!(shared.opts.host_cpus),
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
            out.push(json!({
                "id": format!("node/{n}"), "type": "node", "node": n, "status": "online",
                "maxcpu": shared.opts.host_cpus,
            }));
        }
    }
    Data::new(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("1.5T"), Some(3 << 39));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("x"), None);
    }
}
