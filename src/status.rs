//! `<state_dir>/status.json`: what the running agent last did, for `felhom-agent status`
//! and for tools. One typed document, written and read through the same struct, with a
//! version so that a reader can refuse a document it does not know.

use crate::engine::PassReport;
use serde::{Deserialize, Serialize};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

/// The document's format version; bumped on any incompatible change.
pub const VERSION: u32 = 1;

/// The status document.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub version: u32,
    pub node: String,
    pub pid: u32,
    /// When it was written, RFC 3339 UTC.
    pub written: String,
    /// The last pass, in one line (the same as the sd_notify STATUS line).
    pub summary: String,
    pub last_pass: PassReport,
    /// The last reload's error; the last good config and desired state stay in force.
    pub reload_error: Option<String>,
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
        }
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
    Version(PathBuf, u32),
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

/// Reads and checks the document: its text as written, and the document.
pub fn read(state_dir: &Path) -> Result<(String, Status), StatusError> {
    let path = path(state_dir);
    let text = std::fs::read_to_string(&path).map_err(|e| StatusError::Read(path.clone(), e))?;
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let v: Versioned =
        serde_json::from_str(&text).map_err(|e| StatusError::Parse(path.clone(), e))?;
    if v.version != VERSION {
        return Err(StatusError::Version(path, v.version));
    }
    let status = serde_json::from_str(&text).map_err(|e| StatusError::Parse(path, e))?;
    Ok((text, status))
}

/// The document for a person.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let pass = &s.last_pass;
    let list = |v: &[crate::pve::Vmid]| {
        v.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = writeln!(out, "node:      {}", s.node);
    let _ = writeln!(out, "written:   {}", s.written);
    let _ = writeln!(out, "last pass: {}", s.summary);
    let _ = writeln!(out, "in sync:   {}", list(&pass.in_sync));
    let _ = writeln!(out, "drifted:   {}", list(&pass.drifted));
    for a in &pass.actions {
        let _ = writeln!(out, "  {} {}: {}", a.vmid, a.kind, a.message);
    }
    for k in &pass.skipped {
        let _ = writeln!(out, "skipped:   {} {}", k.vmid, k.reason);
    }
    for p in &pass.pending {
        let _ = writeln!(out, "pending:   {} {}", p.vmid, p.keys.join(", "));
    }
    if let Some(e) = &s.reload_error {
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
        assert_eq!(back.last_pass.pass, 3);
        assert_eq!(back.reload_error.as_deref(), Some("bad desired file"));
        let text = render(&back);
        assert!(
            text.contains("in sync:   101") && text.contains("bad desired file"),
            "{text}"
        );
        std::fs::write(path(&dir), r#"{"version": 2}"#).unwrap();
        let err = read(&dir).unwrap_err();
        assert!(err.to_string().contains("format version 2"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
