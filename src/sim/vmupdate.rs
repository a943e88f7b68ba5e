//! A VM's config update as qemu-server makes it (`src/PVE/API2/Qemu.pm`
//! `$update_vm_api`; `src/PVE/QemuServer.pm` `vmconfig_hotplug_pending`,
//! `vmconfig_apply_pending`; `src/PVE/QemuServer/Memory.pm` `qemu_memory_hotplug`),
//! shared by the synchronous PUT and the `qmconfig` task of the POST.
//!
//! Every changed key is first written to the pending section; values equal to the active
//! ones are dropped again (`cleanup_pending`, a plain string comparison). A stopped VM
//! then takes the whole pending section at once. A running one takes the fast-plug keys
//! (description, onboot, tags, name, ...) at once, the changed keys that can be
//! hot-plugged if the VM's `hotplug` features allow it, and leaves the rest (cores,
//! sockets, and memory without memory hotplug) pending until the next start or a stop
//! through the API. Hotplug errors are collected per key; nothing is rolled back.
//!
//! Pure: it works on a [`SimGuest`]. Imports `conf`, `keys`, `model`, `reply`, `schema`.

use super::conf;
use super::keys::qemu_key;
use super::model::{SimGuest, SimKind};
use super::reply::Fail;
use super::schema::{self, Plug};
use std::collections::{BTreeMap, BTreeSet};

/// qemu-server's static memory below the DIMMs of a memory-hotplug VM (MiB).
const STATIC_MEMORY: u64 = 1024;
/// The most memory a VM of the default CPU type gets by hotplug: 40 physical address
/// bits (`Memory.pm` `get_max_mem`), in MiB.
const MAX_HOTPLUG_MEMORY: u64 = 1 << (40 - 21);

/// The parameters of one update.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Update {
    /// Keys to set, with their values as sent.
    pub set: BTreeMap<String, String>,
    pub delete: Vec<String>,
    pub revert: Vec<String>,
    pub digest: Option<String>,
}

/// Reads an update's parameters as `$update_vm_api` does before looking at the VM:
/// `skiplock` is root's only (400), something must be asked (500 `no options
/// specified`), and the `revert` and `delete` lists must be known keys that are not also
/// set (400). `background_delay` belongs to the handler and is dropped.
pub(crate) fn parse(params: &BTreeMap<String, String>) -> Result<Update, Fail> {
    let mut set = params.clone();
    let digest = set.remove("digest");
    set.remove("background_delay");
    set.remove("force");
    if set.remove("skiplock").as_deref() == Some("1") {
        return Err(Fail::param("skiplock", "Only root may use this option."));
    }
    let list = |s: Option<String>| {
        s.map(|s| schema::split_list(&s))
            .unwrap_or_default()
            .into_iter()
            .map(|k| if k == "cdrom" { "ide2".to_string() } else { k })
            .collect::<Vec<_>>()
    };
    let delete = list(set.remove("delete"));
    let revert = list(set.remove("revert"));
    if delete.is_empty() && revert.is_empty() && set.is_empty() {
        return Err(Fail::server("no options specified"));
    }
    for opt in &revert {
        if qemu_key(opt).is_none() {
            return Err(Fail::param("revert", format!("unknown option '{opt}'")));
        }
        if set.contains_key(opt) {
            // qemu-server names `delete` here, and leaves the quote unbalanced.
            return Err(Fail::param(
                "delete",
                format!("you can't use '-{opt}' and -revert {opt}' at the same time"),
            ));
        }
    }
    for opt in &delete {
        if set.contains_key(opt) {
            return Err(Fail::param(
                "delete",
                format!("you can't use '-{opt}' and -delete {opt}' at the same time"),
            ));
        }
        if revert.contains(opt) {
            return Err(Fail::param(
                "revert",
                format!("you can't use '-delete {opt}' and -revert {opt}' at the same time"),
            ));
        }
        if qemu_key(opt).is_none() {
            return Err(Fail::param("delete", format!("unknown option '{opt}'")));
        }
    }
    Ok(Update {
        set,
        delete,
        revert,
        digest,
    })
}

/// Perl truthiness of an optional config text: set, not empty, not `0`.
fn truthy(v: Option<&String>) -> Option<&String> {
    v.filter(|s| !s.is_empty() && s.as_str() != "0")
}

/// MiB of a memory text; 512 when unset (`Memory.pm` `get_current_memory`).
fn memory_of(v: Option<&String>) -> u64 {
    v.and_then(|s| schema::memory_current(s))
        .and_then(|c| c.parse().ok())
        .unwrap_or(512)
}

