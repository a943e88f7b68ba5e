//! The benchmark's result: one [`Row`] per measured figure, with its floor or target,
//! rendered as one table (Markdown, so the README can carry it as printed) and as JSON.
//!
//! A row says whether its target is met; nothing here fails the run because of a time.

use std::fmt::Write as _;

/// What a figure is measured in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Secs,
    Millis,
    MiB,
    Count,
    Times,
    PerSec,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Secs => "s",
            Unit::Millis => "ms",
            Unit::MiB => "MiB",
            Unit::Count => "",
            Unit::Times => "x",
            Unit::PerSec => "/s",
        }
    }

    /// A value in this unit, for people.
    pub fn show(self, v: f64) -> String {
        let n = match self {
            Unit::Secs | Unit::MiB => format!("{v:.2}"),
            Unit::Millis if v < 100.0 => format!("{v:.1}"),
            Unit::Times => format!("{v:.1}"),
            Unit::Count if v.fract() != 0.0 => format!("{v:.1}"),
            _ => format!("{v:.0}"),
        };
        match self {
            Unit::Count => n,
            Unit::Times => format!("{n}x"),
            Unit::PerSec => format!("{n}/s"),
            u => format!("{n} {}", u.name()),
        }
    }
}

/// What a figure must be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Reported only.
    None,
    /// At most this many times the floor.
    FloorRatio(f64),
    AtMost(f64),
    Below(f64),
    AtLeast(f64),
    Exactly(f64),
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// The scenario's number in the list (`"1"` ... `"8"`), or `"-"`.
    pub scenario: &'static str,
    /// The row's label, the scenario's number and a letter (`1a`); set by [`label`].
    pub id: String,
    pub name: String,
    /// How it was measured, in more words than the table has room for: printed as a
    /// note under the table.
    pub detail: Option<String>,
    pub unit: Unit,
    /// The physical floor, in `unit`, for [`Target::FloorRatio`].
    pub floor: Option<f64>,
    pub target: Target,
    pub value: f64,
}

impl Row {
    pub fn new(scenario: &'static str, name: impl Into<String>, unit: Unit, value: f64) -> Row {
        Row {
            scenario,
            id: scenario.to_string(),
            name: name.into(),
            detail: None,
            unit,
            floor: None,
            target: Target::None,
            value,
        }
    }

    pub fn detail(mut self, d: impl Into<String>) -> Row {
        self.detail = Some(d.into());
        self
    }

    pub fn target(mut self, t: Target) -> Row {
        self.target = t;
        self
    }

    pub fn floor(mut self, floor: f64, ratio: f64) -> Row {
        self.floor = Some(floor);
        self.target = Target::FloorRatio(ratio);
        self
    }

    /// Measured over the floor, or over the target's bound.
    pub fn ratio(&self) -> Option<f64> {
        let bound = match self.target {
            Target::None => return None,
            Target::FloorRatio(_) => self.floor?,
            Target::AtMost(b) | Target::Below(b) | Target::AtLeast(b) | Target::Exactly(b) => b,
        };
        (bound > 0.0).then(|| self.value / bound)
    }

    /// Whether the target is met; `None` without one.
    pub fn met(&self) -> Option<bool> {
        let v = self.value;
        Some(match self.target {
            Target::None => return None,
            Target::FloorRatio(r) => self.ratio()? <= r,
            Target::AtMost(b) => v <= b,
            Target::Below(b) => v < b,
            Target::AtLeast(b) => v >= b,
            Target::Exactly(b) => v == b,
        })
    }

    fn bound_text(&self) -> String {
        let u = self.unit;
        match self.target {
            Target::None => String::new(),
            Target::FloorRatio(r) => match self.floor {
                Some(f) => format!("floor {}, <= {r:.2}x", u.show(f)),
                None => format!("<= {r:.2}x floor"),
            },
            Target::AtMost(b) => format!("<= {}", u.show(b)),
            Target::Below(b) => format!("< {}", u.show(b)),
            Target::AtLeast(b) => format!(">= {}", u.show(b)),
            Target::Exactly(b) => format!("= {}", u.show(b)),
        }
    }

    fn ratio_text(&self) -> String {
        match (self.ratio(), self.target) {
            (None, _) => String::new(),
            (Some(r), Target::FloorRatio(_)) => format!("{r:.2}x floor"),
            (Some(r), _) => format!("{r:.2}x target"),
        }
    }
}

