//! What the agent shows people and leaves on disk for them: the status file and the
//! `status` and `journal` commands.

use super::AppError;
use crate::config::Config;
use crate::engine::PassReport;
use crate::exit::ExitCode;
use std::path::{Path, PathBuf};

/// The status file: written after every pass, read by `felhom-agent status`.
pub fn status_path(config: &Config) -> PathBuf {
    config.state_dir.join("status.json")
}

/// Writes `<state_dir>/status.json` atomically.
pub fn write_status(
    config: &Config,
    report: &PassReport,
    reload_error: Option<&str>,
) -> Result<(), AppError> {
    let status = serde_json::json!({
        "node": config.node,
        "pid": std::process::id(),
        "written": crate::time::now_rfc3339(),
        "last_pass": report,
        "summary": report.summary(),
        "reload_error": reload_error,
    });
    let path = status_path(config);
    crate::fsutil::write_atomic(&path, &(status.to_string() + "\n"))
        .map_err(|e| AppError::Io(format!("writing {}", path.display()), e))
}

/// `felhom-agent status`: the last pass, for a person.
pub fn status(config_path: &Path, json: bool) -> Result<ExitCode, AppError> {
    let config = Config::load(config_path)?;
    let path = status_path(&config);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        AppError::Io(
            format!("reading {} (has the agent run a pass yet?)", path.display()),
            e,
        )
    })?;
    if json {
        print!("{text}");
        return Ok(ExitCode::Ok);
    }
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| AppError::Io(format!("parsing {}", path.display()), e.into()))?;
    print!("{}", render_status(&v));
    Ok(ExitCode::Ok)
}

/// Renders the status file for a person.
pub fn render_status(v: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let _ = writeln!(out, "node:      {}", s(&v["node"]));
    let _ = writeln!(out, "written:   {}", s(&v["written"]));
    let _ = writeln!(out, "last pass: {}", s(&v["summary"]));
    let pass = &v["last_pass"];
    let list = |key: &str| -> Vec<String> {
        pass[key]
            .as_array()
            .map(|a| a.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default()
    };
    let _ = writeln!(out, "in sync:   {}", list("in_sync").join(" "));
    let _ = writeln!(out, "drifted:   {}", list("drifted").join(" "));
    if let Some(actions) = pass["actions"].as_array() {
        for a in actions {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                a["vmid"],
                s(&a["kind"]),
                s(&a["message"])
            );
        }
    }
    if let Some(skipped) = pass["skipped"].as_array() {
        for k in skipped {
            let _ = writeln!(out, "skipped:   {} {}", k["vmid"], s(&k["reason"]));
        }
    }
    if let Some(pending) = pass["pending"].as_array() {
        for p in pending {
            let _ = writeln!(out, "pending:   {} {}", p["vmid"], p["keys"]);
        }
    }
    if let Some(e) = v["reload_error"].as_str() {
        let _ = writeln!(
            out,
            "reload error (the last good config and desired state stay in force):\n  {e}"
        );
    }
    out
}

/// `felhom-agent journal`: read-only view of the journal.
pub fn journal(
    config_path: &Path,
    in_flight: bool,
    json: bool,
    tail: Option<usize>,
) -> Result<ExitCode, AppError> {
    let config = Config::load(config_path)?;
    let path = config.state_dir.join("journal");
    let records = if path.exists() {
        crate::journal::read_records(&path)?
    } else {
        Vec::new()
    };
    if in_flight {
        let ops = crate::journal::in_flight_of(&records);
        if json {
            println!("{}", serde_json::to_string(&ops).expect("ops serialize"));
        } else {
            for op in &ops {
                println!(
                    "op {} vmid {} {} {}{}",
                    op.op,
                    op.vmid,
                    op.kind,
                    op.state,
                    op.upid
                        .as_ref()
                        .map(|u| format!(" {u}"))
                        .unwrap_or_default()
                );
            }
            if ops.is_empty() {
                println!("nothing in flight");
            }
        }
        return Ok(ExitCode::Ok);
    }
    let skip = tail.map_or(0, |n| records.len().saturating_sub(n));
    let shown = &records[skip..];
    if json {
        println!(
            "{}",
            serde_json::to_string(shown).expect("records serialize")
        );
    } else {
        for r in shown {
            println!(
                "{} seq {} op {} vmid {} {} {}{}{}",
                r.ts,
                r.seq,
                r.op,
                r.vmid,
                r.kind,
                r.state,
                r.upid.as_ref().map(|u| format!(" {u}")).unwrap_or_default(),
                r.error
                    .as_ref()
                    .map(|e| format!(" error={e:?}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::Ok)
}
