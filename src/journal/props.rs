//! Randomized properties of the line parser and the scanner (run by the seeded
//! runner in `crate::fuzz`; `./build.sh fuzz` runs them with many more cases):
//! no input panics them, the fast path agrees with serde_json, a record prints and
//! parses back to itself, and a journal whose tail is mangled opens (the torn tail
//! cut off) or is refused as corrupt.

use super::index::Index;
use super::record::{decode, decode_by_serde, decode_record, encode, encode_into};
use super::scan::scan;
use super::{crc32c, version_for, Journal, JournalError, JournalOptions, OpId, OpState, Record};
use crate::action::{ActionKind, Params};
use crate::fuzz::{cases, mutate};
use crate::pve::Vmid;
use crate::rng::XorShift;
use std::path::PathBuf;

fn pick<'a, T>(rng: &mut XorShift, from: &'a [T]) -> &'a T {
    &from[rng.below(from.len() as u64) as usize]
}

/// A string of the characters that make JSON and the line format work hardest:
/// quotes, backslashes, newlines, NUL and other control characters, multi-byte
/// UTF-8, the bytes of the crc member.
fn any_string(rng: &mut XorShift) -> String {
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "0",
        " ",
        "\"",
        "\\",
        "\n",
        "\r",
        "\t",
        "\0",
        "\u{1f}",
        "\u{7f}",
        "é",
        "€",
        "😀",
        "/",
        "{",
        "}",
        ",",
        ":",
        ",\"crc\":\"",
        "\\u0000",
        "UPID:",
    ];
    (0..rng.below(12)).map(|_| *pick(rng, PIECES)).collect()
}

/// A random record that the writer could have written: any vmid, kind and params,
/// a key half of the time (so version 1 and 2 alike), the members each state must
/// have, any valid timestamp.
fn any_record(rng: &mut XorShift) -> Record {
    let state = *pick(
        rng,
        &[
            OpState::Started,
            OpState::TaskRunning,
            OpState::Succeeded,
            OpState::Failed,
            OpState::Abandoned,
        ],
    );
    let vmid = Vmid::new(100 + rng.below(u64::from(Vmid::MAX - 99))).unwrap();
    let kind = *pick(
        rng,
        &[
            ActionKind::Start,
            ActionKind::Shutdown,
            ActionKind::Stop,
            ActionKind::SetConfig,
        ],
    );
    let params: Params = (0..rng.below(4))
        .map(|_| (any_string(rng), any_string(rng)))
        .collect();
    let upid =
        (state == OpState::TaskRunning || (state.is_finished() && rng.below(2) == 0)).then(|| {
            format!(
                "UPID:pve{}:{:08X}:{:08X}:{:08X}:vzstart:{vmid}:agent@pve!t:",
                rng.below(10),
                rng.next_u64() as u32,
                rng.next_u64() as u32,
                rng.next_u64() as u32
            )
            .parse()
            .unwrap()
        });
    let key = (rng.below(2) == 0).then(|| any_string(rng));
    let error = matches!(state, OpState::Failed | OpState::Abandoned).then(|| any_string(rng));
    let secs = rng.below(4_000_000_000) as i64;
    let ts = match rng.below(2) {
        0 => crate::time::rfc3339(secs),
        _ => format!(
            "{}.{:03}Z",
            crate::time::rfc3339(secs).trim_end_matches('Z'),
            rng.below(1000)
        ),
    };
    Record {
        v: version_for(key.is_some()),
        seq: 1 + rng.below(u64::MAX - 1),
        op: OpId(1 + rng.next_u64() % 1_000_000_000_000),
        vmid,
        kind,
        params,
        key,
        state,
        upid,
        error,
        ts,
    }
}

/// `line` (without its newline) with its crc member recomputed, if it still ends
/// like one, so that the parser behind the CRC check gets to see it.
fn reseal(line: &[u8]) -> Vec<u8> {
    let Some(at) = line.windows(7).rposition(|w| w == b",\"crc\":") else {
        return line.to_vec();
    };
    let mut object = line[..at].to_vec();
    object.push(b'}');
    let crc = crc32c(&object);
    object.pop();
    object.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}").as_bytes());
    object
}

/// A line to throw at the parser: a valid one, mangled, and most of the time
/// resealed. One time in four its version is first set to 0 to 3, whatever its
/// members (and half of those go to the parser resealed and otherwise whole), so
/// that lines claiming the wrong version for their key are common.
fn mangled_line(rng: &mut XorShift) -> Vec<u8> {
    let mut line = encode(&any_record(rng));
    line.pop();
    if rng.below(4) == 0 {
        // `{"v":` is five bytes; the version is one digit.
        line[5] = b"0123"[rng.below(4) as usize];
        if rng.below(2) == 0 {
            return reseal(&line);
        }
    }
    let mangled = mutate(rng, &line);
    if rng.below(4) == 0 {
        mangled
    } else {
        reseal(&mangled)
    }
}

