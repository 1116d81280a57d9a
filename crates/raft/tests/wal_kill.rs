//! A process killed with SIGKILL in the middle of RocksDB writes must
//! reopen with the Raft database's options and recovery
//! (`store::raft_db_options`, `store::open_db`) and keep every write it had
//! synced (what the log store acknowledges).
//!
//! The test runs itself as the writer: a child process writes large
//! unsynced batches (so that a kill often lands inside a multi-page
//! `write(2)` of the WAL, which Linux ends early on a fatal signal: a torn
//! tail record), syncs the WAL after some of them and reports each synced
//! batch on stdout. The parent kills it at a random point, reopens the
//! database and checks every reported batch is there.
//!
//! `WAL_KILL_TRIALS` (default 12) sets the number of kills, and
//! `WAL_KILL_SYNC_EVERY` (default 3) how many batches one sync covers. With
//! absolute consistency alone, 4 kills in 60 (syncing every 20 batches)
//! left a torn tail that refused to open.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use registry_raft::store::{open_db, raft_db_options};
use rocksdb::{WriteBatch, DB};

const CHILD_ENV: &str = "REGISTRY_WAL_KILL_CHILD";

/// Bytes the values are cut from (generated once: the writer's time goes
/// to writing, not to making values).
fn pool() -> &'static [u8] {
    static POOL: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..4 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    })
}

/// A value of `len` bytes that depends on `seed` (so a torn or misplaced
/// value is seen).
fn value(seed: u64, len: usize) -> Vec<u8> {
    let start = (seed as usize * 7919) % (pool().len() - len);
    pool()[start..start + len].to_vec()
}

/// Sizes from 8 KiB to 2 MiB: both sides of RocksDB's 1 MiB write buffer.
fn size_of(i: u64) -> usize {
    8 << 10 << (i % 9)
}

/// The writer: runs until killed.
fn child(path: &str) {
    let db = DB::open(&raft_db_options_creating(), path).expect("child opens the database");
    let start: u64 = match db.get(b"next").expect("read next") {
        Some(v) => u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
        None => 0,
    };
    let mut out = std::io::stdout().lock();
    let sync_every: u64 = std::env::var("WAL_KILL_SYNC_EVERY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for i in start.. {
        let mut batch = WriteBatch::default();
        batch.put(i.to_be_bytes(), value(i, size_of(i)));
        batch.put(b"next", (i + 1).to_be_bytes());
        db.write(batch).expect("write");
        if i % sync_every == 0 {
            db.flush_wal(true).expect("sync the WAL");
            // Every batch up to `i` is durable now.
            writeln!(out, "{i}").expect("report");
            out.flush().expect("flush stdout");
        }
    }
}

#[test]
fn a_killed_writer_reopens_with_every_synced_write() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(&path);
        return;
    }
    let trials: u64 = std::env::var("WAL_KILL_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("db");
    let mut refused = Vec::new();
    let mut reopened = 0;
    for trial in 0..trials {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "a_killed_writer_reopens_with_every_synced_write",
                "--nocapture",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the writer");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // Let it sync a few batches, then kill it at a point that moves
        // from trial to trial.
        let wait_for = 2 + trial % 5;
        // (The test harness's own lines are not numbers.)
        let mut synced = None;
        let mut reports = 0;
        while reports < wait_for {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Ok(i) = l.trim().parse::<u64>() {
                        synced = Some(i);
                        reports += 1;
                    }
                }
                _ => break,
            }
        }
        let pause = Instant::now();
        while pause.elapsed() < Duration::from_micros(137 * (trial % 11)) {
            std::hint::spin_loop();
        }
        child.kill().expect("SIGKILL the writer");
        child.wait().expect("reap the writer");
        // Whatever it reported before dying was synced.
        for l in lines.map_while(Result::ok) {
            if let Ok(i) = l.trim().parse::<u64>() {
                synced = Some(i);
            }
        }
        let synced = synced.unwrap_or_else(|| panic!("trial {trial}: the writer reported nothing"));
        match open_db(raft_db_options(), |o| DB::open(o, &path)) {
            Ok(db) => {
                reopened += 1;
                for i in 0..=synced {
                    let v = db.get(i.to_be_bytes()).expect("read");
                    assert_eq!(
                        v.as_deref(),
                        Some(&value(i, size_of(i))[..]),
                        "trial {trial}: synced batch {i} (of {synced}) lost or damaged"
                    );
                }
            }
            Err(e) => {
                eprintln!("trial {trial}: refused to reopen after SIGKILL: {e}");
                refused.push((trial, e.to_string()));
                // Start the next trial from a fresh directory.
                std::fs::remove_dir_all(&path).expect("remove the database");
            }
        }
    }
    eprintln!("{reopened} of {trials} kills reopened with every synced write");
    assert!(
        refused.is_empty(),
        "{} of {trials} kills left a database that refuses to open: {refused:?}",
        refused.len()
    );
}

