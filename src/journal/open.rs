//! Opening the journal file: create what is missing, drop a stale `journal.tmp`,
//! replay, and cut off a torn tail (saving it to `journal.broken` first).

use super::index::Index;
use super::scan::{scan, Tail};
use super::JournalError;
use crate::log;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

pub(crate) const FILE_NAME: &str = "journal";
pub(crate) const TMP_NAME: &str = "journal.tmp";
pub(crate) const BROKEN_NAME: &str = "journal.broken";

/// An opened, replayed and repaired journal, ready for the writer thread.
pub(crate) struct Opened {
    pub(crate) path: PathBuf,
    /// Opened for appending.
    pub(crate) file: File,
    pub(crate) index: Index,
    pub(crate) size: u64,
    /// What was cut off, said for people.
    pub(crate) repaired: Option<String>,
}

/// Makes the directory entries of `dir` durable (after a create, rename or unlink).
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| JournalError::Sync {
            path: dir.to_path_buf(),
            source,
        })
}

/// Takes the state directory's lock: an exclusive `flock` on `<dir>/lock`, held for
/// as long as the returned file is open. The kernel drops it when the process dies,
/// so a crash never leaves a stale lock behind.
pub(crate) fn lock(dir: &Path) -> Result<File, JournalError> {
    extern "C" {
        // From the C library std already links; std's own File::try_lock needs a
        // newer Rust than this crate's minimum.
        fn flock(fd: i32, operation: i32) -> i32;
    }
    const LOCK_EX: i32 = 2;
    const LOCK_NB: i32 = 4;
    create_dir_durably(dir)?;
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| JournalError::io(&path, "open", e))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor this function owns.
    if unsafe { flock(file.as_raw_fd(), LOCK_EX | LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            return Err(JournalError::Locked {
                dir: dir.to_path_buf(),
            });
        }
        return Err(JournalError::io(&path, "lock", e));
    }
    Ok(file)
}

pub(crate) fn open(dir: &Path, keep_finished: usize) -> Result<Opened, JournalError> {
    create_dir_durably(dir)?;
    let path = dir.join(FILE_NAME);
    remove_stale_tmp(dir)?;

    let existed = path.exists();
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| JournalError::io(&path, "open", e))?;
    if !existed {
        fsync_dir(dir)?;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| JournalError::io(&path, "read", e))?;

    let mut index = Index::new(keep_finished);
    let tail = scan(&bytes, |rec, _| index.apply(&rec)).map_err(|c| JournalError::Corrupt {
        path: path.clone(),
        line: c.line,
        reason: c.reason,
    })?;
    let mut size = bytes.len() as u64;
    let repaired = match tail {
        Some(tail) => {
            let said = cut_tail(dir, &path, &file, &bytes, &tail)?;
            size = tail.offset as u64;
            Some(said)
        }
        None => None,
    };
    Ok(Opened {
        path,
        file,
        index,
        size,
        repaired,
    })
}

/// Creates `dir` and any missing parents, and fsyncs each parent that gained an
/// entry, so that the directory itself survives a power cut.
fn create_dir_durably(dir: &Path) -> Result<(), JournalError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d);
        at = d.parent();
    }
    fs::create_dir_all(dir).map_err(|e| JournalError::io(dir, "create directory", e))?;
    for d in missing.iter().rev() {
        match d.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => fsync_dir(parent)?,
            None => fsync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// A `journal.tmp` at open is from a compaction that died before its rename: the
/// journal itself is still the whole truth, so the copy goes.
fn remove_stale_tmp(dir: &Path) -> Result<(), JournalError> {
    let tmp = dir.join(TMP_NAME);
    match fs::remove_file(&tmp) {
        Ok(()) => {
            log::warn(
                "removed a stale journal.tmp from an interrupted compaction",
                &[("file", &tmp.display())],
            );
            fsync_dir(dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(JournalError::io(&tmp, "remove", e)),
    }
}

/// Appends the torn tail to `journal.broken` (durably) and only then truncates the
/// journal, so the bytes are never lost in between.
fn cut_tail(
    dir: &Path,
    path: &Path,
    file: &File,
    bytes: &[u8],
    tail: &Tail,
) -> Result<String, JournalError> {
    let cut = &bytes[tail.offset..];
    let broken = dir.join(BROKEN_NAME);
    let existed = broken.exists();
    let mut saved = cut.to_vec();
    if saved.last() != Some(&b'\n') {
        saved.push(b'\n');
    }
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&broken)
        .map_err(|e| JournalError::io(&broken, "open", e))?;
    f.write_all(&saved)
        .map_err(|e| JournalError::io(&broken, "write", e))?;
    f.sync_all().map_err(|source| JournalError::Sync {
        path: broken.clone(),
        source,
    })?;
    if !existed {
        fsync_dir(dir)?;
    }
    file.set_len(tail.offset as u64)
        .map_err(|e| JournalError::io(path, "truncate", e))?;
    file.sync_all().map_err(|source| JournalError::Sync {
        path: path.to_path_buf(),
        source,
    })?;
    let said = format!(
        "cut {} bytes at line {} ({}), saved to {}",
        cut.len(),
        tail.line,
        tail.reason,
        broken.display()
    );
    log::warn(
        "journal had a torn tail, cut it off",
        &[
            ("file", &path.display()),
            ("line", &tail.line),
            ("reason", &tail.reason),
            ("bytes", &cut.len()),
            ("saved_to", &broken.display()),
        ],
    );
    Ok(said)
}
