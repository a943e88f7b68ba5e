//! Prometheus text exposition format (version 0.0.4), built by hand for the node
//! exporter's textfile collector.
//!
//! [`MetricsText`] collects samples into families: the `# HELP` and `# TYPE` lines
//! come once per family, a family's samples stay together, and families appear in the
//! order they were first used. Names and label names are validated and label values
//! escaped, so whatever the callers pass, the output parses. No timestamps are
//! written: the textfile collector refuses them.

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::io;
use std::path::Path;

/// The kinds of family this builder writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets to zero when the agent restarts).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A sample that cannot be written: a bug in the caller, never in the data.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsError {
    /// The metric name does not match `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    InvalidName(String),
    /// A label name does not match `[a-zA-Z_][a-zA-Z0-9_]*`, or starts with the
    /// reserved `__`.
    InvalidLabelName { metric: String, label: String },
    /// The same label name twice in one sample.
    DuplicateLabel { metric: String, label: String },
    /// The name was first used as one kind and now as another.
    KindConflict {
        metric: String,
        first: Kind,
        now: Kind,
    },
    /// The same name and label set twice.
    DuplicateSeries { metric: String, labels: String },
    /// A counter that is negative or NaN.
    InvalidCounterValue { metric: String, value: f64 },
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsError::InvalidName(name) => write!(f, "invalid metric name {name:?}"),
            MetricsError::InvalidLabelName { metric, label } => {
                write!(f, "invalid label name {label:?} on metric {metric}")
            }
            MetricsError::DuplicateLabel { metric, label } => {
                write!(f, "label {label} given twice on metric {metric}")
            }
            MetricsError::KindConflict { metric, first, now } => write!(
                f,
                "metric {metric} is a {} and cannot also be a {}",
                first.as_str(),
                now.as_str()
            ),
            MetricsError::DuplicateSeries { metric, labels } => {
                write!(f, "metric {metric}{labels} given twice")
            }
            MetricsError::InvalidCounterValue { metric, value } => {
                write!(f, "counter {metric} has invalid value {value}")
            }
        }
    }
}

impl std::error::Error for MetricsError {}

/// One metric family: its metadata and its samples, already rendered.
struct Family {
    name: String,
    help: String,
    kind: Kind,
    /// The rendered `{...}` label blocks seen so far, to refuse duplicates.
    series: HashSet<String>,
    lines: String,
}

/// Builds one exposition: add samples, then [`MetricsText::render`].
#[derive(Default)]
pub struct MetricsText {
    // A vector keeps insertion order; the agent writes a few dozen families at most,
    // so finding one by a linear scan costs nothing worth an index.
    families: Vec<Family>,
}

impl MetricsText {
    /// An empty exposition.
    pub fn new() -> MetricsText {
        MetricsText::default()
    }

    /// Adds a counter sample. By convention counter names end in `_total`. `help` is
    /// taken from the first sample of the family; an empty one writes no HELP line.
    pub fn counter(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), MetricsError> {
        if value.is_nan() || value < 0.0 {
            return Err(MetricsError::InvalidCounterValue {
                metric: name.to_owned(),
                value,
            });
        }
        self.sample(Kind::Counter, name, help, labels, value)
    }

    /// Adds a gauge sample; see [`MetricsText::counter`] for `help`.
    pub fn gauge(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), MetricsError> {
        self.sample(Kind::Gauge, name, help, labels, value)
    }

    fn sample(
        &mut self,
        kind: Kind,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), MetricsError> {
        if !valid_metric_name(name) {
            return Err(MetricsError::InvalidName(name.to_owned()));
        }
        let block = label_block(name, labels)?;
        let index = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name: name.to_owned(),
                    help: help.to_owned(),
                    kind,
                    series: HashSet::new(),
                    lines: String::new(),
                });
                self.families.len() - 1
            }
        };
        let family = &mut self.families[index];
        if family.kind != kind {
            return Err(MetricsError::KindConflict {
                metric: name.to_owned(),
                first: family.kind,
                now: kind,
            });
        }
        if family.series.contains(&block) {
            return Err(MetricsError::DuplicateSeries {
                metric: name.to_owned(),
                labels: block,
            });
        }
        let _ = writeln!(family.lines, "{name}{block} {}", format_value(value));
        family.series.insert(block);
        Ok(())
    }

    /// The exposition text; empty when nothing was added.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for family in &self.families {
            if !family.help.is_empty() {
                let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
            }
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
            out.push_str(&family.lines);
        }
        out
    }

    /// Renders and replaces the file at `path` atomically (see
    /// [`crate::fsutil::write_atomic`]), so the collector never reads half a file.
    pub fn write_to(&self, path: &Path) -> io::Result<()> {
        crate::fsutil::write_atomic(path, self.render())
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, and not starting with the reserved `__`.
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
}

/// `{a="x",b="y"}` in the order given, or nothing when there are no labels.
fn label_block(metric: &str, labels: &[(&str, &str)]) -> Result<String, MetricsError> {
    if labels.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::from("{");
    for (i, (label, value)) in labels.iter().enumerate() {
        if !valid_label_name(label) {
            return Err(MetricsError::InvalidLabelName {
                metric: metric.to_owned(),
                label: (*label).to_owned(),
            });
        }
        if labels[..i].iter().any(|(l, _)| l == label) {
            return Err(MetricsError::DuplicateLabel {
                metric: metric.to_owned(),
                label: (*label).to_owned(),
            });
        }
        if i > 0 {
            out.push(',');
        }
        out.push_str(label);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    Ok(out)
}

/// HELP text escapes only backslash and newline.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go's ParseFloat reads Rust's shortest round-trip decimal form, which never uses an
/// exponent; only the special values need Prometheus' spelling.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        v.to_string()
    }
}
