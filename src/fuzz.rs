//! Seeded randomized tests: a runner that feeds a parser many generated inputs and,
//! when one fails, says which seed and case reproduce it.
//!
//! `FELHOM_FUZZ_ITERS` sets the number of cases (default [`DEFAULT_ITERS`], small
//! enough for `./build.sh test`; `./build.sh fuzz` runs many more) and
//! `FELHOM_FUZZ_SEED` the seed (default: fixed, so a normal run is reproducible).
//!
//! Besides byte mutation ([`mutate`]), it builds structured inputs: a [`Doc`] is a
//! JSON document as a generator meant it (keys in order and possibly repeated,
//! numbers as text), which [`render`] writes with random whitespace and random valid
//! escapes, so that one document reaches a parser in many spellings.

use crate::rng::XorShift;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Cases per property in a normal test run.
pub const DEFAULT_ITERS: u64 = 2_000;

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs `case` with a generator seeded per case; on a panic, panics again naming the
/// property, the seed and the case number, so `FELHOM_FUZZ_SEED` reruns it.
pub fn cases(property: &str, mut case: impl FnMut(&mut XorShift)) {
    let seed = env_u64("FELHOM_FUZZ_SEED").unwrap_or(0x00fe_1403);
    let iters = env_u64("FELHOM_FUZZ_ITERS").unwrap_or(DEFAULT_ITERS);
    for i in 0..iters {
        let mut rng = XorShift::new(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| case(&mut rng))) {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{property}: case {i} failed (FELHOM_FUZZ_SEED={seed}): {msg}");
        }
    }
}

/// Bytes to try on a parser that expects something like `valid`: `valid` itself or a
/// mutation of it (bit flips, cuts, repeats, inserted delimiters and odd bytes), or
/// noise.
pub fn mutate(rng: &mut XorShift, valid: &[u8]) -> Vec<u8> {
    const ODD: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b"\n",
        b"\0",
        b"\xff",
        b"\xc3",
        b"-1",
        b"1e999",
        b"18446744073709551616",
        b"null",
        b"true",
        b"\"\\u0000\"",
        b"%",
    ];
    let mut out = valid.to_vec();
    if rng.below(20) == 0 {
        return (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect();
    }
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() as u64 + 1) as usize;
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.truncate(at),
            2 => {
                let end = (at + rng.below(8) as usize).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let piece = ODD[rng.below(ODD.len() as u64) as usize];
                out.splice(at..at, piece.iter().copied());
            }
            4 => {
                let end = (at + rng.below(16) as usize).min(out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            _ => out.insert(at, rng.next_u64() as u8),
        }
    }
    out
}

/// A JSON document to render: what a generator meant, before its spelling is chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum Doc {
    /// A number, `true`, `false` or `null`, written as is (so it may be anything).
    Raw(String),
    /// A string's content; [`render`] picks its escapes.
    Str(String),
    Arr(Vec<Doc>),
    /// Members in order; a key may repeat.
    Obj(Vec<(String, Doc)>),
}

impl Doc {
    pub fn num(n: impl std::fmt::Display) -> Doc {
        Doc::Raw(n.to_string())
    }

    pub fn str(s: &str) -> Doc {
        Doc::Str(s.to_string())
    }

    /// How deeply containers nest in it (a scalar is 0, `[]` is 1).
    pub fn depth(&self) -> usize {
        match self {
            Doc::Raw(_) | Doc::Str(_) => 0,
            Doc::Arr(items) => 1 + items.iter().map(Doc::depth).max().unwrap_or(0),
            Doc::Obj(members) => 1 + members.iter().map(|(_, v)| v.depth()).max().unwrap_or(0),
        }
    }
}

/// One of `items`, cloned.
pub fn pick<T: Clone>(rng: &mut XorShift, items: &[T]) -> T {
    items[rng.below(items.len() as u64) as usize].clone()
}

