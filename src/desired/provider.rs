//! Where desired state comes from: a file, a URL ([`super::UrlProvider`]), or nothing.
//!
//! A provider gives the state to start from at once ([`Provider::load`], which waits on
//! nothing remote), and, when its source is remote, is asked again on a timer
//! ([`Provider::refresh`]). A failed load or refresh never clears anything: the caller
//! keeps its last good state, and a URL provider keeps it in the state directory too.

use super::{DesiredError, DesiredState};
use crate::remote::RemoteError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A source of desired state, built anew on every reload.
pub trait Provider: Send {
    /// A short description for log lines, e.g. `file /etc/felhom-agent/desired.json`.
    fn name(&self) -> String;
    /// The state to start from, without waiting on a remote source: a file is read (a
    /// bad one is refused); a URL gives its last good state kept in the state directory,
    /// or nothing when there is none.
    fn load(&self) -> Result<DesiredState, DesiredError>;
    /// How often the source is to be asked again: `Some` for a remote source. A file is
    /// read again only on reload.
    fn refresh_every(&self) -> Option<Duration> {
        None
    }
    /// Asks the source again. `save`: a new good state (and each confirmation of the
    /// one held) is written to the state directory, which only the process holding its
    /// lock may do.
    fn refresh(&mut self, save: bool) -> Refresh {
        let _ = save;
        Refresh::Unchanged
    }
    /// How the remote source stands: `None` for a file or no source.
    fn source_status(&self) -> Option<SourceStatus> {
        None
    }
}

/// What asking the source again gave.
#[derive(Debug)]
pub enum Refresh {
    /// A valid state (perhaps equal to the one held: a server without validators sends
    /// it whole every time).
    New(DesiredState),
    /// The source confirmed the state held (a 304), or there is nothing to ask.
    Unchanged,
    /// The source failed or answered something that is not a valid state. Nothing is
    /// to be acted on because of it; the last good state stays in force.
    Failed(SourceError),
}

/// Why a remote source's answer was not taken.
#[derive(Debug)]
pub enum SourceError {
    /// The request failed: no answer, an error status, a refused redirect, a body too
    /// large or cut off.
    Fetch(RemoteError),
    /// A 2xx whose content type is not JSON or plain text (an HTML login or error page,
    /// say).
    ContentType { request: String, found: String },
    /// The document is not a valid desired state; the problems name the URL in place
    /// of a file.
    Invalid(DesiredError),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Fetch(e) => write!(f, "{}", crate::log::Chain(e)),
            SourceError::ContentType { request, found } => write!(
                f,
                "{request}: the answer is {found}, not JSON: serve the file as application/json (or text/plain)"
            ),
            SourceError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Display already follows the chain, so that one line says it all.
            SourceError::Fetch(_) | SourceError::ContentType { .. } => None,
            SourceError::Invalid(e) => Some(e),
        }
    }
}

/// How a remote source stands: part of status.json, the metrics and the STATUS= line.
/// Times are Unix seconds, written as RFC 3339 in the document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// The URL as shown (without its query).
    pub url: String,
    /// When the state held was fetched; `None` while this source has given no good
    /// state yet.
    #[serde(default, with = "unix_as_rfc3339")]
    pub fetched: Option<i64>,
    /// When the source last confirmed the state held (a 200 or a 304).
    #[serde(default, with = "unix_as_rfc3339")]
    pub confirmed: Option<i64>,
    /// Seconds from `confirmed` to when this status was taken.
    pub age_secs: Option<u64>,
    /// The state held came from the state directory, kept by an earlier run, and the
    /// source has not confirmed it since.
    pub from_state_dir: bool,
    /// The ETag of the state held.
    pub etag: Option<String>,
    /// The last request's error, when it failed; the state held stays in force.
    pub error: Option<String>,
    #[serde(default, with = "unix_as_rfc3339")]
    pub error_at: Option<i64>,
}

impl SourceStatus {
    /// `age_secs` as of `now`.
    pub fn aged(mut self, now: i64) -> SourceStatus {
        self.age_secs = self.confirmed.map(|c| now.saturating_sub(c).max(0) as u64);
        self
    }

    /// A few words for the STATUS= line when the source is failing (nothing when it
    /// is fine): how old the state in force is.
    pub fn note(&self) -> Option<String> {
        self.error.as_ref()?;
        Some(match self.age_secs {
            Some(age) => format!(
                "desired source failing, state in force {} old",
                short_duration(age)
            ),
            None => "desired source failing, no desired state from it yet".to_string(),
        })
    }
}

/// `45s`, `12m`, `5h`, `3d`.
pub fn short_duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Serde for `Option<i64>` Unix seconds as an RFC 3339 string (or null).
mod unix_as_rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => s.serialize_str(&crate::time::rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => crate::time::parse_rfc3339(&text)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {text:?}"))),
        }
    }
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
