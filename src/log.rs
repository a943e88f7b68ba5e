//! logfmt lines on stderr: `level=info msg="action applied" vmid=101 kind=start`.
//!
//! When stderr goes to journald (`JOURNAL_STREAM` is set) no timestamp is written,
//! since journald adds its own; otherwise each line starts with `ts=` in UTC.
//! Values are quoted when they need it. Callers never pass secrets: the token secret
//! is a [`crate::secret::Secret`], which prints as `<redacted>` anyway.

use std::fmt::{self, Display, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// Severity, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "debug" => Ok(Level::Debug),
            "info" => Ok(Level::Info),
            "warn" => Ok(Level::Warn),
            "error" => Ok(Level::Error),
            _ => Err(format!(
                "unknown log level {s:?}: use debug, info, warn or error"
            )),
        }
    }
}

static MIN_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static TIMESTAMPS: OnceLock<bool> = OnceLock::new();

/// Sets the lowest level that is written.
pub fn set_level(level: Level) {
    MIN_LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 >= MIN_LEVEL.load(Ordering::Relaxed)
}

fn timestamps() -> bool {
    *TIMESTAMPS.get_or_init(|| std::env::var_os("JOURNAL_STREAM").is_none())
}

/// One key and value of a log line.
pub type Field<'a> = (&'a str, &'a dyn Display);

/// Writes one line at `level`. The whole line goes out in one `write` so lines from
/// different threads never interleave.
pub fn log(level: Level, msg: &str, fields: &[Field<'_>]) {
    if !enabled(level) {
        return;
    }
    let line = format_line(
        level,
        msg,
        fields,
        timestamps().then(crate::time::now_rfc3339),
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Renders a line; separate from [`log`] so that it can be tested.
pub fn format_line(level: Level, msg: &str, fields: &[Field<'_>], ts: Option<String>) -> String {
    let mut line = String::with_capacity(128);
    if let Some(ts) = ts {
        let _ = write!(line, "ts={ts} ");
    }
    let _ = write!(line, "level={} msg=", level.as_str());
    push_value(&mut line, msg);
    for (key, value) in fields {
        let _ = write!(line, " {key}=");
        push_value(&mut line, &value.to_string());
    }
    line.push('\n');
    line
}

fn push_value(out: &mut String, v: &str) {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
    if plain {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

pub fn debug(msg: &str, fields: &[Field<'_>]) {
    log(Level::Debug, msg, fields)
}

pub fn info(msg: &str, fields: &[Field<'_>]) {
    log(Level::Info, msg, fields)
}

pub fn warn(msg: &str, fields: &[Field<'_>]) {
    log(Level::Warn, msg, fields)
}

pub fn error(msg: &str, fields: &[Field<'_>]) {
    log(Level::Error, msg, fields)
}

/// Displays an error with its chain of sources joined by `: `.
pub struct Chain<'a>(pub &'a dyn std::error::Error);

impl Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(e) = src {
            write!(f, ": {e}")?;
            src = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_logfmt() {
        let line = format_line(
            Level::Info,
            "action applied",
            &[("vmid", &101), ("kind", &"start"), ("err", &"a \"b\"\nc")],
            None,
        );
        assert_eq!(
            line,
            "level=info msg=\"action applied\" vmid=101 kind=start err=\"a \\\"b\\\"\\nc\"\n"
        );
        let line = format_line(Level::Warn, "x", &[("empty", &"")], Some("T".into()));
        assert_eq!(line, "ts=T level=warn msg=x empty=\"\"\n");
    }
}
