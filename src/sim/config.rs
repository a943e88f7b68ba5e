//! `PUT /nodes/{node}/lxc/{vmid}/config` (pve-container `src/PVE/API2/LXC/Config.pm`
//! `update_vm` and `src/PVE/LXC/Config.pm` `update_pct_config`).
//!
//! Order: the parameter schema was checked by the router (400) → `no options specified`
//! (500) → `delete`/`revert` lists (400) → the config lock, which a running shutdown task
//! holds (500 after `lock_wait`) → the config must exist on this node (500) → `lock`
//! (500) → `digest` (500) → apply (500 for required or read-only options) → the write,
//! which fails without quorum because `/etc/pve` is read-only (500).

use super::conf::{self, stored_value};
use super::model::{SimGuest, SimKind};
use super::reply::{Data, Fail};
use super::schema::{self, lxc_key, Plug};
use super::state::Shared;
use std::collections::{BTreeMap, BTreeSet};

/// Handles the PUT.
pub(crate) fn put(
    shared: &Shared,
    node: &str,
    vmid: u32,
    params: &BTreeMap<String, String>,
) -> Result<Data, Fail> {
    let mut set = params.clone();
    let digest = set.remove("digest");
    if set.is_empty() {
        return Err(Fail::server("no options specified"));
    }
    let delete = set
        .remove("delete")
        .map(|s| schema::split_list(&s))
        .unwrap_or_default();
    let revert = set
        .remove("revert")
        .map(|s| schema::split_list(&s))
        .unwrap_or_default();
    for opt in &revert {
        if lxc_key(opt).is_none() {
            return Err(Fail::param("revert", format!("unknown option '{opt}'")));
        }
        if set.contains_key(opt) {
            return Err(Fail::param(
                "revert",
                format!("you can't use '-{opt}' and '-revert {opt}' at the same time"),
            ));
        }
    }
    for opt in &delete {
        if lxc_key(opt).is_none() {
            return Err(Fail::param("delete", format!("unknown option '{opt}'")));
        }
        if set.contains_key(opt) {
            // PVE's own message, unbalanced quote included.
            return Err(Fail::param(
                "delete",
                format!("you can't use '-{opt}' and -delete {opt}' at the same time"),
            ));
        }
        if revert.contains(opt) {
            return Err(Fail::param(
                "delete",
                format!("you can't use '-delete {opt}' and '-revert {opt}' at the same time"),
            ));
        }
    }

    let st = shared.lock();
    let mut st = shared.wait_flock(st, vmid, SimKind::Lxc)?;
    let quorate = st.quorate;
    let pid = 20_000 + st.next_seq;
    let rec = st.guest_on(node, vmid, SimKind::Lxc)?;
    if let Some(lock) = &rec.g.lock {
        return Err(Fail::server(format!("CT is locked ({lock})")));
    }
    if digest.as_ref().is_some_and(|d| *d != rec.digest()) {
        return Err(Fail::server(
            "detected modified configuration - file changed by other user? Try again.",
        ));
    }
    let mut g = rec.g.clone();
    apply(&mut g, rec.running(), &set, &delete, &revert)?;
    if !quorate {
        return Err(Fail::server(format!(
            "unable to open file '/etc/pve/nodes/{node}/lxc/{vmid}.conf.tmp.{pid}' - \
             Permission denied"
        )));
    }
    rec.g = g;
    st.wrote(vmid);
    shared.changed(&mut st);
    Ok(Data::null())
}

