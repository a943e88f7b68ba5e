//! Seeded randomized tests of the desired-state reader. Documents are built from the
//! schema: valid guests (with the state they must give), edge and wrong values of
//! every field, repeated vmids and keys, unknown keys, then rendered in random
//! spellings and sometimes mutated. No input may panic, and every problem must name
//! a position inside the input.

use super::guest::{MAX_DESCRIPTION, MAX_MIB};
use super::*;
use crate::fuzz::{self, cases, mutate, pick, Doc};
use crate::json::tests_fuzz::check_problems;
use crate::rng::XorShift;

const FILE: &str = "/srv/desired.json";

/// A number in `lo..=hi`, often at an edge.
fn within(rng: &mut XorShift, lo: u64, hi: u64) -> u64 {
    match rng.below(4) {
        0 => lo,
        1 => hi,
        _ => lo + rng.below(hi - lo + 1),
    }
}

/// A value that is wrong for an integer field in `lo..=hi`.
fn wrong_integer(rng: &mut XorShift, lo: u64, hi: u64) -> Doc {
    let edges = [
        lo.saturating_sub(1).to_string(),
        (hi + 1).to_string(),
        "-1".into(),
        "1.0".into(),
        "1e3".into(),
        "18446744073709551616".into(),
        fuzz::number(rng),
    ];
    match rng.below(5) {
        0 => Doc::Str(lo.to_string()),
        1 => Doc::Raw(pick(rng, &["null", "true", "[]", "{}"]).into()),
        _ => Doc::Raw(pick(rng, &edges)),
    }
}

/// A tag by PVE's syntax: `[a-z0-9_][a-z0-9_\-+.]*`, any case.
fn tag(rng: &mut XorShift) -> String {
    let mut t = String::from(char::from(pick(rng, b"aZ09_".as_slice())));
    for _ in 0..rng.below(12) {
        t.push(char::from(pick(rng, b"azAZ09_-+.".as_slice())));
    }
    t
}

/// One member of a guest object: valid (applied to `spec`) or, unless `clean`,
/// sometimes wrong.
fn field(rng: &mut XorShift, key: &str, spec: &mut GuestSpec, clean: bool) -> Doc {
    if !clean && rng.chance(0.25) {
        return wrong(rng, key);
    }
    match key {
        "name" => {
            let n = fuzz::text(rng, 16);
            spec.name = Some(n.clone());
            Doc::Str(n)
        }
        "state" => {
            let (s, st) = pick(
                rng,
                &[
                    ("running", RunState::Running),
                    ("stopped", RunState::Stopped),
                ],
            );
            spec.state = Some(st);
            Doc::str(s)
        }
        "cores" => {
            let n = within(rng, 1, 8192);
            spec.cores = Some(n as u32);
            Doc::num(n)
        }
        "memory" => {
            let n = within(rng, 16, MAX_MIB);
            spec.memory = Some(n);
            Doc::num(n)
        }
        "swap" => {
            let n = within(rng, 0, MAX_MIB);
            spec.swap = Some(n);
            Doc::num(n)
        }
        "description" => {
            // The longest descriptions are rare: they cost time, and one is enough.
            let d = match rng.below(64) {
                0 => "d".repeat(MAX_DESCRIPTION),
                1 => "é".repeat(MAX_DESCRIPTION / 2),
                _ => fuzz::text(rng, 40),
            };
            spec.description = Some(d.clone());
            Doc::Str(d)
        }
        "onboot" => {
            let b = rng.chance(0.5);
            spec.onboot = Some(b);
            Doc::num(b)
        }
        "tags" => {
            let tags: Vec<String> = (0..rng.below(5)).map(|_| tag(rng)).collect();
            spec.tags = Some(tags.clone());
            Doc::Arr(tags.into_iter().map(Doc::Str).collect())
        }
        other => unreachable!("no generator for {other}"),
    }
}

/// A value that is probably wrong for `key`.
fn wrong(rng: &mut XorShift, key: &str) -> Doc {
    match key {
        "vmid" => wrong_integer(rng, 100, 999_999_999),
        "cores" => wrong_integer(rng, 1, 8192),
        "memory" => wrong_integer(rng, 16, MAX_MIB),
        "swap" => wrong_integer(rng, 0, MAX_MIB),
        "state" => Doc::str(pick(rng, &["Running", "started", "", "stop"])),
        "onboot" => Doc::Raw(pick(rng, &["1", "0", "\"true\"", "null"]).into()),
        "description" => match rng.below(16) {
            0 => Doc::Str("d".repeat(MAX_DESCRIPTION + 1)),
            1 => Doc::Str("é".repeat(MAX_DESCRIPTION / 2 + 1)),
            _ => Doc::num(7),
        },
        "tags" => match rng.below(4) {
            0 => Doc::str("prod,web"),
            1 => Doc::Arr(vec![Doc::num(1), Doc::str("ok")]),
            2 => Doc::Arr(vec![Doc::str(pick(
                rng,
                &["bad tag", "-x", "", "é", "a;b"],
            ))]),
            _ => Doc::Raw("null".into()),
        },
        _ => Doc::Arr(vec![]),
    }
}

