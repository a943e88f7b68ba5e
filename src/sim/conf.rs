//! A guest's config as key/value text, the way PVE's config file holds it: reading and
//! writing single keys of a [`SimGuest`], the pending section, the rendered file and its
//! digest, for containers (pve-container `src/PVE/LXC/Config.pm`) and VMs (qemu-server
//! `src/PVE/QemuServer.pm` `parse_vm_config`, `write_vm_config`).

use super::digest::sha1_hex;
use super::keys;
use super::model::{SimGuest, SimKind};
use super::schema;
use std::collections::BTreeMap;

/// The keys that live in typed fields of [`SimGuest`]; everything else is in `other`.
const TYPED: &[&str] = &[
    "cores",
    "description",
    "hostname",
    "lock",
    "memory",
    "onboot",
    "swap",
    "tags",
    "template",
];

/// The value of one config key as file text, `None` when it is not set.
pub(crate) fn get(g: &SimGuest, key: &str) -> Option<String> {
    match key {
        "cores" => g.cores.map(|v| v.to_string()),
        "description" => g.description.clone(),
        "hostname" => g.hostname.clone(),
        "lock" => g.lock.clone(),
        "memory" => g
            .memory_raw
            .clone()
            .or_else(|| g.memory.map(|v| v.to_string())),
        "onboot" => g.onboot.map(|v| if v { "1" } else { "0" }.to_string()),
        "swap" => g.swap.map(|v| v.to_string()),
        "tags" => g.tags.clone(),
        "template" => g.template.then(|| "1".to_string()),
        _ => g.other.get(key).cloned(),
    }
}

/// Sets (or with `None` removes) one config key. Values must already be checked.
pub(crate) fn set(g: &mut SimGuest, key: &str, value: Option<String>) {
    let v = value.as_deref();
    match key {
        "cores" => g.cores = v.and_then(|s| s.parse().ok()),
        "description" => g.description = value,
        "hostname" => g.hostname = value,
        "lock" => g.lock = value,
        "memory" => {
            // A VM's memory is a property string; its `current=` form is kept as written.
            g.memory = v
                .and_then(schema::memory_current)
                .and_then(|s| s.parse().ok());
            g.memory_raw = v
                .filter(|s| !s.bytes().all(|b| b.is_ascii_digit()))
                .map(str::to_string);
        }
        "onboot" => g.onboot = v.map(|s| s == "1"),
        "swap" => g.swap = v.and_then(|s| s.parse().ok()),
        "tags" => g.tags = value,
        "template" => g.template = v == Some("1"),
        _ => match value {
            Some(v) => {
                g.other.insert(key.to_string(), v);
            }
            None => {
                g.other.remove(key);
            }
        },
    }
}

/// Every set key except `description`, with its file text, sorted by key.
pub(crate) fn active(g: &SimGuest) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = g
        .other
        .iter()
        .filter(|(k, _)| !TYPED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for key in TYPED.iter().filter(|k| **k != "description") {
        if let Some(v) = get(g, key) {
            map.insert(key.to_string(), v);
        }
    }
    map
}

/// The file text a new value of a guest of `kind` is stored as (as it reads back).
pub(crate) fn stored_value(kind: SimKind, opt: &str, v: &str) -> String {
    match opt {
        // `tags=` writes `tags: `, which reads back as a single space (pve-container
        // `src/PVE/LXC/Config.pm` `write_pct_config`, then `parse_pct_config`).
        "tags" => match schema::normalize_tags(v) {
            t if t.is_empty() => " ".to_string(),
            t => t,
        },
        // An empty description is written as no comment lines at all: it is gone.
        "description" => match kind {
            SimKind::Lxc => schema::stored_description(v).unwrap_or_default(),
            SimKind::Qemu => stored_vm_description(v).unwrap_or_default(),
        },
        _ => match keys::key(kind, opt) {
            Some(d) => schema::canonical(&d.kind, v),
            None => v.to_string(),
        },
    }
}

/// A VM's description as qemu-server reads it back: trailing whitespace stripped
/// (`parse_vm_config`). `None` when nothing is written: an empty value, or `0`, which
/// `write_vm_config`'s `if ($descr)` skips.
pub(crate) fn stored_vm_description(v: &str) -> Option<String> {
    let t = v.trim_end();
    (!t.is_empty() && t != "0").then(|| t.to_string())
}

/// Whether the config enables the guest agent (`agent: 1`, `enabled=1,...`).
pub(crate) fn agent_enabled(g: &SimGuest) -> bool {
    let Some(agent) = g.other.get("agent") else {
        return false;
    };
    agent
        .split(',')
        .find_map(|part| match part.split_once('=') {
            Some(("enabled", v)) => Some(v),
            Some(_) => None,
            None => Some(part),
        })
        .is_some_and(|v| matches!(v, "1" | "yes" | "on" | "true"))
}

/// The keys waiting for deletion in the pending section.
pub(crate) fn pending_deletes(g: &SimGuest) -> Vec<String> {
    g.pending
        .get("delete")
        .map(|d| schema::split_list(d))
        .unwrap_or_default()
}

