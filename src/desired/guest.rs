//! Validation of the `guests` list: one [`GuestSpec`] per entry, every problem
//! recorded with the guest it belongs to.

use super::{GuestSpec, OneShot, OneShotAction, RunState};
use crate::json;
use crate::json::diag::{boolean, choice, integer, known_members, string, Problems};
use crate::json::{Member, Node, Pos, Value};
use crate::pve::{GuestKind, Vmid};
use std::collections::BTreeMap;

/// The longest one-shot key.
pub const MAX_KEY: usize = 64;

/// Largest `memory` and `swap` we accept, in MiB (256 TiB). PVE's schema sets no
/// maximum; this is our own bound against typos.
pub const MAX_MIB: u64 = 268_435_456;
/// Largest `description` we accept, in bytes. PVE's limit is 8192 characters
/// (pve-common `JSONSchema.pm`); counting bytes is stricter, so never too much.
pub const MAX_DESCRIPTION: usize = 8192;

/// Checks the value of `guests` and adds every valid, unique guest to `out`.
pub(super) fn check_all(node: &Node, out: &mut BTreeMap<Vmid, GuestSpec>, problems: &mut Problems) {
    let Value::Array(items) = &node.value else {
        problems.push(
            node.pos,
            None,
            Some("guests"),
            format!(
                "expected an array of guest objects like [{{\"vmid\": 101, \"state\": \"running\"}}], found {}",
                node.describe()
            ),
        );
        return;
    };
    // Where each vmid was first declared: its index and the position of its value.
    let mut seen: BTreeMap<Vmid, (usize, Pos)> = BTreeMap::new();
    for (index, item) in items.iter().enumerate() {
        let Some((spec, vmid_pos)) = check_one(index, item, problems) else {
            continue;
        };
        if let Some((first, first_pos)) = seen.get(&spec.vmid) {
            problems.push(
                vmid_pos,
                Some(&format!("guest {}", spec.vmid)),
                Some("vmid"),
                format!(
                    "duplicate: guest {} is already declared at guests[{first}] (line {}, column {}): keep one entry per guest",
                    spec.vmid, first_pos.line, first_pos.col
                ),
            );
            continue;
        }
        seen.insert(spec.vmid, (index, vmid_pos));
        out.insert(spec.vmid, spec);
    }
}

/// Checks one entry of `guests`. Returns its spec and where its vmid is written
/// when the vmid is usable, even if other fields have problems, so that duplicates
/// are still found.
fn check_one(index: usize, item: &Node, problems: &mut Problems) -> Option<(GuestSpec, Pos)> {
    let at_index = format!("guests[{index}]");
    let Value::Object(members) = &item.value else {
        problems.push(
            item.pos,
            Some(&at_index),
            None,
            format!(
                "expected a guest object like {{\"vmid\": 101, \"state\": \"running\"}}, found {}",
                item.describe()
            ),
        );
        return None;
    };
    let vmid = match members.iter().find(|m| m.key == "vmid") {
        None => {
            problems.push(
                item.pos,
                Some(&at_index),
                Some("vmid"),
                "missing: add \"vmid\": <the guest's id> to this guest",
            );
            None
        }
        Some(m) => match integer(&m.value, u64::from(Vmid::MIN), u64::from(Vmid::MAX), "") {
            Ok(n) => Some((Vmid::new(n).expect("range checked"), m.value.pos)),
            Err(msg) => {
                problems.push(m.value.pos, Some(&at_index), Some("vmid"), msg);
                None
            }
        },
    };
    let label = match vmid {
        Some((v, _)) => format!("guest {v}"),
        None => at_index,
    };
    // Stand-in while the fields are checked; only returned with a real vmid.
    let mut spec = GuestSpec::new(vmid.map_or(Vmid::new(100).expect("100 is valid"), |v| v.0));
    let known: Vec<&Member> = known_members(members, super::FIELDS, Some(&label), problems);
    for m in &known {
        if let Err(msg) = field(&mut spec, m, &label, problems) {
            problems.push(m.value.pos, Some(&label), Some(&m.key), msg);
        }
    }
    // With `type` given, a field the kind does not have is an error here; without it,
    // the plan checks against the live guest's kind.
    if let Some(kind) = spec.kind {
        for m in &known {
            if let Some(msg) = super::field_kind_problem(&m.key, kind) {
                problems.push(m.value.pos, Some(&label), Some(&m.key), msg);
            }
        }
    }
    vmid.map(|(_, pos)| (spec, pos))
}

/// Checks one member and stores it in `spec`. Returns the message for a problem
/// with the value as a whole; problems inside it (one bad tag) are pushed directly.
fn field(
    spec: &mut GuestSpec,
    m: &Member,
    label: &str,
    problems: &mut Problems,
) -> Result<(), String> {
    let v = &m.value;
    match m.key.as_str() {
        "vmid" => {} // checked by the caller
        "name" => spec.name = Some(string(v)?.to_string()),
        "state" => {
            spec.state = Some(match choice(v, &["running", "stopped"])? {
                "running" => RunState::Running,
                _ => RunState::Stopped,
            })
        }
        "type" => {
            spec.kind = Some(match choice(v, &["lxc", "qemu"])? {
                "qemu" => GuestKind::Qemu,
                _ => GuestKind::Lxc,
            })
        }
        "cores" => spec.cores = Some(integer(v, 1, 8192, "")? as u32),
        "sockets" => spec.sockets = Some(integer(v, 1, 4096, "")? as u32),
        "balloon" => spec.balloon = Some(integer(v, 0, MAX_MIB, " MiB")?),
        "memory" => spec.memory = Some(integer(v, 16, MAX_MIB, " MiB")?),
        "swap" => spec.swap = Some(integer(v, 0, MAX_MIB, " MiB")?),
        "description" => {
            let s = string(v)?;
            if s.len() > MAX_DESCRIPTION {
                return Err(format!(
                    "expected at most {MAX_DESCRIPTION} bytes, found {} bytes: shorten it",
                    s.len()
                ));
            }
            spec.description = Some(s.to_string());
        }
        "onboot" => spec.onboot = Some(boolean(v)?),
        "tags" => spec.tags = Some(tags(v, label, problems)?),
        "once" => spec.once = once(v, label, problems)?,
        other => unreachable!("{other} is not in FIELDS"),
    }
    Ok(())
}

