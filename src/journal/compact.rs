//! Compaction: once the file passes `compact_bytes`, the writer thread rewrites it
//! with the records of the ops worth keeping (see `Index::keep_set`), copied
//! verbatim so that their CRCs and sequence numbers stay as they were.
//!
//! The order is what makes it crash-safe: write `journal.tmp`, fsync it, rename it
//! over `journal`, fsync the directory, reopen for append. Until the rename the old
//! file is the journal (and open removes the stale tmp); after it, the new one is,
//! and it is already complete and durable.

use super::open::{fsync_dir, TMP_NAME};
use super::scan::scan;
use super::writer::Writer;
use crate::log;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

/// The only failpoint: `FELHOM_FAILPOINT=compact-before-rename` makes the writer
/// stop for good after fsyncing `journal.tmp` and before the rename, so a test can
/// kill the process exactly there. Read once per process.
fn failpoint_before_rename() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("FELHOM_FAILPOINT").is_ok_and(|v| v == "compact-before-rename")
    })
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
                // If what must be kept is itself large, do not compact again at once.
                self.compact_at = self.opts.compact_bytes.max(self.size.saturating_mul(2));
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
        let mut out = Vec::with_capacity(bytes.len() / 2);
        let mut kept = 0u64;
        let tail = scan(&bytes, |rec, line| {
            if keep.contains(&rec.op) {
                out.extend_from_slice(line);
                out.push(b'\n');
                kept += 1;
            }
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

        let tmp = self.dir.join(TMP_NAME);
        let mut f = File::create(&tmp).map_err(|e| Failed::Skipped(format!("create: {e}")))?;
        f.write_all(&out)
            .map_err(|e| Failed::Skipped(format!("write: {e}")))?;
        // An fsync error is fatal wherever it happens (see the module doc of
        // `journal`): the disk is not doing what it is told.
        f.sync_all()
            .map_err(|e| Failed::Fatal(format!("fsync {}: {e}", tmp.display())))?;
        drop(f);

        if failpoint_before_rename() {
            eprintln!("failpoint compact-before-rename reached");
            loop {
                std::thread::park();
            }
        }

        fs::rename(&tmp, &self.path).map_err(|e| Failed::Skipped(format!("rename: {e}")))?;
        fsync_dir(&self.dir).map_err(|e| Failed::Fatal(crate::log::Chain(&e).to_string()))?;
        // The old descriptor now points at the unlinked file: writing there would be
        // lost, so failing to reopen is fatal.
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| Failed::Fatal(format!("reopen: {e}")))?;
        self.size = out.len() as u64;
        self.shared.size.store(self.size, Ordering::SeqCst);
        self.shared.index().set_records(kept);
        Ok(kept)
    }
}
