//! Reading a whole journal's bytes: decodes each line, feeds the good ones to the
//! caller, finds a torn tail, and tells it apart from corruption. Pure: no I/O.

use super::record::{decode_nul_free, BadLine};
use super::swar;
use super::view::View;

/// A run of bad lines at the very end of the file: what a crash mid-write leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tail {
    /// 1-based number of the first bad line.
    pub(crate) line: u64,
    /// Byte offset where it starts: the file is good up to here.
    pub(crate) offset: usize,
    pub(crate) reason: String,
}

/// A bad line that is not at the end, or a record that cannot follow the ones
/// before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt {
    pub(crate) line: u64,
    pub(crate) reason: String,
}

/// Decodes every line of `bytes` in order and passes each good record, with its
/// line's bytes (without the `\n`), to `on_record`, which may refuse it (that is
/// corruption at that line). Returns the torn tail, if any.
///
/// A line is bad when it is not `\n`-terminated, holds NUL bytes, or fails its CRC
/// or JSON. Bad lines with nothing good after them are a torn tail; a bad line with
/// a good line anywhere after it is corruption, and so is a line whose CRC matches
/// but whose content is wrong (it was written whole, so no crash explains it).
pub(crate) fn scan(
    bytes: &[u8],
    mut on_record: impl FnMut(View<'_>, &[u8]) -> Result<(), String>,
) -> Result<Option<Tail>, Corrupt> {
    let mut pos = 0;
    let mut line_no = 0u64;
    let mut tail: Option<Tail> = None;
    while pos < bytes.len() {
        line_no += 1;
        let rest = &bytes[pos..];
        let (end, nul) = line_end(rest);
        let (line, next) = match end {
            Some(i) => (&rest[..i], Some(pos + i + 1)),
            None => (rest, None),
        };
        let decoded = match (next, nul) {
            (Some(_), false) => decode_nul_free(line),
            (Some(_), true) => Err(BadLine::torn("nul bytes")),
            (None, _) => Err(BadLine::torn(unterminated_reason(line))),
        };
        match decoded {
            Ok(rec) => {
                if let Some(bad) = tail {
                    return Err(Corrupt {
                        line: bad.line,
                        reason: format!(
                            "{} (and line {line_no} after it is a good record)",
                            bad.reason
                        ),
                    });
                }
                on_record(rec, line).map_err(|reason| Corrupt {
                    line: line_no,
                    reason,
                })?;
            }
            Err(bad) if bad.checksummed => {
                return Err(match tail {
                    Some(t) => Corrupt {
                        line: t.line,
                        reason: format!(
                            "{} (and line {line_no} after it was written whole)",
                            t.reason
                        ),
                    },
                    None => Corrupt {
                        line: line_no,
                        reason: bad.reason,
                    },
                });
            }
            Err(bad) => {
                tail.get_or_insert(Tail {
                    line: line_no,
                    offset: pos,
                    reason: bad.reason,
                });
            }
        }
        pos = next.unwrap_or(bytes.len());
    }
    Ok(tail)
}

/// Where the line at the start of `bytes` ends (the index of its `\n`, if it has
/// one) and whether it holds a NUL byte: one pass over the bytes.
fn line_end(bytes: &[u8]) -> (Option<usize>, bool) {
    match swar::newline_or_nul(bytes) {
        Some(i) if bytes[i] == b'\n' => (Some(i), false),
        Some(nul) => {
            let mut from = nul + 1;
            loop {
                match swar::newline_or_nul(&bytes[from..]) {
                    Some(j) if bytes[from + j] == b'\n' => return (Some(from + j), true),
                    Some(j) => from += j + 1,
                    None => return (None, true),
                }
            }
        }
        None => (None, false),
    }
}

fn unterminated_reason(line: &[u8]) -> &'static str {
    if line.iter().all(|&b| b == 0) {
        "nul-filled tail"
    } else if line.contains(&0) {
        "partial record followed by nul bytes"
    } else {
        "no trailing newline"
    }
}

#[cfg(test)]
mod tests {
    use super::super::index::Index;
    use super::super::record::encode;
    use super::super::{OpId, OpState, Record};
    use super::*;
    use crate::action::{ActionKind, Params};
    use std::collections::HashMap;

