//! The journal's scenarios for the benchmark: recovery of a large file, the cost of
//! the rewrite every open does, and durable appends from one writer and from many
//! (group commit). Each function returns its numbers as [`Row`]s of the table `main`
//! prints; nothing here asserts a time.

use crate::table::{Row, Target, Unit};
use felhom_agent::action::{Action, ActionKind, Params};
use felhom_agent::journal::{crc32c, Journal, JournalOptions, OpId, OpState, Record};
use felhom_agent::pve::{Upid, Vmid};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn measure(name: String, value: f64, unit: Unit, target: Option<Target>, detail: String) -> Row {
    Row::new("6", name, unit, value)
        .target(target.unwrap_or(Target::None))
        .detail(detail)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn shutdown(n: u32) -> Action {
    Action {
        vmid: Vmid::new(n.into()).unwrap(),
        kind: ActionKind::Shutdown,
        guest: felhom_agent::pve::GuestKind::Lxc,
        via_task: false,
        key: None,
        guard: None,
        params: Params::from([
            ("forceStop".into(), "1".into()),
            ("timeout".into(), "60".into()),
        ]),
        reason: "bench".into(),
    }
}

/// The journal's file in `state_dir`.
fn file_in(state_dir: &Path) -> std::path::PathBuf {
    felhom_agent::journal::file_in(state_dir)
}

/// A journal of `n` records written from the documented line format: ops of three
/// records (started, task_running, succeeded or, one in seven, failed), and at the
/// end five ops of two records and what is left over as ops of one, in flight.
/// Returns how many ops it leaves in flight.
pub fn write_journal(path: &Path, n: u64) -> usize {
    assert!(n >= 10, "a journal of at least 10 records");
    let mut text = Vec::with_capacity(n as usize * 240);
    let mut seq = 0;
    let mut push = |op: u64, state: OpState| {
        seq += 1;
        let a = shutdown(100 + (op % 500) as u32);
        let upid: Option<Upid> = (state != OpState::Started).then(|| {
            format!(
                "UPID:pve1:{op:08X}:0456789A:6650F1C2:vzshutdown:{}:agent@pve!bench:",
                a.vmid
            )
            .parse()
            .unwrap()
        });
        let rec = Record {
            v: 1,
            seq,
            op: OpId(op),
            vmid: a.vmid,
            kind: a.kind,
            params: a.params,
            key: None,
            state,
            upid,
            error: (state == OpState::Failed).then(|| "container did not stop".to_string()),
            ts: "2026-11-26T20:49:12.345Z".into(),
        };
        let object = serde_json::to_vec(&rec).unwrap();
        let crc = crc32c(&object);
        text.extend_from_slice(&object[..object.len() - 1]);
        text.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}\n").as_bytes());
    };
    let mut op = 0u64;
    for _ in 0..(n - 10) / 3 {
        op += 1;
        push(op, OpState::Started);
        push(op, OpState::TaskRunning);
        let end = if op % 7 == 0 {
            OpState::Failed
        } else {
            OpState::Succeeded
        };
        push(op, end);
    }
    for _ in 0..5 {
        op += 1;
        push(op, OpState::Started);
        push(op, OpState::TaskRunning);
    }
    let left_over = (n - 10) % 3;
    for _ in 0..left_over {
        op += 1;
        push(op, OpState::Started);
    }
    std::fs::write(path, text).unwrap();
    5 + left_over as usize
}

/// Recovery of a journal of `records` records: `Journal::open` (read, check,
/// replay, and the rewrite every open does) plus the in-flight scan, median of
/// `runs`, two ways. With compaction off, every run reads the same file and the
/// rewrite copies all of it: the worst case. With the default options, the file is
/// past the compaction threshold, so the rewrite at open is a compaction (the file
/// is put back before each run, untimed): what the agent does. `target_ms`
/// is the target for this size, for both.
pub fn recovery(dir: &Path, records: u64, runs: usize, target_ms: Option<f64>) -> Vec<Row> {
    let state = dir.join(format!("recovery-{records}"));
    std::fs::create_dir_all(&state).unwrap();
    let original = dir.join(format!("recovery-{records}.journal"));
    let expected_in_flight = write_journal(&original, records);
    std::fs::File::open(&original).unwrap().sync_all().unwrap();
    let bytes = std::fs::metadata(&original).unwrap().len();
    let no_compaction = JournalOptions {
        compact_bytes: u64::MAX,
        ..JournalOptions::default()
    };
    let mut out = Vec::new();
    for (opts, short, how) in [
        (
            no_compaction,
            "compaction off",
            "compaction off, so the rewrite at open copies it all (the worst case)",
        ),
        (
            JournalOptions::default(),
            "default options",
            "default options: past the threshold, the rewrite at open is a compaction (what the agent does)",
        ),
    ] {
        let mut times = Vec::new();
        for _ in 0..runs {
            // Put back, and on disk: the fsyncs of the rewrite must not wait for
            // the writeback of the copy.
            std::fs::copy(&original, file_in(&state)).unwrap();
            std::fs::File::open(file_in(&state))
                .unwrap()
                .sync_all()
                .unwrap();
            let t = Instant::now();
            let j = Journal::open(&state, opts.clone()).unwrap();
            let in_flight = j.in_flight().len();
            times.push(t.elapsed());
            assert_eq!(in_flight, expected_in_flight);
            let kept = j.record_count();
            assert!(kept == records || opts.compact_bytes < bytes && kept < records);
            j.close().unwrap();
        }
        out.push(measure(
            format!("journal recovery, {records} records, {short}"),
            millis(median(times)),
            Unit::Millis,
            target_ms.map(Target::Below),
            format!(
                "Journal::open (read, check, replay, rewrite) and the in-flight scan of a {:.1} MB file; {how}; median of {runs}",
                bytes as f64 / 1e6
            ),
        ));
    }
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_file(&original);
    out
}

