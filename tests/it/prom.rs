//! A strict parser for the Prometheus text format (0.0.4), for tests only: anything
//! the node exporter's textfile collector could refuse or misread is an error here.
//!
//! Checked: every line ends in `\n`; `# HELP` and `# TYPE` at most once per family and
//! before its samples; every sample belongs to a family declared by `# TYPE`; a
//! family's lines are one group; metric and label names, label syntax and escapes;
//! values are floats (`+Inf`, `-Inf`, `NaN` allowed); no duplicate series; and no
//! timestamps, which the textfile collector rejects.

use std::collections::{HashMap, HashSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of `label`, if the sample has it.
    pub fn label(&self, label: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct FamilyState {
    kind: Option<String>,
    help: bool,
    has_samples: bool,
    closed: bool,
}

/// Parses `text`, or says which line is wrong and why.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line does not end in a line feed".into());
    }
    let mut families: HashMap<String, FamilyState> = HashMap::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = |msg: String| format!("line {}: {msg}: {line:?}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        let family = if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start_matches([' ', '\t']);
            let (keyword, rest) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
            if keyword != "HELP" && keyword != "TYPE" {
                continue; // a plain comment
            }
            let rest = rest.trim_start_matches([' ', '\t']);
            let (name, arg) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
            if !metric_name(name) {
                return Err(at(format!("invalid metric name {name:?} in {keyword}")));
            }
            let state = families.entry(name.to_owned()).or_default();
            if state.has_samples {
                return Err(at(format!("{keyword} for {name} after its samples")));
            }
            if keyword == "HELP" {
                if state.help {
                    return Err(at(format!("second HELP for {name}")));
                }
                check_help_escapes(arg).map_err(at)?;
                state.help = true;
            } else {
                if state.kind.is_some() {
                    return Err(at(format!("second TYPE for {name}")));
                }
                let kind = arg.trim_end_matches([' ', '\t']);
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(at(format!("unknown type {kind:?}")));
                }
                state.kind = Some(kind.to_owned());
            }
            name.to_owned()
        } else {
            let sample = parse_sample(line).map_err(at)?;
            let family = family_of(&sample.name, &families)
                .ok_or_else(|| at(format!("{} has no TYPE line before it", sample.name)))?;
            let key = format!("{}{:?}", sample.name, sorted(&sample.labels));
            if !series.insert(key) {
                return Err(at("duplicate series".into()));
            }
            families.get_mut(&family).unwrap().has_samples = true;
            samples.push(sample);
            family
        };
        if current.as_deref() != Some(family.as_str()) {
            if let Some(prev) = current.take() {
                families.get_mut(&prev).unwrap().closed = true;
            }
            if families[&family].closed {
                return Err(at(format!("lines of {family} are not one group")));
            }
            current = Some(family);
        }
    }
    Ok(samples)
}

/// The declared family a sample name belongs to, allowing the suffixes of
/// histograms and summaries.
fn family_of(name: &str, families: &HashMap<String, FamilyState>) -> Option<String> {
    let kind_of = |n: &str| families.get(n).and_then(|f| f.kind.as_deref());
    if let Some(kind) = kind_of(name) {
        // A histogram's samples all carry a suffix.
        return (kind != "histogram").then(|| name.to_owned());
    }
    for (suffix, kinds) in [
        ("_bucket", &["histogram"][..]),
        ("_sum", &["histogram", "summary"][..]),
        ("_count", &["histogram", "summary"][..]),
    ] {
        if let Some(base) = name.strip_suffix(suffix) {
            if kind_of(base).is_some_and(|k| kinds.contains(&k)) {
                return Some(base.to_owned());
            }
        }
    }
    None
}

fn sorted(labels: &[(String, String)]) -> Vec<(String, String)> {
    let mut v = labels.to_vec();
    v.sort();
    v
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..end];
    if !metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let trimmed = rest.trim_start_matches([' ', '\t']);
    if trimmed.len() == rest.len() {
        return Err("no blank between series and value".into());
    }
    let mut fields = trimmed.split([' ', '\t']).filter(|f| !f.is_empty());
    let value = fields.next().ok_or("no value")?;
    if fields.next().is_some() {
        return Err("a timestamp or trailing text, which the textfile collector rejects".into());
    }
    let value = parse_value(value)?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `name="value",...}` and returns what follows the closing brace.
fn parse_labels<'a>(mut s: &'a str, out: &mut Vec<(String, String)>) -> Result<&'a str, String> {
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let label = &s[..eq];
        if !label_name(label) {
            return Err(format!("invalid label name {label:?}"));
        }
        if out.iter().any(|(l, _)| l == label) {
            return Err(format!("label {label} twice"));
        }
        let mut chars = s[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("value of {label} is not quoted"));
        }
        let mut value = String::new();
        let close = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of {label}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in {label}")),
                },
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        out.push((label.to_owned(), value));
        s = &s[eq + 1 + close + 1..];
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(format!("expected ',' or '}}' after {label}"));
        }
    }
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" | "Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        "NaN" => return Ok(f64::NAN),
        _ => {}
    }
    // Rust would also take "inf", "infinity" and "nan" in any case; Go spells them
    // differently, so only digits, sign, point and exponent get through.
    let plain = v
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'));
    match v.parse::<f64>() {
        Ok(n) if plain => Ok(n),
        _ => Err(format!("invalid value {v:?}")),
    }
}

fn check_help_escapes(help: &str) -> Result<(), String> {
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
            return Err("bad escape in HELP".into());
        }
    }
    Ok(())
}

fn metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
