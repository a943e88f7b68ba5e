//! [`UrlProvider`]: the desired state fetched from a URL (a control plane, a forge's raw
//! URL, nginx), cheap when nothing changed and safe when the source misbehaves.
//!
//! - Every request is conditional when a state is held: `If-None-Match` with its ETag,
//!   or `If-Modified-Since` with its `Last-Modified` when there is no ETag, so that an
//!   unchanged state costs one small request answered 304.
//! - What a 200 brings is checked like a file (the problems name the URL in place of a
//!   path), after its content type (JSON or plain text) and size (the file's cap).
//! - A good state is kept in the state directory with its validators and times
//!   ([`super::provider_last_good`]); after a restart, [`Provider::load`] gives it at
//!   once, so the agent converges to the last good state while the source is down.
//! - A failure of any kind is a [`Refresh::Failed`]: the state held stays in force,
//!   and [`Provider::source_status`] shows the error with its time.

use super::provider::{Provider, Refresh, SourceError, SourceStatus};
use super::provider_last_good::{self as last_good, LastGood};
use super::{DesiredError, DesiredState, MAX_FILE_BYTES};
use crate::log;
use crate::remote::{self, Got, RemoteUrl};
use crate::secret::Secret;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest one fetch (with its redirects) may take. Below the daemon's bound on
/// joining threads at shutdown, so the thread that fetches ends in time.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// What a [`UrlProvider`] is built from.
pub struct UrlOptions {
    pub url: RemoteUrl,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// How often the source is asked.
    pub every: Duration,
    /// Where the last good state is kept.
    pub state_dir: PathBuf,
    pub timeout: Duration,
}

/// Fetches the desired state from a URL; see the module doc.
pub struct UrlProvider {
    opts: UrlOptions,
    url_id: String,
    /// The last good state: from the state directory at first, then from the source.
    last: Option<LastGood>,
    /// `last` came from the state directory and the source has not confirmed it yet.
    from_state_dir: bool,
    /// The last request's error and its time (Unix seconds).
    error: Option<(String, i64)>,
}

impl UrlProvider {
    /// Reads the last good state from the state directory (a missing one is none; an
    /// unusable one is logged and treated as none). Touches no network.
    pub fn new(opts: UrlOptions) -> UrlProvider {
        let file = last_good::path(&opts.state_dir);
        let last = match last_good::read(&file) {
            Ok(last) => last,
            Err(why) => {
                log::warn(
                    "ignoring the last good desired state kept in the state directory",
                    &[("why", &why)],
                );
                None
            }
        };
        UrlProvider {
            url_id: last_good::url_id(&opts.url.full()),
            from_state_dir: last.is_some(),
            last,
            opts,
            error: None,
        }
    }

    fn file(&self) -> PathBuf {
        last_good::path(&self.opts.state_dir)
    }

    /// Keeps `last` in the state directory, when allowed; a failure is only logged:
    /// the state is good and in force, it is just not kept for a restart.
    fn keep(&self, save: bool) {
        let (true, Some(last)) = (save, &self.last) else {
            return;
        };
        if let Err(e) = last_good::write(&self.file(), last) {
            log::warn(
                "cannot keep the desired state in the state directory",
                &[("file", &self.file().display()), ("error", &e)],
            );
        }
    }

    fn failed(&mut self, e: SourceError) -> Refresh {
        self.error = Some((e.to_string(), crate::time::unix_now()));
        Refresh::Failed(e)
    }

    /// Takes a 2xx body: content type, text, state.
    fn take(&self, body: remote::Body, label: &str) -> Result<(String, DesiredState), SourceError> {
        check_content_type(body.content_type.as_deref()).map_err(|found| {
            SourceError::ContentType {
                request: label.to_string(),
                found,
            }
        })?;
        let place = PathBuf::from(self.opts.url.shown());
        let text = crate::json::diag::decode(body.bytes).map_err(|p| {
            SourceError::Invalid(DesiredError::Invalid {
                path: place.clone(),
                problems: vec![p],
                omitted: 0,
            })
        })?;
        let state = DesiredState::parse(&text, Path::new(&place)).map_err(SourceError::Invalid)?;
        Ok((text, state))
    }
}

