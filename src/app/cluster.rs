//! `felhom-agent plan --cluster`: from any node, what every node's agent would do with
//! the one desired state, which desired guests are on no node, and which are named
//! twice. Read-only, beside the running service: nothing is sent that changes anything,
//! and the journal is read, not opened.
//!
//! Every node's agent is taken to run with this node's config (its `hold_tag`,
//! `ha_mode`, `stop_mode`, ...) and the same desired state, as it does when the desired
//! state is one file that the cluster replicates (README). Each node is read through this
//! node's API, which proxies calls for other nodes (pve-manager `proxyto => 'node'`), by
//! the same code a pass uses ([`crate::engine::observe`]), and planned by the same pure
//! planner ([`crate::plan::plan`]). Requests:
//! - once: `GET /cluster/resources?type=node` (every node of the cluster, whatever the
//!   token may audit) and `GET /cluster/resources?type=vm` (every guest's node and name);
//! - per node that is not offline, what one `plan` on that node costs: its own
//!   `/cluster/resources?type=vm`, its container and/or VM list (the kinds the desired
//!   state names there), the config of each desired guest there that the plan could act
//!   on (and its pending list when a field drifts), a running VM's `status/current`,
//!   and its active task list when a power action may follow;
//! - for this node only, the task lookups that decide its journal's ops still in flight
//!   (as `plan`). Other nodes' journals are on their disks: their ops in flight are not
//!   seen from here.
//!
//! "Named twice" means one guest that the cluster view reaches by two ways: one vmid in
//! the lists of two nodes (pmxcfs keeps one entry per vmid, so a guest that migrated
//! while the nodes were read, one after the other), or one live guest whose name more
//! desired entries give than live guests carry it (usually a guest recreated under a
//! new vmid, or a copied entry; the entries whose vmid is not that guest are skipped as
//! an identity mismatch or missing, on every pass).

use super::plan_value;
use crate::agent::{self, AppError};
use crate::cancel::Cancel;
use crate::desired::DesiredState;
use crate::engine::{observe, Depth};
use crate::exit::ExitCode;
use crate::plan::{Plan, SkipReason};
use crate::pve::types::ClusterResource;
use crate::pve::Vmid;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// One node as the cluster view sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeView {
    pub node: String,
    /// The node this agent's config names: its journal's ops in flight hold guests.
    pub local: bool,
    /// As `/cluster/resources` gives it: `online`, `offline` or `unknown`.
    pub status: String,
    /// The desired guests on this node: from its own lists when it was read, else where
    /// `/cluster/resources` places them.
    pub guests: Vec<Vmid>,
    /// What its agent would do, or why the node was not read.
    pub read: Result<NodePlan, String>,
}

/// What one node's agent would do.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePlan {
    /// Its plan, without the guests it would skip as elsewhere or missing: they are
    /// another node's, or in [`ClusterView::missing`].
    pub plan: Plan,
    /// Guest names, for display.
    pub names: BTreeMap<Vmid, String>,
}

/// A desired guest on no node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub vmid: Vmid,
    /// Its desired `name`.
    pub name: Option<String>,
    /// Live guests that carry that name, with their nodes: perhaps the guest it means,
    /// under another vmid.
    pub named: Vec<(Vmid, String)>,
}

/// One guest named twice (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Twice {
    /// One vmid in the lists of two or more nodes.
    Vmid { vmid: Vmid, nodes: Vec<String> },
    /// One name given by more desired entries than live guests carry it.
    Name {
        name: String,
        entries: Vec<Vmid>,
        /// The live guests with that name, with their nodes.
        guests: Vec<(Vmid, String)>,
    },
}

/// The whole cluster as `plan --cluster` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterView {
    /// By node name.
    pub nodes: Vec<NodeView>,
    pub missing: Vec<Missing>,
    pub twice: Vec<Twice>,
}

/// `felhom-agent plan --cluster`: read-only.
pub fn plan(config_path: &Path, json: bool) -> Result<ExitCode, AppError> {
    let loaded = agent::load(config_path)?;
    let client = agent::client(&loaded, &Cancel::never())?;
    let view = read(&loaded, &client)?;
    if json {
        println!("{}", to_json(&view));
    } else {
        print!("{}", render(&view));
    }
    Ok(ExitCode::Ok)
}