/// Replaces the pending deletions.
pub(crate) fn set_pending_deletes(g: &mut SimGuest, keys: &[String]) {
    if keys.is_empty() {
        g.pending.remove("delete");
    } else {
        g.pending.insert("delete".to_string(), keys.join(","));
    }
}

/// Pending values, without the `delete` entry.
pub(crate) fn pending_values(g: &SimGuest) -> BTreeMap<String, String> {
    let mut p = g.pending.clone();
    p.remove("delete");
    p
}

/// Applies the whole pending section, as a stop or a start through the API does.
/// Returns whether anything changed.
pub(crate) fn apply_all_pending(g: &mut SimGuest) -> bool {
    if g.pending.is_empty() {
        return false;
    }
    for (k, v) in pending_values(g) {
        set(g, &k, Some(v));
    }
    for k in pending_deletes(g) {
        set(g, &k, None);
    }
    g.pending.clear();
    true
}

/// The config file text: description comment lines, sorted `key: value` lines, then the
/// pending section (`write_pct_config`, `write_vm_config`). Percent-encoding of the
/// description is left out: the text only feeds the digest.
pub(crate) fn render(g: &SimGuest) -> String {
    let mut out = String::new();
    let section = |out: &mut String, descr: Option<&String>, map: &BTreeMap<String, String>| {
        if let Some(d) = descr {
            for line in d.strip_suffix('\n').unwrap_or(d).split('\n') {
                out.push('#');
                out.push_str(line);
                out.push('\n');
            }
        }
        for (k, v) in map {
            out.push_str(&format!("{k}: {v}\n"));
        }
    };
    section(&mut out, g.description.as_ref(), &active(g));
    if !g.pending.is_empty() {
        out.push_str(match g.kind {
            SimKind::Lxc => "\n[pve:pending]\n",
            SimKind::Qemu => "\n[PENDING]\n",
        });
        section(&mut out, None, &g.pending);
    }
    out
}

/// The digest of a guest's config. `generation` counts writes, so that every write
/// changes the digest even when it leaves the text as it was (a `touch` by a human, or
/// an idempotent PUT).
pub(crate) fn digest(g: &SimGuest, generation: u64) -> String {
    sha1_hex(format!("{}\0{generation}", render(g)).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_typed_fields() {
        let mut g = SimGuest::new(101, "pve1");
        set(&mut g, "cores", Some("2".into()));
        set(&mut g, "onboot", Some("0".into()));
        set(&mut g, "nameserver", Some("1.1.1.1".into()));
        set(&mut g, "template", Some("1".into()));
        assert_eq!(g.cores, Some(2));
        assert_eq!(g.onboot, Some(false));
        assert!(g.template);
        assert_eq!(get(&g, "nameserver").as_deref(), Some("1.1.1.1"));
        set(&mut g, "swap", None);
        assert_eq!(g.swap, None);
        let keys: Vec<_> = active(&g).into_keys().collect();
        assert_eq!(
            keys,
            ["cores", "memory", "nameserver", "onboot", "template"]
        );
    }

    #[test]
    fn render_and_digest() {
        let mut g = SimGuest::new(101, "pve1");
        g.description = Some("a\n\nb\n".into());
        g.pending.insert("nameserver".into(), "9.9.9.9".into());
        set_pending_deletes(&mut g, &["searchdomain".to_string()]);
        assert_eq!(
            render(&g),
            "#a\n#\n#b\nmemory: 512\nswap: 512\n\n[pve:pending]\n\
             delete: searchdomain\nnameserver: 9.9.9.9\n"
        );
        let d = digest(&g, 1);
        assert_eq!(d.len(), 40);
        assert_ne!(d, digest(&g, 2));
        assert!(apply_all_pending(&mut g));
        assert_eq!(g.other["nameserver"], "9.9.9.9");
        assert!(g.pending.is_empty());
        assert!(!apply_all_pending(&mut g));
    }

    #[test]
    fn vm_memory_and_description() {
        let mut g = SimGuest::vm(100, "pve1");
        assert_eq!(get(&g, "memory").as_deref(), Some("2048"));
        set(&mut g, "memory", Some("current=4096".into()));
        assert_eq!(
            (g.memory, get(&g, "memory").as_deref()),
            (Some(4096), Some("current=4096"))
        );
        set(&mut g, "memory", Some("1024".into()));
        assert_eq!((g.memory, g.memory_raw.as_deref()), (Some(1024), None));
        assert_eq!(
            stored_value(SimKind::Qemu, "description", "a\n\nb \n\n"),
            "a\n\nb"
        );
        assert_eq!(
            stored_value(SimKind::Lxc, "description", "a\n\nb\n\n"),
            "a\n\nb\n"
        );
        assert_eq!(stored_vm_description("0"), None);
        assert_eq!(stored_vm_description(" \n"), None);
        assert_eq!(stored_value(SimKind::Qemu, "cores", "+04"), "4");
        assert_eq!(
            stored_value(SimKind::Qemu, "memory", "current=2048"),
            "current=2048"
        );
        g.pending.insert("cores".into(), "2".into());
        assert!(render(&g).contains("\n[PENDING]\ncores: 2\n"));
        assert!(!render(&g).contains("swap"));
    }
}
