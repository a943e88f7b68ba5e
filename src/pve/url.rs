//! The API base URL: one set of rules, used by the config check and by the client, so
//! that `felhom-agent check` never accepts a URL the client then refuses.
//!
//! `https://host[:port]` (one trailing `/` allowed), or `http://` to a loopback IPv4
//! address. Plain http is decided on the parsed address, never on a name: `localhost`
//! goes through the resolver (and `localhost.` to DNS), so it could be answered by
//! another host, and the token would travel in clear text.
//!
//! IPv6 literals (`[::1]`) are refused: minreq splits the host at the first `:`, so it
//! cannot connect to one.
//!
//! No message ever shows the user information of a URL: it may hold a password, and
//! a config error reaches the log and status.json on a reload.

use std::fmt;
use std::net::Ipv4Addr;

/// A checked base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub https: bool,
    pub host: String,
    pub port: Option<u16>,
    /// `https://127.0.0.1:8006`: scheme, host and port, no trailing slash.
    pub origin: String,
}

/// Why a base URL was refused. `Display`: `invalid api url "https://***@pve1": why`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError {
    /// The URL as given, with any user information replaced by `***`.
    pub shown: String,
    /// What is wrong and what to do, e.g. `the port must be a number from 1 to 65535`.
    pub why: String,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid api url {:?}: {}", self.shown, self.why)
    }
}

impl std::error::Error for UrlError {}

/// `s` with everything between the scheme's `://` (or the start) and the last `@`
/// replaced by `***`. Over-redacting a path that holds an `@` is the safe mistake.
pub fn redact_userinfo(s: &str) -> String {
    let Some(at) = s.rfind('@') else {
        return s.to_string();
    };
    let start = s[..at].find("://").map_or(0, |i| i + 3);
    format!("{}***{}", &s[..start], &s[at..])
}

impl BaseUrl {
    /// Checks `s` against the rules in the module doc.
    pub fn parse(s: &str) -> Result<BaseUrl, UrlError> {
        let bad = |why: &str| UrlError {
            shown: redact_userinfo(s),
            why: why.to_string(),
        };
        let (https, rest) = if let Some(rest) = s.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = s.strip_prefix("http://") {
            (false, rest)
        } else if s.contains("://") {
            return Err(bad("the scheme must be https or http"));
        } else {
            return Err(bad("it must start with https://"));
        };
        // Before the path check: a password may hold '/', '?' or '#'.
        if rest.contains('@') {
            return Err(bad(
                "remove the user name and password, the agent authenticates with its API token",
            ));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(bad("remove the path, the agent adds /api2/json itself"));
        }
        if rest.starts_with('[') {
            return Err(bad(
                "IPv6 address literals are not supported by the agent's http library; \
                 use a host name, or 127.0.0.1 for this node",
            ));
        }
        let (host, port) = match rest.split_once(':') {
            Some((host, p)) => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|n| *n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?;
                (host, Some(port))
            }
            None => (rest, None),
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !host_ok {
            return Err(bad("the host is missing or not a valid name or address"));
        }
        if !https && !is_loopback_ip(host) {
            let why = if host.trim_end_matches('.').eq_ignore_ascii_case("localhost") {
                format!(
                    "plain http is only allowed to a loopback IP address; {host:?} is a name \
                     the resolver could answer with another host: use http://127.0.0.1"
                )
            } else {
                format!(
                    "plain http is only allowed to a loopback IP address (127.0.0.0/8), \
                     not {host:?}: use https"
                )
            };
            return Err(bad(&why));
        }
        let scheme = if https { "https" } else { "http" };
        let origin = match port {
            Some(p) => format!("{scheme}://{host}:{p}"),
            None => format!("{scheme}://{host}"),
        };
        Ok(BaseUrl {
            https,
            host: host.to_string(),
            port,
            origin,
        })
    }
}

/// An IPv4 literal in 127.0.0.0/8. Names, even `localhost`, are not.
fn is_loopback_ip(host: &str) -> bool {
    host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str, origin: &str) {
        match BaseUrl::parse(url) {
            Ok(b) => assert_eq!(b.origin, origin, "{url}"),
            Err(e) => panic!("{url}: {e}"),
        }
    }

    fn err(url: &str, why: &str) -> UrlError {
        let e = BaseUrl::parse(url).unwrap_err();
        assert!(e.why.contains(why), "{url}: {e}");
        e
    }

    #[test]
    fn accepted() {
        ok("https://127.0.0.1:8006", "https://127.0.0.1:8006");
        ok(
            "https://pve1.example.com:8006/",
            "https://pve1.example.com:8006",
        );
        ok("https://pve1", "https://pve1");
        ok("https://localhost:8006", "https://localhost:8006");
        ok("http://127.0.0.1:8006", "http://127.0.0.1:8006");
        ok("http://127.1.2.3:1", "http://127.1.2.3:1");
        ok("https://127.0.0.1:65535", "https://127.0.0.1:65535");
    }

    #[test]
    fn plain_http_only_to_a_loopback_ip_literal() {
        for url in [
            "http://localhost:8006",
            "http://LocalHost.:8006",
            "http://localhost",
        ] {
            let e = err(url, "use http://127.0.0.1");
            assert!(e.why.contains("is a name"), "{e}");
        }
        for url in [
            "http://10.0.0.1:8006",
            "http://128.0.0.1",
            "http://pve1:8006",
            "http://127.1",
            "http://127.0.0.1.",
            "http://0.0.0.0",
        ] {
            err(
                url,
                "plain http is only allowed to a loopback IP address (127.0.0.0/8)",
            );
        }
    }

    #[test]
    fn refused_with_a_reason() {
        err("ftp://pve1", "the scheme must be https or http");
        err("HTTPS://pve1", "the scheme must be https or http");
        err("pve1:8006", "it must start with https://");
        err("https://pve1:8006/api2/json", "remove the path");
        err("https://pve1:8006//", "remove the path");
        err("https://pve1:8006?x=1", "remove the path");
        err("https://pve1#top", "remove the path");
        for p in ["0", "65536", "", "+80", "abc", "80:81"] {
            err(&format!("https://pve1:{p}"), "the port must be a number");
        }
        err("https://:8006", "the host is missing");
        err("https://pve 1", "the host is missing");
        err("https://pve1\u{e9}", "the host is missing");
        for url in [
            "https://[::1]:8006",
            "http://[::1]:8006",
            "https://[fe80::1]",
            "https://[::1",
        ] {
            err(url, "IPv6 address literals are not supported");
        }
    }

    #[test]
    fn user_information_is_never_shown() {
        for url in [
            "https://root:hunter2@pve1:8006",
            "http://root:hunter2@127.0.0.1",
            "https://root:hun/ter2@pve1",
            "https://root:hun?ter2@pve1/x",
            "https://root:hu@nter2@pve1",
            "root:hunter2@pve1",
            "ftp://root:hunter2@pve1",
        ] {
            let e = BaseUrl::parse(url).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(
                !shown.contains("hunter2") && !shown.contains("ter2"),
                "{shown}"
            );
            assert!(!shown.contains("root"), "{shown}");
            assert!(e.shown.contains("***@"), "{shown}");
        }
        assert_eq!(
            redact_userinfo("https://root:pw@pve1:8006"),
            "https://***@pve1:8006"
        );
        assert_eq!(redact_userinfo("https://pve1"), "https://pve1");
    }
}
