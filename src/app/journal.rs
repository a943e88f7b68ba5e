//! `felhom-agent journal`: the journal, read-only (it works beside the running service);
//! and `--abandon`, the operator's way to end an op that stays in flight for good.

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

/// `felhom-agent journal --abandon OP`: ends op `op`, in flight with no task journaled,
/// as `abandoned`, so that its guest is no longer held. Only for an op the node will
/// never explain (its request never reached PVE, and the clock went back so its task
/// search cannot tell): the operator has looked at the guest's task log first. An op
/// with a task is refused: the node says how a task ended. It takes the state directory's
/// lock, so it is refused while the service runs.
pub fn abandon(config_path: &Path, op: u64) -> Result<ExitCode, AppError> {
    let config = Config::load(config_path)?;
    let fixed = &config.fixed;
    let journal = crate::journal::Journal::open(
        &fixed.state_dir,
        crate::journal::JournalOptions {
            compact_bytes: fixed.journal_compact_bytes,
            ..crate::journal::JournalOptions::default()
        },
    )?;
    let id = crate::journal::OpId(op);
    let Some(summary) = journal.in_flight().into_iter().find(|o| o.op == id) else {
        journal.close()?;
        return Err(AppError::Usage(format!(
            "op {op} is not in flight: `felhom-agent journal --in-flight` lists the ops that are"
        )));
    };
    if let Some(upid) = &summary.upid {
        journal.close()?;
        return Err(AppError::Usage(format!(
            "op {op} has a task, {upid}: the agent reads how it ended from the node, so it is not abandoned by hand"
        )));
    }
    journal.abandoned(id, "abandoned by the operator (journal --abandon)")?;
    journal.close()?;
    println!(
        "op {op} ({} of {}) abandoned: the agent may act on guest {} again from its next pass",
        summary.kind, summary.vmid, summary.vmid
    );
    Ok(ExitCode::Ok)
}
