//! `felhom-agent journal`: the journal, read-only (it works beside the running service).

use crate::agent::AppError;
use crate::config::Config;
use crate::exit::ExitCode;
use std::path::Path;

/// `felhom-agent journal`: read-only view of the journal.
pub fn journal(
    config_path: &Path,
    in_flight: bool,
    json: bool,
    tail: Option<usize>,
) -> Result<ExitCode, AppError> {
    let config = Config::load(config_path)?;
    let path = crate::journal::file_in(&config.fixed.state_dir);
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
                "{} seq {} op {} vmid {} {} {}{}{}{}",
                r.ts,
                r.seq,
                r.op,
                r.vmid,
                r.kind,
                r.state,
                r.key
                    .as_ref()
                    .map(|k| format!(" once={k:?}"))
                    .unwrap_or_default(),
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
