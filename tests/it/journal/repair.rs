//! Opening after a crash: a torn tail is cut off and kept; anything else is corruption.

use super::{action, upid, TempDir};
use felhom_agent::action::ActionKind;
use felhom_agent::journal::{
    crc32c, read_records, Journal, JournalError, JournalOptions, OpId, OpState,
};

/// A journal of three records, closed; returns its bytes and where the last line starts.
fn three_records(dir: &TempDir) -> (Vec<u8>, usize) {
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let op = journal.begin(&action(101, ActionKind::Start)).unwrap();
    journal.task_running(op, &upid(101, "vzstart", 7)).unwrap();
    journal.begin(&action(102, ActionKind::Shutdown)).unwrap();
    journal.close().unwrap();
    let bytes = std::fs::read(dir.journal()).unwrap();
    let last = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    (bytes, last)
}

#[test]
fn a_torn_last_record_is_cut_at_every_offset() {
    let src = TempDir::new("torn-src");
    let (bytes, last) = three_records(&src);
    let dir = TempDir::new("torn");
    let mut cases = 0;
    for cut in last..bytes.len() {
        for nul_fill in [false, true] {
            let _ = std::fs::remove_file(dir.file("journal.broken"));
            let mut torn = bytes[..cut].to_vec();
            if nul_fill {
                torn.resize(bytes.len(), 0);
            }
            std::fs::write(dir.journal(), &torn).unwrap();

            let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
            let what = format!("cut at {cut} of {}, nul fill {nul_fill}", bytes.len());
            let cut_off = &torn[last..];
            if cut_off.is_empty() {
                assert_eq!(journal.repaired_tail(), None, "{what}");
                assert!(!dir.file("journal.broken").exists(), "{what}");
            } else {
                let said = journal.repaired_tail().expect(&what);
                assert!(said.starts_with(&format!("cut {} bytes at line 3", cut_off.len())));
                let mut saved = cut_off.to_vec();
                saved.push(b'\n');
                assert_eq!(std::fs::read(dir.file("journal.broken")).unwrap(), saved);
            }
            assert_eq!(journal.size_bytes(), last as u64, "{what}");
            let in_flight = journal.in_flight();
            assert_eq!(in_flight.len(), 1, "{what}");
            assert_eq!(in_flight[0].state, OpState::TaskRunning);
            // Appending works, and continues the sequence after the lost record.
            let op = journal.begin(&action(103, ActionKind::Stop)).unwrap();
            assert_eq!(op, OpId(2), "{what}");
            journal.close().unwrap();
            let records = read_records(&dir.journal()).unwrap();
            assert_eq!(records.len(), 3, "{what}");
            assert_eq!(records[2].seq, 3);
            cases += 1;
        }
    }
    assert_eq!(cases, 2 * (bytes.len() - last));
}

#[test]
fn a_nul_filled_tail_after_good_records_is_cut() {
    let dir = TempDir::new("nul");
    let (mut bytes, _) = three_records(&dir);
    let good = bytes.len();
    bytes.resize(good + 4096, 0);
    std::fs::write(dir.journal(), &bytes).unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let said = journal.repaired_tail().unwrap();
    assert!(
        said.contains("4096 bytes at line 4 (nul-filled tail)"),
        "{said}"
    );
    assert_eq!(journal.size_bytes(), good as u64);
    assert_eq!(journal.in_flight().len(), 2);
    journal.close().unwrap();
}

#[test]
fn a_flipped_byte_in_a_middle_record_is_corruption() {
    let dir = TempDir::new("flip");
    three_records(&dir);
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    journal.begin(&action(103, ActionKind::Stop)).unwrap();
    journal.close().unwrap();
    let path = dir.journal();
    let bytes = std::fs::read(&path).unwrap();
    let ends: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] == b'\n').collect();
    assert_eq!(ends.len(), 4);
    let first_end = ends[0] + 1;
    // Every single-bit flip anywhere in line 2, its newline included (which merges
    // it with line 3: still a bad line with a good one, line 4, after it).
    for at in first_end..=ends[1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        match read_records(&path) {
            Err(JournalError::Corrupt { line, .. }) => assert_eq!(line, 2, "flip at {at}"),
            other => panic!("flip at {at}: {other:?}"),
        }
    }
    let mut bad = bytes.clone();
    bad[first_end + 10] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    let err = Journal::open(dir.path(), JournalOptions::default())
        .err()
        .unwrap();
    assert!(err.is_fatal());
    assert_eq!(err.exit_code().code(), 3);
    match &err {
        JournalError::Corrupt {
            path: p,
            line,
            reason,
        } => {
            assert_eq!((p, *line), (&path, 2));
            assert!(reason.contains("crc mismatch"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing was repaired or moved.
    assert_eq!(std::fs::read(&path).unwrap(), bad);
    assert!(!dir.file("journal.broken").exists());
}

#[test]
fn an_unknown_version_is_refused() {
    let dir = TempDir::new("version");
    let (mut bytes, _) = three_records(&dir);
    let body = r#"{"v":3,"seq":4,"whatever":true"#;
    let crc = crc32c(format!("{body}}}").as_bytes());
    bytes.extend(format!("{body},\"crc\":\"{crc:08x}\"}}\n").bytes());
    std::fs::write(dir.journal(), &bytes).unwrap();
    let err = Journal::open(dir.path(), JournalOptions::default())
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "journal {} is corrupt at line 4: unsupported format version 3 (this build reads 1 to 2)",
            dir.journal().display()
        )
    );
    assert_eq!(std::fs::read(dir.journal()).unwrap(), bytes);
}
