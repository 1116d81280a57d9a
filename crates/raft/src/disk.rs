//! Free space on the data directory's file system, and what the node does
//! when it runs short.
//!
//! A [`DiskSpace`] is sampled every second (`statvfs`). Below the floor
//! (`--min-free-disk-mb`) the node is *short of space*: the leader proposes
//! nothing (client writes get 507 `no_space`, liveness defers checkpoints
//! and expiries), a follower refuses log entries and snapshot chunks (the
//! leader retries them later), and no snapshot is written. Reads and
//! heartbeats need no disk and go on. Space freed is noticed within a
//! second; the node then writes again, with nothing lost: nothing was
//! acknowledged that was not stored.
//!
//! The floor keeps RocksDB and `snapshot.bin` from ever seeing a full disk
//! in the common case. When one does anyway (the floor is 0, or something
//! else filled the disk between two samples), the store reports it here
//! with [`DiskSpace::note_no_space`] and waits instead of failing: openraft
//! treats a storage error as fatal, and a node that exits on a full disk
//! comes back to the same full disk. RocksDB resumes by itself once space
//! returns (its `SstFileManager` polls for it).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

/// Free space of one directory's file system against a floor. Cheap to
/// clone; clones share the state.
#[derive(Clone, Debug)]
pub struct DiskSpace {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    min_free: u64,
    /// Bytes available to this process at the last sample (`u64::MAX`
    /// until the first one succeeds).
    free: AtomicU64,
    /// Short of space: below the floor, or a write failed for want of space
    /// and the disk has not been seen above the floor since.
    short: AtomicBool,
    /// Writes that failed for want of space, since the start.
    no_space_errors: AtomicU64,
    /// Store writes waiting for space now.
    waiting: AtomicI64,
}

/// What `/v1/cluster` and the metrics show of the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DiskStatus {
    pub free_bytes: u64,
    pub min_free_bytes: u64,
    pub no_space: bool,
    pub no_space_errors: u64,
    pub waiting_writes: u64,
}

impl DiskSpace {
    /// Watches the file system holding `dir` (which must exist), with a
    /// floor of `min_free` bytes (0: only failed writes count). Samples
    /// once now.
    pub fn new(dir: impl Into<PathBuf>, min_free: u64) -> DiskSpace {
        let disk = DiskSpace {
            inner: Arc::new(Inner {
                dir: dir.into(),
                min_free,
                free: AtomicU64::new(u64::MAX),
                short: AtomicBool::new(false),
                no_space_errors: AtomicU64::new(0),
                waiting: AtomicI64::new(0),
            }),
        };
        disk.sample();
        disk
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether the node is short of space now: below the floor (or not yet
    /// back above it after a write failed for want of space), or a write of
    /// the store is waiting for space.
    pub fn is_short(&self) -> bool {
        self.inner.short.load(Ordering::Acquire) || self.waiting() > 0
    }

    /// Whether the disk itself is short: below the floor, or a write failed
    /// for want of space and no sample has found room since (writes
    /// waiting for space aside).
    pub fn below_floor(&self) -> bool {
        self.inner.short.load(Ordering::Acquire)
    }

    /// Store writes waiting for space now.
    pub fn waiting(&self) -> u64 {
        self.inner.waiting.load(Ordering::Acquire).max(0) as u64
    }

    /// A store write starts (`1`) or stops (`-1`) waiting for space.
    pub fn waiting_writes(&self, delta: i64) {
        self.inner.waiting.fetch_add(delta, Ordering::AcqRel);
    }

    /// Bytes free at the last sample.
    pub fn free(&self) -> u64 {
        self.inner.free.load(Ordering::Relaxed)
    }

    pub fn min_free(&self) -> u64 {
        self.inner.min_free
    }

    pub fn status(&self) -> DiskStatus {
        DiskStatus {
            free_bytes: self.free(),
            min_free_bytes: self.min_free(),
            no_space: self.is_short(),
            no_space_errors: self.inner.no_space_errors.load(Ordering::Relaxed),
            waiting_writes: self.waiting(),
        }
    }

    /// "N MiB free, M MiB kept free", for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} MiB free, {} MiB kept free",
            self.free() >> 20,
            self.min_free() >> 20
        )
    }

