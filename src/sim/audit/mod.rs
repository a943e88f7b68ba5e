//! The node's audit of the agent's first promise, from the node's own records: its
//! request log and its task list. One intent is never sent twice, and a guest never has
//! two actions in flight.
//!
//! - In flight: a mutating request (POST, PUT, DELETE) on a guest is in flight at the node
//!   from its arrival until the node is done with it and, if it started a task, until
//!   that task ends; a request delayed and executed after its client left included. Two
//!   such spans of one guest must not overlap (touching is fine).
//! - Sent twice: a start arriving while the guest runs (for a VM: while its QEMU process
//!   runs, whatever its QMP state, which PVE answers `already running`; except under a
//!   backup's lock, where PVE resumes the VM) or a start task of it runs; a shutdown or stop
//!   arriving while the guest is stopped and no task of it runs; a config update (a PUT,
//!   or a VM's POST) whose every parameter (`digest` aside) already holds in the config
//!   as it will be, by the node's own comparison: a value equal to the pending one, or
//!   to the stored one when nothing is pending for the key (writing again what waits in
//!   the pending section is the same intent sent twice), a `delete` of a key that is
//!   not set or already waits to be deleted. "Arriving" is judged on the guest as the
//!   node noted it at arrival, so hand edits through the `Sim` handle are not requests,
//!   yet are seen by the ones after. A request naming a node the guest is not on is not
//!   judged (it cannot act).
//!
//! Imports only leaves (`conf`, `keys`, `model`, `schema`).

use super::conf::{self, stored_value};
use super::keys;
use super::model::{PowerState, QmpState, RequestRecord, SimGuest};
use super::schema::split_list;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// What the audit found. The rules are in this module's doc: a mutating request on a
/// guest is in flight from arrival until done and its task ended, two of one guest must
/// not overlap, and none may arrive with its intent already met.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Audit {
    pub violations: Vec<Violation>,
    /// How many mutating requests on guests were checked.
    pub checked: usize,
}

impl Audit {
    /// No violations.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

/// One mutating request as the audit saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct InFlight {
    pub seq: u64,
    pub method: String,
    pub path: String,
    /// When it arrived, since the node started.
    pub arrived: Duration,
    /// When it stopped being in flight, since the node started: the node done with it
    /// and its task ended. `None`: still in flight when audited.
    pub until: Option<Duration>,
    /// The task it started.
    pub task: Option<String>,
}

/// A break of the promise.
#[derive(Clone, Debug, PartialEq)]
pub enum Violation {
    /// Two actions of one guest in flight at the node at once.
    Overlap {
        vmid: u32,
        first: InFlight,
        second: InFlight,
    },
    /// An intent the guest already met when the request arrived.
    Redundant {
        vmid: u32,
        request: InFlight,
        why: String,
    },
}

impl Violation {
    /// The guest concerned.
    pub fn vmid(&self) -> u32 {
        match self {
            Violation::Overlap { vmid, .. } | Violation::Redundant { vmid, .. } => *vmid,
        }
    }
}

fn secs(d: Duration) -> String {
    format!("+{:.3}s", d.as_secs_f64())
}

impl fmt::Display for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} {} {} (arrived {}, in flight until {}",
            self.seq,
            self.method,
            self.path,
            secs(self.arrived),
            self.until.map_or("the audit".to_string(), secs)
        )?;
        if let Some(t) = &self.task {
            write!(f, ", task {t}")?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Overlap {
                vmid,
                first,
                second,
            } => write!(
                f,
                "guest {vmid}: two actions in flight at once: {first} and {second}"
            ),
            Violation::Redundant { vmid, request, why } => {
                write!(f, "guest {vmid}: intent sent twice: {request}: {why}")
            }
        }
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.violations.is_empty() {
            return write!(
                f,
                "the node's audit: no violations ({} mutating requests checked)",
                self.checked
            );
        }
        write!(
            f,
            "the node's audit: {} violation(s) of the agent's first promise ({} mutating \
             requests checked):",
            self.violations.len(),
            self.checked
        )?;
        for (i, v) in self.violations.iter().enumerate() {
            write!(f, "\n  {}. {v}", i + 1)?;
        }
        Ok(())
    }
}

/// One request's span at the node. `end == None`: open.
struct Span<'a> {
    r: &'a RequestRecord,
    end: Option<Instant>,
}

