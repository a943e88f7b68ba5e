//! Compaction: once the file passes `compact_bytes`, the writer thread rewrites it
//! with the records of the ops worth keeping (see `Index::keep_set`), copied
//! verbatim so that their CRCs and sequence numbers stay as they were. Open does
//! the same when it finds the file past its threshold (see `open`). The new file
//! replaces the old one as `replace` says, which is what makes it crash-safe.

use super::failpoint::Failpoint;
use super::replace::{keep_lines, replace, TMP_NAME};
use super::scan::scan;
use super::writer::{next_compaction, Writer};
use crate::log;
use std::fs;
use std::sync::atomic::Ordering;

/// How a compaction that did not happen ended.
enum Failed {
    /// The old journal is intact and still open: carry on appending to it.
    Skipped(String),
    /// The journal can no longer be trusted (fsync failed, or the file changed
    /// under us, or the new file could not be reopened).
    Fatal(String),
}

impl Writer {
    /// Compacts if the file has grown past its threshold and the journal is healthy.
    pub(super) fn maybe_compact(&mut self) {
        if self.size < self.compact_at || self.shared.poisoned.load(Ordering::SeqCst) {
            return;
        }
        let before = self.size;
        match self.compact() {
            Ok(records) => {
                self.compact_at = next_compaction(self.opts.compact_bytes, self.size);
                self.shared.compactions.fetch_add(1, Ordering::SeqCst);
                log::info(
                    "journal compacted",
                    &[
                        ("file", &self.path.display()),
                        ("bytes_before", &before),
                        ("bytes_after", &self.size),
                        ("records", &records),
                    ],
                );
            }
            Err(Failed::Skipped(why)) => {
                self.compact_at = self.size.saturating_add(self.opts.compact_bytes);
                let _ = fs::remove_file(self.dir.join(TMP_NAME));
                log::warn(
                    "journal compaction skipped",
                    &[("file", &self.path.display()), ("why", &why)],
                );
            }
            Err(Failed::Fatal(why)) => {
                self.shared.poison();
                log::error(
                    "journal compaction failed, the journal is poisoned",
                    &[("file", &self.path.display()), ("why", &why)],
                );
            }
        }
    }

    /// Returns how many records the new file holds.
    fn compact(&mut self) -> Result<u64, Failed> {
        let keep = self.shared.index().keep_set();
        let bytes = fs::read(&self.path).map_err(|e| Failed::Skipped(format!("read: {e}")))?;
        let mut lines = Vec::new();
        let mut start = 0;
        let tail = scan(&bytes, |rec, line| {
            let end = start + line.len() + 1;
            lines.push((rec.op, start..end));
            start = end;
            Ok(())
        })
        .map_err(|c| {
            Failed::Fatal(format!(
                "the file changed under the writer: line {}: {}",
                c.line, c.reason
            ))
        })?;
        if let Some(t) = tail {
            return Err(Failed::Fatal(format!(
                "the file changed under the writer: bad tail at line {}: {}",
                t.line, t.reason
            )));
        }
        let (out, kept) = keep_lines(&bytes, lines, &keep);
        // An fsync error is fatal wherever it happens (see the module doc of
        // `journal`): the disk is not doing what it is told. Any other failure before
        // the rename leaves the old file as it was, and still open for appending.
        self.file =
            replace(&self.dir, &self.path, &out, Failpoint::CompactBeforeRename).map_err(|e| {
                let why = crate::log::Chain(&e.error).to_string();
                if e.renamed || e.error.is_fatal() {
                    Failed::Fatal(why)
                } else {
                    Failed::Skipped(why)
                }
            })?;
        self.size = out.len() as u64;
        self.shared.size.store(self.size, Ordering::SeqCst);
        self.shared.index().set_records(kept);
        Ok(kept)
    }
}
