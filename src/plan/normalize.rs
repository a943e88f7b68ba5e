//! Field normalizers: compare each managed field the way PVE stores it, so that a value
//! PVE rewrites on save (a description's trailing newline, tag order and case) is never
//! seen as drift and never re-sent in a loop.
//!
//! Containers and virtual machines differ (docs/proxmox-api.md §4.3, §9): an absent
//! `cores` is every host core for a container but 1 for a VM; an absent `sockets` is 1;
//! an absent `balloon` means the balloon target is the memory; a VM's description has
//! its trailing whitespace stripped, a container's only its trailing newlines.

use super::ActualSpec;
use crate::desired::GuestSpec;
use crate::pve::GuestKind;

/// PVE falls back to 512 MiB when a config has no `memory` (docs/proxmox-api.md §4.3).
const DEFAULT_MEMORY_MIB: u64 = 512;

/// The config fields the agent manages, by their PVE parameter names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Cores,
    Sockets,
    Memory,
    Balloon,
    Swap,
    Description,
    Onboot,
    Tags,
}

/// One drifted field: readable before/after values, and the wire value to send
/// (`None` means the key is deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub from: String,
    pub to: String,
    pub wire: Option<String>,
}

impl Field {
    pub const ALL: [Field; 8] = [
        Field::Cores,
        Field::Sockets,
        Field::Memory,
        Field::Balloon,
        Field::Swap,
        Field::Description,
        Field::Onboot,
        Field::Tags,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::Cores => "cores",
            Field::Sockets => "sockets",
            Field::Memory => "memory",
            Field::Balloon => "balloon",
            Field::Swap => "swap",
            Field::Description => "description",
            Field::Onboot => "onboot",
            Field::Tags => "tags",
        }
    }

    /// The drift of this field, or `None` when it is unmanaged or in sync.
    pub fn drift(self, spec: &GuestSpec, actual: &ActualSpec) -> Option<Drift> {
        let changed =
            |from: String, to: String, wire: Option<String>| Some(Drift { from, to, wire });
        match self {
            Field::Cores => {
                let want = spec.cores?;
                match (actual.kind, actual.cores) {
                    (_, Some(have)) if have == want => None,
                    // A VM without cores has one.
                    (GuestKind::Qemu, None) if want == 1 => None,
                    (GuestKind::Qemu, have) => changed(
                        have.unwrap_or(1).to_string(),
                        want.to_string(),
                        Some(want.to_string()),
                    ),
                    // A container without cores has no cpuset limit: every host core.
                    (GuestKind::Lxc, have) => changed(
                        have.map_or("unlimited".into(), |c| c.to_string()),
                        want.to_string(),
                        Some(want.to_string()),
                    ),
                }
            }
            Field::Sockets => {
                let want = spec.sockets?;
                let have = actual.sockets.unwrap_or(1);
                (have != want).then(|| Drift {
                    from: have.to_string(),
                    to: want.to_string(),
                    wire: Some(want.to_string()),
                })
            }
            Field::Balloon => {
                let want = spec.balloon?;
                // Without `balloon`, the balloon target is the memory itself.
                let memory = actual.memory.unwrap_or(DEFAULT_MEMORY_MIB);
                let have = actual.balloon.unwrap_or(memory);
                (have != want).then(|| Drift {
                    from: have.to_string(),
                    to: want.to_string(),
                    wire: Some(want.to_string()),
                })
            }
            Field::Memory => {
                let want = spec.memory?;
                let have = actual.memory.unwrap_or(DEFAULT_MEMORY_MIB);
                (have != want).then(|| Drift {
                    from: have.to_string(),
                    to: want.to_string(),
                    wire: Some(want.to_string()),
                })
            }
            Field::Swap => {
                let want = spec.swap?;
                // Absent swap is 0, despite the schema's default of 512 (docs/proxmox-api.md §4.3).
                let have = actual.swap.unwrap_or(0);
                (have != want).then(|| Drift {
                    from: have.to_string(),
                    to: want.to_string(),
                    wire: Some(want.to_string()),
                })
            }
            Field::Onboot => {
                let want = spec.onboot?;
                let have = actual.onboot.unwrap_or(false);
                (have != want).then(|| Drift {
                    from: u8::from(have).to_string(),
                    to: u8::from(want).to_string(),
                    wire: Some(u8::from(want).to_string()),
                })
            }
            Field::Description => {
                let want = spec.description.as_deref()?;
                let have = actual.description.as_deref().unwrap_or("");
                let equal = match actual.kind {
                    GuestKind::Lxc => description_eq(want, have),
                    GuestKind::Qemu => want.trim_end() == have.trim_end(),
                };
                if equal {
                    return None;
                }
                let wire = (!render_description(want).is_empty()).then(|| want.to_string());
                changed(short(have), short(want), wire)
            }
            Field::Tags => {
                let want = normalize_tags(spec.tags.as_ref()?.iter().map(String::as_str));
                let have = normalize_tags(split_tags(actual.tags.as_deref().unwrap_or("")));
                if want == have {
                    return None;
                }
                let show = |t: &[String]| {
                    if t.is_empty() {
                        "(none)".to_string()
                    } else {
                        t.join(";")
                    }
                };
                let wire = (!want.is_empty()).then(|| want.join(";"));
                changed(show(&have), show(&want), wire)
            }
        }
    }
}

/// The description as PVE will store it: split on `\n`, trailing empty lines dropped.
/// PVE appends a `\n` to every line when reading it back; we compare without them.
pub fn render_description(s: &str) -> &str {
    s.trim_end_matches(['\n', '\r'])
}

/// Whether a desired and an observed description are the same once PVE has stored them.
pub fn description_eq(desired: &str, observed: &str) -> bool {
    render_description(desired) == render_description(observed)
}

/// Splits a PVE tag string on `;`, `,` or whitespace.
pub(crate) fn split_tags(s: &str) -> impl Iterator<Item = &str> {
    s.split([';', ',', ' ', '\t', '\n'])
        .filter(|t| !t.trim().is_empty())
}

/// Tags as PVE stores them by default: lowercased, de-duplicated, sorted.
pub fn normalize_tags<'a>(tags: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = tags.map(|t| t.trim().to_lowercase()).collect();
    v.sort();
    v.dedup();
    v
}

/// A description shortened for one log line.
fn short(s: &str) -> String {
    let s = render_description(s);
    let one_line: String = s.chars().map(|c| if c == '\n' { ' ' } else { c }).collect();
    if one_line.chars().count() > 40 {
        let cut: String = one_line.chars().take(37).collect();
        format!("{:?}", cut + "...")
    } else {
        format!("{one_line:?}")
    }
}
