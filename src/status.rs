//! `<state_dir>/status.json`: what the running agent last did, for `felhom-agent status`
//! and for tools. One typed document, written and read through the same struct, with a
//! version so that a reader can refuse a document it does not know.

use crate::desired::SourceStatus;
use crate::engine::PassReport;
use serde::Serialize;
use serde_json::Value;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

/// The document's format version; bumped on any incompatible change.
pub const VERSION: u32 = 1;

/// The status document. Written from this struct; read back as JSON ([`read`]). Tests
/// (built with the `sim` feature) may decode it back into this struct; the node binary
/// carries no decoder for it.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "sim", derive(serde::Deserialize))]
pub struct Status {
    pub version: u32,
    pub node: String,
    pub pid: u32,
    /// When it was written, RFC 3339 UTC.
    pub written: String,
    /// The last pass, in one line (the same as the sd_notify STATUS line), with a
    /// note when the desired-state source is failing.
    pub summary: String,
    pub last_pass: PassReport,
    /// The last reload's error; the last good config and desired state stay in force.
    pub reload_error: Option<String>,
    /// How the desired-state source stands, when it is a URL: where the state in force
    /// came from, how old it is, and the last fetch's error.
    #[serde(default)]
    pub source: Option<SourceStatus>,
    /// The one-shot keys the journal knows: when each was carried out, by which task.
    #[serde(default)]
    pub keys: Vec<KeyReport>,
}

/// One guest's one-shot key as the journal last recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "sim", derive(serde::Deserialize))]
pub struct KeyReport {
    pub vmid: crate::pve::Vmid,
    pub key: String,
    pub action: String,
    /// The op's state: `started`, `task_running`, `succeeded`, `failed`, `abandoned`.
    pub state: String,
    /// Whether the key is used up (never carried out again).
    pub spent: bool,
    /// Its task's UPID, when one ran (none when nothing had to be sent).
    pub task: Option<String>,
    /// RFC 3339 UTC.
    pub started: String,
    pub finished: Option<String>,
}

impl Status {
    pub fn new(node: &str, report: &PassReport, reload_error: Option<&str>) -> Status {
        Status {
            version: VERSION,
            node: node.to_string(),
            pid: std::process::id(),
            written: crate::time::now_rfc3339(),
            summary: report.summary(),
            last_pass: report.clone(),
            reload_error: reload_error.map(str::to_string),
            source: None,
            keys: Vec::new(),
        }
    }

    /// With the one-shot keys the journal knows.
    pub fn with_keys(
        mut self,
        keys: &std::collections::BTreeMap<(crate::pve::Vmid, String), crate::journal::KeyUse>,
    ) -> Status {
        self.keys = keys
            .iter()
            .map(|((vmid, key), used)| KeyReport {
                vmid: *vmid,
                key: key.clone(),
                action: used.kind.to_string(),
                state: used.state.to_string(),
                spent: used.is_spent(),
                task: used.upid.as_ref().map(|u| u.to_string()),
                started: crate::time::rfc3339(used.started_at),
                finished: used.finished_at.map(crate::time::rfc3339),
            })
            .collect();
        self
    }

    /// With the desired-state source's status; a failing source is noted in `summary`.
    pub fn with_source(mut self, source: Option<SourceStatus>) -> Status {
        if let Some(note) = source.as_ref().and_then(SourceStatus::note) {
            self.summary = format!("{}; {note}", self.summary);
        }
        self.source = source;
        self
    }
}

/// The status file in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("status.json")
}

/// Writes the document atomically.
pub fn write(state_dir: &Path, status: &Status) -> std::io::Result<()> {
    let text = serde_json::to_string(status).expect("the status serializes") + "\n";
    crate::fsutil::write_atomic(&path(state_dir), &text)
}

/// Why the status file could not be read.
#[derive(Debug)]
pub enum StatusError {
    Read(PathBuf, std::io::Error),
    Parse(PathBuf, serde_json::Error),
    Version(PathBuf, u64),
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusError::Read(p, _) => {
                write!(f, "reading {} (has the agent run a pass yet?)", p.display())
            }
            StatusError::Parse(p, _) => write!(f, "parsing {}", p.display()),
            StatusError::Version(p, v) => write!(
                f,
                "{} has format version {v}, this agent knows {VERSION}: use the felhom-agent that wrote it",
                p.display()
            ),
        }
    }
}

impl std::error::Error for StatusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StatusError::Read(_, e) => Some(e),
            StatusError::Parse(_, e) => Some(e),
            StatusError::Version(..) => None,
        }
    }
}

/// Reads and checks the document: its text as written, and the document as JSON (read
/// as a tree, not back into [`Status`]: the node binary carries no decoder for it).
pub fn read(state_dir: &Path) -> Result<(String, Value), StatusError> {
    let path = path(state_dir);
    let text = std::fs::read_to_string(&path).map_err(|e| StatusError::Read(path.clone(), e))?;
    let doc: Value =
        serde_json::from_slice(text.as_bytes()).map_err(|e| StatusError::Parse(path.clone(), e))?;
    let version = doc["version"].as_u64().unwrap_or(0);
    if version != u64::from(VERSION) {
        return Err(StatusError::Version(path, version));
    }
    Ok((text, doc))
}