/// `doc` as JSON text: whitespace between tokens (none, a space, or a random run of
/// the four JSON whitespace characters) and string escapes (none, some, or all
/// characters as `\uXXXX`, surrogate pairs included) drawn for this rendering.
pub fn render(rng: &mut XorShift, doc: &Doc) -> String {
    let style = Style {
        space: rng.below(3) as u8,
        escape_rate: pick(rng, &[0.0, 0.0, 0.1, 0.5, 1.0]),
    };
    let mut out = String::new();
    style.ws(rng, &mut out);
    style.value(rng, doc, &mut out);
    style.ws(rng, &mut out);
    out
}

struct Style {
    /// 0: no whitespace, 1: single spaces, 2: random runs.
    space: u8,
    /// The chance that a character that needs no escape is escaped anyway.
    escape_rate: f64,
}

impl Style {
    fn ws(&self, rng: &mut XorShift, out: &mut String) {
        match self.space {
            0 => {}
            1 => out.push(' '),
            _ => {
                for _ in 0..rng.below(4) {
                    out.push(pick(rng, &[' ', '\t', '\n', '\r']));
                }
            }
        }
    }

    fn value(&self, rng: &mut XorShift, doc: &Doc, out: &mut String) {
        match doc {
            Doc::Raw(s) => out.push_str(s),
            Doc::Str(s) => self.string(rng, s, out),
            Doc::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.ws(rng, out);
                    self.value(rng, item, out);
                    self.ws(rng, out);
                }
                out.push(']');
            }
            Doc::Obj(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.ws(rng, out);
                    self.string(rng, key, out);
                    self.ws(rng, out);
                    out.push(':');
                    self.ws(rng, out);
                    self.value(rng, value, out);
                    self.ws(rng, out);
                }
                out.push('}');
            }
        }
    }

    fn string(&self, rng: &mut XorShift, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            let short = match c {
                '"' => Some("\\\""),
                '\\' => Some("\\\\"),
                '\n' => Some("\\n"),
                '\t' => Some("\\t"),
                '\r' => Some("\\r"),
                '\u{8}' => Some("\\b"),
                '\u{c}' => Some("\\f"),
                '/' if rng.chance(self.escape_rate) => Some("\\/"),
                _ => None,
            };
            if let Some(e) = short.filter(|_| !rng.chance(self.escape_rate / 2.0)) {
                out.push_str(e);
            } else if c < ' ' || matches!(c, '"' | '\\') || rng.chance(self.escape_rate) {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    if rng.chance(0.5) {
                        out.push_str(&format!("\\u{u:04x}"));
                    } else {
                        out.push_str(&format!("\\u{u:04X}"));
                    }
                }
            } else {
                out.push(c);
            }
        }
        out.push('"');
    }
}

/// A string of up to `max` characters: mostly ASCII letters, with characters that
/// need escapes, multi-byte ones (2, 3 and 4 bytes), and a few that editors and
/// parsers get wrong (U+2028, U+FEFF, U+FFFD, NUL, DEL).
pub fn text(rng: &mut XorShift, max: usize) -> String {
    const ODD: &[char] = &[
        '"',
        '\\',
        '/',
        '\n',
        '\t',
        '\r',
        '\u{0}',
        '\u{1f}',
        '\u{7f}',
        'é',
        'ß',
        '€',
        '中',
        '\u{2028}',
        '\u{feff}',
        '\u{fffd}',
        '😀',
        '\u{10ffff}',
        ' ',
        '.',
        '-',
        '_',
        '!',
        '@',
        '=',
    ];
    let len = rng.below(max as u64 + 1) as usize;
    (0..len)
        .map(|_| match rng.below(4) {
            0 => pick(rng, ODD),
            1 => char::from(b'0' + rng.below(10) as u8),
            _ => char::from(b'a' + rng.below(26) as u8),
        })
        .collect()
}