/// A database killed with 5 synced records in its WAL, copied as the
/// kill leaves it (the writes only in the WAL, no memtable flushed);
/// returns the copy's directory and its WAL file.
fn killed_copy(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let live = dir.join("live");
    let copy = dir.join("copy");
    {
        let db = DB::open(&raft_db_options_creating(), &live).expect("open");
        for i in 0..5u64 {
            db.put(i.to_be_bytes(), value(i, 20_000)).expect("put");
        }
        db.flush_wal(true).expect("sync the WAL");
        std::fs::create_dir_all(&copy).expect("copy dir");
        for e in std::fs::read_dir(&live).expect("read dir") {
            let e = e.expect("dir entry");
            if e.file_name() != "LOCK" {
                std::fs::copy(e.path(), copy.join(e.file_name())).expect("copy");
            }
        }
    }
    let wal = std::fs::read_dir(&copy)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max_by_key(|p| std::fs::metadata(p).expect("metadata").len())
        .expect("a WAL file");
    (copy, wal)
}

/// A torn tail (the last record cut short, as a kill during a WAL write
/// leaves it): absolute consistency alone refuses it; `open_db` drops that
/// one record and keeps the others.
#[test]
fn a_torn_wal_tail_drops_only_the_torn_record() {
    for cut in [1u64, 100, 5000] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (copy, wal) = killed_copy(dir.path());
        let len = std::fs::metadata(&wal).expect("metadata").len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&wal)
            .expect("open the WAL");
        f.set_len(len - cut).expect("cut the WAL");
        let Err(err) = DB::open(&raft_db_options(), &copy) else {
            panic!("cut {cut}: opened")
        };
        assert!(
            err.to_string().starts_with("Corruption: "),
            "cut {cut}: {err}"
        );
        let db = open_db(raft_db_options(), |o| DB::open(o, &copy)).expect("reopened");
        for i in 0..4u64 {
            assert_eq!(
                db.get(i.to_be_bytes()).expect("get").as_deref(),
                Some(&value(i, 20_000)[..]),
                "cut {cut}: record {i}"
            );
        }
        assert_eq!(db.get(4u64.to_be_bytes()).expect("get"), None);
    }
}

/// A flipped byte inside any record but the torn last one is refused, by
/// `open_db` too: nothing after it is dropped silently.
#[test]
fn a_flipped_wal_byte_is_refused() {
    // Inside the first, a middle and the last record.
    for at in [100usize, 45_000, 95_000] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (copy, wal) = killed_copy(dir.path());
        let mut bytes = std::fs::read(&wal).expect("read the WAL");
        bytes[at] ^= 0x04;
        std::fs::write(&wal, &bytes).expect("write the WAL");
        let Err(err) = open_db(raft_db_options(), |o| DB::open(o, &copy)) else {
            panic!("byte {at}: opened")
        };
        assert!(
            err.to_string().starts_with("Corruption: "),
            "byte {at}: {err}"
        );
    }
}

fn raft_db_options_creating() -> rocksdb::Options {
    let mut o = raft_db_options();
    o.create_if_missing(true);
    o
}
