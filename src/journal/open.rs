//! Opening the journal file: create what is missing, drop a stale `journal.tmp`,
//! replay, save a torn tail to `journal.broken`, and rewrite the file with what was
//! read (compacted if it is past its threshold) before anything is appended.

use super::failpoint::Failpoint;
use super::index::Index;
use super::replace::{fsync_dir, keep_lines, replace, TMP_NAME};
use super::scan::{scan, Tail};
use super::{JournalError, JournalOptions};
use crate::log;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(crate) const FILE_NAME: &str = "journal";
pub(crate) const BROKEN_NAME: &str = "journal.broken";
const LOCK_NAME: &str = "lock";

/// An opened, replayed and repaired journal, ready for the writer thread.
pub(crate) struct Opened {
    pub(crate) path: PathBuf,
    /// Opened for appending.
    pub(crate) file: File,
    pub(crate) index: Index,
    pub(crate) size: u64,
    /// What was cut off, said for people.
    pub(crate) repaired: Option<String>,
    /// The rewrite was a compaction (the file was past its threshold).
    pub(crate) compacted: bool,
}

/// How long [`lock`] keeps trying while the lock is taken. A lock is not only held
/// by another agent: a process that starts a child (`fork`, then `exec`) lends the
/// child a copy of every descriptor, the lock's included, until the `exec` closes
/// it, and the lock stays taken for those few milliseconds even if the parent has
/// let go of it. Measured with a test binary spawning processes in a loop while
/// another thread opened and closed the journal: the lock was busy up to 3.6 ms
/// after the close. Another agent holds it for as long as it runs, so waiting this
/// long costs nothing but a slower refusal.
const LOCK_GRACE: Duration = Duration::from_millis(500);

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
    let path = dir.join(LOCK_NAME);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| JournalError::io(&path, "open", e))?;
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + LOCK_GRACE;
    // SAFETY: flock(2) on a descriptor this function owns.
    while unsafe { flock(file.as_raw_fd(), LOCK_EX | LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::Interrupted => {}
            std::io::ErrorKind::WouldBlock if Instant::now() < deadline => {
                // flock(2) has no timeout, and blocking in it could wait forever.
                std::thread::sleep(Duration::from_millis(5));
            }
            std::io::ErrorKind::WouldBlock => {
                return Err(JournalError::Locked {
                    dir: dir.to_path_buf(),
                })
            }
            _ => return Err(JournalError::io(&path, "lock", e)),
        }
    }
    Ok(file)
}

/// Opens the journal in `dir`: reads and replays it, saves a torn tail, and
/// replaces the file with what was read (see "Rewritten at open" in the module doc
/// of `journal`), keeping only what compaction keeps if the file is at or past
/// `opts.compact_bytes`.
pub(crate) fn open(dir: &Path, opts: &JournalOptions) -> Result<Opened, JournalError> {
    create_dir_durably(dir)?;
    let path = dir.join(FILE_NAME);
    remove_stale_tmp(dir)?;
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(JournalError::io(&path, "read", e)),
    };

    // Each good line's op and bytes, for compaction; only kept if it may run.
    let may_compact = bytes.len() as u64 >= opts.compact_bytes;
    let mut lines = Vec::new();
    let mut start = 0;
    let mut index = Index::new(opts.keep_finished);
    let tail = scan(&bytes, |rec, line| {
        index.apply(&rec)?;
        if may_compact {
            // Good lines follow each other from the start, each with its newline.
            let end = start + line.len() + 1;
            lines.push((rec.op, start..end));
            start = end;
        }
        Ok(())
    })
    .map_err(|c| JournalError::Corrupt {
        path: path.clone(),
        line: c.line,
        reason: c.reason,
    })?;
    let (good, repaired) = match tail {
        Some(tail) => (tail.offset, Some(save_tail(dir, &path, &bytes, &tail)?)),
        None => (bytes.len(), None),
    };
    let compacted = (good as u64 >= opts.compact_bytes).then(|| {
        let (out, records) = keep_lines(&bytes, lines, &index.keep_set());
        log::info(
            "journal compacted at open",
            &[
                ("file", &path.display()),
                ("bytes_before", &good),
                ("bytes_after", &out.len()),
                ("records", &records),
            ],
        );
        index.set_records(records);
        out
    });
    let contents = compacted.as_deref().unwrap_or(&bytes[..good]);
    let file = replace(dir, &path, contents, Failpoint::OpenBeforeRename).map_err(|e| e.error)?;
    Ok(Opened {
        path,
        file,
        index,
        size: contents.len() as u64,
        repaired,
        compacted: compacted.is_some(),
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

/// Appends the torn tail to `journal.broken`, durably: the rewrite that follows
/// leaves it out of the journal, so it must be kept first.
fn save_tail(dir: &Path, path: &Path, bytes: &[u8], tail: &Tail) -> Result<String, JournalError> {
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
