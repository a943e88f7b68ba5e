//! Checks for the config values that have a syntax of their own: the API URL, the
//! token id, the node name and paths. Each returns the message for a problem.

use crate::json::quote;
use crate::pve::BaseUrl;
use std::path::{Path, PathBuf};

/// `https://host[:port]`, or `http://` to a loopback IP address, with no path, query
/// or user info: the client's own rule ([`BaseUrl::parse`]), so that `check` accepts
/// exactly what the client does. A single trailing `/` is accepted and dropped. The
/// message never shows user information, which may hold a password.
pub(super) fn api_url(s: &str) -> Result<String, String> {
    BaseUrl::parse(s).map(|b| b.origin).map_err(|e| {
        format!(
            "expected a URL like \"https://127.0.0.1:8006\" (http or https, a host, an optional port, no path), found {}: {}",
            quote(&e.shown),
            e.why
        )
    })
}

/// `USER@REALM!TOKENID`, by PVE's own rules (pve-access-control `$token_full_regex`):
/// USER has no whitespace, `:` or `/`; REALM and TOKENID are `[A-Za-z][A-Za-z0-9.\-_]+`.
pub(super) fn token_id(s: &str) -> Result<(), String> {
    const EXPECTED: &str =
        "expected an API token id like \"agent@pve!reconciler\" (USER@REALM!TOKENID)";
    // A value with '=', ':', whitespace or a UUID is probably the id and its secret
    // pasted together from the token dialog: it must not be echoed, not even cut
    // short, since that would put (part of) the secret into a log line.
    let pasted = if s.contains('=') {
        Some("'='")
    } else if s.contains(':') {
        Some("':'")
    } else if s.contains(char::is_whitespace) {
        Some("whitespace")
    } else if holds_uuid(s) {
        Some("a UUID")
    } else {
        None
    };
    if let Some(what) = pasted {
        return Err(format!(
            "{EXPECTED}, found a value containing {what}, which looks like the id and its secret pasted together: put only the id here and the secret in token_secret_file"
        ));
    }
    let parts = s
        .rsplit_once('!')
        .and_then(|(user_realm, id)| Some((user_realm.rsplit_once('@')?, id)));
    match parts {
        Some(((user, realm), id))
            if !user.is_empty()
                && !user.contains(|c: char| c.is_whitespace() || c == ':' || c == '/')
                && is_pve_id(realm)
                && is_pve_id(id) =>
        {
            Ok(())
        }
        _ => Err(format!("{EXPECTED}, found {}", quote(s))),
    }
}

/// PVE's realm and token sub-id syntax: `[A-Za-z][A-Za-z0-9.\-_]+`.
fn is_pve_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
}

pub(super) use crate::pve::is_node_name;

/// A node name from the config.
pub(super) fn node(s: &str) -> Result<String, String> {
    if is_node_name(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "expected a node name as shown in the Proxmox GUI (letters, digits and '-'), found {}",
            quote(s)
        ))
    }
}

/// The node name from a hostname: the part before the first `.`.
pub(super) fn node_from_hostname(hostname: &str) -> &str {
    let h = hostname.trim();
    h.split('.').next().unwrap_or(h)
}

/// The token secret file's path. PVE's token secrets are UUIDs (pve-access-control
/// src/PVE/TokenConfig.pm), so a file name that holds one is the secret pasted here
/// by mistake: it is refused, and the message does not repeat it, because config
/// errors reach the log and status.json, and a file that cannot be read is named in
/// its error.
pub(super) fn secret_file(s: &str, base: &Path) -> Result<PathBuf, String> {
    let name = s.rsplit('/').find(|c| !c.is_empty()).unwrap_or(s);
    if holds_uuid(name) {
        return Err("expected the path of the file that holds the token's secret, found a value whose file name holds a UUID, which is what a secret looks like: write the secret into a file (chmod 600) and put that file's path here".to_string());
    }
    path(s, base)
}

/// Whether `s` contains `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex digits.
fn holds_uuid(s: &str) -> bool {
    s.as_bytes().windows(36).any(|w| {
        w.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
    })
}

/// A path; a relative one is taken relative to `base` (the config file's directory).
pub(super) fn path(s: &str, base: &Path) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("expected a path, found an empty string".to_string());
    }
    if s.contains('\0') {
        return Err("expected a path, found a string with a NUL character".to_string());
    }
    Ok(base.join(s))
}

/// A URL of a server other than Proxmox (`desired_url`, `report_url`): the API URL's
/// rules for scheme, host and port, with a path and query. The message never shows user
/// information or the query.
pub(super) fn remote_url(s: &str) -> Result<crate::remote::RemoteUrl, String> {
    crate::remote::RemoteUrl::parse(s).map_err(|e| {
        format!(
            "expected a URL like \"https://cp.example.com/nodes/pve1.json\" (https, or http to 127.0.0.1; a host, an optional port, a path), found {}: {}",
            quote(&e.shown),
            e.why
        )
    })
}

/// The path of the file that holds the token for `desired_url`. A value that looks like
/// a token itself (a UUID, a forge's token prefix, or a long name of letters and digits
/// with no dot) is refused without being repeated: a file that cannot be read is named
/// in its error, and errors reach the log and status.json.
pub(super) fn token_file(s: &str, base: &Path) -> Result<PathBuf, String> {
    let name = s.rsplit('/').find(|c| !c.is_empty()).unwrap_or(s);
    if holds_uuid(name) || looks_like_token(name) {
        return Err("expected the path of the file that holds the token, found a value that looks like a token itself: write the token into a file (chmod 600) and put that file's path here".to_string());
    }
    path(s, base)
}

/// Forge tokens: GitHub's `ghp_`/`github_pat_` and kin, GitLab's `glpat-`, and a bare
/// run of at least 20 letters and digits with 6 or more digits (Gitea's 40 hex digits).
fn looks_like_token(name: &str) -> bool {
    const PREFIXES: &[&str] = &["ghp_", "gho_", "ghs_", "ghu_", "github_pat_", "glpat-"];
    if PREFIXES.iter().any(|p| name.starts_with(p)) {
        return true;
    }
    name.len() >= 20
        && !name.contains('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.bytes().filter(u8::is_ascii_digit).count() >= 6
}