const FIELDS: &[&str] = &[
    "name",
    "state",
    "cores",
    "memory",
    "swap",
    "description",
    "onboot",
    "tags",
];

/// A desired-state document and, when it is `clean`, the state it gives.
fn generate(rng: &mut XorShift, clean: bool) -> (Doc, Option<DesiredState>) {
    let mut state = DesiredState::default();
    let mut guests = Vec::new();
    for _ in 0..rng.below(6) {
        let mut vmid = within(rng, 100, 999_999_999);
        if clean {
            while state.guests.contains_key(&Vmid::new(vmid).unwrap()) {
                vmid = within(rng, 100, 999_999_999);
            }
        } else if rng.chance(0.2) {
            if let Some(v) = state.guests.keys().next() {
                vmid = u64::from(v.get());
            }
        }
        let mut spec = GuestSpec::new(Vmid::new(vmid).unwrap());
        let mut members = vec![("vmid".to_string(), Doc::num(vmid))];
        if !clean && rng.chance(0.1) {
            members[0].1 = wrong(rng, "vmid");
        }
        for key in FIELDS {
            if rng.chance(0.5) {
                members.push((key.to_string(), field(rng, key, &mut spec, clean)));
            }
        }
        if !clean {
            match rng.below(6) {
                0 => {
                    members.remove(0);
                }
                1 => {
                    let m = pick(rng, &members);
                    members.push(m);
                }
                2 => members.push((
                    pick(rng, &["vmdi", "State", "tag", "mem"]).into(),
                    Doc::num(1),
                )),
                _ => {}
            }
        }
        // Any order: vmid need not come first.
        if !members.is_empty() {
            let at = rng.below(members.len() as u64) as usize;
            members.swap(0, at);
        }
        state.guests.insert(spec.vmid, spec);
        guests.push(Doc::Obj(members));
    }
    if !clean && rng.chance(0.1) {
        guests.push(fuzz::any_doc(rng, 1));
    }
    let mut top = vec![("guests".to_string(), Doc::Arr(guests))];
    if rng.chance(0.5) {
        top.push(("version".into(), Doc::num(1)));
    }
    if !clean {
        match rng.below(8) {
            0 => top.push(("version".into(), wrong_integer(rng, 1, 1))),
            1 => {
                top.remove(0);
            }
            2 => top.push(("guests".into(), Doc::Obj(vec![]))),
            3 => top.push((fuzz::text(rng, 6), Doc::num(1))),
            _ => {}
        }
    }
    if rng.chance(0.5) {
        top.reverse();
    }
    let doc = match (clean, rng.below(30)) {
        (false, 0) => fuzz::any_doc(rng, 2),
        _ => Doc::Obj(top),
    };
    (doc, clean.then_some(state))
}

#[test]
fn fuzz_desired_never_panics_and_problems_are_inside_the_input() {
    cases("desired parse", |rng| {
        let clean = rng.chance(0.2);
        let (doc, _) = generate(rng, clean);
        let mut text = fuzz::render(rng, &doc);
        if rng.chance(0.5) {
            text = String::from_utf8_lossy(&mutate(rng, text.as_bytes())).into_owned();
        }
        match DesiredState::parse(&text, Path::new(FILE)) {
            Ok(state) => assert!(state.guests.iter().all(|(v, g)| *v == g.vmid)),
            Err(e @ DesiredError::Invalid { .. }) => {
                let shown = e.to_string();
                let DesiredError::Invalid {
                    problems, omitted, ..
                } = e
                else {
                    unreachable!()
                };
                let n = check_problems(&text, &problems);
                assert_eq!(
                    shown.lines().count(),
                    n + usize::from(omitted > 0),
                    "{shown}"
                );
                for (line, p) in shown.lines().zip(&problems) {
                    assert!(line.starts_with(&format!("{FILE}:{}: ", p.pos)), "{line}");
                }
            }
            Err(e) => panic!("parse gave {e:?}"),
        }
    });
}

#[test]
fn fuzz_desired_valid_documents_read_as_written() {
    cases("desired valid", |rng| {
        let (doc, want) = generate(rng, true);
        let text = fuzz::render(rng, &doc);
        match DesiredState::parse(&text, Path::new(FILE)) {
            Ok(got) => assert_eq!(Some(got), want, "\n{text}"),
            Err(e) => panic!("a valid document is refused:\n{e}\n{text}"),
        }
    });
}
