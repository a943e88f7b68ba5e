//! The scalar tokens of the JSON parser: strings (with every escape) and numbers.

use super::{Parser, Pos, SyntaxError};

impl Parser<'_> {
    /// A string starting at the opening quote; returns its decoded content.
    pub(super) fn string(&mut self) -> Result<String, SyntaxError> {
        let open = self.pos;
        self.bump(); // '"'
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(SyntaxError {
                    pos: open,
                    message: "this string is never closed: add the closing '\"'".to_string(),
                });
            };
            match b {
                b'"' => {
                    self.bump();
                    break;
                }
                b'\\' => {
                    let c = self.escape()?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0x00..=0x1F => {
                    let hint = if b == b'\n' {
                        "a line break inside a string must be written as \\n"
                    } else {
                        "write control characters as escapes such as \\t or \\u0001"
                    };
                    return Err(self.error(format!("control character in a string: {hint}")));
                }
                _ => {
                    out.push(b);
                    self.bump();
                }
            }
        }
        // Only whole UTF-8 sequences from a &str and encoded chars were copied.
        Ok(String::from_utf8(out).expect("copied from valid UTF-8"))
    }

    /// One escape sequence starting at the backslash.
    fn escape(&mut self) -> Result<char, SyntaxError> {
        let start = self.pos;
        self.bump(); // '\\'
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.bump();
                return self.unicode_escape(start);
            }
            _ => {
                return Err(SyntaxError {
                    pos: start,
                    message: format!(
                        "invalid escape '\\{}': use \\\", \\\\, \\/, \\b, \\f, \\n, \\r, \\t or \\uXXXX",
                        self.found().trim_matches('\'')
                    ),
                })
            }
        };
        self.bump();
        Ok(c)
    }

    /// The rest of a `\uXXXX` escape (and its low surrogate, if it is a high one).
    fn unicode_escape(&mut self, start: Pos) -> Result<char, SyntaxError> {
        let high = self.hex4(start)?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if !self.src[self.at..].starts_with(b"\\u") {
                return Err(lone_surrogate(start, high));
            }
            self.bump();
            self.bump();
            let low = self.hex4(start)?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(lone_surrogate(start, high));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00..0xE000).contains(&high) {
            return Err(lone_surrogate(start, high));
        } else {
            high
        };
        Ok(char::from_u32(code).expect("surrogates were excluded"))
    }

    fn hex4(&mut self, start: Pos) -> Result<u32, SyntaxError> {
        let mut v = 0;
        for _ in 0..4 {
            let d = self.peek().and_then(|b| (b as char).to_digit(16));
            let Some(d) = d else {
                return Err(SyntaxError {
                    pos: start,
                    message: "invalid \\u escape: expected four hex digits".to_string(),
                });
            };
            v = v * 16 + d;
            self.bump();
        }
        Ok(v)
    }

    /// A number, checked against JSON's grammar and returned as written.
    pub(super) fn number(&mut self) -> Result<String, SyntaxError> {
        let start = self.at;
        let pos = self.pos;
        let bad = |message: &str| SyntaxError {
            pos,
            message: message.to_string(),
        };
        if self.peek() == Some(b'-') {
            self.bump();
        }
        match self.peek() {
            Some(b'0') => {
                self.bump();
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return Err(bad("invalid number: leading zeros are not allowed"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(bad("invalid number: expected a digit after '-'")),
        }
        if self.peek() == Some(b'.') {
            self.bump();
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(bad("invalid number: expected a digit after '.'"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.bump();
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.bump();
            }
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(bad("invalid number: expected a digit in the exponent"));
            }
            self.digits();
        }
        let text = std::str::from_utf8(&self.src[start..self.at]).expect("ASCII digits");
        Ok(text.to_string())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.bump();
        }
    }
}

fn lone_surrogate(pos: Pos, code: u32) -> SyntaxError {
    SyntaxError {
        pos,
        message: format!("invalid \\u escape: \\u{code:04X} is half of a surrogate pair"),
    }
}
