//! Problems found in an operator's file, and the checks that find them.
//!
//! Shared by the config and desired-state readers so that both speak the same way:
//! every problem has a position, says what was expected and what was found, and
//! most say what to do about it.

use super::{self as json, Member, Node, Pos, Value};
use std::fmt;
use std::path::Path;

/// At most this many problems are kept for a file; the rest are only counted.
pub const MAX_PROBLEMS: usize = 20;

/// One problem in a file. Displays as `4:18: guest 101: memory: <message>`; the
/// error that carries it adds the file name in front.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub pos: Pos,
    /// The guest the problem belongs to (`guest 101`, or `guests[2]` when its vmid
    /// is unusable); `None` at the top level.
    pub guest: Option<String>,
    /// The key whose value is wrong (`memory`, `tags[1]`); `None` when the problem
    /// is about the object itself, such as an unknown key.
    pub key: Option<String>,
    /// What was expected, what was found, and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.pos)?;
        if let Some(guest) = &self.guest {
            write!(f, "{guest}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Writes `problems` one per line as `<file>:<problem>`, then a line counting the
/// ones left out. No trailing newline.
pub(crate) fn write_problems(
    f: &mut fmt::Formatter<'_>,
    path: &Path,
    problems: &[Problem],
    omitted: usize,
) -> fmt::Result {
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            f.write_str("\n")?;
        }
        write!(f, "{}:{p}", path.display())?;
    }
    if omitted > 0 {
        write!(
            f,
            "\n{}: {omitted} more problem{} not shown: fix these and check again",
            path.display(),
            if omitted == 1 { "" } else { "s" }
        )?;
    }
    Ok(())
}

/// Collects problems while a file is checked.
#[derive(Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    pub fn push(
        &mut self,
        pos: Pos,
        guest: Option<&str>,
        key: Option<&str>,
        message: impl Into<String>,
    ) {
        self.list.push(Problem {
            pos,
            guest: guest.map(str::to_string),
            key: key.map(str::to_string),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The problems in file order, cut at [`MAX_PROBLEMS`], and how many were cut.
    pub fn finish(mut self) -> (Vec<Problem>, usize) {
        // Stable, so that problems at one position keep the order they were found in.
        self.list.sort_by_key(|p| p.pos);
        let omitted = self.list.len().saturating_sub(MAX_PROBLEMS);
        self.list.truncate(MAX_PROBLEMS);
        (self.list, omitted)
    }
}

/// The members of `obj` whose keys are in `allowed`, in file order. Unknown keys and
/// second occurrences of a key become problems and are left out.
pub(crate) fn known_members<'a>(
    members: &'a [Member],
    allowed: &[&str],
    guest: Option<&str>,
    problems: &mut Problems,
) -> Vec<&'a Member> {
    let mut out: Vec<&Member> = Vec::new();
    for m in members {
        if let Some(first) = out.iter().find(|k| k.key == m.key) {
            problems.push(
                m.key_pos,
                guest,
                None,
                format!(
                    "duplicate key {} (first at line {}, column {}): keep only one",
                    json::quote(&m.key),
                    first.key_pos.line,
                    first.key_pos.col
                ),
            );
        } else if allowed.contains(&m.key.as_str()) {
            out.push(m);
        } else {
            problems.push(m.key_pos, guest, None, unknown_key(&m.key, allowed));
        }
    }
    out
}

fn unknown_key(key: &str, allowed: &[&str]) -> String {
    // A near miss by spelling, or a key missing its suffix (`interval` for
    // `interval_secs`).
    let lower = key.to_ascii_lowercase();
    let near = allowed
        .iter()
        .map(|a| (distance(&lower, a), *a))
        .filter(|(d, _)| *d <= 2)
        .min()
        .or_else(|| {
            allowed
                .iter()
                .find(|a| lower.len() >= 4 && a.starts_with(&format!("{lower}_")))
                .map(|a| (0, *a))
        });
    match near {
        Some((_, a)) => format!("unknown key {}: did you mean \"{a}\"?", json::quote(key)),
        None => format!(
            "unknown key {}: the keys allowed here are {}",
            json::quote(key),
            allowed.join(", ")
        ),
    }
}

/// Levenshtein distance, for "did you mean" hints on short keys.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// A non-negative integer in `lo..=hi`. `unit` is appended to the range in the
/// message (`" MiB"`); `hi == u64::MAX` means no upper bound.
pub(crate) fn integer(node: &Node, lo: u64, hi: u64, unit: &str) -> Result<u64, String> {
    if let Some(n) = node.as_u64().filter(|n| (lo..=hi).contains(n)) {
        return Ok(n);
    }
    let expected = if hi == u64::MAX {
        format!("expected an integer of at least {lo}{unit}")
    } else {
        format!("expected an integer from {lo} to {hi}{unit}")
    };
    let hint = match &node.value {
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            ": write the number without quotes"
        }
        _ => "",
    };
    Err(format!("{expected}, found {}{hint}", node.describe()))
}

/// A string value.
pub(crate) fn string(node: &Node) -> Result<&str, String> {
    match &node.value {
        Value::String(s) => Ok(s),
        _ => Err(format!("expected a string, found {}", node.describe())),
    }
}

/// A JSON boolean; `1`, `"yes"` and the like are refused with a hint.
pub(crate) fn boolean(node: &Node) -> Result<bool, String> {
    match &node.value {
        Value::Bool(b) => Ok(*b),
        _ => Err(format!("expected true or false, found {}", node.describe())),
    }
}

/// One of `choices` (string values), e.g. `"running"` or `"stopped"`.
pub(crate) fn choice<'a>(node: &Node, choices: &[&'a str]) -> Result<&'a str, String> {
    if let Value::String(s) = &node.value {
        if let Some(c) = choices.iter().find(|c| **c == s.as_str()) {
            return Ok(c);
        }
    }
    let quoted: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
    let expected = match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(format!("expected {expected}, found {}", node.describe()))
}

/// Decodes a file's bytes as UTF-8, or says where the first bad byte is.
pub(crate) fn decode(bytes: Vec<u8>) -> Result<String, Problem> {
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let good = std::str::from_utf8(good).expect("checked prefix");
        // As in the parser: a byte order mark takes no column, an editor hides it.
        let good = good.strip_prefix('\u{feff}').unwrap_or(good);
        let line = good.matches('\n').count() + 1;
        let col = good.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        Problem {
            pos: Pos {
                line: line as u32,
                col: col as u32,
            },
            guest: None,
            key: None,
            message: "the file is not valid UTF-8: save it as UTF-8 text".to_string(),
        }
    })
}