/// Reads every node and plans it. A node that cannot be read is reported in its
/// [`NodeView`]; only the two cluster-wide lists failing fails the whole view.
pub fn read(
    loaded: &agent::Loaded,
    client: &crate::pve::client::Client,
) -> Result<ClusterView, AppError> {
    let desired = &loaded.desired;
    let settings = agent::plan_settings(&loaded.config.live);
    let this = &loaded.config.fixed.node;
    let mut nodes = client.cluster_nodes()?;
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    let resources = client.cluster_resources()?;

    let mut views = Vec::new();
    for n in nodes {
        let local = n.node == *this;
        let placed: Vec<Vmid> = resources
            .iter()
            .filter(|r| r.node == n.node && desired.guests.contains_key(&r.vmid))
            .map(|r| r.vmid)
            .collect();
        let mut view = NodeView {
            node: n.node.clone(),
            local,
            status: n.status.clone(),
            guests: placed,
            read: Err("offline: not read".to_string()),
        };
        if n.status != "offline" {
            view.read = plan_node(loaded, client, &n.node, local, &settings).map(|(p, listed)| {
                view.guests = listed;
                p
            });
        }
        views.push(view);
    }

    // Where each desired guest was found, in the nodes' own lists.
    let mut found: BTreeMap<Vmid, Vec<String>> = BTreeMap::new();
    for v in views.iter().filter(|v| v.read.is_ok()) {
        for vmid in &v.guests {
            found.entry(*vmid).or_default().push(v.node.clone());
        }
    }
    let unread: BTreeSet<Vmid> = views
        .iter()
        .filter(|v| v.read.is_err())
        .flat_map(|v| v.guests.iter().copied())
        .collect();
    let live = |name: &str| live_named(&resources, name);
    let missing = desired
        .guests
        .iter()
        .filter(|(vmid, _)| !found.contains_key(vmid) && !unread.contains(vmid))
        .map(|(vmid, spec)| Missing {
            vmid: *vmid,
            name: spec.name.clone(),
            named: spec.name.as_deref().map(live).unwrap_or_default(),
        })
        .collect();
    let mut twice: Vec<Twice> = found
        .into_iter()
        .filter(|(_, nodes)| nodes.len() > 1)
        .map(|(vmid, nodes)| Twice::Vmid { vmid, nodes })
        .collect();
    twice.extend(names_twice(desired, &resources));
    Ok(ClusterView {
        nodes: views,
        missing,
        twice,
    })
}

