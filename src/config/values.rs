//! Checks for the config values that have a syntax of their own: the API URL, the
//! token id, the node name and paths. Each returns the message for a problem.

use crate::json::quote;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

/// `http(s)://host[:port]` with no path, query or user info. A single trailing `/`
/// is accepted and dropped; the result has no trailing slash.
pub(super) fn api_url(s: &str) -> Result<String, String> {
    let bad = |why: &str| {
        Err(format!(
            "expected a URL like \"https://127.0.0.1:8006\" (http or https, a host, an optional port, no path), found {}{why}",
            quote(s)
        ))
    };
    let Some((scheme, rest)) = s.split_once("://") else {
        return bad("");
    };
    if scheme != "https" && scheme != "http" {
        return bad(": the scheme must be https or http");
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return bad(": remove the path, the agent adds /api2/json itself");
    }
    if rest.contains('@') {
        return bad(": remove the user name, the agent authenticates with its API token");
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return bad(": an IPv6 address needs a closing ']'");
        };
        if addr.parse::<Ipv6Addr>().is_err() {
            return bad(": the host is not a valid IPv6 address");
        }
        match after {
            "" => (&rest[..addr.len() + 2], None),
            _ => match after.strip_prefix(':') {
                Some(port) => (&rest[..addr.len() + 2], Some(port)),
                None => return bad(": unexpected text after the IPv6 address"),
            },
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let host_ok = host.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    if !host_ok {
        return bad(": the host is missing or not a valid name or address");
    }
    match port {
        None => Ok(format!("{scheme}://{host}")),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(format!("{scheme}://{host}:{p}"))
            }
            _ => bad(": the port must be a number from 1 to 65535"),
        },
    }
}

/// `USER@REALM!TOKENID`, by PVE's own rules (pve-access-control `$token_full_regex`):
/// USER has no whitespace, `:` or `/`; REALM and TOKENID are `[A-Za-z][A-Za-z0-9.\-_]+`.
pub(super) fn token_id(s: &str) -> Result<(), String> {
    const EXPECTED: &str =
        "expected an API token id like \"agent@pve!reconciler\" (USER@REALM!TOKENID)";
    // A value with '=' is probably `id=secret` pasted from the token dialog: it must
    // not be echoed, since that would put the secret into a log line.
    if s.contains('=') {
        return Err(format!(
            "{EXPECTED}, found a value containing '=': put only the id here and the secret in token_secret_file"
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

/// PVE's node name syntax (`pve-node`): `[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?`.
pub(super) fn is_node_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

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
