//! `application/x-www-form-urlencoded` encoding for request bodies, query strings and
//! path segments.
//!
//! PVE's form decoder splits pairs on `&` *and* `;` and turns `+` into a space
//! (docs/proxmox-api.md §1.2), so everything outside RFC 3986's unreserved characters is
//! percent-encoded: `;` is `%3B`, `+` is `%2B`, a space is `%20`, a newline `%0A`.
//! Spaces are deliberately not sent as `+`: `%20` means the same to every decoder.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Request parameters by PVE's own names, already in wire form (`onboot` is `"1"`,
/// `delete` is `"cores,swap"`). Ordered, so rendering and journaling are stable.
pub type Params = BTreeMap<String, String>;

/// Percent-encodes every byte that is not an unreserved character
/// (`A-Z a-z 0-9 - . _ ~`). UTF-8 is encoded byte by byte.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `k1=v1&k2=v2`, both sides encoded, in the order given.
pub fn encode_pairs<'a, K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> String
where
    K: AsRef<str> + 'a,
    V: AsRef<str> + 'a,
{
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&encode_component(k.as_ref()));
        out.push('=');
        out.push_str(&encode_component(v.as_ref()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_outside_unreserved() {
        let table = [
            ("prod;web", "prod%3Bweb"),
            ("a+b", "a%2Bb"),
            ("managed by reconciler", "managed%20by%20reconciler"),
            ("line1\nline2\n", "line1%0Aline2%0A"),
            ("a&b=c", "a%26b%3Dc"),
            ("100%", "100%25"),
            ("cores,swap", "cores%2Cswap"),
            ("ok-._~AZaz09", "ok-._~AZaz09"),
            ("é", "%C3%A9"),
            ("#:/?@!", "%23%3A%2F%3F%40%21"),
            ("", ""),
        ];
        for (input, want) in table {
            assert_eq!(encode_component(input), want, "{input:?}");
        }
    }

    #[test]
    fn encodes_params_in_order() {
        let mut p = Params::new();
        p.insert("tags".into(), "prod;web".into());
        p.insert("cores".into(), "2".into());
        p.insert("description".into(), "a b\n".into());
        p.insert("delete".into(), "swap".into());
        p.insert("digest".into(), "0f3c".into());
        assert_eq!(
            encode_pairs(&p),
            "cores=2&delete=swap&description=a%20b%0A&digest=0f3c&tags=prod%3Bweb"
        );
        assert_eq!(encode_pairs(&Params::new()), "");
        assert_eq!(encode_pairs([("current", "1")]), "current=1");
    }
}