/// The `tags` array. Each bad tag is its own problem, at the tag.
fn tags(v: &Node, label: &str, problems: &mut Problems) -> Result<Vec<String>, String> {
    let Value::Array(items) = &v.value else {
        let hint = if matches!(v.value, Value::String(_)) {
            ": write each tag as its own string"
        } else {
            ""
        };
        return Err(format!(
            "expected an array of strings like [\"prod\", \"web\"], found {}{hint}",
            v.describe()
        ));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("tags[{i}]");
        let msg = match &item.value {
            Value::String(t) if is_tag(t) => {
                out.push(t.clone());
                continue;
            }
            Value::String(t) => {
                let hint = if t.contains([',', ';', ' ']) {
                    ": write each tag as its own string"
                } else {
                    ""
                };
                format!(
                    "invalid tag {}: a tag starts with a letter, digit or '_' and may go on with letters, digits, '_', '-', '+' and '.'{hint}",
                    super::json::quote(t)
                )
            }
            _ => format!("expected a tag string, found {}", item.describe()),
        };
        problems.push(item.pos, Some(label), Some(&key), msg);
    }
    Ok(out)
}

/// The `once` array: `{"key": "...", "action": "start"|"shutdown"|"stop"}` entries, each
/// key unique in the guest. Each bad entry is its own problem, at the entry.
fn once(v: &Node, label: &str, problems: &mut Problems) -> Result<Vec<OneShot>, String> {
    const EXAMPLE: &str = r#"[{"key": "maintenance-2026-12", "action": "shutdown"}]"#;
    let Value::Array(items) = &v.value else {
        return Err(format!(
            "expected an array like {EXAMPLE}, found {}",
            v.describe()
        ));
    };
    let mut out: Vec<OneShot> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("once[{i}]");
        let Value::Object(members) = &item.value else {
            problems.push(
                item.pos,
                Some(label),
                Some(&at),
                format!(
                    "expected an object like {EXAMPLE}, found {}",
                    item.describe()
                ),
            );
            continue;
        };
        let (mut key, mut action, mut node) = (None, None, None);
        let has = |k: &str| members.iter().any(|m| m.key == k);
        let (has_key, has_action) = (has("key"), has("action"));
        for m in known_members(members, &["key", "action", "node"], Some(label), problems) {
            let r = match m.key.as_str() {
                "key" => string(&m.value).and_then(|k| {
                    check_key(k)?;
                    key = Some(k.to_string());
                    Ok(())
                }),
                "node" => string(&m.value).and_then(|n| {
                    if !crate::pve::is_node_name(n) {
                        return Err(format!(
                            "invalid node name {}: give the name of the node whose agent carries the key out, as the Proxmox GUI shows it",
                            json::quote(n)
                        ));
                    }
                    node = Some(n.to_string());
                    Ok(())
                }),
                _ => choice(&m.value, &["start", "shutdown", "stop"]).map(|a| {
                    action = Some(match a {
                        "start" => OneShotAction::Start,
                        "shutdown" => OneShotAction::Shutdown,
                        _ => OneShotAction::Stop,
                    })
                }),
            };
            if let Err(msg) = r {
                problems.push(
                    m.value.pos,
                    Some(label),
                    Some(&format!("{at}.{}", m.key)),
                    msg,
                );
            }
        }
        let (Some(key), Some(action)) = (key, action) else {
            // A member that is there but bad was reported at it.
            let missing = match (has_key, has_action) {
                (false, _) => "key",
                (_, false) => "action",
                _ => continue,
            };
            problems.push(
                item.pos,
                Some(label),
                Some(&at),
                format!(
                    "missing \"{missing}\": each entry needs a key and an action, like {EXAMPLE}"
                ),
            );
            continue;
        };
        if let Some(earlier) = out.iter().find(|o| o.key == key) {
            let msg = if earlier.action == action {
                format!(
                    "duplicate key {}: keep one entry per key",
                    json::quote(&key)
                )
            } else {
                format!(
                    "key {} is already used for {}: a key names one action; use a new key for {}",
                    json::quote(&key),
                    earlier.action.as_str(),
                    action.as_str()
                )
            };
            problems.push(item.pos, Some(label), Some(&at), msg);
            continue;
        }
        out.push(OneShot { key, action, node });
    }
    Ok(out)
}

/// A one-shot key: 1 to [`MAX_KEY`] characters of letters, digits and `. _ - :`.
fn check_key(k: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if k.is_empty() || k.len() > MAX_KEY || !k.chars().all(ok_char) {
        return Err(format!(
            "invalid key {}: use 1 to {MAX_KEY} letters, digits and . _ - :",
            json::quote(k)
        ));
    }
    Ok(())
}

/// PVE's tag syntax: `[a-z0-9_][a-z0-9_\-\+\.]*`, case-insensitive.
pub fn is_tag(t: &str) -> bool {
    let mut bytes = t.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'.'))
}