/// The live guests named `name` (case aside), with their nodes.
fn live_named(resources: &[ClusterResource], name: &str) -> Vec<(Vmid, String)> {
    resources
        .iter()
        .filter(|r| {
            r.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .map(|r| (r.vmid, r.node.clone()))
        .collect()
}

/// The names that more desired entries give than live guests carry, when at least one
/// guest carries it: two entries then mean one guest. (Two entries for two guests that
/// share a name are fine: each entry's vmid pins its guest.)
fn names_twice(desired: &DesiredState, resources: &[ClusterResource]) -> Vec<Twice> {
    let mut by_name: BTreeMap<String, (String, Vec<Vmid>)> = BTreeMap::new();
    for (vmid, spec) in &desired.guests {
        if let Some(name) = &spec.name {
            by_name
                .entry(name.to_ascii_lowercase())
                .or_insert_with(|| (name.clone(), Vec::new()))
                .1
                .push(*vmid);
        }
    }
    by_name
        .into_values()
        .filter_map(|(name, entries)| {
            let guests = live_named(resources, &name);
            (entries.len() > 1 && !guests.is_empty() && guests.len() < entries.len()).then_some(
                Twice::Name {
                    name,
                    entries,
                    guests,
                },
            )
        })
        .collect()
}

/// One node's plan, as a pass on that node would make it, and the desired guests its
/// lists show.
fn plan_node(
    loaded: &agent::Loaded,
    client: &crate::pve::client::Client,
    node: &str,
    local: bool,
    settings: &crate::plan::PlanSettings,
) -> Result<(NodePlan, Vec<Vmid>), String> {
    let super::FromJournal { holds, spent_keys } = if local {
        super::from_journal(loaded, client).map_err(|e| e.to_string())?
    } else {
        super::FromJournal {
            holds: BTreeMap::new(),
            spent_keys: BTreeMap::new(),
        }
    };
    let obs = observe(
        client,
        node,
        &loaded.desired,
        &holds,
        &spent_keys,
        settings,
        Depth::Full,
        &Cancel::never(),
    )
    .map_err(|e| format!("not read: {e}"))?;
    let mut plan = crate::plan::plan(&loaded.desired, &obs.actual, &holds, settings);
    plan.skipped
        .retain(|s| !matches!(s.reason, SkipReason::Elsewhere(_) | SkipReason::Missing));
    let listed = obs.actual.local.keys().copied().collect();
    let names = obs.names;
    Ok((NodePlan { plan, names }, listed))
}

fn list(vmids: &[Vmid]) -> String {
    let v: Vec<String> = vmids.iter().map(Vmid::to_string).collect();
    v.join(", ")
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn guests_at(guests: &[(Vmid, String)]) -> String {
    let v: Vec<String> = guests.iter().map(|(v, n)| format!("{v} on {n}")).collect();
    v.join(", ")
}

/// The view for people: a block per node (its plan as `plan` shows it, indented, and
/// the guests in sync), then the missing guests, the guests named twice, and a summary.
pub fn render(view: &ClusterView) -> String {
    let mut out = String::new();
    for n in &view.nodes {
        let this = if n.local { " (this node)" } else { "" };
        match &n.read {
            Ok(p) => {
                let _ = writeln!(out, "{}{this}", n.node);
                let plan = &p.plan;
                let busy = !(plan.actions.is_empty()
                    && plan.skipped.is_empty()
                    && plan.pending.is_empty());
                // `plan` says "nothing to do" for an empty plan; the guests in sync say
                // it here.
                if busy || plan.in_sync.is_empty() {
                    for line in crate::plan::render(&p.plan, &p.names).lines() {
                        let _ = writeln!(out, "  {line}");
                    }
                }
                if !p.plan.in_sync.is_empty() {
                    let _ = writeln!(out, "  in sync: {}", list(&p.plan.in_sync));
                }
            }
            Err(why) => {
                let _ = write!(out, "{}{this}: {why}", n.node);
                if !n.guests.is_empty() {
                    let _ = write!(out, " (desired guests there: {})", list(&n.guests));
                }
                out.push('\n');
            }
        }
    }
    if !view.missing.is_empty() {
        out.push_str("missing: on no node of the cluster\n");
        for m in &view.missing {
            let _ = write!(out, "  {} {}", m.vmid, m.name.as_deref().unwrap_or("-"));
            if !m.named.is_empty() {
                let _ = write!(out, "  (named so: {})", guests_at(&m.named));
            }
            out.push('\n');
        }
    }
    if !view.twice.is_empty() {
        out.push_str("named twice\n");
        for t in &view.twice {
            match t {
                Twice::Vmid { vmid, nodes } => {
                    let _ = writeln!(out, "  vmid {vmid}: listed by {}", and_list(nodes));
                }
                Twice::Name {
                    name,
                    entries,
                    guests,
                } => {
                    let _ = writeln!(
                        out,
                        "  name {name:?}: desired for {}, carried by {}",
                        and_list(&entries.iter().map(Vmid::to_string).collect::<Vec<_>>()),
                        guests_at(guests)
                    );
                }
            }
        }
    }
    let read = view.nodes.iter().filter(|n| n.read.is_ok()).count();
    let _ = writeln!(
        out,
        "{} nodes, {read} read; {} missing, {} named twice; other nodes' journals are not read",
        view.nodes.len(),
        view.missing.len(),
        view.twice.len()
    );
    out
}

/// The view as JSON: `{"nodes": [...], "missing": [...], "named_twice": [...]}`. A node
/// has `node`, `local`, `status`, `guests`, and either `plan` (as `plan --json`) with
/// `in_sync`, or `error`.
pub fn to_json(view: &ClusterView) -> serde_json::Value {
    use serde_json::{json, Value};
    let at = |g: &[(Vmid, String)]| -> Vec<Value> {
        g.iter()
            .map(|(vmid, node)| json!({"vmid": vmid, "node": node}))
            .collect()
    };
    let nodes: Vec<Value> = view
        .nodes
        .iter()
        .map(|n| {
            let mut v = json!({
                "node": n.node, "local": n.local, "status": n.status, "guests": n.guests,
            });
            match &n.read {
                Ok(p) => {
                    v["plan"] = plan_value(&p.plan);
                    v["in_sync"] = json!(p.plan.in_sync);
                }
                Err(why) => v["error"] = json!(why),
            }
            v
        })
        .collect();
    let missing: Vec<Value> = view
        .missing
        .iter()
        .map(|m| json!({"vmid": m.vmid, "name": m.name, "named": at(&m.named)}))
        .collect();
    let twice: Vec<Value> = view
        .twice
        .iter()
        .map(|t| match t {
            Twice::Vmid { vmid, nodes } => json!({"vmid": vmid, "nodes": nodes}),
            Twice::Name {
                name,
                entries,
                guests,
            } => json!({"name": name, "entries": entries, "guests": at(guests)}),
        })
        .collect();
    json!({"nodes": nodes, "missing": missing, "named_twice": twice})
}