#[test]
fn fuzz_no_line_panics_the_parser_and_the_fast_path_agrees_with_serde() {
    cases("journal line parser", |rng| {
        let line = mangled_line(rng);
        let fast = decode(&line);
        let slow = decode_by_serde(&line);
        assert_eq!(fast, slow, "line {:?}", String::from_utf8_lossy(&line));
        if let Ok(view) = fast {
            let _ = view.to_record();
            let _ = view.upid();
        }
    });
}

#[test]
fn fuzz_no_input_panics_the_scanner() {
    cases("journal scanner", |rng| {
        let mut bytes = Vec::new();
        for _ in 0..rng.below(6) {
            match rng.below(3) {
                0 => bytes.extend(mangled_line(rng)),
                1 => encode_into(&any_record(rng), &mut bytes),
                _ => bytes.extend((0..rng.below(8)).map(|_| *pick(rng, b"\n\0{}\"x"))),
            }
            if rng.below(2) == 0 {
                bytes.push(b'\n');
            }
        }
        let mut index = Index::new(rng.below(3) as usize);
        if let Ok(Some(tail)) = scan(&bytes, |rec, _| index.apply(&rec)) {
            assert!(tail.offset < bytes.len());
        }
    });
}

#[test]
fn fuzz_a_parsed_record_prints_and_parses_back_to_itself() {
    cases("journal record round trip", |rng| {
        let rec = any_record(rng);
        let line = encode(&rec);
        let back = decode_record(&line[..line.len() - 1]);
        assert_eq!(
            back.as_ref(),
            Ok(&rec),
            "{:?}",
            String::from_utf8_lossy(&line)
        );
        // And whatever a mangled line decodes to, printed and parsed again, is
        // that same record.
        let line = mangled_line(rng);
        if let Ok(rec) = decode_record(&line) {
            let again = encode(&rec);
            assert_eq!(
                decode_record(&again[..again.len() - 1]),
                Ok(rec),
                "{:?}",
                String::from_utf8_lossy(&line)
            );
        }
    });
}

/// A valid journal: ops of one to three records, with sequence numbers and op ids
/// increasing as the writer makes them. Returns the bytes and where each line starts.
fn valid_journal(rng: &mut XorShift) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::new();
    let mut starts = Vec::new();
    let mut seq = 0;
    for op in 1..=1 + rng.below(5) {
        let states: &[OpState] = match rng.below(3) {
            0 => &[OpState::Started],
            1 => &[OpState::Started, OpState::Failed],
            _ => &[OpState::Started, OpState::TaskRunning, OpState::Succeeded],
        };
        let base = any_record(rng);
        for &state in states {
            seq += 1 + rng.below(2);
            let rec = Record {
                seq,
                op: OpId(op),
                state,
                upid: (state != OpState::Started).then(|| {
                    "UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:101:agent@pve!t:"
                        .parse()
                        .unwrap()
                }),
                error: (state == OpState::Failed).then(|| any_string(rng)),
                ..base.clone()
            };
            starts.push(bytes.len());
            encode_into(&rec, &mut bytes);
        }
    }
    (bytes, starts)
}

/// How often a case also opens the journal for real (each open writes and fsyncs
/// two files): often enough to cover it, rarely enough to stay under a second.
const REAL_OPEN_EVERY: u64 = 80;

#[test]
fn fuzz_a_journal_with_a_mangled_tail_opens_or_is_corrupt() {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "felhom-journal-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    cases("journal with a mangled tail", |rng| {
        let (valid, starts) = valid_journal(rng);
        // Mangle the last one to three lines; the ones before stay as written.
        let first = starts.len().saturating_sub(1 + rng.below(3) as usize);
        let good = starts[first];
        let mut bytes = valid[..good].to_vec();
        bytes.extend(mutate(rng, &valid[good..]));

        let mut index = Index::new(1000);
        let verdict = scan(&bytes, |rec, _| index.apply(&rec));
        let cut_at = match &verdict {
            Ok(tail) => {
                assert!(index.records() >= first as u64);
                let cut_at = tail.as_ref().map_or(bytes.len(), |t| t.offset);
                assert!(cut_at >= good, "the untouched lines are kept");
                Some(cut_at)
            }
            Err(corrupt) => {
                assert!(corrupt.line > first as u64, "{corrupt:?}");
                None
            }
        };

        if rng.below(REAL_OPEN_EVERY) != 0 {
            return;
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(super::file_in(&dir), &bytes).unwrap();
        match (Journal::open(&dir, JournalOptions::default()), cut_at) {
            (Ok(journal), Some(cut_at)) => {
                assert_eq!(journal.size_bytes(), cut_at as u64);
                assert_eq!(journal.record_count(), index.records());
                journal.close().unwrap();
                assert_eq!(
                    std::fs::read(super::file_in(&dir)).unwrap(),
                    &bytes[..cut_at]
                );
            }
            (Err(JournalError::Corrupt { .. }), None) => {
                assert_eq!(std::fs::read(super::file_in(&dir)).unwrap(), bytes);
            }
            (got, expected) => panic!(
                "open gave {:?}, the scan said {expected:?}",
                got.map(|j| j.size_bytes())
            ),
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
