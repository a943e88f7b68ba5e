//! The fast path of decoding a line: a reader for exactly the form the writer
//! produces (members in file order, no whitespace, numbers without sign or
//! fraction, strings without escapes), of every version, which takes a record
//! apart without serde.
//!
//! Replaying a journal decodes every line of it, and serde_json's general parser
//! was most of the time spent at open. This reader does not decide anything: on any
//! byte it does not expect it declines, and the line goes to serde_json, which has
//! the last word. So it only has to accept a subset of what serde_json accepts and
//! give the same members for it; a randomized test in `props` holds it to that.

use super::record::Wire;
use super::swar;
use super::view::{Str, StrMap};
use super::OpState;
use crate::pve::Vmid;
use std::borrow::Cow;

/// The members of `body` (a line without its `,"crc":"…"}` suffix), if it has the
/// writer's form; `None` sends it to serde_json. Which members the version allows
/// is not its business: it reads `key` wherever it stands, and `record` checks it
/// against `v`, for this reader and serde_json alike.
pub(crate) fn parse(body: &[u8]) -> Option<Wire<'_>> {
    let mut c = Cursor { b: body, at: 0 };
    c.lit(b"{\"v\":")?;
    let v = c.digit()?;
    c.lit(b",\"seq\":")?;
    let seq = c.number()?;
    c.lit(b",\"op\":")?;
    let op = c.number()?;
    c.lit(b",\"vmid\":")?;
    let vmid = Vmid::new(c.number()?)?;
    c.lit(b",\"kind\":")?;
    let kind = c.string()?;
    c.lit(b",\"params\":{")?;
    let mut params = Vec::new();
    if c.lit(b"}").is_none() {
        loop {
            let k = c.string()?;
            c.lit(b":")?;
            let v = c.string()?;
            params.push((Cow::Borrowed(k), Cow::Borrowed(v)));
            if c.lit(b",").is_none() {
                c.lit(b"}")?;
                break;
            }
        }
    }
    let key = match c.lit(b",\"key\":") {
        Some(()) => Some(c.string()?),
        None => None,
    };
    c.lit(b",\"state\":")?;
    let state = match c.string()? {
        "started" => OpState::Started,
        "task_running" => OpState::TaskRunning,
        "succeeded" => OpState::Succeeded,
        "failed" => OpState::Failed,
        "abandoned" => OpState::Abandoned,
        _ => return None,
    };
    let upid = match c.lit(b",\"upid\":") {
        Some(()) => Some(c.string()?),
        None => None,
    };
    let error = match c.lit(b",\"error\":") {
        Some(()) => Some(c.string()?),
        None => None,
    };
    c.lit(b",\"ts\":")?;
    let ts = c.string()?;
    if c.at != body.len() {
        return None;
    }
    Some(Wire {
        v,
        seq,
        op,
        vmid,
        kind: Str(Cow::Borrowed(kind)),
        params: StrMap(params),
        key: key.map(|k| Str(Cow::Borrowed(k))),
        state,
        upid: upid.map(|u| Str(Cow::Borrowed(u))),
        error: error.map(|e| Str(Cow::Borrowed(e))),
        ts: Str(Cow::Borrowed(ts)),
        crc: serde::de::IgnoredAny,
    })
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// Steps over `lit` if the input goes on with it. (A loop rather than
    /// `starts_with`, which the size-optimized build turns into a call to memcmp
    /// for a dozen bytes.)
    #[inline(always)]
    fn lit(&mut self, lit: &[u8]) -> Option<()> {
        if self.at + lit.len() > self.b.len() {
            return None;
        }
        let mut i = 0;
        while i < lit.len() {
            if self.b[self.at + i] != lit[i] {
                return None;
            }
            i += 1;
        }
        self.at += lit.len();
        Some(())
    }

    /// A number of one digit, 1 to 9 (a format version, as the writer writes it).
    #[inline(always)]
    fn digit(&mut self) -> Option<u32> {
        match self.b.get(self.at) {
            Some(&d @ b'1'..=b'9') => {
                self.at += 1;
                Some(u32::from(d - b'0'))
            }
            _ => None,
        }
    }

    /// A u64 as JSON writes it: digits, no leading zero, no sign, no fraction or
    /// exponent (whatever follows must be the next literal).
    fn number(&mut self) -> Option<u64> {
        let start = self.at;
        let mut n = 0u64;
        while self.at < self.b.len() && self.b[self.at].is_ascii_digit() {
            let d = u64::from(self.b[self.at] - b'0');
            n = n.checked_mul(10)?.checked_add(d)?;
            self.at += 1;
        }
        let digits = self.at - start;
        if digits == 0 || (digits > 1 && self.b[start] == b'0') {
            return None;
        }
        Some(n)
    }

    /// A JSON string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let rest = &self.b[self.at..];
        let len = swar::string_special(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        let s = std::str::from_utf8(&rest[..len]).ok()?;
        self.at += len + 1;
        Some(s)
    }
}