/// What opening costs at the size compaction keeps a journal under: `Journal::open`
/// of a file just under the default threshold (4 MiB), median of `runs`, next to the
/// cost of writing and fsyncing that many bytes to a new file in the same directory
/// (what the rewrite at open adds).
pub fn open_at_threshold(dir: &Path, runs: usize) -> Vec<Row> {
    let state = dir.join("threshold");
    std::fs::create_dir_all(&state).unwrap();
    let limit = JournalOptions::default().compact_bytes;
    // About 225 bytes a record: stay under the threshold, so no compaction.
    let records = limit / 240;
    write_journal(&file_in(&state), records);
    let bytes = std::fs::read(file_in(&state)).unwrap();
    let mut opens = Vec::new();
    let mut copies = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let j = Journal::open(&state, JournalOptions::default()).unwrap();
        opens.push(t.elapsed());
        assert_eq!(j.compactions(), 0);
        j.close().unwrap();

        let copy = state.join("copy");
        let t = Instant::now();
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&copy).unwrap();
            f.write_all(&bytes).unwrap();
            f.sync_all().unwrap();
        }
        std::fs::File::open(&state).unwrap().sync_all().unwrap();
        copies.push(t.elapsed());
        std::fs::remove_file(&copy).unwrap();
    }
    let _ = std::fs::remove_dir_all(&state);
    vec![
        measure(
            "journal open at the compaction threshold".into(),
            millis(median(opens)),
            Unit::Millis,
            None,
            format!(
                "{records} records ({:.1} MB), just under the default threshold; median of {runs}",
                bytes.len() as f64 / 1e6
            ),
        ),
        measure(
            "journal open at the threshold: its rewrite, at most".into(),
            millis(median(copies)),
            Unit::Millis,
            None,
            "write + fsync of those bytes to a new file + directory fsync; median".into(),
        ),
    ]
}

/// Durable appends per second from one writer, and from `writers` concurrent
/// writers, each appending `per_writer` records (a `begin` and a `succeeded` per
/// op), and the ratio between the two (group commit's gain).
pub fn appends(dir: &Path, writers: u32, per_writer: u32) -> Vec<Row> {
    let state = dir.join("appends");
    let opts = JournalOptions {
        compact_bytes: u64::MAX,
        ..JournalOptions::default()
    };
    let j = Journal::open(&state, opts).unwrap();
    let ops = per_writer.div_ceil(2);
    let t = Instant::now();
    for i in 0..ops {
        let op = j.begin(&shutdown(100 + i)).unwrap();
        j.succeeded(op).unwrap();
    }
    let single = f64::from(2 * ops) / t.elapsed().as_secs_f64();

    let syncs0 = j.syncs();
    let barrier = Arc::new(Barrier::new(writers as usize + 1));
    let threads: Vec<_> = (0..writers)
        .map(|k| {
            let (j, barrier) = (j.clone(), barrier.clone());
            std::thread::Builder::new()
                .name(format!("bench writer {k}"))
                .spawn(move || {
                    barrier.wait();
                    for i in 0..ops {
                        let op = j.begin(&shutdown(100 + k * 1000 + i)).unwrap();
                        j.succeeded(op).unwrap();
                    }
                })
                .unwrap()
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    for t in threads {
        t.join().unwrap();
    }
    let took = t.elapsed();
    let records = u64::from(writers) * u64::from(2 * ops);
    let syncs = j.syncs() - syncs0;
    j.close().unwrap();
    let _ = std::fs::remove_dir_all(&state);
    let many = records as f64 / took.as_secs_f64();
    vec![
        measure(
            "journal appends, one writer".into(),
            single,
            Unit::PerSec,
            None,
            format!("{} records, each durable before the next", 2 * ops),
        ),
        measure(
            format!("journal appends, {writers} writers"),
            many,
            Unit::PerSec,
            None,
            format!(
                "{records} records, {:.1} per fsync (group commit)",
                records as f64 / syncs.max(1) as f64
            ),
        ),
        measure(
            format!("journal group commit gain, {writers} writers over one"),
            many / single,
            Unit::Times,
            Some(Target::AtLeast(10.0)),
            "durable appends per second, the two rows above".into(),
        ),
    ]
}
