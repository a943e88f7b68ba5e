//! One journal line: encoding with its CRC, and decoding with every check a single
//! line allows (the cross-line checks live in `index`).

use super::crc::Crc32c;
use super::view::{Str, StrMap, View};
use super::{version_for, OpId, OpState, Record, FORMAT_VERSION};
use crate::action::ActionKind;
use crate::pve::Vmid;
use std::io::Write as _;

/// `,"crc":"` + 8 hex digits + `"}`.
const CRC_SUFFIX_LEN: usize = 18;

/// Appends `rec` as one line, `\n` included, to `out`.
pub(crate) fn encode_into(rec: &Record, out: &mut Vec<u8>) {
    debug_assert_eq!(rec.v, version_for(rec.key.is_some()));
    let start = out.len();
    // Serializing a struct of strings, numbers and a string map cannot fail.
    serde_json::to_writer(&mut *out, rec).expect("a record always serializes");
    debug_assert_eq!(out.last(), Some(&b'}'));
    let crc = Crc32c::new().update(&out[start..]).finish();
    out.pop();
    let _ = writeln!(out, ",\"crc\":\"{crc:08x}\"}}");
}

/// `rec` as one line, `\n` included.
#[cfg(test)]
pub(crate) fn encode(rec: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode_into(rec, &mut out);
    out
}

/// Why a line was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadLine {
    pub(crate) reason: String,
    /// The CRC matched, so the line was written whole: it cannot be a torn write.
    pub(crate) checksummed: bool,
}

impl BadLine {
    pub(crate) fn torn(reason: impl Into<String>) -> BadLine {
        BadLine {
            reason: reason.into(),
            checksummed: false,
        }
    }

    fn whole(reason: impl Into<String>) -> BadLine {
        BadLine {
            reason: reason.into(),
            checksummed: true,
        }
    }
}

/// The members of a line of any version this build reads. Unknown members are an
/// error: any change of format gets a new version. A member that the line's
/// version does not have (`key` in version 1) is refused after reading, by the
/// version check in [`decode_with`].
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Wire<'a> {
    pub(crate) v: u32,
    pub(crate) seq: u64,
    pub(crate) op: u64,
    pub(crate) vmid: Vmid,
    #[serde(borrow)]
    pub(crate) kind: Str<'a>,
    #[serde(borrow)]
    pub(crate) params: StrMap<'a>,
    #[serde(default, borrow)]
    pub(crate) key: Option<Str<'a>>,
    pub(crate) state: OpState,
    #[serde(default, borrow)]
    pub(crate) upid: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub(crate) error: Option<Str<'a>>,
    #[serde(borrow)]
    pub(crate) ts: Str<'a>,
    #[allow(dead_code)]
    pub(crate) crc: serde::de::IgnoredAny,
}

/// Decodes one line, without its `\n`, borrowing from it. The UPID is only
/// checked for being present where it must be; [`View::upid`] parses it. (`scan`
/// finds NUL bytes as it looks for line ends, and calls [`decode_nul_free`].)
#[cfg(test)]
pub(crate) fn decode(line: &[u8]) -> Result<View<'_>, BadLine> {
    if line.contains(&0) {
        return Err(BadLine::torn("nul bytes"));
    }
    decode_nul_free(line)
}

/// [`decode`], for a line the caller has already found free of NUL bytes.
pub(crate) fn decode_nul_free(line: &[u8]) -> Result<View<'_>, BadLine> {
    debug_assert!(!line.contains(&0));
    decode_with(line, super::canonical::parse)
}

/// [`decode`] by serde_json alone, without the fast path: what the fast path must
/// agree with.
#[cfg(test)]
pub(crate) fn decode_by_serde(line: &[u8]) -> Result<View<'_>, BadLine> {
    if line.contains(&0) {
        return Err(BadLine::torn("nul bytes"));
    }
    decode_with(line, |_| None)
}

