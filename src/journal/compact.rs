//! Compaction: once the file passes `compact_bytes`, the writer thread rewrites it
//! with the records of the ops worth keeping (see `Index::keep_set`), copied
//! verbatim so that their CRCs and sequence numbers stay as they were. Open does
//! the same when it finds the file past its threshold (see `open`). The new file
//! replaces the old one as `replace` says, which is what makes it crash-safe.

use super::failpoint::Failpoint;
use super::open::TMP_NAME;
use super::replace::replace;
use super::scan::scan;
use super::writer::Writer;
use super::OpId;
use crate::log;
use std::collections::BTreeSet;
use std::fs;
use std::ops::Range;
use std::sync::atomic::Ordering;

/// Copies the lines whose op is in `keep`, verbatim and in order. `lines` gives
/// each line's op and its bytes in `bytes`, newline included. Returns the new
/// file's bytes and how many records it holds.
pub(crate) fn keep_lines(
    bytes: &[u8],
    lines: impl IntoIterator<Item = (OpId, Range<usize>)>,
    keep: &BTreeSet<OpId>,
) -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    let mut kept = 0u64;
    for (op, range) in lines {
        if keep.contains(&op) {
            out.extend_from_slice(&bytes[range]);
            kept += 1;
        }
    }
    (out, kept)
}

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

/// Where the next compaction is due once a compaction left the file at `size`: if
/// what must be kept is itself large, do not compact again at once.
pub(super) fn next_compaction(compact_bytes: u64, size: u64) -> u64 {
    compact_bytes.max(size.saturating_mul(2))
}