/// Audits the request log. `task_ends` maps each task's UPID to when it ended (`None`:
/// still running); `origin` is when the node started.
pub(crate) fn check(
    requests: &[RequestRecord],
    task_ends: &BTreeMap<String, Option<Instant>>,
    origin: Instant,
) -> Audit {
    let mut by_guest: BTreeMap<u32, Vec<Span>> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.mutating) {
        let Some(vmid) = r.vmid else { continue };
        let end = r
            .done
            .and_then(|done| match r.task.as_ref().map(|u| task_ends.get(u)) {
                // A task trimmed from the list ended long ago.
                None | Some(None) => Some(done),
                Some(Some(ended)) => ended.map(|e| e.max(done)),
            });
        by_guest.entry(vmid).or_default().push(Span { r, end });
    }
    let flight = |s: &Span| InFlight {
        seq: s.r.seq,
        method: s.r.method.clone(),
        path: s.r.path.clone(),
        arrived: s.r.at.saturating_duration_since(origin),
        until: s.end.map(|e| e.saturating_duration_since(origin)),
        task: s.r.task.clone(),
    };
    let mut audit = Audit::default();
    for (vmid, mut spans) in by_guest {
        audit.checked += spans.len();
        spans.sort_by_key(|s| (s.r.at, s.r.seq));
        // The span reaching furthest so far; a later arrival before its end overlaps it.
        let mut reach: Option<usize> = None;
        for i in 0..spans.len() {
            if let Some(j) = reach {
                if spans[j].end.is_none_or(|end| spans[i].r.at < end) {
                    audit.violations.push(Violation::Overlap {
                        vmid,
                        first: flight(&spans[j]),
                        second: flight(&spans[i]),
                    });
                }
            }
            let further = match reach {
                None => true,
                Some(j) => match (spans[i].end, spans[j].end) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(a), Some(b)) => a > b,
                },
            };
            if further {
                reach = Some(i);
            }
        }
        for s in &spans {
            if let Some(why) = redundant(s.r) {
                audit.violations.push(Violation::Redundant {
                    vmid,
                    request: flight(s),
                    why,
                });
            }
        }
    }
    audit
}

/// Why the request's intent was already met when it arrived, if it was.
fn redundant(r: &RequestRecord) -> Option<String> {
    let g = r.guest.as_ref()?;
    let ran = |kinds: &[&str]| r.guest_tasks.iter().any(|t| kinds.contains(&t.as_str()));
    let power = r.path.rsplit_once("/status/").map(|(_, op)| op);
    // A VM's start under a backup's lock resumes the QEMU the backup runs: not met.
    let resumes = g.is_vm() && g.lock.as_deref() == Some("backup");
    match (r.method.as_str(), power) {
        ("POST", Some("start")) if g.status == PowerState::Running && !resumes => {
            Some(if g.is_vm() && g.qmp != QmpState::Running {
                format!("the guest was running (qmpstatus {})", g.qmp.as_str())
            } else {
                "the guest was running".to_string()
            })
        }
        ("POST", Some("start")) if ran(&["vzstart", "qmstart", "hastart"]) => {
            Some("a start task of the guest was running".to_string())
        }
        ("POST", Some("stop" | "shutdown"))
            if g.status == PowerState::Stopped && r.guest_tasks.is_empty() =>
        {
            Some("the guest was stopped and no task of it was running".to_string())
        }
        ("PUT" | "POST", None) if r.path.ends_with("/config") => config_noop(g, &r.params),
        _ => None,
    }
}

/// For a config update whose every parameter already held: the parameters.
fn config_noop(g: &SimGuest, params: &BTreeMap<String, String>) -> Option<String> {
    let set: Vec<(&String, &String)> = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "digest" | "background_delay"))
        .collect();
    if set.is_empty() {
        return None;
    }
    let pending = conf::pending_values(g);
    let pending_deletes = conf::pending_deletes(g);
    // The config as it will be: a pending value over the stored one, a pending delete
    // leaving the key unset.
    let will_be = |k: &str| {
        if pending_deletes.iter().any(|d| d == k) {
            None
        } else {
            pending.get(k).cloned().or_else(|| conf::get(g, k))
        }
    };
    let holds = |k: &str, v: &str| match k {
        // An unknown key makes the request invalid rather than redundant.
        "delete" => split_list(v)
            .iter()
            .all(|d| keys::key(g.kind, d).is_some() && will_be(d).is_none()),
        "revert" => split_list(v)
            .iter()
            .all(|d| !pending.contains_key(d) && !pending_deletes.contains(d)),
        _ => will_be(k) == Some(stored_value(g.kind, k, v)),
    };
    if !set.iter().all(|(k, v)| holds(k, v)) {
        return None;
    }
    let list: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    Some(format!(
        "every parameter already held ({})",
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests;