/// Checks the CRC and the version, then reads the members with `fast` or, where it
/// declines, serde_json, and checks that the line's version is the one its members
/// call for.
fn decode_with<'a>(
    line: &'a [u8],
    fast: impl FnOnce(&'a [u8]) -> Option<Wire<'a>>,
) -> Result<View<'a>, BadLine> {
    let Some(body_len) = line.len().checked_sub(CRC_SUFFIX_LEN) else {
        return Err(BadLine::torn("too short for a record"));
    };
    let (body, suffix) = line.split_at(body_len);
    let stored = parse_crc_suffix(suffix).ok_or_else(|| BadLine::torn("no crc at the end"))?;
    let computed = Crc32c::new().update(body).update(b"}").finish();
    if stored != computed {
        return Err(BadLine::torn(format!(
            "crc mismatch: stored {stored:08x}, computed {computed:08x}"
        )));
    }
    let v = check_version(body)?;
    let w = match fast(body) {
        Some(w) => w,
        None => {
            serde_json::from_slice(line).map_err(|e| BadLine::whole(format!("bad record: {e}")))?
        }
    };
    debug_assert_eq!(w.v, v);
    let key = w.key.map(|s| s.0);
    if v != version_for(key.is_some()) {
        return Err(BadLine::whole(match key {
            Some(_) => format!("a version {v} record with key (a member of version 2)"),
            None => format!("a version {v} record without key"),
        }));
    }
    let kind: ActionKind = w.kind.0.parse().map_err(BadLine::whole)?;
    let view = View {
        seq: w.seq,
        op: OpId(w.op),
        vmid: w.vmid,
        kind,
        params: w.params.0,
        key,
        state: w.state,
        upid: w.upid.map(|s| s.0),
        error: w.error.map(|s| s.0),
        ts: w.ts.0,
        unix_ts: None,
    };
    let unix_ts = check_shape(&view).map_err(BadLine::whole)?;
    Ok(View {
        unix_ts: Some(unix_ts),
        ..view
    })
}

/// Decodes one line into an owned record, with its UPID parsed.
#[cfg(test)]
pub(crate) fn decode_record(line: &[u8]) -> Result<Record, BadLine> {
    decode(line)?.to_record().map_err(BadLine::whole)
}

