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
    /// The token secret file could not be opened or read.
    SecretRead { path: PathBuf, source: io::Error },
    /// The token secret file can be read or written by group or others.
    SecretPermissions { path: PathBuf, mode: u32 },
    /// The token secret file holds nothing but whitespace.
    SecretEmpty { path: PathBuf },
    /// The token secret file holds more than one printable ASCII word, or is too long.
    SecretMalformed { path: PathBuf },
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
            ConfigError::SecretRead { path, source } => write!(
                f,
                "cannot read token secret file {}: {source}",
                path.display()
            ),
            ConfigError::SecretPermissions { path, mode } => write!(
                f,
                "token secret file {0} is readable or writable by group or others (mode {mode:04o}): run chmod 600 {0}",
                path.display()
            ),
            ConfigError::SecretEmpty { path } => write!(
                f,
                "token secret file {} is empty: write the API token's secret into it",
                path.display()
            ),
            ConfigError::SecretMalformed { path } => write!(
                f,
                "token secret file {} does not hold a single token secret (it has spaces, control characters or non-ASCII text inside, or is over 4096 bytes): it must hold only the API token's secret (a UUID)",
                path.display()
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
