//! `contrib/`: the Grafana dashboard is valid JSON and the dashboard and the alerting
//! rules query only metrics and label values the agent writes.

use felhom_agent::plan::{Hold, SkipReason};
use std::collections::BTreeSet;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every metric name src/telemetry.rs writes: its `"felhom_..."` literals.
fn metric_names() -> BTreeSet<String> {
    let source = read("src/telemetry.rs");
    let names: BTreeSet<String> = source
        .split("\"felhom_")
        .skip(1)
        .map(|rest| format!("felhom_{}", rest.split('"').next().unwrap()))
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    names
}

/// Label values the agent writes, by label.
fn label_values(label: &str) -> BTreeSet<String> {
    let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
    match label {
        "class" => v(&["in_sync", "drifted", "pending", "blocked", "skipped"]),
        "result" => v(&[
            "applied",
            "converged",
            "blocked",
            "terminal",
            "failed",
            "cancelled",
        ]),
        "kind" => felhom_agent::action::ActionKind::ALL
            .iter()
            .map(|k| k.as_str().to_string())
            .collect(),
        "reason" => [
            SkipReason::Locked(String::new()),
            SkipReason::Template,
            SkipReason::HaManaged(String::new()),
            SkipReason::Elsewhere(String::new()),
            SkipReason::Missing,
            SkipReason::SpecUnknown(String::new()),
            SkipReason::Held(Hold::Busy),
            SkipReason::Held(Hold::Backoff {
                until: String::new(),
                error: String::new(),
            }),
            SkipReason::HeldByTag(String::new()),
            SkipReason::IdentityMismatch {
                desired: String::new(),
                found: None,
            },
            SkipReason::PowerWaits(String::new()),
            SkipReason::VmState {
                state: String::new(),
                why: String::new(),
            },
            SkipReason::Unfit(String::new()),
            SkipReason::Held(Hold::Terminal {
                error: String::new(),
            }),
            SkipReason::Held(Hold::InFlight {
                what: String::new(),
            }),
        ]
        .iter()
        .map(|r| r.class().to_string())
        .collect(),
        other => panic!("label {other} is not one the agent writes"),
    }
}

/// Checks one PromQL expression: every `felhom_` name is written by the agent, and
/// every matched label value of ours is one it writes (each alternative of a `=~`).
fn check_expr(expr: &str, names: &BTreeSet<String>) {
    for (i, _) in expr.match_indices("felhom_") {
        let name: String = expr[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            names.contains(&name),
            "{name} is not written by the agent: {expr}"
        );
    }
    for label in ["class", "result", "kind", "reason"] {
        for op in ["=\"", "=~\"", "!=\""] {
            for (i, _) in expr.match_indices(&format!("{label}{op}")) {
                let before = expr[..i].chars().last();
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                let value = expr[i + label.len() + op.len()..]
                    .split('"')
                    .next()
                    .unwrap();
                let known = label_values(label);
                for alt in value.split('|') {
                    assert!(
                        known.contains(alt),
                        "{label}={alt:?} is never written: {expr}"
                    );
                }
            }
        }
    }
}

fn exprs_of(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs_of(x, out),
                }
            }
        }
        serde_json::Value::Array(xs) => xs.iter().for_each(|x| exprs_of(x, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_is_valid_and_shows_real_metrics() {
    let dash: serde_json::Value =
        serde_json::from_str(&read("contrib/grafana-dashboard.json")).expect("valid JSON");
    let names = metric_names();
    let mut exprs = Vec::new();
    exprs_of(&dash, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    for e in &exprs {
        check_expr(e, &names);
    }
    let titles: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Converged",
        "Actions by result",
        "Held and backing-off guests",
        "Pass duration",
    ] {
        assert!(titles.contains(&wanted), "{wanted} missing from {titles:?}");
    }
    // Every metric the agent writes is on the dashboard.
    let shown = exprs.join(" ");
    for name in &names {
        assert!(
            shown.contains(name.as_str()),
            "{name} is not on the dashboard"
        );
    }
}

/// One alerting rule as the file writes it.
#[derive(Debug, Default)]
struct Rule {
    alert: String,
    expr: String,
    for_: String,
    severity: String,
    summary: String,
}

/// Reads the rules file's `- alert:` entries: the subset of YAML it is written in
/// (two-space indentation, `|` blocks for long expressions).
fn rules(text: &str) -> Vec<Rule> {
    assert!(!text.contains('\t'), "YAML takes no tabs");
    let mut rules: Vec<Rule> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        assert_eq!(indent % 2, 0, "odd indentation: {line}");
        if let Some(name) = trimmed.strip_prefix("- alert: ") {
            rules.push(Rule {
                alert: name.to_string(),
                ..Rule::default()
            });
            continue;
        }
        let Some(rule) = rules.last_mut() else {
            continue;
        };
        let value = |key: &str| trimmed.strip_prefix(key).map(|v| v.trim().to_string());
        if let Some(v) = value("expr:") {
            if v == "|" {
                let mut block = Vec::new();
                while let Some(next) = lines.peek() {
                    if next.len() - next.trim_start().len() <= indent && !next.trim().is_empty() {
                        break;
                    }
                    block.push(lines.next().unwrap().trim());
                }
                rule.expr = block.join(" ").trim().to_string();
            } else {
                rule.expr = v;
            }
        } else if let Some(v) = value("for:") {
            rule.for_ = v;
        } else if let Some(v) = value("severity:") {
            rule.severity = v;
        } else if let Some(v) = value("summary:") {
            rule.summary = v;
        }
    }
    rules
}

#[test]
fn the_alerting_rules_watch_real_metrics() {
    let text = read("contrib/prometheus-alerts.yml");
    assert!(text.contains("\ngroups:\n  - name: felhom-agent\n    rules:\n"));
    let names = metric_names();
    let rules = rules(&text);
    for r in &rules {
        assert!(!r.expr.is_empty(), "{} has no expr", r.alert);
        check_expr(&r.expr, &names);
        assert!(
            ["warning", "critical"].contains(&r.severity.as_str()),
            "{r:?}"
        );
        assert!(
            r.summary.starts_with('"') && r.summary.ends_with('"'),
            "{r:?}"
        );
        assert!(!r.for_.is_empty(), "{r:?}");
    }
    let by_name = |n: &str| {
        rules
            .iter()
            .find(|r| r.alert == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    let blocked = by_name("FelhomGuestBlocked");
    assert_eq!(blocked.for_, "1h");
    assert!(blocked.expr.contains("felhom_guests{class=\"blocked\"}"));
    assert!(by_name("FelhomOpInFlightTooLong")
        .expr
        .contains("felhom_in_flight_ops"));
    assert!(by_name("FelhomAgentNotPassing")
        .expr
        .contains("felhom_last_pass_timestamp_seconds"));
}
