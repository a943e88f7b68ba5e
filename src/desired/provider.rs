//! Where desired state comes from: a file, or nothing at all.

use super::{DesiredError, DesiredState};
use std::path::PathBuf;

/// A source of desired state, asked again on every reload. A failed load never
/// clears anything: the caller keeps its last good state.
pub trait Provider: Send {
    /// A short description for log lines, e.g. `file /etc/felhom-agent/desired.json`.
    fn name(&self) -> String;
    /// The current desired state.
    fn load(&self) -> Result<DesiredState, DesiredError>;
}

/// Reads a desired-state file on every load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProvider {
    pub path: PathBuf,
}

impl Provider for FileProvider {
    fn name(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn load(&self) -> Result<DesiredState, DesiredError> {
        DesiredState::load(&self.path)
    }
}

/// No desired source is configured: nothing is managed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmptyProvider;

impl Provider for EmptyProvider {
    fn name(&self) -> String {
        "none".to_string()
    }

    fn load(&self) -> Result<DesiredState, DesiredError> {
        Ok(DesiredState::default())
    }
}