    /// Builds a file from a small script, scans and replays it, and compares the
    /// rendered outcome. Script lines:
    /// `started <op> <vmid> <kind> [key:<key>] [k=v ...]`, `task_running <op> <upid>`,
    /// `succeeded <op>`, `failed <op> <error...>`, `abandoned <op> <why...>`,
    /// an optional `@<seq>` prefix to force a sequence number, and
    /// `raw <text>` for bytes as they are (`\n` and `\0` escapes).
    fn check(script: &str, expected: &str) {
        let bytes = build(script);
        let mut index = Index::new(2);
        let out = match scan(&bytes, |rec, _| index.apply(&rec)) {
            Ok(tail) => {
                let mut out = index.render();
                if let Some(t) = tail {
                    out += &format!(
                        "torn tail at line {} ({} bytes): {}\n",
                        t.line,
                        bytes.len() - t.offset,
                        t.reason
                    );
                }
                out
            }
            Err(c) => format!("corrupt at line {}: {}\n", c.line, c.reason),
        };
        let norm = |s: &str| {
            let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            lines.join("\n")
        };
        assert_eq!(norm(&out), norm(expected), "script:\n{script}");
    }

    fn build(script: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut seq = 0;
        let mut started: HashMap<u64, (u32, ActionKind, Params, Option<String>)> = HashMap::new();
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(raw) = line.strip_prefix("raw ") {
                bytes.extend(raw.replace("\\n", "\n").replace("\\0", "\0").bytes());
                continue;
            }
            let mut words: Vec<&str> = line.split(' ').collect();
            seq += 1;
            if let Some(s) = words[0].strip_prefix('@') {
                seq = s.parse().unwrap();
                words.remove(0);
            }
            let state: OpState = serde_json::from_str(&format!("\"{}\"", words[0])).unwrap();
            let op: u64 = words[1].parse().unwrap();
            if state == OpState::Started {
                let key = words
                    .get(4)
                    .and_then(|w| w.strip_prefix("key:"))
                    .map(str::to_string);
                let params = words[4 + usize::from(key.is_some())..]
                    .iter()
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap();
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                started.insert(
                    op,
                    (
                        words[2].parse().unwrap(),
                        words[3].parse().unwrap(),
                        params,
                        key,
                    ),
                );
            }
            let (vmid, kind, params, key) =
                started
                    .get(&op)
                    .cloned()
                    .unwrap_or((999, ActionKind::Start, Params::new(), None));
            let rest = words.get(2..).map(|w| w.join(" ")).unwrap_or_default();
            let rec = Record {
                v: crate::journal::version_for(key.is_some()),
                seq,
                op: OpId(op),
                vmid: crate::pve::Vmid::new(vmid.into()).unwrap(),
                kind,
                params,
                key,
                state,
                upid: (state == OpState::TaskRunning).then(|| rest.parse().unwrap()),
                error: matches!(state, OpState::Failed | OpState::Abandoned).then_some(rest),
                ts: "2026-11-26T20:49:12.345Z".into(),
            };
            bytes.extend(encode(&rec));
        }
        bytes
    }

    const UPID: &str = "UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:101:agent@pve!reconciler:";

    #[test]
    fn line_ends_agree_with_a_byte_by_byte_search() {
        let mut rng = crate::rng::XorShift::new(3);
        for _ in 0..2000 {
            let len = rng.below(40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.below(8) {
                    0 => b'\n',
                    1 => 0,
                    2 => 0x8a,
                    3 => 0x80,
                    _ => rng.next_u64() as u8,
                })
                .collect();
            let end = bytes.iter().position(|&b| b == b'\n');
            let nul = bytes[..end.unwrap_or(len)].contains(&0);
            assert_eq!(line_end(&bytes), (end, nul), "{bytes:?}");
        }
    }

    #[test]
    fn empty_file() {
        check(
            "",
            "records 0, next seq 1, next op 1\nfinished: [] keep: []",
        );
    }

    #[test]
    fn replays_latest_state_per_op() {
        check(
            &format!(
                "started 1 101 start
                 started 2 102 set_config memory=512 swap=0
                 task_running 1 {UPID}
                 failed 2 detected modified configuration
                 started 3 103 shutdown forceStop=1 timeout=60
                 succeeded 1"
            ),
            &format!(
                "records 6, next seq 7, next op 4
                 in flight: op 3 103 shutdown started forceStop=1 timeout=60
                 finished: [2 failed, 1 succeeded] keep: [1 2 3]
                 last task 101: op 1 {UPID}"
            ),
        );
    }

    #[test]
    fn keeps_the_newest_finished_and_the_counters() {
        // keep_finished is 2 here: op 1 falls out, and op 4 (the highest id) stays
        // although it finished first.
        check(
            "started 1 101 start
             started 2 102 start
             started 3 103 start
             started 4 104 start
             abandoned 4 no task found
             succeeded 1
             succeeded 2
             succeeded 3",
            "records 8, next seq 9, next op 5
             finished: [2 succeeded, 3 succeeded] keep: [2 3 4]",
        );
    }

    #[test]
    fn each_guests_last_task_is_kept_whatever_keep_finished_says() {
        // keep_finished is 2: op 1, 101's only op with a task, leaves the window of
        // finished ops but stays in the keep set and keeps its UPID; 102's last task
        // moves from op 2 to op 5, and op 2 goes; an op of 101 without a task (op 6)
        // does not replace op 1; an op in flight with a task (op 7) is 103's.
        let later = UPID.replace("6650F1C2", "6650F2C2");
        let third = UPID.replace("6650F1C2", "6650F3C2");
        check(
            &format!(
                "started 1 101 start
                 task_running 1 {UPID}
                 succeeded 1
                 started 2 102 start
                 task_running 2 {UPID}
                 succeeded 2
                 started 3 104 start
                 succeeded 3
                 started 4 104 start
                 succeeded 4
                 started 5 102 stop
                 task_running 5 {later}
                 failed 5 boom
                 started 6 101 stop
                 abandoned 6 no task found
                 started 7 103 shutdown
                 task_running 7 {third}"
            ),
            &format!(
                "records 17, next seq 18, next op 8
                 in flight: op 7 103 shutdown task_running {third}
                 finished: [5 failed, 6 abandoned] keep: [1 5 6 7]
                 last task 101: op 1 {UPID}
                 last task 102: op 5 {later}
                 last task 103: op 7 {third}"
            ),
        );
    }

    #[test]
    fn seq_gaps_are_fine_but_not_going_back() {
        check(
            "started 1 101 start\n@7 succeeded 1\nstarted 2 101 stop",
            "records 3, next seq 9, next op 3
             in flight: op 2 101 stop started
             finished: [1 succeeded] keep: [1 2]",
        );
        check(
            "started 1 101 start\n@1 succeeded 1",
            "corrupt at line 2: seq 1 does not follow seq 1",
        );
    }

    #[test]
    fn impossible_histories_are_corrupt() {
        check(
            "started 1 101 start\nsucceeded 1\nfailed 1 again",
            "corrupt at line 3: op 1 is not in flight, cannot record failed",
        );
        check(
            &format!("started 1 101 start\ntask_running 1 {UPID}\ntask_running 1 {UPID}"),
            "corrupt at line 3: op 1 cannot go from task_running to task_running",
        );
        check(
            "started 2 101 start\nstarted 1 102 start",
            "corrupt at line 2: op 1 starts again or out of order (highest op so far 2)",
        );
        check(
            "succeeded 5",
            "corrupt at line 1: op 5 is not in flight, cannot record succeeded",
        );
    }

    #[test]
    fn torn_tails() {
        let one = "started 1 101 start\n";
        check(
            &format!("{one}raw {{\"v\":1,\"seq\":2"),
            "records 1, next seq 2, next op 2
             in flight: op 1 101 start started
             finished: [] keep: [1]
             torn tail at line 2 (14 bytes): no trailing newline",
        );
        check(
            &format!("{one}raw \\0\\0\\0\\0"),
            "records 1, next seq 2, next op 2
             in flight: op 1 101 start started
             finished: [] keep: [1]
             torn tail at line 2 (4 bytes): nul-filled tail",
        );
        check(
            &format!("{one}raw {{\"v\":1\\0\\0"),
            "records 1, next seq 2, next op 2
             in flight: op 1 101 start started
             finished: [] keep: [1]
             torn tail at line 2 (8 bytes): partial record followed by nul bytes",
        );
        // Several bad lines at the end are one tail: a batch is one write.
        check(
            &format!("{one}raw garbage\\n{{\"v\":1}}\\npartial"),
            "records 1, next seq 2, next op 2
             in flight: op 1 101 start started
             finished: [] keep: [1]
             torn tail at line 2 (23 bytes): too short for a record",
        );
    }

    #[test]
    fn a_bad_line_before_a_good_one_is_corruption() {
        check(
            "started 1 101 start\nraw garbage\\n\nsucceeded 1",
            "corrupt at line 2: too short for a record (and line 3 after it is a good record)",
        );
        check(
            "started 1 101 start\nraw \\0\\0\\0\\n\nsucceeded 1",
            "corrupt at line 2: nul bytes (and line 3 after it is a good record)",
        );
        // A whole (checksummed) record that is wrong is corruption even at the end.
        let v3 = {
            let body = r#"{"v":3,"seq":2"#;
            let crc = crate::journal::crc32c(format!("{body}}}").as_bytes());
            format!("raw {body},\"crc\":\"{crc:08x}\"}}\\n")
        };
        check(
            &format!("started 1 101 start\n{v3}"),
            "corrupt at line 2: unsupported format version 3 (this build reads 1 to 2)",
        );
    }

    #[test]
    fn keys_replay_to_their_latest_op_and_spent_ones_are_kept() {
        // keep_finished is 2: the keyed op 1, which spent its key, stays in the keep
        // set long after it leaves the window; op 2 (failed with no task: refused, so
        // its key is free) and the abandoned op 3 do not; op 4, a later op of op 3's
        // key, is its key's latest.
        check(
            &format!(
                "started 1 101 start key:boot
                 task_running 1 {UPID}
                 succeeded 1
                 started 2 102 stop key:halt
                 failed 2 CT 102 not running
                 started 3 103 start key:boot
                 abandoned 3 no task found
                 started 4 103 start key:boot
                 started 5 104 start
                 succeeded 5
                 started 6 105 start
                 succeeded 6
                 started 7 106 start
                 succeeded 7"
            ),
            &format!(
                "records 14, next seq 15, next op 8
             in flight: op 4 103 start started key=boot
             finished: [6 succeeded, 7 succeeded] keep: [1 4 6 7]
             last task 101: op 1 {UPID}
             key 101 boot: op 1 start succeeded spent
             key 102 halt: op 2 stop failed
             key 103 boot: op 4 start started spent"
            ),
        );
        check(
            "started 1 101 start key:boot\nabandoned 1 no task found\nstarted 2 102 start",
            "records 3, next seq 4, next op 3
             in flight: op 2 102 start started
             finished: [1 abandoned] keep: [1 2]
             key 101 boot: op 1 start abandoned",
        );
    }

    #[test]
    fn versions_mix_in_one_file_but_an_op_keeps_its_key() {
        // The script writes each record in the version its key calls for.
        check(
            "started 1 101 start\nstarted 2 102 start key:k\nsucceeded 1\nsucceeded 2",
            "records 4, next seq 5, next op 3
             finished: [1 succeeded, 2 succeeded] keep: [1 2]
             key 102 k: op 2 start succeeded spent",
        );
        let bytes = build("started 1 101 start key:k\nsucceeded 1");
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.lines().all(|l| l.starts_with("{\"v\":2,")), "{text}");
        // A later record of a keyed op without its key, or with another one.
        let unkeyed = |op: u64, seq: u64| {
            let rec = Record {
                v: 1,
                seq,
                op: OpId(op),
                vmid: crate::pve::Vmid::new(101).unwrap(),
                kind: ActionKind::Start,
                params: Params::new(),
                key: None,
                state: OpState::Succeeded,
                upid: None,
                error: None,
                ts: "2026-11-26T20:49:12.345Z".into(),
            };
            String::from_utf8(encode(&rec)).unwrap()
        };
        let mut bytes = build("started 1 101 start key:k");
        bytes.extend(unkeyed(1, 2).bytes());
        let mut index = Index::new(2);
        let err = scan(&bytes, |rec, _| index.apply(&rec)).unwrap_err();
        assert_eq!(
            (err.line, err.reason.as_str()),
            (2, "op 1 was started with key \"k\", this record has no key")
        );
        let mut bytes = build("started 1 101 start");
        let other = String::from_utf8(build("started 1 101 start key:other\nsucceeded 1"))
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_string();
        bytes.extend(other.bytes());
        bytes.push(b'\n');
        let mut index = Index::new(2);
        let err = scan(&bytes, |rec, _| index.apply(&rec)).unwrap_err();
        assert_eq!(
            (err.line, err.reason.as_str()),
            (
                2,
                "op 1 was started with no key, this record has key \"other\""
            )
        );
    }
}
