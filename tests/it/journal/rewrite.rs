//! The rewrite every open does: after a failed fdatasync the next open makes what
//! it read durable in a new file before appending, and a crash in the middle of
//! that rewrite leaves the old file whole.

use super::{action, upid, ChildTest, TempDir, CHILD_DIR_ENV};
use felhom_agent::action::ActionKind;
use felhom_agent::exit::ExitCode;
use felhom_agent::journal::{read_records, Journal, JournalError, JournalOptions, OpId, OpState};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// A journal holding op 1 (task_running), closed cleanly.
fn one_op_in_flight(dir: &TempDir) {
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let op = journal.begin(&action(101, ActionKind::Start)).unwrap();
    journal.task_running(op, &upid(101, "vzstart", 1)).unwrap();
    journal.close().unwrap();
}

#[test]
fn a_failed_sync_is_fatal_and_the_next_open_makes_the_record_durable() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        return sync_fails_child(Path::new(&dir));
    }
    let dir = TempDir::new("sync-fails");
    one_op_in_flight(&dir);

    let child = ChildTest::spawn(
        module_path!(),
        "a_failed_sync_is_fatal_and_the_next_open_makes_the_record_durable",
        dir.path(),
        "append-sync-fails",
    );
    let (status, said) = child.wait_exit(T);
    assert!(status.success(), "{status:?}:\n{}", said.join("\n"));
    assert!(
        said.iter()
            .any(|l| l.starts_with("append failed: journal ")),
        "{}",
        said.join("\n")
    );

    // The record whose sync failed is still there to read (from the page cache,
    // on a real failure: nothing says it is on the disk).
    let before = inode(&dir.journal());
    let records = read_records(&dir.journal()).unwrap();
    let states: Vec<(u64, OpState)> = records.iter().map(|r| (r.op.0, r.state)).collect();
    assert_eq!(
        states,
        [
            (1, OpState::Started),
            (1, OpState::TaskRunning),
            (2, OpState::Started)
        ]
    );
    let bytes = std::fs::read(dir.journal()).unwrap();

    // The next open rewrites the file before anything is appended: a new inode
    // with the same bytes, so that what it read is what is durable.
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_ne!(inode(&dir.journal()), before, "open rewrote the file");
    assert_eq!(journal.records_written(), 0);
    assert_eq!(std::fs::read(dir.journal()).unwrap(), bytes);
    assert!(!dir.file("journal.tmp").exists());
    let in_flight: Vec<(OpId, OpState)> = journal
        .in_flight()
        .iter()
        .map(|o| (o.op, o.state))
        .collect();
    assert_eq!(
        in_flight,
        [(OpId(1), OpState::TaskRunning), (OpId(2), OpState::Started)]
    );
    // And appends go to the new file.
    journal.abandoned(OpId(2), "no task found").unwrap();
    let after = inode(&dir.journal());
    journal.close().unwrap();
    assert_eq!(inode(&dir.journal()), after);
    let records = read_records(&dir.journal()).unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(
        (records[3].op, records[3].state, records[3].seq),
        (OpId(2), OpState::Abandoned, 4)
    );
}

/// With every fdatasync failing: the first append is a fatal `Sync` error (exit
/// code 4), and the journal refuses everything after it.
fn sync_fails_child(dir: &Path) {
    let journal = Journal::open(dir, JournalOptions::default()).unwrap();
    let err = journal
        .begin(&action(102, ActionKind::Shutdown))
        .unwrap_err();
    assert!(matches!(err, JournalError::Sync { .. }), "{err:?}");
    assert!(err.is_fatal());
    assert_eq!(err.exit_code(), ExitCode::JournalSync);
    assert!(matches!(
        journal.succeeded(OpId(1)),
        Err(JournalError::Poisoned)
    ));
    // Nothing of the failed batch reached the index.
    assert_eq!(journal.in_flight().len(), 1);
    assert!(matches!(journal.close(), Err(JournalError::Poisoned)));
    eprintln!("append failed: {}", felhom_agent::log::Chain(&err));
}

#[test]
fn a_crash_in_the_rewrite_at_open_leaves_the_old_file_whole() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let _ = Journal::open(Path::new(&dir), JournalOptions::default());
        unreachable!("the failpoint blocks the open");
    }
    let dir = TempDir::new("rewrite-crash");
    one_op_in_flight(&dir);
    // A torn tail too: open saves it to journal.broken before the rewrite.
    let mut bytes = std::fs::read(dir.journal()).unwrap();
    let good = bytes.len();
    bytes.extend_from_slice(b"{\"v\":1,\"seq\":3,\"op\":2");
    std::fs::write(dir.journal(), &bytes).unwrap();
    let before = inode(&dir.journal());

    let mut child = ChildTest::spawn(
        module_path!(),
        "a_crash_in_the_rewrite_at_open_leaves_the_old_file_whole",
        dir.path(),
        "open-before-rename",
    );
    child.wait_line("failpoint open-before-rename reached", T);
    // Killed between the fsync of the new file and the rename.
    assert_eq!(
        std::fs::read(dir.file("journal.tmp")).unwrap(),
        &bytes[..good]
    );
    child.kill();
    assert_eq!(std::fs::read(dir.journal()).unwrap(), bytes);
    assert_eq!(inode(&dir.journal()), before);

    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert!(!dir.file("journal.tmp").exists());
    assert_ne!(inode(&dir.journal()), before);
    assert!(journal.repaired_tail().is_some());
    assert_eq!(journal.in_flight().len(), 1);
    journal.close().unwrap();
    assert_eq!(std::fs::read(dir.journal()).unwrap(), &bytes[..good]);
    // The tail was saved by both opens: it is never lost, at worst kept twice.
    let broken = std::fs::read_to_string(dir.file("journal.broken")).unwrap();
    assert_eq!(broken, "{\"v\":1,\"seq\":3,\"op\":2\n".repeat(2));
}