/// The verdict column: `met`, `NOT MET`, or empty; in a smoke run the sizes are not
/// the targets' and nothing is judged.
fn verdict(row: &Row, judged: bool) -> &'static str {
    match row.met() {
        None => "",
        Some(_) if !judged => "(smoke)",
        Some(true) => "met",
        Some(false) => "NOT MET",
    }
}

/// Labels the rows of each scenario `1a`, `1b`, ... (a scenario with one row keeps its
/// bare number).
pub fn label(rows: &mut [Row]) {
    for i in 0..rows.len() {
        let scenario = rows[i].scenario;
        let same: Vec<usize> = (0..rows.len())
            .filter(|&j| rows[j].scenario == scenario)
            .collect();
        if same.len() > 1 && scenario != "-" {
            let k = same.iter().position(|&j| j == i).unwrap();
            rows[i].id = format!("{scenario}{}", (b'a' + k as u8) as char);
        }
    }
}

/// The notes under the table: each row's detail, by label.
pub fn notes(rows: &[Row]) -> String {
    rows.iter()
        .filter_map(|r| Some(format!("- {}: {}\n", r.id, r.detail.as_ref()?)))
        .collect()
}

/// The rows as a Markdown table whose columns line up in a terminal too.
pub fn render(rows: &[Row], judged: bool) -> String {
    let head = [
        "#",
        "scenario",
        "floor / target",
        "measured",
        "ratio",
        "result",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.name.replace('|', "/"),
                r.bound_text(),
                r.unit.show(r.value),
                r.ratio_text(),
                verdict(r, judged).to_string(),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut String, row: &[String]| {
        out.push('|');
        for (c, w) in row.iter().zip(width) {
            let pad = w - c.chars().count();
            let _ = write!(out, " {c}{} |", " ".repeat(pad));
        }
        out.push('\n');
    };
    let mut out = String::new();
    line(&mut out, &head.map(String::from));
    let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut out, &rule);
    for row in &cells {
        line(&mut out, row);
    }
    out
}

/// One row as JSON.
pub fn json(row: &Row, judged: bool) -> serde_json::Value {
    let (kind, bound) = match row.target {
        Target::None => ("none", None),
        Target::FloorRatio(r) => ("floor_ratio_at_most", Some(r)),
        Target::AtMost(b) => ("at_most", Some(b)),
        Target::Below(b) => ("below", Some(b)),
        Target::AtLeast(b) => ("at_least", Some(b)),
        Target::Exactly(b) => ("exactly", Some(b)),
    };
    serde_json::json!({
        "scenario": row.scenario,
        "id": row.id,
        "name": row.name,
        "detail": row.detail,
        "unit": row.unit.name(),
        "floor": row.floor,
        "target": {"kind": kind, "bound": bound, "text": row.bound_text()},
        "measured": row.value,
        "ratio": row.ratio(),
        "met": if judged { row.met() } else { None },
    })
}

/// Checks the verdict logic on known rows; `main` calls it first, so a broken table
/// fails the smoke run rather than mislabel a figure.
pub fn self_check() {
    let floor = Row::new("1", "t", Unit::Secs, 11.0).floor(10.0, 1.10);
    assert_eq!(floor.met(), Some(true));
    assert_eq!(
        Row::new("1", "t", Unit::Secs, 11.2).floor(10.0, 1.10).met(),
        Some(false)
    );
    assert_eq!(
        Row::new("3", "t", Unit::Count, 2.0)
            .target(Target::Exactly(2.0))
            .met(),
        Some(true)
    );
    assert_eq!(
        Row::new("3", "t", Unit::Secs, 0.5)
            .target(Target::Below(0.5))
            .met(),
        Some(false)
    );
    assert_eq!(
        Row::new("6", "t", Unit::Times, 9.9)
            .target(Target::AtLeast(10.0))
            .met(),
        Some(false)
    );
    assert_eq!(Row::new("-", "t", Unit::Millis, 1.0).met(), None);
    let mut rows = [floor.detail("d"), Row::new("1", "u", Unit::Count, 1.0)];
    label(&mut rows);
    let table = render(&rows, true);
    assert!(table.contains("| 1a ") && table.contains("1.10x floor") && table.contains("met"));
    assert_eq!(notes(&rows), "- 1a: d\n");
}
