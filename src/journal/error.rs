//! The journal's error type: one enum for opening, appending and closing.

use super::{OpId, OpState};
use crate::exit::ExitCode;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong with the journal.
#[derive(Debug)]
pub enum JournalError {
    /// A file operation failed (`what` says which: "open", "read", "write", ...).
    /// Not fatal by itself: an append that failed was cut off again and the journal
    /// is still usable. If it could not be cut off, the journal is poisoned.
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    /// A bad record is followed by good ones, or a well-formed record makes no sense
    /// where it stands. `line` is 1-based. A person must look before the agent runs.
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    /// fsync/fdatasync failed. The records of that batch may or may not be on disk,
    /// and the descriptor is never synced again: the journal is poisoned.
    Sync { path: PathBuf, source: io::Error },
    /// An earlier fatal error (or a crashed writer thread) poisoned the journal.
    Poisoned,
    /// [`super::Journal::close`] was called.
    Closed,
    /// The op cannot take that step: unknown or already finished (`from` is `None`
    /// then), or `task_running` twice.
    Transition {
        op: OpId,
        from: Option<OpState>,
        to: OpState,
    },
    /// The writer thread did not acknowledge within its deadline (a hung disk).
    /// Whether the record is on disk is unknown, so this is fatal.
    Stalled { waited: Duration },
    /// Another process holds the state directory's lock: two writers would interleave
    /// their records and act on the same guests.
    Locked { dir: PathBuf },
}

impl JournalError {
    /// True when the journal cannot be trusted any more and the process must exit
    /// (so that the supervisor restarts it and recovery runs on a fresh descriptor).
    pub fn is_fatal(&self) -> bool {
        match self {
            JournalError::Sync { .. }
            | JournalError::Poisoned
            | JournalError::Corrupt { .. }
            | JournalError::Stalled { .. } => true,
            JournalError::Io { .. }
            | JournalError::Closed
            | JournalError::Transition { .. }
            | JournalError::Locked { .. } => false,
        }
    }

    /// The exit code the binary uses when this error ends the process.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            JournalError::Corrupt { .. } => ExitCode::JournalCorrupt,
            JournalError::Sync { .. } | JournalError::Poisoned | JournalError::Stalled { .. } => {
                ExitCode::JournalSync
            }
            JournalError::Io { .. }
            | JournalError::Closed
            | JournalError::Transition { .. }
            | JournalError::Locked { .. } => ExitCode::Failure,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, what: &'static str, source: io::Error) -> Self {
        JournalError::Io {
            path: path.into(),
            what,
            source,
        }
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io { path, what, .. } => {
                write!(f, "journal {}: {what} failed", path.display())
            }
            JournalError::Corrupt { path, line, reason } => write!(
                f,
                "journal {} is corrupt at line {line}: {reason}",
                path.display()
            ),
            JournalError::Sync { path, .. } => {
                write!(f, "journal {}: fsync failed", path.display())
            }
            JournalError::Poisoned => f.write_str("journal is poisoned by an earlier fatal error"),
            JournalError::Closed => f.write_str("journal is closed"),
            JournalError::Transition { op, from: None, to } => {
                write!(f, "op {op} is not in flight, cannot record {to}")
            }
            JournalError::Transition {
                op,
                from: Some(from),
                to,
            } => write!(f, "op {op} cannot go from {from} to {to}"),
            JournalError::Stalled { waited } => write!(
                f,
                "journal writer did not answer within {} s",
                waited.as_secs()
            ),
            JournalError::Locked { dir } => write!(
                f,
                "state directory {} is in use by another felhom-agent process \
                 (the service?): stop it first, or read its state with `felhom-agent status`",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } | JournalError::Sync { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Chain;

    #[test]
    fn messages_and_fatality() {
        let e = JournalError::Sync {
            path: "/s/journal".into(),
            source: io::Error::other("disk on fire"),
        };
        assert_eq!(
            Chain(&e).to_string(),
            "journal /s/journal: fsync failed: disk on fire"
        );
        assert!(e.is_fatal());
        assert_eq!(e.exit_code(), ExitCode::JournalSync);
        let e = JournalError::Corrupt {
            path: "/s/journal".into(),
            line: 7,
            reason: "bad crc".into(),
        };
        assert_eq!(
            e.to_string(),
            "journal /s/journal is corrupt at line 7: bad crc"
        );
        assert_eq!(e.exit_code(), ExitCode::JournalCorrupt);
        let e = JournalError::Transition {
            op: OpId(3),
            from: None,
            to: OpState::Succeeded,
        };
        assert_eq!(
            e.to_string(),
            "op 3 is not in flight, cannot record succeeded"
        );
        assert!(!e.is_fatal());
        assert!(JournalError::Poisoned.is_fatal());
        assert!(!JournalError::Closed.is_fatal());
    }
}
