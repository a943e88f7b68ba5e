//! Seeded randomized tests of the JSON parser: generated documents, and mutations of
//! them, checked against serde_json value for value, and every position checked to
//! point at what it names. Also the position helpers the config and desired-state
//! fuzz tests use.

use super::diag::{decode, Problem};
use super::*;
use crate::fuzz::{self, cases, mutate};
use crate::rng::XorShift;

/// The byte offset of `pos` in `text`, or `None` when it is outside. The column just
/// past a line's last character is its line break (or the end of the input). On the
/// first line a byte order mark takes no column, as in the parser.
pub(crate) fn offset_of(text: &str, pos: Pos) -> Option<usize> {
    let col = (pos.col as usize).checked_sub(1)?;
    let mut start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    for _ in 1..pos.line {
        start += text[start..].find('\n')? + 1;
    }
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = &text[start..end];
    match line.char_indices().nth(col) {
        Some((i, _)) => Some(start + i),
        None if col == line.chars().count() => Some(end),
        None => None,
    }
}

/// Checks the problems of a refused file: each at a place inside `text`; a problem
/// with the JSON syntax may point at the end of the input, any other one at the first
/// character of a token. Returns the number of problems.
pub(crate) fn check_problems(text: &str, problems: &[Problem]) -> usize {
    assert!(!problems.is_empty(), "refused without a problem");
    assert!(problems.len() <= diag::MAX_PROBLEMS);
    assert!(
        problems.windows(2).all(|w| w[0].pos <= w[1].pos),
        "problems not in file order: {problems:?}"
    );
    for p in problems {
        let Some(at) = offset_of(text, p.pos) else {
            panic!("{p}: the position is outside the input {text:?}");
        };
        if !p.message.starts_with("invalid JSON: ") {
            let c = text[at..].chars().next();
            assert!(
                c.is_some_and(|c| !matches!(c, ' ' | '\t' | '\n' | '\r' | ',' | ':')),
                "{p}: the position points at {c:?}, not at a token, in {text:?}"
            );
        }
    }
    problems.len()
}

/// Text to parse: a generated document (sometimes nested near the depth limit,
/// sometimes with a byte order mark), as is or mutated.
fn input(rng: &mut XorShift) -> String {
    let mut doc = fuzz::any_doc(rng, 4);
    if rng.below(8) == 0 {
        let levels = fuzz::pick(rng, &[MAX_DEPTH - 2, MAX_DEPTH, 125, 127, 130]);
        let levels = levels + rng.below(3) as usize;
        doc = fuzz::nest(rng, doc, levels);
    }
    let mut text = fuzz::render(rng, &doc);
    if rng.below(16) == 0 {
        text.insert(0, '\u{feff}');
    }
    if rng.below(3) == 0 {
        return text;
    }
    String::from_utf8_lossy(&mutate(rng, text.as_bytes())).into_owned()
}

#[test]
fn fuzz_json_agrees_with_serde_json() {
    cases("json agrees with serde_json", |rng| {
        let text = input(rng);
        compare(&text);
    });
}

#[test]
fn fuzz_json_positions_point_at_what_they_name() {
    cases("json positions", |rng| {
        let text = input(rng);
        match parse(&text) {
            Ok(node) => {
                let mut last = None;
                check_node(&text, &node, &mut last);
            }
            Err(e) => {
                assert!(
                    offset_of(&text, e.pos).is_some(),
                    "{e}: the position is outside the input {text:?}"
                );
            }
        }
    });
}

#[test]
fn fuzz_decode_locates_the_first_bad_byte() {
    cases("decode", |rng| {
        let doc = fuzz::any_doc(rng, 3);
        let valid = fuzz::render(rng, &doc);
        let mut bytes = mutate(rng, valid.as_bytes());
        if rng.below(8) == 0 {
            bytes.splice(0..0, "\u{feff}".bytes());
        }
        match (decode(bytes.clone()), std::str::from_utf8(&bytes)) {
            (Ok(text), Ok(s)) => assert_eq!(text, s),
            (Err(p), Err(e)) => {
                // The position of the first bad byte is the position just after the
                // valid text before it.
                let good = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap();
                assert_eq!(offset_of(good, p.pos), Some(good.len()), "{p} in {bytes:?}");
            }
            (got, want) => panic!("decode says {got:?}, from_utf8 says {want:?}"),
        }
    });
}

/// A byte order mark on the line of a bad byte does not count as a column, as in
/// the parser: an editor does not show it.
#[test]
fn a_bad_byte_after_a_byte_order_mark_is_located_like_the_parser_would() {
    let mut bytes = "\u{feff}ab".as_bytes().to_vec();
    bytes.push(0xff);
    let p = decode(bytes).unwrap_err();
    assert_eq!(p.pos, Pos { line: 1, col: 3 });
    let e = parse("\u{feff}ab").unwrap_err();
    assert_eq!(e.pos, Pos { line: 1, col: 1 });
    assert_eq!(parse("\u{feff}\"a\" x").unwrap_err().pos.col, 5);
}