/// `update_pct_config`: changes go to the pending section, values equal to the current
/// ones are dropped, then the changed keys are applied at once when the container is
/// stopped, or when they are fast- or hot-pluggable while it runs.
fn apply(
    g: &mut SimGuest,
    running: bool,
    set: &BTreeMap<String, String>,
    delete: &[String],
    revert: &[String],
) -> Result<(), Fail> {
    let mut pending = conf::pending_values(g);
    let mut deletes = conf::pending_deletes(g);
    for opt in revert {
        pending.remove(opt);
        deletes.retain(|d| d != opt);
    }
    let mut modified = BTreeSet::new();
    for opt in delete {
        if conf::get(g, opt).is_none() && !pending.contains_key(opt) {
            // PVE only warns: "cannot delete 'x' - not set in current configuration!"
            continue;
        }
        modified.insert(opt.clone());
        match opt.as_str() {
            "memory" | "rootfs" | "ostype" => {
                return Err(Fail::server(format!(
                    "unable to delete required option '{opt}'"
                )))
            }
            "unprivileged" => {
                return Err(Fail::server(format!(
                    "unable to delete read-only option: '{opt}'"
                )))
            }
            _ => {}
        }
        if !deletes.contains(opt) {
            deletes.push(opt.clone());
        }
    }
    for (opt, v) in set {
        modified.insert(opt.clone());
        if opt == "unprivileged" {
            return Err(Fail::server(format!(
                "unable to modify read-only option: '{opt}'"
            )));
        }
        pending.insert(opt.clone(), stored_value(SimKind::Lxc, opt, v));
        deletes.retain(|d| d != opt);
    }
    // cleanup_pending: nothing to do for values equal to the current ones, or for
    // deletions of keys that are not set.
    pending.retain(|k, v| conf::get(g, k).as_deref() != Some(v.as_str()));
    deletes.retain(|k| conf::get(g, k).is_some());

    let plug = |k: &str| lxc_key(k).map_or(Plug::Pending, |d| d.plug);
    for (k, v) in pending.clone() {
        let now = match plug(&k) {
            _ if !running => true,
            Plug::Fast | Plug::Hot => true,
            Plug::HotIfNew => conf::get(g, &k).is_none(),
            Plug::Pending
            | Plug::ReadOnly
            | Plug::Feature(_)
            | Plug::Balloon
            | Plug::HotplugOpt => false,
        };
        if modified.contains(&k) && now {
            let value = (!(k == "description" && v.is_empty())).then_some(v);
            conf::set(g, &k, value);
            pending.remove(&k);
        }
    }
    for k in deletes.clone() {
        let now = !running || matches!(plug(&k), Plug::Fast | Plug::Hot);
        if modified.contains(&k) && now {
            conf::set(g, &k, None);
            deletes.retain(|d| *d != k);
        }
    }
    g.pending = pending;
    conf::set_pending_deletes(g, &deletes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::model::PowerState;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn running_guest_takes_agent_fields_at_once_and_others_pending() {
        let mut g = SimGuest::new(101, "pve1");
        g.status = PowerState::Running;
        g.other.insert("searchdomain".into(), "old.example".into());
        let set = params(&[
            ("cores", "2"),
            ("memory", "1024"),
            ("tags", "Web,prod"),
            ("description", "hi"),
            ("nameserver", "1.1.1.1"),
        ]);
        apply(
            &mut g,
            true,
            &set,
            &["searchdomain".into(), "swap".into()],
            &[],
        )
        .unwrap();
        assert_eq!(g.cores, Some(2));
        assert_eq!(g.memory, Some(1024));
        assert_eq!(g.tags.as_deref(), Some("prod;web"));
        assert_eq!(g.description.as_deref(), Some("hi\n"));
        assert_eq!(g.swap, None);
        assert!(!g.other.contains_key("nameserver"));
        assert_eq!(g.pending["nameserver"], "1.1.1.1");
        assert_eq!(g.pending["delete"], "searchdomain");
        // Reverting drops the pending change.
        apply(
            &mut g,
            true,
            &params(&[("cores", "3")]),
            &[],
            &["nameserver".into()],
        )
        .unwrap();
        assert_eq!(g.pending.get("nameserver"), None);
        assert_eq!(g.pending["delete"], "searchdomain");
    }

    #[test]
    fn stopped_guest_applies_everything_and_drops_no_ops() {
        let mut g = SimGuest::new(101, "pve1");
        g.description = Some("x\n".into());
        let set = params(&[
            ("nameserver", "1.1.1.1"),
            ("memory", "512"),
            ("description", ""),
        ]);
        apply(&mut g, false, &set, &["cores".into()], &[]).unwrap();
        assert_eq!(g.other["nameserver"], "1.1.1.1");
        assert_eq!(g.description, None);
        assert!(g.pending.is_empty());
        let err = apply(&mut g, false, &BTreeMap::new(), &["memory".into()], &[]).unwrap_err();
        assert_eq!(err.message, "unable to delete required option 'memory'");
        assert_eq!(err.status, 500);
        let mut t = SimGuest::new(102, "pve1");
        apply(&mut t, false, &params(&[("tags", "")]), &[], &[]).unwrap();
        assert_eq!(t.tags.as_deref(), Some(" "));
    }
}
