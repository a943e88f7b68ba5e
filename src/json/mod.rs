//! A small JSON parser that remembers where every value and key starts.
//!
//! serde_json forgets positions once a value is parsed, and our error messages must
//! point an operator at the exact line and column of a bad value, so the config and
//! desired-state files are parsed here into a [`Node`] tree instead. It accepts
//! exactly RFC 8259 JSON (plus a leading UTF-8 byte order mark), keeps numbers as
//! their source text so that a message can quote what the operator wrote, and keeps
//! object members in file order, duplicates included, so that validation can name
//! both places of a duplicate key.
//!
//! Lines and columns count from 1; a column counts characters (Unicode scalar
//! values), not bytes, so it matches what an editor shows. A tab is one column.

pub mod diag;
mod scalar;
#[cfg(test)]
pub(crate) mod tests_fuzz;

use std::fmt;

/// Nesting deeper than this is refused instead of risking the stack: our formats
/// need three levels.
const MAX_DEPTH: usize = 64;

/// A position in the source text: 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A JSON value together with the position of its first character.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// The value part of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number exactly as written (already checked against JSON's grammar).
    Number(String),
    String(String),
    Array(Vec<Node>),
    /// Members in file order; a repeated key appears once per occurrence.
    Object(Vec<Member>),
}

/// One `"key": value` pair of an object.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub key: String,
    /// Where the key's opening quote is.
    pub key_pos: Pos,
    pub value: Node,
}

/// Why the text is not JSON, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

impl std::error::Error for SyntaxError {}

impl Node {
    /// The value as a non-negative integer, if it is a JSON number written as plain
    /// digits that fit in a `u64` (`1.0`, `1e3` and `-1` are not).
    pub fn as_u64(&self) -> Option<u64> {
        match &self.value {
            Value::Number(s) if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
            _ => None,
        }
    }

    /// What the value is, for a message that ends in `found ...`: numbers, booleans
    /// and null as written, strings quoted (and cut when long), containers by kind.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "null".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Number(s) if s.len() > 40 => format!("{}...", &s[..40]),
            Value::Number(s) => s.clone(),
            Value::String(s) => format!("a string {}", quote(s)),
            Value::Array(_) => "an array".to_string(),
            Value::Object(_) => "an object".to_string(),
        }
    }
}

/// `s` in double quotes with escapes, cut after 40 characters so that a message stays
/// on one readable line.
pub fn quote(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// Parses one JSON document.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut p = Parser {
        src: text.as_bytes(),
        at: 0,
        pos: Pos { line: 1, col: 1 },
    };
    if text.starts_with('\u{feff}') {
        p.at = 3;
    }
    p.skip_space()?;
    if p.peek().is_none() {
        return Err(p.error("the file is empty: it must hold one JSON object"));
    }
    let node = p.value(0)?;
    p.skip_space()?;
    if p.peek().is_some() {
        return Err(p.error(format!(
            "unexpected {} after the end of the JSON value",
            p.found()
        )));
    }
    Ok(node)
}

