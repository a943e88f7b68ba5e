//! Replacing the journal file whole, crash-safely: the rewrite at open and
//! compaction both end here.
//!
//! The order is what makes it safe: write `journal.tmp`, fsync it, rename it over
//! `journal`, fsync the directory, open the new file for appending. Until the
//! rename the old file is the journal (and open removes the stale tmp); after it,
//! the new one is, and it is already complete and durable. The new file is a new
//! inode, so nothing that was only ever in the page cache of the old one (a batch
//! whose fdatasync failed) can come back.

use super::failpoint::Failpoint;
use super::{JournalError, OpId};
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::ops::Range;
use std::path::Path;

/// The new file, beside the journal, while it is written.
pub(crate) const TMP_NAME: &str = "journal.tmp";

/// Makes the directory entries of `dir` durable (after a create, rename or unlink).
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| JournalError::Sync {
            path: dir.to_path_buf(),
            source,
        })
}

/// Why a replacement did not happen, and whether the old file is still the journal.
#[derive(Debug)]
pub(crate) struct ReplaceError {
    pub(crate) error: JournalError,
    /// False: the failure came before the rename, so the old file is untouched and
    /// still the journal (a stale `journal.tmp` may be left). True: the new file is
    /// in place but not known to be durable, or could not be opened.
    pub(crate) renamed: bool,
}

/// Replaces the journal `path` in `dir` with `contents` and returns the new file,
/// opened for appending. `before_rename` is the failpoint between the fsync of the
/// new file and the rename.
pub(crate) fn replace(
    dir: &Path,
    path: &Path,
    contents: &[u8],
    before_rename: Failpoint,
) -> Result<File, ReplaceError> {
    let before = |error| ReplaceError {
        error,
        renamed: false,
    };
    let after = |error| ReplaceError {
        error,
        renamed: true,
    };
    let tmp = dir.join(TMP_NAME);
    let mut f = File::create(&tmp).map_err(|e| before(JournalError::io(&tmp, "create", e)))?;
    f.write_all(contents)
        .map_err(|e| before(JournalError::io(&tmp, "write", e)))?;
    f.sync_all().map_err(|source| {
        before(JournalError::Sync {
            path: tmp.clone(),
            source,
        })
    })?;
    drop(f);
    before_rename.stop_here();
    fs::rename(&tmp, path).map_err(|e| before(JournalError::io(path, "rename", e)))?;
    fsync_dir(dir).map_err(after)?;
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| after(JournalError::io(path, "reopen", e)))
}

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