fn parse_crc_suffix(suffix: &[u8]) -> Option<u32> {
    let hex = suffix.strip_prefix(b",\"crc\":\"")?.strip_suffix(b"\"}")?;
    if hex.len() != 8 || !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// `v` is the first member; a version this build does not read is refused before
/// reading further. Returns the version.
fn check_version(body: &[u8]) -> Result<u32, BadLine> {
    let rest = body
        .strip_prefix(b"{\"v\":")
        .ok_or_else(|| BadLine::whole("the first member is not the format version v"))?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let v = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    match v {
        Some(v) if (1..=u64::from(FORMAT_VERSION)).contains(&v) => Ok(v as u32),
        Some(v) => Err(BadLine::whole(format!(
            "unsupported format version {v} (this build reads 1 to {FORMAT_VERSION})"
        ))),
        None => Err(BadLine::whole("the format version v is not a number")),
    }
}

/// Which optional members each state must and must not have, and that `ts` is a
/// timestamp. Returns it in Unix seconds, so that replay does not parse it again.
fn check_shape(rec: &View<'_>) -> Result<i64, String> {
    if rec.seq == 0 || rec.op.0 == 0 {
        return Err("seq and op start at 1".into());
    }
    let Some(unix_ts) = crate::time::parse_rfc3339(&rec.ts) else {
        return Err(format!("bad timestamp {:?}", rec.ts));
    };
    let (upid, error) = (rec.upid.is_some(), rec.error.is_some());
    let ok = match rec.state {
        OpState::Started => !upid && !error,
        OpState::TaskRunning => upid && !error,
        OpState::Succeeded => !error,
        OpState::Failed | OpState::Abandoned => error,
    };
    if ok {
        Ok(unix_ts)
    } else {
        Err(format!(
            "a {} record {} upid and {} error",
            rec.state,
            if upid { "with" } else { "without" },
            if error { "with" } else { "without" },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Params;

    fn sample(state: OpState) -> Record {
        keyed(state, None)
    }

    fn keyed(state: OpState, key: Option<&str>) -> Record {
        let mut params = Params::new();
        params.insert("timeout".into(), "60".into());
        params.insert("description".into(), "line 1\nline \"2\"\u{0}é".into());
        Record {
            v: version_for(key.is_some()),
            seq: 42,
            op: OpId(17),
            vmid: Vmid::new(101).unwrap(),
            kind: ActionKind::Shutdown,
            params,
            key: key.map(str::to_string),
            state,
            upid: (state != OpState::Started).then(|| {
                "UPID:pve1:0001A2B3:0456789A:6650F1C2:vzshutdown:101:agent@pve!reconciler:"
                    .parse()
                    .unwrap()
            }),
            error: matches!(state, OpState::Failed | OpState::Abandoned)
                .then(|| "CT is locked (backup)".to_string()),
            ts: "2026-11-26T20:49:12.345Z".into(),
        }
    }

    #[test]
    fn round_trips_every_state_with_and_without_a_key() {
        for key in [
            None,
            Some("first-boot"),
            Some("a \"quoted\"\nkey é"),
            Some(""),
        ] {
            for state in [
                OpState::Started,
                OpState::TaskRunning,
                OpState::Succeeded,
                OpState::Failed,
                OpState::Abandoned,
            ] {
                let rec = keyed(state, key);
                let line = encode(&rec);
                assert_eq!(line.last(), Some(&b'\n'));
                let line = &line[..line.len() - 1];
                assert!(!line.contains(&b'\n') && !line.contains(&0));
                let text = String::from_utf8_lossy(line);
                let v = if key.is_some() { 2 } else { 1 };
                assert!(text.starts_with(&format!("{{\"v\":{v},")), "{text}");
                assert_eq!(text.contains(",\"key\":"), key.is_some(), "{text}");
                assert_eq!(decode_record(line).unwrap(), rec);
                assert_eq!(decode_by_serde(line).unwrap(), decode(line).unwrap());
            }
        }
    }

    #[test]
    fn the_fast_path_reads_both_versions() {
        // Without escapes, the writer's lines of either version never go to serde.
        for key in [None, Some("first-boot")] {
            let rec = Record {
                params: Params::from([("timeout".into(), "60".into())]),
                error: None,
                ..keyed(OpState::TaskRunning, key)
            };
            let line = encode(&rec);
            let body = &line[..line.len() - 1 - CRC_SUFFIX_LEN];
            let wire = super::super::canonical::parse(body).expect("the fast path reads it");
            assert_eq!(wire.v, rec.v);
            assert_eq!(wire.key.map(|k| k.0.into_owned()), rec.key);
            assert_eq!(decode_record(&line[..line.len() - 1]).unwrap(), rec);
        }
    }

    #[test]
    fn a_key_goes_right_after_params() {
        let line = encode(&keyed(OpState::Started, Some("boot-1")));
        let text = String::from_utf8(line).unwrap();
        assert!(
            text.starts_with(
                "{\"v\":2,\"seq\":42,\"op\":17,\"vmid\":101,\"kind\":\"shutdown\",\"params\":{"
            ),
            "{text}"
        );
        assert!(
            text.contains("},\"key\":\"boot-1\",\"state\":\"started\",\"ts\":"),
            "{text}"
        );
    }

    #[test]
    fn the_documented_lines_decode() {
        // The examples in the module doc, byte for byte: their crcs must stay right.
        for (v, state, key) in [
            (1, OpState::TaskRunning, None),
            (2, OpState::Started, Some("first-boot")),
        ] {
            let doc = include_str!("mod.rs")
                .lines()
                .find(|l| l.starts_with(&format!("//! {{\"v\":{v}")))
                .unwrap()
                .trim_start_matches("//! ");
            let rec = decode_record(doc.as_bytes()).unwrap();
            assert_eq!((rec.v, rec.state, rec.key.as_deref()), (v, state, key));
            assert_eq!(encode(&rec), format!("{doc}\n").into_bytes());
        }
    }

    #[test]
    fn crc_covers_the_object_without_the_crc_member() {
        let line = encode(&sample(OpState::Started));
        let text = std::str::from_utf8(&line).unwrap().trim_end();
        let at = text.rfind(",\"crc\":\"").unwrap();
        let object = format!("{}}}", &text[..at]);
        let expected = format!("{:08x}", super::super::crc32c(object.as_bytes()));
        assert_eq!(&text[at + 8..at + 16], expected);
        // And the object without crc is the record's own serialization.
        assert_eq!(
            object,
            serde_json::to_string(&sample(OpState::Started)).unwrap()
        );
    }

    fn reason(line: &str) -> (String, bool) {
        let e = decode_record(line.as_bytes()).unwrap_err();
        (e.reason, e.checksummed)
    }

    /// `body` (an object without its closing brace) with a correct crc member.
    fn sealed(body: &str) -> String {
        let crc = super::super::crc32c(format!("{body}}}").as_bytes());
        format!("{body},\"crc\":\"{crc:08x}\"}}")
    }

    #[test]
    fn rejects_bad_lines_with_a_reason() {
        let good = String::from_utf8(encode(&sample(OpState::Started))).unwrap();
        let good = good.trim_end();
        assert_eq!(reason(""), ("too short for a record".into(), false));
        assert!(!reason(&good[..good.len() - 3]).1);
        let flipped = good.replacen("\"seq\":42", "\"seq\":43", 1);
        assert!(reason(&flipped).0.starts_with("crc mismatch"));
        assert_eq!(reason("\0\0\0"), ("nul bytes".into(), false));
        let upper = good.to_uppercase();
        assert_eq!(reason(&upper), ("no crc at the end".into(), false));

        let v3 = sealed(r#"{"v":3,"seq":1"#);
        assert_eq!(
            reason(&v3),
            (
                "unsupported format version 3 (this build reads 1 to 2)".into(),
                true
            )
        );
        let v0 = sealed(r#"{"v":0,"seq":1"#);
        assert!(reason(&v0).0.starts_with("unsupported format version 0"));
        // A version has exactly its members: a key in version 1 is refused, and so
        // is a version-2 line without one, by the fast path and serde_json alike.
        let v1_key = sealed(
            r#"{"v":1,"seq":1,"op":1,"vmid":101,"kind":"start","params":{},"key":"k","state":"started","ts":"2026-11-26T20:49:12Z""#,
        );
        let v2_no_key = sealed(
            r#"{"v":2,"seq":1,"op":1,"vmid":101,"kind":"start","params":{},"state":"started","ts":"2026-11-26T20:49:12Z""#,
        );
        assert_eq!(
            reason(&v1_key),
            (
                "a version 1 record with key (a member of version 2)".into(),
                true
            )
        );
        assert_eq!(
            reason(&v2_no_key),
            ("a version 2 record without key".into(), true)
        );
        for line in [&v1_key, &v2_no_key] {
            assert_eq!(
                decode_by_serde(line.as_bytes()),
                decode(line.as_bytes()),
                "{line}"
            );
        }
        // A key that is not a string is refused; a key member in the wrong place
        // goes to serde_json, which takes members in any order.
        let number_key = sealed(
            r#"{"v":2,"seq":1,"op":1,"vmid":101,"kind":"start","params":{},"key":7,"state":"started","ts":"2026-11-26T20:49:12Z""#,
        );
        assert!(reason(&number_key)
            .0
            .starts_with("bad record: invalid type"));
        let late_key = sealed(
            r#"{"v":2,"seq":1,"op":1,"vmid":101,"kind":"start","params":{},"state":"started","ts":"2026-11-26T20:49:12Z","key":"k""#,
        );
        let body = &late_key[..late_key.len() - CRC_SUFFIX_LEN];
        assert!(super::super::canonical::parse(body.as_bytes()).is_none());
        assert_eq!(
            decode_record(late_key.as_bytes()).unwrap().key.as_deref(),
            Some("k")
        );
        let no_v = sealed(r#"{"seq":1"#);
        assert!(reason(&no_v).0.contains("format version"));
        let extra = sealed(
            r#"{"v":1,"seq":1,"op":1,"vmid":101,"kind":"start","params":{},"state":"started","ts":"2026-11-26T20:49:12Z","new":1"#,
        );
        assert!(
            reason(&extra).0.contains("unknown field `new`"),
            "{:?}",
            reason(&extra)
        );
        let no_upid = sealed(
            r#"{"v":1,"seq":1,"op":1,"vmid":101,"kind":"start","params":{},"state":"task_running","ts":"2026-11-26T20:49:12Z""#,
        );
        assert_eq!(
            reason(&no_upid),
            (
                "a task_running record without upid and without error".into(),
                true
            )
        );
        let bad_ts = sealed(
            r#"{"v":1,"seq":1,"op":1,"vmid":101,"kind":"start","params":{},"state":"started","ts":"yesterday""#,
        );
        assert_eq!(
            reason(&bad_ts),
            ("bad timestamp \"yesterday\"".into(), true)
        );
        // The UPID is parsed when it is used; a bad one is then refused.
        let bad_upid = sealed(
            r#"{"v":1,"seq":1,"op":1,"vmid":101,"kind":"start","params":{},"state":"task_running","upid":"UPID:nonsense","ts":"2026-11-26T20:49:12Z""#,
        );
        assert!(decode(bad_upid.as_bytes()).is_ok());
        assert_eq!(
            reason(&bad_upid),
            (
                "invalid UPID \"UPID:nonsense\": missing trailing colon".into(),
                true
            )
        );
    }
}
