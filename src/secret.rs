//! A string that never prints: the API token secret, and the desired-state source's
//! bearer token.

use std::fmt;

/// Holds a secret. `Debug` and `Display` print `<redacted>`; the only way to read
/// the value is [`Secret::expose`], which is called where an Authorization header is
/// built (the Proxmox client's, and `remote`'s) and where `remote` checks that an
/// answer does not repeat the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
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
}