/// Every node and key: its position points at its first character, and positions
/// grow in document order.
fn check_node(text: &str, node: &Node, last: &mut Option<usize>) {
    let at = offset_of(text, node.pos)
        .unwrap_or_else(|| panic!("{}: outside the input {text:?}", node.pos));
    let rest = &text[at..];
    let starts = match &node.value {
        Value::Null => rest.starts_with("null"),
        Value::Bool(b) => rest.starts_with(&b.to_string()),
        Value::Number(n) => rest.starts_with(n.as_str()),
        Value::String(_) => rest.starts_with('"'),
        Value::Array(_) => rest.starts_with('['),
        Value::Object(_) => rest.starts_with('{'),
    };
    assert!(
        starts,
        "{}: {:?} is not at {:?}",
        node.pos,
        node.value,
        &rest[..rest.len().min(20)]
    );
    assert!(last.is_none_or(|l| l < at), "{}: out of order", node.pos);
    *last = Some(at);
    // Must not panic, whatever the value.
    node.describe();
    match &node.value {
        Value::Array(items) => items.iter().for_each(|n| check_node(text, n, last)),
        Value::Object(members) => {
            for m in members {
                let k = offset_of(text, m.key_pos)
                    .unwrap_or_else(|| panic!("{}: key outside the input", m.key_pos));
                assert!(
                    text[k..].starts_with('"'),
                    "{}: key not at a quote",
                    m.key_pos
                );
                assert!(last.is_none_or(|l| l < k), "{}: out of order", m.key_pos);
                *last = Some(k);
                quote(&m.key);
                check_node(text, &m.value, last);
            }
        }
        _ => {}
    }
}

/// Our parser and serde_json agree on `text`: both refuse it, or both read the same
/// value. The intended differences: we accept a leading byte order mark (serde_json
/// does not, so it is given the text without one), numbers beyond an `f64` (we keep
/// numbers as text; serde_json without `arbitrary_precision` refuses them), and we
/// refuse nesting deeper than [`MAX_DEPTH`] (serde_json allows 128).
fn compare(text: &str) {
    let ours = parse(text);
    let theirs =
        serde_json::from_str::<serde_json::Value>(text.strip_prefix('\u{feff}').unwrap_or(text));
    match (&ours, &theirs) {
        (Ok(node), Ok(value)) => same(node, value, "$"),
        (Err(_), Err(_)) => {}
        (Ok(node), Err(e)) => assert!(
            e.to_string().contains("number out of range") && has_infinite(node),
            "we accept what serde_json refuses ({e}): {text:?}"
        ),
        (Err(e), Ok(_)) => assert!(
            e.message == format!("nested deeper than {MAX_DEPTH} levels")
                && depth(text) > MAX_DEPTH,
            "we refuse what serde_json accepts ({e}): {text:?}"
        ),
    }
}

fn has_infinite(node: &Node) -> bool {
    match &node.value {
        Value::Number(n) => n.parse::<f64>().is_ok_and(f64::is_infinite),
        Value::Array(items) => items.iter().any(has_infinite),
        Value::Object(members) => members.iter().any(|m| has_infinite(&m.value)),
        _ => false,
    }
}

/// How deeply the containers of valid JSON `text` nest. Counted on the text, not on
/// serde_json's value, which keeps only the last of a repeated key.
fn depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0, 0, false, false);
    for b in text.bytes() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            _ if in_string => {}
            b'[' | b'{' => {
                depth += 1;
                max = usize::max(max, depth);
            }
            b']' | b'}' => depth -= 1,
            _ => {}
        }
    }
    max
}

/// `node` means `value`. Objects compare as serde_json reads them: a repeated key's
/// last value wins.
fn same(node: &Node, value: &serde_json::Value, at: &str) {
    use serde_json::Value as J;
    match (&node.value, value) {
        (Value::Null, J::Null) => {}
        (Value::Bool(a), J::Bool(b)) => assert_eq!(a, b, "{at}"),
        (Value::String(a), J::String(b)) => assert_eq!(a, b, "{at}"),
        (Value::Number(a), J::Number(b)) => same_number(a, b, at),
        (Value::Array(a), J::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}: array lengths");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                same(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(a), J::Object(b)) => {
            let mut last: std::collections::BTreeMap<&str, &Node> = Default::default();
            for m in a {
                last.insert(&m.key, &m.value);
            }
            let keys: Vec<&str> = last.keys().copied().collect();
            let theirs: Vec<&str> = b.keys().map(String::as_str).collect();
            assert_eq!(keys, theirs, "{at}: keys");
            for (k, v) in last {
                same(v, &b[k], &format!("{at}.{k:?}"));
            }
        }
        (a, b) => panic!("{at}: we read {a:?}, serde_json {b:?}"),
    }
}

/// A number we keep as `text` means what serde_json read. serde_json reads an
/// integer that fits as one and anything else as an `f64`. Its default float parsing
/// is not correctly rounded: on long mantissas it drifts a few units in the last
/// place from the value Rust's own (correct) parser gives, so floats are compared
/// with a relative tolerance far below any misread digit or exponent.
fn same_number(text: &str, n: &serde_json::Number, at: &str) {
    let integer = !text.contains(['.', 'e', 'E']);
    if let Some(u) = n.as_u64() {
        assert_eq!(text.parse::<u64>().ok(), Some(u), "{at}: {text}");
    } else if let Some(i) = n.as_i64() {
        assert_eq!(text.parse::<i64>().ok(), Some(i), "{at}: {text}");
    } else {
        let theirs = n.as_f64().expect("a number is u64, i64 or f64");
        assert!(
            !integer
                || text == "-0"
                || (text.parse::<u64>().is_err() && text.parse::<i64>().is_err()),
            "{at}: {text} is an integer that fits, read as a float"
        );
        let ours: f64 = text.parse().expect("our numbers are Rust floats");
        let close = ours == theirs
            || (ours.signum() == theirs.signum() && ((ours - theirs) / ours).abs() < 1e-12);
        assert!(close, "{at}: {text} is {ours:e}, serde_json {theirs:e}");
    }
}