impl Provider for UrlProvider {
    fn name(&self) -> String {
        format!("url {}", self.opts.url.shown())
    }

    fn load(&self) -> Result<DesiredState, DesiredError> {
        Ok(self
            .last
            .as_ref()
            .map(|l| l.state.clone())
            .unwrap_or_default())
    }

    fn refresh_every(&self) -> Option<Duration> {
        Some(self.opts.every)
    }

    fn refresh(&mut self, save: bool) -> Refresh {
        // Validators only for the URL they came from: a 304 from another URL would
        // confirm a state it never served.
        let held = self.last.as_ref().filter(|l| l.url_id == self.url_id);
        let etag = held.and_then(|l| l.etag.clone());
        let last_modified = held.and_then(|l| l.last_modified.clone());
        let got = remote::get(&remote::Get {
            url: &self.opts.url,
            token: self.opts.token.as_ref(),
            etag: etag.as_deref(),
            last_modified: last_modified.as_deref(),
            accept: "application/json, text/plain;q=0.5",
            limit: MAX_FILE_BYTES as usize,
            timeout: self.opts.timeout,
            keys: remote::SOURCE_KEYS,
        });
        let now = crate::time::unix_now();
        match got {
            Err(e) => self.failed(SourceError::Fetch(e)),
            Ok(Got::NotModified) => {
                if let Some(last) = &mut self.last {
                    last.confirmed = now;
                }
                self.from_state_dir = false;
                self.error = None;
                self.keep(save);
                Refresh::Unchanged
            }
            Ok(Got::Body(body)) => {
                let label = format!("GET {}", self.opts.url.shown());
                let (etag, last_modified) = (body.etag.clone(), body.last_modified.clone());
                match self.take(body, &label) {
                    Err(e) => self.failed(e),
                    Ok((document, state)) => {
                        self.last = Some(LastGood {
                            url_id: self.url_id.clone(),
                            url: self.opts.url.shown(),
                            etag,
                            last_modified,
                            fetched: now,
                            confirmed: now,
                            document,
                            state: state.clone(),
                        });
                        self.from_state_dir = false;
                        self.error = None;
                        self.keep(save);
                        Refresh::New(state)
                    }
                }
            }
        }
    }

    fn source_status(&self) -> Option<SourceStatus> {
        let last = self.last.as_ref();
        Some(
            SourceStatus {
                url: self.opts.url.shown(),
                fetched: last.map(|l| l.fetched),
                confirmed: last.map(|l| l.confirmed),
                age_secs: None,
                from_state_dir: self.from_state_dir,
                etag: last.and_then(|l| l.etag.clone()),
                error: self.error.as_ref().map(|(e, _)| e.clone()),
                error_at: self.error.as_ref().map(|(_, t)| *t),
            }
            .aged(crate::time::unix_now()),
        )
    }
}

/// JSON (`application/json`, `application/*+json`, `text/json`) or plain text (what
/// forges serve a raw file as), in UTF-8 if a charset is named. Anything else, or no
/// content type at all, is refused: `Err` says what was found.
pub fn check_content_type(value: Option<&str>) -> Result<(), String> {
    let Some(value) = value else {
        return Err("without a content type".to_string());
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let json = media == "application/json"
        || media == "text/json"
        || media == "text/plain"
        || (media.starts_with("application/") && media.ends_with("+json"));
    let charset_ok = parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => matches!(
            v.trim().trim_matches('"').to_ascii_lowercase().as_str(),
            "utf-8" | "utf8" | "us-ascii"
        ),
        _ => true,
    });
    if json && charset_ok {
        Ok(())
    } else {
        let shown: String = value
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        Err(format!("{shown:?}"))
    }
}