/// The document for a person.
pub fn render(s: &Value) -> String {
    let mut out = String::new();
    let pass = &s["last_pass"];
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let items = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let list = |v: &Value| items(v).iter().map(&text).collect::<Vec<_>>().join(" ");
    let _ = writeln!(out, "node:      {}", text(&s["node"]));
    let _ = writeln!(out, "written:   {}", text(&s["written"]));
    let _ = writeln!(out, "last pass: {}", text(&s["summary"]));
    let _ = writeln!(out, "in sync:   {}", list(&pass["in_sync"]));
    let _ = writeln!(out, "drifted:   {}", list(&pass["drifted"]));
    for a in items(&pass["actions"]) {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            text(&a["vmid"]),
            text(&a["kind"]),
            text(&a["message"])
        );
    }
    for k in items(&pass["skipped"]) {
        let _ = writeln!(
            out,
            "skipped:   {} {}",
            text(&k["vmid"]),
            text(&k["reason"])
        );
    }
    for p in items(&pass["pending"]) {
        let keys: Vec<String> = items(&p["keys"]).iter().map(&text).collect();
        let _ = writeln!(out, "pending:   {} {}", text(&p["vmid"]), keys.join(", "));
    }
    for k in items(&s["keys"]) {
        let when = match &k["finished"] {
            Value::String(t) => t.clone(),
            _ => text(&k["started"]),
        };
        let task = match &k["task"] {
            Value::String(t) => format!(" task {t}"),
            _ => " (nothing sent)".to_string(),
        };
        let spent = if k["spent"].as_bool().unwrap_or(true) {
            ""
        } else {
            " (not spent: runs again)"
        };
        let _ = writeln!(
            out,
            "once:      {} {:?} {}: {} {when}{task}{spent}",
            text(&k["vmid"]),
            text(&k["key"]),
            text(&k["action"]),
            text(&k["state"]),
        );
    }
    let src = &s["source"];
    if src.is_object() {
        let time = |t: &Value| match t {
            Value::String(t) => t.clone(),
            _ => "never".to_string(),
        };
        let _ = writeln!(out, "source:    {}", text(&src["url"]));
        let _ = writeln!(
            out,
            "  fetched {}, confirmed {}{}{}",
            time(&src["fetched"]),
            time(&src["confirmed"]),
            src["age_secs"].as_u64().map_or(String::new(), |a| format!(
                " ({} old)",
                crate::desired::short_duration(a)
            )),
            if src["from_state_dir"].as_bool() == Some(true) {
                ", kept from an earlier run"
            } else {
                ""
            }
        );
        if let Value::String(e) = &src["error"] {
            let _ = writeln!(
                out,
                "  failing since {} (the state above stays in force):\n  {e}",
                time(&src["error_at"])
            );
        }
    }
    if let Value::String(e) = &s["reload_error"] {
        let _ = writeln!(
            out,
            "reload error (the last good config and desired state stay in force):\n  {e}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_and_read_back_the_same_and_other_versions_refused() {
        let dir = std::env::temp_dir().join(format!("felhom-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let report = PassReport {
            pass: 3,
            in_sync: vec![crate::pve::Vmid::new(101).unwrap()],
            ..PassReport::default()
        };
        let s = Status::new("pve1", &report, Some("bad desired file"));
        write(&dir, &s).unwrap();
        let (_, back) = read(&dir).unwrap();
        assert_eq!(back["last_pass"]["pass"], 3);
        assert_eq!(back["reload_error"], "bad desired file");
        assert_eq!(back["source"], Value::Null);
        let text = render(&back);
        assert!(
            text.contains("in sync:   101") && text.contains("bad desired file"),
            "{text}"
        );
        // With a failing source: noted in the summary, its times as RFC 3339.
        let source = SourceStatus {
            url: "https://cp/d.json".into(),
            fetched: Some(1_700_000_000),
            confirmed: Some(1_700_000_000),
            error: Some("GET https://cp/d.json: answered 503".into()),
            error_at: Some(1_700_000_720),
            ..SourceStatus::default()
        }
        .aged(1_700_000_720);
        let s = Status::new("pve1", &report, None).with_source(Some(source.clone()));
        assert!(
            s.summary
                .ends_with("; desired source failing, state in force 12m old"),
            "{}",
            s.summary
        );
        write(&dir, &s).unwrap();
        let (text, back) = read(&dir).unwrap();
        assert_eq!(back["source"], serde_json::to_value(&source).unwrap());
        assert!(
            text.contains(r#""fetched":"2023-11-14T22:13:20Z""#),
            "{text}"
        );
        let shown = render(&back);
        assert!(
            shown.contains("source:    https://cp/d.json")
                && shown.contains("(12m old)")
                && shown.contains("answered 503"),
            "{shown}"
        );
        std::fs::write(path(&dir), r#"{"version": 2}"#).unwrap();
        let err = read(&dir).unwrap_err();
        assert!(err.to_string().contains("format version 2"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
