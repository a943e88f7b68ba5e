//! Why a config (or the token secret it points to) was refused.

use crate::json::diag::{write_problems, Problem};
use std::fmt;
use std::io;
use std::path::PathBuf;

/// A config problem. `Display` is the complete message for a person, naming the
/// file and, where there is one, the line and column:
/// `/etc/felhom-agent/config.json:4:18: max_parallel: expected an integer from 1 to 64, found 0`.
///
/// No variant ever holds or prints the token secret.
#[derive(Debug)]
pub enum ConfigError {
    /// The config file could not be read.
    Read { path: PathBuf, source: io::Error },
    /// The config file was read but has problems; all of them are listed, in file
    /// order (at most [`crate::desired::MAX_PROBLEMS`]).
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
        /// Problems found beyond the cap, counted but not kept.
        omitted: usize,
    },
    /// A secret file (the token secret or the desired-state source's token) could not
    /// be opened or read.
    SecretRead {
        kind: SecretKind,
        path: PathBuf,
        source: io::Error,
    },
    /// The secret file can be read or written by group or others.
    SecretPermissions {
        kind: SecretKind,
        path: PathBuf,
        mode: u32,
    },
    /// The secret file holds nothing but whitespace.
    SecretEmpty { kind: SecretKind, path: PathBuf },
    /// The secret file holds more than one printable ASCII word, or is too long.
    SecretMalformed { kind: SecretKind, path: PathBuf },
}

/// Which secret file an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretKind {
    /// `token_secret_file`: the API token's secret.
    ApiToken,
    /// `desired_token_file`: the bearer token for `desired_url`.
    DesiredToken,
}

impl SecretKind {
    /// How a message names the file.
    fn file(self) -> &'static str {
        match self {
            SecretKind::ApiToken => "token secret file",
            SecretKind::DesiredToken => "desired token file",
        }
    }

    /// What the file holds, and what it must hold only.
    fn holds(self) -> (&'static str, &'static str) {
        match self {
            SecretKind::ApiToken => ("the API token's secret", "a single token secret"),
            SecretKind::DesiredToken => ("the token for desired_url", "a single token"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Invalid {
                path,
                problems,
                omitted,
            } => write_problems(f, path, problems, *omitted),
            ConfigError::SecretRead { kind, path, source } => write!(
                f,
                "cannot read {} {}: {source}",
                kind.file(),
                path.display()
            ),
            ConfigError::SecretPermissions { kind, path, mode } => write!(
                f,
                "{} {1} is readable or writable by group or others (mode {mode:04o}): run chmod 600 {1}",
                kind.file(),
                path.display()
            ),
            ConfigError::SecretEmpty { kind, path } => write!(
                f,
                "{} {} is empty: write {} into it",
                kind.file(),
                path.display(),
                kind.holds().0
            ),
            ConfigError::SecretMalformed { kind, path } => write!(
                f,
                "{} {} does not hold {} (it has spaces, control characters or non-ASCII text inside, or is over 4096 bytes): it must hold only {}{}",
                kind.file(),
                path.display(),
                kind.holds().1,
                kind.holds().0,
                if *kind == SecretKind::ApiToken { " (a UUID)" } else { "" }
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } | ConfigError::SecretRead { source, .. } => {
                Some(source)
            }
            ConfigError::Invalid { .. }
            | ConfigError::SecretPermissions { .. }
            | ConfigError::SecretEmpty { .. }
            | ConfigError::SecretMalformed { .. } => None,
        }
    }
}