    /// Whether `bytes` more can be written and leave the floor free.
    pub fn has_room_for(&self, bytes: u64) -> bool {
        !self.is_short() && self.free() >= self.min_free().saturating_add(bytes)
    }

    /// Reads the free space now and updates the condition. A node short
    /// of space is back once the free space is above the floor by an
    /// eighth of it (at least 1 MiB), so it does not flap at the line.
    /// Returns the free bytes, or `None` when they cannot be read (then
    /// the condition is left as it was).
    pub fn sample(&self) -> Option<u64> {
        let free = match available_bytes(&self.inner.dir) {
            Ok(free) => free,
            Err(e) => {
                warn!(dir = %self.inner.dir.display(), error = %e, "cannot read the free disk space");
                return None;
            }
        };
        self.inner.free.store(free, Ordering::Relaxed);
        let min = self.inner.min_free;
        let was = self.inner.short.load(Ordering::Acquire);
        let now = still_short(was, free, min);
        if now != was {
            self.inner.short.store(now, Ordering::Release);
            if now {
                warn!(
                    free_mb = free >> 20,
                    min_free_mb = min >> 20,
                    "disk space below the floor: refusing writes (507 no_space) until space is freed; reads and heartbeats go on"
                );
            } else {
                info!(
                    free_mb = free >> 20,
                    "disk space back above the floor: writes resume"
                );
            }
        }
        Some(free)
    }

    /// A write failed for want of space: the node is short of space until
    /// a sample finds the disk above the floor again.
    pub fn note_no_space(&self) {
        self.inner.no_space_errors.fetch_add(1, Ordering::Relaxed);
        if !self.inner.short.swap(true, Ordering::AcqRel) {
            warn!(
                dir = %self.inner.dir.display(),
                "a write failed: no space left on the data directory's disk; refusing writes until space is freed"
            );
        }
    }

    /// Samples every `every`, until every other clone is dropped.
    pub fn spawn_sampler(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let disk = DiskSpace { inner };
                // statvfs is a system call on a possibly slow disk.
                let _ = tokio::task::spawn_blocking(move || disk.sample()).await;
            }
        })
    }
}

/// Whether a node that `was` short of space is short with `free` bytes
/// against a floor of `min`: below the floor, or, once short, not yet above
/// it by an eighth of it (at least 1 MiB).
fn still_short(was: bool, free: u64, min: u64) -> bool {
    if was {
        free < min.saturating_add((min / 8).max(1 << 20))
    } else {
        free < min
    }
}

/// Bytes an unprivileged process may still write on `dir`'s file system.
pub fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Whether an I/O error is the disk (or the quota) being full.
pub fn is_no_space_io(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == libc_enospc() || code == libc_edquot())
        || e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
}

/// Whether a RocksDB error is the disk being full. RocksDB reports it as an
/// I/O error whose message carries the system's text (`No space left on
/// device`, `Disk quota exceeded`), or its own sub-code name.
pub fn is_no_space_rocksdb(e: &rocksdb::Error) -> bool {
    let msg = e.as_ref();
    [
        "No space left on device",
        "Disk quota exceeded",
        "NoSpace",
        "No space",
    ]
    .iter()
    .any(|needle| msg.contains(needle))
}

fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}