struct Parser<'a> {
    src: &'a [u8],
    /// Byte offset of the next unread byte.
    at: usize,
    /// Position of the next unread byte.
    pos: Pos,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.at).copied()
    }

    /// Consumes one byte, keeping the position: a column is counted at the first
    /// byte of each UTF-8 sequence only.
    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        if b == b'\n' {
            self.pos.line += 1;
            self.pos.col = 1;
        } else if b & 0xC0 != 0x80 {
            self.pos.col += 1;
        }
        Some(b)
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            pos: self.pos,
            message: message.into(),
        }
    }

    /// The next character, quoted, or "end of file".
    fn found(&self) -> String {
        let rest = std::str::from_utf8(&self.src[self.at..]).unwrap_or("");
        match rest.chars().next() {
            None => "end of file".to_string(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn skip_space(&mut self) -> Result<(), SyntaxError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => {
                    self.bump();
                }
                Some(b'/') if matches!(self.src.get(self.at + 1), Some(b'/' | b'*')) => {
                    return Err(self.error("comments are not allowed in JSON: remove them"));
                }
                _ => return Ok(()),
            }
        }
    }

    fn expect_value_error(&self) -> SyntaxError {
        match self.peek() {
            Some(b'\'') => self.error("strings must use double quotes (\"), not single quotes"),
            _ => self.error(format!("expected a value, found {}", self.found())),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let pos = self.pos;
        let value = match self.peek() {
            Some(b'{') | Some(b'[') if depth >= MAX_DEPTH => {
                return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
            }
            Some(b'{') => Value::Object(self.object(depth)?),
            Some(b'[') => Value::Array(self.array(depth)?),
            Some(b'"') => Value::String(self.string()?),
            Some(b'-' | b'0'..=b'9') => Value::Number(self.number()?),
            Some(b't') => self.word("true", Value::Bool(true))?,
            Some(b'f') => self.word("false", Value::Bool(false))?,
            Some(b'n') => self.word("null", Value::Null)?,
            _ => return Err(self.expect_value_error()),
        };
        Ok(Node { pos, value })
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, SyntaxError> {
        if self.src[self.at..].starts_with(word.as_bytes()) {
            for _ in 0..word.len() {
                self.bump();
            }
            Ok(value)
        } else {
            Err(self.expect_value_error())
        }
    }

    fn object(&mut self, depth: usize) -> Result<Vec<Member>, SyntaxError> {
        self.bump(); // '{'
        let mut members = Vec::new();
        self.skip_space()?;
        if self.peek() == Some(b'}') {
            self.bump();
            return Ok(members);
        }
        loop {
            self.skip_space()?;
            let key_pos = self.pos;
            match self.peek() {
                Some(b'"') => {}
                Some(b'}') => return Err(self.error(
                    "expected a key, found '}': remove the trailing comma, JSON does not allow one",
                )),
                _ => {
                    return Err(self.error(format!(
                        "expected a key in double quotes, found {}",
                        self.found()
                    )))
                }
            }
            let key = self.string()?;
            self.skip_space()?;
            if self.peek() != Some(b':') {
                return Err(self.error(format!(
                    "expected ':' after the key {}, found {}",
                    quote(&key),
                    self.found()
                )));
            }
            self.bump();
            self.skip_space()?;
            let value = self.value(depth + 1)?;
            members.push(Member {
                key,
                key_pos,
                value,
            });
            self.skip_space()?;
            match self.peek() {
                Some(b',') => {
                    self.bump();
                }
                Some(b'}') => {
                    self.bump();
                    return Ok(members);
                }
                _ => return Err(self.missing_separator("'}'", "an object member")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Vec<Node>, SyntaxError> {
        self.bump(); // '['
        let mut items = Vec::new();
        self.skip_space()?;
        if self.peek() == Some(b']') {
            self.bump();
            return Ok(items);
        }
        loop {
            self.skip_space()?;
            if self.peek() == Some(b']') {
                return Err(self.error(
                    "expected a value, found ']': remove the trailing comma, JSON does not allow one",
                ));
            }
            items.push(self.value(depth + 1)?);
            self.skip_space()?;
            match self.peek() {
                Some(b',') => {
                    self.bump();
                }
                Some(b']') => {
                    self.bump();
                    return Ok(items);
                }
                _ => return Err(self.missing_separator("']'", "an array element")),
            }
        }
    }

    fn missing_separator(&self, close: &str, after: &str) -> SyntaxError {
        let hint = match self.peek() {
            Some(b'"' | b'{' | b'[' | b'0'..=b'9' | b'-' | b't' | b'f' | b'n') => {
                ": a comma is probably missing"
            }
            _ => "",
        };
        self.error(format!(
            "expected ',' or {close} after {after}, found {}{hint}",
            self.found()
        ))
    }
}
