//! [`AppError`]: everything that can stop the agent or a command, one variant per
//! boundary, each mapped to its exit code.

use crate::config::ConfigError;
use crate::desired::DesiredError;
use crate::exit::ExitCode;
use crate::journal::JournalError;
use crate::pve::ApiError;
use std::fmt;

/// Everything that can stop a command, one variant per boundary.
#[derive(Debug)]
pub enum AppError {
    Usage(String),
    Config(ConfigError),
    Desired(DesiredError),
    /// The desired-state source failed or answered something that is not a valid
    /// state (for `check`, which says whether the source is good now).
    Source(crate::desired::SourceError),
    /// The certificates to trust could not be set up.
    Trust(crate::trust::TrustError),
    Journal(JournalError),
    Api(ApiError),
    Io(String, std::io::Error),
    Status(crate::status::StatusError),
    /// An internal thread died or vanished: a bug, not the user's doing.
    Internal(String),
}

impl AppError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            AppError::Usage(_) | AppError::Config(_) | AppError::Desired(_) => ExitCode::Usage,
            AppError::Journal(e) => e.exit_code(),
            AppError::Source(crate::desired::SourceError::Invalid(_)) => ExitCode::Usage,
            AppError::Source(_) => ExitCode::Failure,
            AppError::Trust(e) if e.is_config() => ExitCode::Usage,
            AppError::Trust(_) => ExitCode::Failure,
            AppError::Api(_) | AppError::Io(..) | AppError::Status(_) => ExitCode::Failure,
            AppError::Internal(_) => ExitCode::Internal,
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Usage(m) => f.write_str(m),
            AppError::Config(e) => write!(f, "{e}"),
            AppError::Desired(e) => write!(f, "{e}"),
            AppError::Source(e) => write!(f, "desired state source: {e}"),
            AppError::Trust(e) => write!(f, "{e}"),
            AppError::Journal(e) => write!(f, "{e}"),
            AppError::Api(e) => write!(f, "proxmox api: {e}"),
            AppError::Internal(m) => write!(f, "internal error: {m}"),
            AppError::Io(what, e) => write!(f, "{what}: {e}"),
            AppError::Status(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AppError::Config(e) => Some(e),
            AppError::Desired(e) => Some(e),
            AppError::Source(e) => Some(e),
            AppError::Trust(e) => Some(e),
            AppError::Journal(e) => Some(e),
            AppError::Api(e) => Some(e),
            AppError::Io(_, e) => Some(e),
            AppError::Status(e) => Some(e),
            AppError::Usage(_) | AppError::Internal(_) => None,
        }
    }
}

impl From<ConfigError> for AppError {
    fn from(e: ConfigError) -> Self {
        AppError::Config(e)
    }
}
impl From<DesiredError> for AppError {
    fn from(e: DesiredError) -> Self {
        AppError::Desired(e)
    }
}
impl From<JournalError> for AppError {
    fn from(e: JournalError) -> Self {
        AppError::Journal(e)
    }
}
impl From<ApiError> for AppError {
    fn from(e: ApiError) -> Self {
        AppError::Api(e)
    }
}
impl From<crate::trust::TrustError> for AppError {
    fn from(e: crate::trust::TrustError) -> Self {
        AppError::Trust(e)
    }
}