/// The checks `$load_and_check_config` makes, before the config lock and again under it:
/// the digest, the VM's lock (a `delete` of `vmstate` lifts `suspended`), and that the
/// balloon target stays within the memory. `digest` is the config's digest now.
pub(crate) fn check(g: &SimGuest, digest: &str, u: &Update) -> Result<(), Fail> {
    if u.digest.as_ref().is_some_and(|d| d != digest) {
        return Err(Fail::server(
            "checksum mismatch (file change by other user?)",
        ));
    }
    let lifts_suspended = u.delete.iter().any(|d| d == "vmstate");
    match g.lock.as_deref() {
        Some("suspended") if lifts_suspended => {}
        Some(lock) => return Err(Fail::server(format!("VM is locked ({lock})"))),
        None => {}
    }
    let asked_memory = truthy(u.set.get("memory"));
    if asked_memory.is_some() || u.set.contains_key("balloon") {
        // Only a `balloon` in the same request counts: a `delete=balloon` does not.
        let pending = conf::pending_values(g);
        let active = |k: &str| conf::get(g, k);
        let memory = asked_memory
            .cloned()
            .or_else(|| truthy(pending.get("memory")).cloned())
            .or_else(|| active("memory"));
        let balloon = match u.set.get("balloon") {
            Some(b) => Some(b.clone()),
            None => truthy(pending.get("balloon"))
                .cloned()
                .or_else(|| active("balloon")),
        };
        let balloon: u64 = balloon.and_then(|b| b.parse().ok()).unwrap_or(0);
        if balloon > 0 && balloon > memory_of(memory.as_ref()) {
            return Err(Fail::server(
                "balloon value too large (must be smaller than assigned memory)",
            ));
        }
    }
    Ok(())
}

/// Carries the update out on `g` (the `$updatefn` under the config lock; [`check`] has
/// passed). Returns the per-key hotplug errors, if any; what succeeded stays applied.
pub(crate) fn apply(
    g: &mut SimGuest,
    running: bool,
    u: &Update,
) -> Result<(), BTreeMap<String, String>> {
    let mut set = u.set.clone();
    let mut delete = u.delete.clone();
    let mut pending = conf::pending_values(g);
    let mut deletes = conf::pending_deletes(g);
    for opt in &u.revert {
        if let Some(v) = conf::get(g, opt) {
            set.insert(opt.clone(), v);
        } else if pending.contains_key(opt) {
            delete.push(opt.clone());
        }
    }
    if delete.iter().any(|d| d == "vmstate") && g.lock.as_deref() == Some("suspended") {
        delete.push("lock".into());
        for k in ["runningmachine", "runningcpu", "running-nets-host-mtu"] {
            if conf::get(g, k).is_some() {
                delete.push(k.into());
            }
        }
    }
    let mut modified = BTreeSet::new();
    for opt in &delete {
        if conf::get(g, opt).is_none() && !pending.contains_key(opt) {
            // qemu-server only warns: "cannot delete 'x' - not set in current configuration!"
            continue;
        }
        modified.insert(opt.clone());
        pending.remove(opt);
        if matches!(opt.as_str(), "tags" | "vmstate" | "lock") || opt.starts_with("unused") {
            // Deleted from the active config at once.
            conf::set(g, opt, None);
        } else if !deletes.contains(opt) {
            deletes.push(opt.clone());
        }
    }
    for (opt, v) in &set {
        modified.insert(opt.clone());
        let stored = conf::stored_value(SimKind::Qemu, opt, v);
        if pending.get(opt) == Some(&stored) {
            continue;
        }
        pending.insert(opt.clone(), stored);
        deletes.retain(|d| d != opt);
    }
    // cleanup_pending: values equal to the active ones (as text), deletes of unset keys.
    pending.retain(|k, v| conf::get(g, k).as_deref() != Some(v.as_str()));
    deletes.retain(|k| conf::get(g, k).is_some());
    g.pending = pending;
    conf::set_pending_deletes(g, &deletes);
    if g.pending.is_empty() {
        return Ok(());
    }
    if !running {
        conf::apply_all_pending(g);
        clear_empty_description(g);
        return Ok(());
    }
    hotplug(g, &modified)
}

/// An empty description, as written, is no description.
fn clear_empty_description(g: &mut SimGuest) {
    if g.description.as_deref() == Some("") {
        g.description = None;
    }
}

