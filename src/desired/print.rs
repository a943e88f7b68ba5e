//! Printing a [`DesiredState`] as a desired-state file: the canonical form that
//! `felhom-agent export` writes and [`DesiredState::parse`] reads back unchanged.
//!
//! Canonical means: `version` first, then `guests` in vmid order, each guest's fields
//! in the documented order ([`FIELDS`]), unmanaged fields left out, two-space
//! indentation, one field per line and a guest's tags on one line. Strings are escaped
//! by serde_json, whose escapes our parser reads (`\"`, `\\`, `\n`, `\t`, `\u00XX`).

use super::{DesiredState, GuestSpec};
use std::fmt::Write as _;

/// A guest entry's fields, the only ones it may have, in the order the file documents
/// and this printer writes them.
pub const FIELDS: &[&str] = &[
    "vmid",
    "type",
    "name",
    "state",
    "cores",
    "sockets",
    "memory",
    "balloon",
    "swap",
    "description",
    "onboot",
    "tags",
    "once",
];

impl DesiredState {
    /// The state as a desired-state file (ends with a newline).
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\n  \"version\": 1,\n  \"guests\": [");
        for (i, spec) in self.guests.values().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            guest(&mut out, spec);
        }
        if !self.guests.is_empty() {
            out.push_str("\n  ");
        }
        out.push_str("]\n}\n");
        out
    }
}