/// A JSON number as text: integers (small, at the `u64`/`i64` edges, or hundreds of
/// digits), negatives, `-0`, fractions and exponents in every spelling, and
/// exponents beyond what an `f64` holds.
pub fn number(rng: &mut XorShift) -> String {
    let mut s = String::new();
    if rng.below(3) == 0 {
        s.push('-');
    }
    match rng.below(8) {
        0 => s.push('0'),
        1 => s.push_str(pick(
            rng,
            &[
                "18446744073709551615",
                "18446744073709551616",
                "9223372036854775807",
                "9223372036854775808",
                "4294967295",
                "4294967296",
            ],
        )),
        2 => {
            s.push(char::from(b'1' + rng.below(9) as u8));
            for _ in 0..rng.below(400) {
                s.push(char::from(b'0' + rng.below(10) as u8));
            }
        }
        _ => s.push_str(&(1 + rng.below(1_000_000)).to_string()),
    }
    if rng.below(3) == 0 {
        s.push('.');
        for _ in 0..=rng.below(20) {
            s.push(char::from(b'0' + rng.below(10) as u8));
        }
    }
    if rng.below(3) == 0 {
        s.push_str(pick(rng, &["e", "E", "e+", "E-", "e-"]));
        let exp = pick(rng, &[0, 1, 3, 22, 300, 308, 309, 324, 400, 99999]);
        s.push_str(&(exp + rng.below(3)).to_string());
    }
    s
}

/// A random document nesting at most `depth` containers, with keys that repeat now
/// and then.
pub fn any_doc(rng: &mut XorShift, depth: usize) -> Doc {
    let kinds = if depth == 0 { 5 } else { 7 };
    match rng.below(kinds) {
        0 => Doc::Raw("null".into()),
        1 => Doc::Raw(pick(rng, &["true", "false"]).to_string()),
        2 => Doc::Raw(number(rng)),
        3 | 4 => Doc::Str(text(rng, 12)),
        5 => Doc::Arr((0..rng.below(5)).map(|_| any_doc(rng, depth - 1)).collect()),
        _ => {
            let mut members: Vec<(String, Doc)> = Vec::new();
            for _ in 0..rng.below(5) {
                let key = match members.last() {
                    Some((k, _)) if rng.below(5) == 0 => k.clone(),
                    _ => text(rng, 6),
                };
                members.push((key, any_doc(rng, depth - 1)));
            }
            Doc::Obj(members)
        }
    }
}

/// `doc` inside `levels` more containers, arrays or single-member objects.
pub fn nest(rng: &mut XorShift, mut doc: Doc, levels: usize) -> Doc {
    for _ in 0..levels {
        doc = if rng.chance(0.5) {
            Doc::Arr(vec![doc])
        } else {
            Doc::Obj(vec![(text(rng, 2), doc)])
        };
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_reproducible_and_vary() {
        let mut a = XorShift::new(9);
        let mut b = XorShift::new(9);
        let valid = br#"{"v":1,"seq":2}"#;
        let xs: Vec<Vec<u8>> = (0..50).map(|_| mutate(&mut a, valid)).collect();
        let ys: Vec<Vec<u8>> = (0..50).map(|_| mutate(&mut b, valid)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().filter(|x| x.as_slice() != valid).count() > 40);
    }

    #[test]
    fn rendered_documents_are_json_that_means_the_document() {
        let mut rng = XorShift::new(5);
        let doc = Doc::Obj(vec![
            (
                "k\"\\/\u{8}\u{c}\n\r\t\u{1}é😀".into(),
                Doc::str("v\u{0}\u{2028}"),
            ),
            ("k".into(), Doc::Arr(vec![Doc::num(1), Doc::num("-2.5e3")])),
        ]);
        let mut spellings = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let text = render(&mut rng, &doc);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let key = "k\"\\/\u{8}\u{c}\n\r\t\u{1}é😀";
            assert_eq!(v[key], "v\u{0}\u{2028}", "{text}");
            assert_eq!(v["k"], serde_json::json!([1, -2500.0]), "{text}");
            spellings.insert(text);
        }
        assert!(spellings.len() > 100, "{}", spellings.len());
        let deep = nest(&mut rng, Doc::num(0), 70);
        assert_eq!(deep.depth(), 70);
    }

    #[test]
    fn a_failing_case_names_its_seed() {
        let r = catch_unwind(|| cases("always fails", |_| panic!("boom")));
        let msg = r.unwrap_err().downcast_ref::<String>().cloned().unwrap();
        assert!(
            msg.contains("FELHOM_FUZZ_SEED=") && msg.contains("boom"),
            "{msg}"
        );
    }
}
