//! A string that never prints: the API token secret, and the desired-state source's
//! bearer token.

use std::fmt;

/// Holds a secret. `Debug` and `Display` print `<redacted>`; the only way to read
/// the value is [`Secret::expose`], which is called where an Authorization header is
/// built (the Proxmox client's, and `remote`'s), and by [`Secret::is_repeated_in`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `text` (an answer's head or body) repeats the secret in a spelling an
    /// error message could show decoded: as it is, with JSON's escapes undone (`\/`,
    /// `\u0041`; leniently, so a broken document counts too), or percent-decoded. An
    /// answer that does is never quoted, parsed or acted on.
    pub fn is_repeated_in(&self, text: &[u8]) -> bool {
        let t = self.0.as_bytes();
        contains(text, t)
            || (text.contains(&b'\\') && contains(&json_unescaped(text), t))
            || (text.contains(&b'%') && contains(&percent_decoded(text), t))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// `text` with every JSON escape undone that can be; a malformed one is kept as it is.
/// A `\u` escape of a lone surrogate becomes U+FFFD.
fn json_unescaped(text: &[u8]) -> Vec<u8> {
    let hex4 = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(text.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'\\' || i + 1 >= text.len() {
            out.push(text[i]);
            i += 1;
            continue;
        }
        let simple = match text[i + 1] {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        let Some(unit) = (text[i + 1] == b'u').then(|| hex4(i + 2)).flatten() else {
            out.push(text[i]);
            i += 1;
            continue;
        };
        i += 6;
        let mut code = unit;
        if (0xD800..0xDC00).contains(&unit) && text.get(i..i + 2) == Some(b"\\u") {
            if let Some(low) = hex4(i + 2).filter(|l| (0xDC00..0xE000).contains(l)) {
                code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                i += 6;
            }
        }
        let c = char::from_u32(code).unwrap_or('\u{fffd}');
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    out
}

/// `text` with every `%XX` decoded; a malformed escape is kept as it is.
fn percent_decoded(text: &[u8]) -> Vec<u8> {
    let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if let (b'%', Some(hi), Some(lo)) = (text[i], hex(text.get(i + 1)), hex(text.get(i + 2))) {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("9f1c2d3e-dead-beef");
        assert_eq!(
            format!("{s} {s:?} {:?}", Some(&s)),
            "<redacted> <redacted> Some(<redacted>)"
        );
        assert_eq!(s.expose(), "9f1c2d3e-dead-beef");
    }

    #[test]
    fn is_found_in_any_spelling_an_error_could_decode() {
        let s = Secret::new("src/tok+0000");
        for text in [
            "src/tok+0000",
            r#"{"state": "Bearer src\/tok+0000"}"#,
            r#"{"x": "src/tok\u002b0000"}"#,
            r#"{"src\/tok+0000" 1}"#,
            r#"{"guests": [{"state": "src\/tok+0000"}], "guests": []}"#,
            "https://x/src%2Ftok%2B0000",
            "https://x/src%2ftok+0000",
        ] {
            assert!(s.is_repeated_in(text.as_bytes()), "{text}");
        }
        for text in [
            "src/tok",
            r#"{"state": "src\/tok"}"#,
            "https://x/src%2Ftok",
            "",
        ] {
            assert!(!s.is_repeated_in(text.as_bytes()), "{text}");
        }
        assert_eq!(
            json_unescaped(br#"a\u00e9\ud83d\ude00\x\"#),
            "aé😀\\x\\".as_bytes()
        );
        assert_eq!(percent_decoded(b"a%41%zz%4"), b"aA%zz%4");
        assert!(!Secret::new("").is_repeated_in(b"anything"));
    }
}
