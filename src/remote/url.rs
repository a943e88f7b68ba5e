//! The URL of a server other than Proxmox (the desired-state source, the report
//! target): the API URL's rules for scheme, host and port ([`BaseUrl`]), plus a path
//! and query; and where a redirect from it may go.
//!
//! What is shown of a URL (in logs, errors, status.json) never holds user information
//! (refused anyway: any `@`) or the query string, which is where a forge's access token would
//! sit if someone put it there: it is shown as `?...`.

use crate::pve::url::redact_userinfo;
use crate::pve::BaseUrl;
use std::fmt;

/// A checked URL: `https://host[:port]/path[?query]`, or `http://` to a loopback IPv4
/// address.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    base: BaseUrl,
    /// The path and query as given (already percent-encoded), starting with `/`.
    target: String,
}

/// Why a URL was refused: the message for the config key, never showing user
/// information or the query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteUrlError {
    pub shown: String,
    pub why: String,
}

impl fmt::Display for RemoteUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.shown, self.why)
    }
}

impl std::error::Error for RemoteUrlError {}

/// `s` as it may be shown: user information and query replaced.
fn shown_raw(s: &str) -> String {
    let s = redact_userinfo(s);
    match s.split_once('?') {
        Some((before, _)) => format!("{before}?..."),
        None => s,
    }
}

impl RemoteUrl {
    /// Checks `s`: the scheme, host and port as [`BaseUrl::parse`] has them; no user
    /// information, no fragment; a path and query of printable ASCII (percent-encode
    /// anything else).
    pub fn parse(s: &str) -> Result<RemoteUrl, RemoteUrlError> {
        let bad = |why: String| RemoteUrlError {
            shown: shown_raw(s),
            why,
        };
        let Some(after) = s.find("://").map(|i| i + 3) else {
            return Err(bad("it must start with https://".into()));
        };
        // Before anything else: a password may hold '/', '?' or '#', so no split of the
        // URL can be trusted to find it. An '@' in a path can be written `%40`.
        if s.contains('@') {
            return Err(bad(
                "remove the user name and password (a token goes into desired_token_file); \
                 write an @ in the path as %40"
                    .into(),
            ));
        }
        let authority_end = s[after..]
            .find(['/', '?', '#'])
            .map_or(s.len(), |i| after + i);
        let (origin, rest) = s.split_at(authority_end);
        if rest.contains('#') {
            return Err(bad("remove the #fragment".into()));
        }
        if !rest.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "the path holds spaces, control characters or non-ASCII text: percent-encode them"
                    .into(),
            ));
        }
        let base = BaseUrl::parse(origin).map_err(|e| bad(e.why))?;
        let target = match rest {
            "" => "/".to_string(),
            r if r.starts_with('?') => format!("/{r}"),
            r => r.to_string(),
        };
        Ok(RemoteUrl { base, target })
    }

    pub fn is_https(&self) -> bool {
        self.base.https
    }

    pub fn host(&self) -> &str {
        &self.base.host
    }

    /// `https://host[:port]`.
    pub fn origin(&self) -> &str {
        &self.base.origin
    }

    /// The whole URL, query included: for the request, never for a person.
    pub fn full(&self) -> String {
        format!("{}{}", self.base.origin, self.target)
    }

    /// The URL for a person: no query (see the module doc).
    pub fn shown(&self) -> String {
        match self.target.split_once('?') {
            Some((path, _)) => format!("{}{path}?...", self.base.origin),
            None => self.full(),
        }
    }

    /// Where a redirect to `location` (a `Location` header) leads, if the agent may
    /// follow it: only to https on the same host (any port). A relative location is
    /// resolved against this URL. The error says why not, showing the target the way
    /// URLs are shown.
    pub fn redirect(&self, location: &str) -> Result<RemoteUrl, String> {
        let location = location.trim();
        if location.is_empty() {
            return Err("a redirect without a Location".into());
        }
        let absolute = if location.contains("://") {
            location.to_string()
        } else if let Some(rest) = location.strip_prefix("//") {
            let scheme = if self.base.https { "https" } else { "http" };
            format!("{scheme}://{rest}")
        } else if location.starts_with('/') {
            format!("{}{location}", self.base.origin)
        } else {
            // Relative to this URL's directory, as a browser resolves it.
            let path = self.target.split('?').next().unwrap_or("/");
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            format!("{}{dir}{location}", self.base.origin)
        };
        let shown = shown_raw(&absolute);
        if !absolute.starts_with("https://") {
            return Err(format!(
                "to {shown}: only https is followed, on the same host"
            ));
        }
        let next = RemoteUrl::parse(&absolute).map_err(|e| format!("to {shown}: {}", e.why))?;
        if !next.base.host.eq_ignore_ascii_case(&self.base.host) {
            return Err(format!(
                "to {shown}: another host than {}; only https on the same host is followed",
                self.base.host
            ));
        }
        Ok(next)
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteUrl({})", self.shown())
    }
}