/// `vmconfig_hotplug_pending` on a running VM: the fast-plug keys always, the other
/// pending changes of the keys this update touched (`selection`) when they can be
/// plugged live.
fn hotplug(g: &mut SimGuest, selection: &BTreeSet<String>) -> Result<(), BTreeMap<String, String>> {
    let plug = |k: &str| qemu_key(k).map_or(Plug::Pending, |d| d.plug);
    for (k, v) in conf::pending_values(g) {
        if plug(&k) == Plug::Fast {
            conf::set(g, &k, Some(v));
            g.pending.remove(&k);
        }
    }
    clear_empty_description(g);
    let active_hotplug = conf::get(g, "hotplug");
    let features = features(active_hotplug.as_deref());
    let mut errors = BTreeMap::new();
    let mut deletes = conf::pending_deletes(g);
    for k in deletes.clone().iter().filter(|k| selection.contains(*k)) {
        let live = match plug(k) {
            Plug::Fast | Plug::Hot => Ok(true),
            Plug::Feature("memory") if features.contains("memory") => {
                // Back to the default 512 MiB, which is below the static memory.
                memory_hotplug(g.memory.unwrap_or(512), 512).map(|_| true)
            }
            Plug::Feature(f) => Ok(features.contains(f)),
            Plug::Balloon => Ok(conf::get(g, "balloon").as_deref() != Some("0")),
            Plug::HotplugOpt => Ok(!cpu_or_memory(active_hotplug.as_deref())),
            Plug::Pending | Plug::ReadOnly | Plug::HotIfNew => Ok(false),
        };
        match live {
            Ok(true) => {
                conf::set(g, k, None);
                deletes.retain(|d| d != k);
            }
            Ok(false) => {}
            Err(e) => {
                errors.insert(k.clone(), format!("hotplug problem - {e}"));
            }
        }
    }
    conf::set_pending_deletes(g, &deletes);
    for (k, v) in conf::pending_values(g) {
        if !selection.contains(&k) {
            continue;
        }
        let live: Result<Option<String>, String> = match plug(&k) {
            Plug::Hot => Ok(Some(v.clone())),
            Plug::Feature("cpu") if features.contains("cpu") => {
                let max = g.cores.unwrap_or(1) as u64 * sockets(g);
                match v.parse::<u64>() {
                    Ok(n) if n > max => Err("you can't add more vcpus than maxcpus\n".into()),
                    _ => Ok(Some(v.clone())),
                }
            }
            Plug::Feature("memory") if features.contains("memory") => {
                let new = memory_of(Some(&v));
                memory_hotplug(g.memory.unwrap_or(512), new).map(|m| {
                    // The config follows each DIMM, written as a bare number.
                    Some(if m == new { v.clone() } else { m.to_string() })
                })
            }
            Plug::Feature(f) => Ok(features.contains(f).then(|| v.clone())),
            Plug::Balloon => {
                let on = |b: Option<&str>| b != Some("0");
                let was = on(conf::get(g, "balloon").as_deref());
                Ok((was == on(Some(&v))).then(|| v.clone()))
            }
            Plug::HotplugOpt => Ok((!cpu_or_memory(Some(&v))
                && !cpu_or_memory(active_hotplug.as_deref()))
            .then(|| v.clone())),
            Plug::Fast | Plug::Pending | Plug::ReadOnly | Plug::HotIfNew => Ok(None),
        };
        match live {
            Ok(Some(value)) => {
                conf::set(g, &k, Some(value));
                g.pending.remove(&k);
            }
            Ok(None) => {}
            Err(e) => {
                errors.insert(k.clone(), format!("hotplug problem - {}", e.trim_end()));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn sockets(g: &SimGuest) -> u64 {
    conf::get(g, "sockets")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// The hotplug features of a `hotplug` value (`network,disk,usb` when unset or `1`).
pub(crate) fn features(hotplug: Option<&str>) -> BTreeSet<String> {
    match hotplug {
        None | Some("1") => ["network", "disk", "usb"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        Some("0") => BTreeSet::new(),
        Some(v) => schema::split_list(v).into_iter().collect(),
    }
}

fn cpu_or_memory(hotplug: Option<&str>) -> bool {
    hotplug.is_some_and(|h| h.contains("cpu") || h.contains("memory"))
}

/// The memory a live memory hotplug from `old` to `new` MiB ends at: DIMMs are added
/// until the size reaches `new` (so it rounds up to the next DIMM boundary) or removed
/// from the top while it is above `new` (rounding down). DIMMs are 512 MiB (32 of
/// them above the static 1024 MiB), then 1 GiB, then doubling (`foreach_dimm`).
pub(crate) fn memory_hotplug(old: u64, new: u64) -> Result<u64, String> {
    if new == old {
        return Ok(new);
    }
    if new < STATIC_MEMORY {
        // A die without a newline: Perl adds where it happened.
        return Err(format!(
            "memory can't be lower than {STATIC_MEMORY} MB at \
             /usr/share/perl5/PVE/QemuServer/Memory.pm line 219."
        ));
    }
    if new > MAX_HOTPLUG_MEMORY {
        return Err(format!(
            "you cannot add more memory than max mem {MAX_HOTPLUG_MEMORY} MB!"
        ));
    }
    let mut boundaries = vec![STATIC_MEMORY];
    let mut size = 512;
    for _ in 0..8 {
        for _ in 0..32 {
            let next = boundaries[boundaries.len() - 1] + size;
            boundaries.push(next);
        }
        size *= 2;
    }
    if new > old {
        return Ok(boundaries.into_iter().find(|b| *b >= new).unwrap_or(new));
    }
    let mut current = old;
    for b in boundaries.into_iter().rev().filter(|b| *b < old) {
        if current <= new {
            break;
        }
        current = b;
    }
    Ok(current)
}

#[cfg(test)]
mod tests;