/// One guest object, indented for its place in `guests`.
fn guest(out: &mut String, g: &GuestSpec) {
    let mut fields: Vec<(&str, String)> = vec![("vmid", g.vmid.to_string())];
    if let Some(kind) = g.kind {
        fields.push(("type", quote(kind.as_str())));
    }
    if let Some(name) = &g.name {
        fields.push(("name", quote(name)));
    }
    if let Some(state) = g.state {
        fields.push(("state", quote(state.as_str())));
    }
    if let Some(cores) = g.cores {
        fields.push(("cores", cores.to_string()));
    }
    if let Some(sockets) = g.sockets {
        fields.push(("sockets", sockets.to_string()));
    }
    if let Some(memory) = g.memory {
        fields.push(("memory", memory.to_string()));
    }
    if let Some(balloon) = g.balloon {
        fields.push(("balloon", balloon.to_string()));
    }
    if let Some(swap) = g.swap {
        fields.push(("swap", swap.to_string()));
    }
    if let Some(description) = &g.description {
        fields.push(("description", quote(description)));
    }
    if let Some(onboot) = g.onboot {
        fields.push(("onboot", onboot.to_string()));
    }
    if let Some(tags) = &g.tags {
        let list: Vec<String> = tags.iter().map(|t| quote(t)).collect();
        fields.push(("tags", format!("[{}]", list.join(", "))));
    }
    if !g.once.is_empty() {
        let list: Vec<String> = g
            .once
            .iter()
            .map(|o| {
                let node = o
                    .node
                    .as_ref()
                    .map(|n| format!(", \"node\": {}", quote(n)))
                    .unwrap_or_default();
                format!(
                    "{{\"key\": {}, \"action\": {}{node}}}",
                    quote(&o.key),
                    quote(o.action.as_str())
                )
            })
            .collect();
        fields.push(("once", format!("[{}]", list.join(", "))));
    }
    debug_assert!(fields.iter().all(|(k, _)| FIELDS.contains(k)));
    out.push_str("    {\n");
    for (i, (key, value)) in fields.iter().enumerate() {
        let comma = if i + 1 < fields.len() { "," } else { "" };
        let _ = writeln!(out, "      \"{key}\": {value}{comma}");
    }
    out.push_str("    }");
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::RunState;
    use crate::pve::Vmid;
    use crate::rng::XorShift;
    use std::path::Path;

    fn parse(text: &str) -> DesiredState {
        DesiredState::parse(text, Path::new("printed.json"))
            .unwrap_or_else(|e| panic!("{e}\nin:\n{text}"))
    }

    /// Every field set. Written without `..` so that a new field fails to compile here
    /// until the printer knows it.
    fn full(vmid: u32) -> GuestSpec {
        GuestSpec {
            vmid: Vmid::new(u64::from(vmid)).unwrap(),
            kind: None,
            name: Some("web \"one\"".into()),
            state: Some(RunState::Running),
            cores: Some(2),
            sockets: Some(2),
            memory: Some(1024),
            balloon: Some(512),
            swap: Some(0),
            description: Some("line one\nline two\ttab \\ back\u{1}".into()),
            onboot: Some(true),
            tags: Some(vec!["prod".into(), "Web".into()]),
            once: vec![crate::desired::OneShot {
                node: None,
                key: "maint-1".into(),
                action: crate::desired::OneShotAction::Shutdown,
            }],
        }
    }

    #[test]
    fn prints_the_documented_layout() {
        let mut state = DesiredState::default();
        let mut g = full(101);
        g.description = Some("web frontend".into());
        g.name = Some("web".into());
        state.guests.insert(g.vmid, g);
        let mut bare = GuestSpec::new(Vmid::new(150).unwrap());
        bare.state = Some(RunState::Stopped);
        state.guests.insert(bare.vmid, bare);
        assert_eq!(
            state.to_json(),
            r#"{
  "version": 1,
  "guests": [
    {
      "vmid": 101,
      "name": "web",
      "state": "running",
      "cores": 2,
      "sockets": 2,
      "memory": 1024,
      "balloon": 512,
      "swap": 0,
      "description": "web frontend",
      "onboot": true,
      "tags": ["prod", "Web"],
      "once": [{"key": "maint-1", "action": "shutdown"}]
    },
    {
      "vmid": 150,
      "state": "stopped"
    }
  ]
}
"#
        );
        assert_eq!(
            DesiredState::default().to_json(),
            "{\n  \"version\": 1,\n  \"guests\": []\n}\n"
        );
    }

    #[test]
    fn every_field_round_trips() {
        let mut state = DesiredState::default();
        for vmid in [100, 101, 999_999_999] {
            state
                .guests
                .insert(Vmid::new(vmid).unwrap(), full(vmid as u32));
        }
        let text = state.to_json();
        assert_eq!(parse(&text), state);
        assert_eq!(parse(&text).to_json(), text, "printing is canonical");
    }

    #[test]
    fn fuzz_parse_of_print_is_identity() {
        crate::fuzz::cases("parse(print(x)) == x", |rng| {
            let state = random_state(rng);
            let text = state.to_json();
            assert_eq!(parse(&text), state, "\n{text}");
        });
    }

    fn random_state(rng: &mut XorShift) -> DesiredState {
        let mut state = DesiredState::default();
        for _ in 0..rng.below(4) {
            let vmid = Vmid::new(100 + rng.below(1_000_000)).unwrap();
            let mut g = GuestSpec::new(vmid);
            let some = |rng: &mut XorShift| rng.chance(0.6);
            g.name = some(rng).then(|| text(rng, 12));
            g.state = some(rng).then(|| {
                if rng.chance(0.5) {
                    RunState::Running
                } else {
                    RunState::Stopped
                }
            });
            g.cores = some(rng).then(|| 1 + rng.below(8192) as u32);
            g.memory = some(rng).then(|| 16 + rng.below(crate::desired::guest::MAX_MIB - 15));
            g.swap = some(rng).then(|| rng.below(crate::desired::guest::MAX_MIB + 1));
            g.description = some(rng).then(|| text(rng, 200));
            g.onboot = some(rng).then(|| rng.chance(0.5));
            g.tags = some(rng).then(|| {
                (0..rng.below(4))
                    .map(|_| {
                        let n = 1 + rng.below(8) as usize;
                        (0..n)
                            .map(|i| {
                                let set: &[u8] = if i == 0 {
                                    b"abcXYZ019_"
                                } else {
                                    b"abcXYZ019_-+."
                                };
                                set[rng.below(set.len() as u64) as usize] as char
                            })
                            .collect()
                    })
                    .collect()
            });
            state.guests.insert(vmid, g);
        }
        state
    }

    /// Any text: ASCII, control characters, quotes and backslashes, and non-ASCII.
    fn text(rng: &mut XorShift, max: u64) -> String {
        const PICK: &[char] = &[
            'a', 'Z', '0', ' ', '"', '\\', '/', '\n', '\r', '\t', '\u{0}', '\u{1f}', '\u{7f}', 'é',
            '€', '😀', '\u{feff}', '\u{2028}',
        ];
        (0..rng.below(max + 1))
            .map(|_| PICK[rng.below(PICK.len() as u64) as usize])
            .collect()
    }
}