fn libc_edquot() -> i32 {
    rustix::io::Errno::DQUOT.raw_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_free_space_is_short_and_zero_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let free = available_bytes(dir.path()).unwrap();
        assert!(free > 1 << 20, "a test directory has room: {free}");
        assert!(!DiskSpace::new(dir.path(), 0).is_short());
        let short = DiskSpace::new(dir.path(), u64::MAX);
        assert!(short.is_short());
        assert!(short.below_floor());
        assert!(!short.has_room_for(0));
        assert_eq!(short.status().min_free_bytes, u64::MAX);
        assert!(short.status().no_space);
    }

    #[test]
    fn room_is_the_sampled_free_space_above_the_floor() {
        const MIB: u64 = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskSpace::new(dir.path(), 3 * MIB);
        assert_eq!(disk.dir(), dir.path());
        let free = disk.free();
        assert!(free > 4 * MIB, "a test directory has room: {free}");
        assert_eq!(disk.status().free_bytes, free);
        assert!(!disk.below_floor());
        // Room is counted from the sampled free space, above the floor.
        assert!(disk.has_room_for(0));
        assert!(disk.has_room_for(free - 3 * MIB));
        assert!(!disk.has_room_for(free - 3 * MIB + 1));
        assert_eq!(
            disk.describe(),
            format!("{} MiB free, 3 MiB kept free", free >> 20)
        );
    }

    #[test]
    fn a_write_waiting_for_space_holds_writes_back() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskSpace::new(dir.path(), 0);
        disk.waiting_writes(1);
        disk.waiting_writes(1);
        assert_eq!(disk.waiting(), 2);
        assert!(disk.is_short());
        assert!(
            !disk.below_floor(),
            "the disk itself is not below the floor"
        );
        assert!(!disk.has_room_for(0));
        assert_eq!(disk.status().waiting_writes, 2);
        assert!(disk.status().no_space);
        disk.waiting_writes(-1);
        disk.waiting_writes(-1);
        assert_eq!(disk.waiting(), 0);
        assert!(!disk.is_short());
        assert!(disk.has_room_for(0));
    }

    #[test]
    fn a_failed_write_holds_until_a_sample_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskSpace::new(dir.path(), 0);
        assert!(disk.has_room_for(1));
        disk.note_no_space();
        assert!(disk.is_short());
        assert!(!disk.has_room_for(1));
        assert_eq!(disk.status().no_space_errors, 1);
        // A sample that finds room (anything above a 0 floor plus 1 MiB)
        // ends it.
        assert!(disk.sample().unwrap() > 1 << 20);
        assert!(!disk.is_short());
        assert_eq!(disk.status().no_space_errors, 1);
    }

    #[test]
    fn recovery_needs_a_margin_above_the_floor() {
        const MIB: u64 = 1 << 20;
        // Not short: short only below the floor.
        assert!(!still_short(false, 256 * MIB, 256 * MIB));
        assert!(still_short(false, 256 * MIB - 1, 256 * MIB));
        // Short: back only an eighth above the floor.
        assert!(still_short(true, 256 * MIB, 256 * MIB));
        assert!(still_short(true, 288 * MIB - 1, 256 * MIB));
        assert!(!still_short(true, 288 * MIB, 256 * MIB));
        // At least 1 MiB above a small floor, and a 0 floor.
        assert!(still_short(true, 8 * MIB + MIB - 1, 8 * MIB));
        assert!(!still_short(true, 9 * MIB, 8 * MIB));
        assert!(still_short(true, MIB - 1, 0));
        assert!(!still_short(true, MIB, 0));
        assert!(!still_short(false, 0, 0));
        // No overflow at the top.
        assert!(still_short(true, u64::MAX - 1, u64::MAX));
        assert!(!still_short(false, u64::MAX, u64::MAX));
    }

    #[test]
    fn no_space_errors_are_recognized() {
        assert!(is_no_space_io(&std::io::Error::from_raw_os_error(
            libc_enospc()
        )));
        assert!(is_no_space_io(&std::io::Error::from_raw_os_error(
            libc_edquot()
        )));
        assert!(!is_no_space_io(&std::io::Error::from_raw_os_error(
            rustix::io::Errno::IO.raw_os_error()
        )));
        assert!(!is_no_space_io(&std::io::Error::other("disk full")));
        // By kind alone (an error made without an OS code).
        assert!(is_no_space_io(&std::io::ErrorKind::StorageFull.into()));
        assert!(is_no_space_io(&std::io::ErrorKind::QuotaExceeded.into()));
        assert!(!is_no_space_io(&std::io::ErrorKind::NotFound.into()));
    }

    #[test]
    fn other_rocksdb_errors_are_not_a_full_disk() {
        // A database whose directory is a file: an I/O error, but not a
        // full disk.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        let err = rocksdb::DB::open(&opts, file.join("db")).unwrap_err();
        assert!(!is_no_space_rocksdb(&err), "{err}");
    }
}
