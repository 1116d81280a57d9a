//! RocksDB-backed Raft storage.
//!
//! Layout of one node's data directory:
//! - `raft/`: a RocksDB database with two column families:
//!   - `log`: key = log index (u64, big endian), value = `[FORMAT_VERSION]`
//!     followed by the bincode of the entry;
//!   - `meta`: the vote, the committed log id, the last purged log id and the
//!     node id this directory belongs to.
//! - `snapshot.bin`: the latest state-machine snapshot, replaced atomically
//!   (write to a temporary file, fsync, rename, fsync the directory): a
//!   header, then `[FORMAT_VERSION]` and the bincode of the stored snapshot.
//! - `cluster-id`: the cluster's id (`crate::identity`).
//!
//! Durability with group commit: a log append is written to RocksDB without
//! a sync and its completion callback is handed to a flusher thread, which
//! syncs the WAL once for every append that piled up meanwhile and only then
//! tells openraft the entries are durable. One fsync (about 2 ms on the
//! project's machines) thus covers every write that arrived during the
//! previous one, instead of capping commits at one per fsync. Votes and
//! truncations are rare and use synced writes directly.
//!
//! The state machine is not written on every apply: restart loads
//! `snapshot.bin` and openraft re-applies the committed entries after it
//! (bounded by the snapshot interval), so restart never replays the whole log.
//!
//! Integrity at rest: a node refuses to start on damaged, foreign or
//! contradicting files, and says which file and what to do ([`RECOVERY`]).
//!
//! - RocksDB runs with paranoid checks and the WAL recovery mode
//!   `AbsoluteConsistency` ([`raft_db_options`]): a WAL record that fails
//!   its checksum, or any other damage, stops the open. RocksDB's default,
//!   point-in-time recovery, silently replays only up to the first bad
//!   record: one flipped byte lost 7 acknowledged registrations. Reads
//!   verify block checksums (RocksDB's default `verify_checksums`).
//! - Torn tails and `kill -9`: absolute consistency also refuses a WAL
//!   that ends inside a record, and a `kill -9` does leave one: a WAL write
//!   of several pages (a batch of entries; records over 32 KiB are split in
//!   fragments written together) is cut short when the kernel sees the
//!   fatal signal between two pages. `tests/wal_kill.rs` measured it: 4
//!   kills in 60 under large writes left a database that absolute
//!   consistency refused. Such a record was never acknowledged: the
//!   flusher confirms an append only after `flush_wal(true)` synced the
//!   WAL past it, and the kill interrupts the write that follows. So
//!   [`open_db`] opens with absolute consistency and, only when RocksDB's
//!   sole complaint is a record cut short at the end of the WAL, opens again
//!   with `TolerateCorruptedTailRecords` (which drops that record and still
//!   refuses checksum mismatches and bad records anywhere) and logs it.
//!   What this leaves open: a record length damaged in the WAL's last
//!   32 KiB block so that it points past the end looks the same as a torn
//!   tail, and the records after it in that block are dropped with a
//!   warning instead of refused; like a WAL cut at a record boundary (which
//!   no recovery mode can see), that takes deliberate tampering, not a
//!   crash or a flipped bit.
//! - `snapshot.bin` and the snapshot data sent to peers carry a header
//!   (`crate::frame`): cluster id, node id, length and CRC32C, verified
//!   before decoding. A file or data of the previous release has no header
//!   and is read as before (logged); the node writes only the new format.
//! - At start, [`check_consistency`] checks that the snapshot, the log and
//!   the vote describe one history ([`Inconsistency`]).

use std::fmt::Debug;
use std::io::{Cursor, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use rocksdb::{
    ColumnFamilyDescriptor, DBRecoveryMode, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use registry_state::{
    RegistryState, RestoreError, SnapshotData, SnapshotDataV2, SnapshotDataV3, SnapshotDataV4,
    StateConfig, SNAPSHOT_FORMAT_VERSION,
};

use crate::disk::{is_no_space_io, is_no_space_rocksdb, DiskSpace};
use crate::frame::{self, CrcWriter, FrameError, FrameKind, SnapshotHeader, HEADER_LEN};
use crate::identity::{ClusterId, ClusterIdentity, IdentityError};
use crate::observe::{BuildFailure, Observer};
use crate::shared::{AppliedPosition, AppliedState, SharedState};
use crate::{Applied, Entry, LogId, TypeConfig, FORMAT_VERSION};

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_META: &str = "meta";
pub(crate) const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_PURGED: &[u8] = b"last_purged";
pub(crate) const KEY_NODE_ID: &[u8] = b"node_id";
pub(crate) const SNAPSHOT_FILE: &str = "snapshot.bin";

/// What to do about a data directory a node refuses: said by every error
/// that means the files are damaged or do not belong together.
pub const RECOVERY: &str = "move the data directory aside and start the node with an empty one, \
     so that it re-syncs from a peer's snapshot (docs/operations.md, Recovery)";

/// Errors opening a node's storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// The Raft database (log, vote, committed id) cannot be opened: with
    /// paranoid checks and absolute WAL consistency this is where a damaged
    /// WAL or table file is reported.
    #[error(
        "cannot open the Raft database {path}: {source}; if it reports a corruption, {RECOVERY}"
    )]
    OpenDatabase {
        path: PathBuf,
        source: rocksdb::Error,
    },
    /// `snapshot.bin` cannot be read back: damaged, truncated, or of a
    /// format this build does not read.
    #[error("{path}: {source}; {RECOVERY}")]
    Snapshot { path: PathBuf, source: DecodeError },
    /// `snapshot.bin` was written in another cluster than the one the data
    /// directory's `cluster-id` names (or the directory names none).
    #[error(
        "{path} belongs to cluster {found}, but this data directory {}: it was copied from \
         another node or cluster; {RECOVERY}",
        match ours { Some(id) => format!("to cluster {id}"), None => "has no cluster-id file".to_string() }
    )]
    SnapshotCluster {
        path: PathBuf,
        found: ClusterId,
        ours: Option<ClusterId>,
    },
    /// `snapshot.bin` was written by another node.
    #[error("{path} was written by node {found}, not by this node ({expected}): it was copied from another node; {RECOVERY}")]
    SnapshotNode {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    /// The snapshot, the log and the vote do not describe one history.
    #[error("{path}: {problem}; {RECOVERY}")]
    Inconsistent {
        /// The data directory.
        path: PathBuf,
        problem: Inconsistency,
    },
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "data directory belongs to node {found}, not node {expected}: refusing to start \
         (a node must never reuse another node's data, nor restart with a wiped directory under an id the cluster knows)"
    )]
    NodeIdMismatch { found: u64, expected: u64 },
    /// A stored value (node id, committed log id, the snapshot file) could
    /// not be read back.
    #[error("corrupt or unsupported data: {0}")]
    Corrupt(#[from] DecodeError),
    /// The database opened without a column family it was created with.
    #[error("corrupt or unsupported data: missing {0} column family")]
    MissingColumnFamily(&'static str),
    /// This node's id could not be encoded for its first start.
    #[error("encoding the node id: {0}")]
    EncodeNodeId(#[source] bincode::Error),
    /// The data directory's `cluster-id` file cannot be read.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Why a persisted value or a snapshot's data could not be read.
///
/// Every variant means the bytes (on disk, or a snapshot a leader sent) are
/// damaged or were written by a release this build does not understand:
/// reading them again fails the same way. The storage traits report it to
/// openraft as the source of a `StorageIOError`; opening a node reports it as
/// [`StoreError::Corrupt`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The value has no bytes at all, not even its format marker.
    #[error("empty value")]
    Empty,
    /// The value's format marker is not one this build reads: a later
    /// release wrote it, or the bytes are not ours.
    #[error("encoding version {found} is not supported (this build reads 1 and {supported})")]
    UnsupportedVersion {
        /// The marker found (the value's first byte).
        found: u8,
        /// The newest format this build reads, [`FORMAT_VERSION`]; it reads
        /// format 1 too.
        supported: u8,
    },
    /// The bytes after a known format marker are not that format's encoding
    /// of the value expected.
    #[error("format {format}: {source}")]
    Bincode {
        /// The format marker the value carried.
        format: u8,
        source: bincode::Error,
    },
    /// Snapshot data too short to hold the format number it starts with.
    #[error("snapshot data has no format number: {0}")]
    MissingSnapshotFormat(#[source] bincode::Error),
    /// The snapshot's format number is not one this build reads: a later
    /// release wrote it, or the bytes are not a snapshot.
    #[error("snapshot format {found} is not supported (this build reads 2, 3, 4 and {supported})")]
    UnsupportedSnapshotFormat {
        /// The format number the data starts with.
        found: u32,
        /// The newest snapshot format this build reads,
        /// [`SNAPSHOT_FORMAT_VERSION`]; it reads format 2 too.
        supported: u32,
    },
    /// The snapshot data after a known format number is not that format's
    /// encoding.
    #[error("snapshot format {format}: {source}")]
    SnapshotBincode {
        /// The format number the data starts with.
        format: u32,
        source: bincode::Error,
    },
    /// The snapshot decoded but the registry refused to restore from it.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// A snapshot's header or checksum says the bytes are damaged,
    /// truncated or of a later header version.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Snapshot data with no bytes at all: there is nothing to install.
    #[error("empty snapshot data")]
    EmptySnapshot,
}

/// How a node's snapshot, log and vote can contradict each other. Each one
/// means a file was lost, replaced or damaged: serving from them would
/// serve less than the node acknowledged, or a history it never had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistency {
    /// Entries after the snapshot and before the log's first are missing.
    #[error(
        "the Raft log (raft/) starts at index {first_log} but snapshot.bin {}: the entries in between are lost",
        match snapshot_last { Some(i) => format!("ends at index {i}"), None => "is missing".to_string() }
    )]
    LogGap {
        snapshot_last: Option<u64>,
        first_log: u64,
    },
    /// The log was purged past what the snapshot holds.
    #[error(
        "the Raft log (raft/) was purged up to index {purged} but snapshot.bin {}: the entries in between are lost",
        match snapshot_last { Some(i) => format!("ends at index {i}"), None => "is missing".to_string() }
    )]
    PurgedPastSnapshot {
        purged: u64,
        snapshot_last: Option<u64>,
    },
    /// Indexes missing inside the log.
    #[error(
        "the Raft log (raft/) holds {count} entries from index {first} to {last}: some are missing"
    )]
    LogHoles { first: u64, last: u64, count: u64 },
    /// The committed index is in neither the log nor the snapshot: the
    /// log was wiped or lost while the metadata was kept.
    #[error(
        "the committed index {committed} is in neither the Raft log (raft/, {}) nor snapshot.bin ({}): the log was wiped or lost",
        match last_log { Some(i) => format!("last index {i}"), None => "empty".to_string() },
        match snapshot_last { Some(i) => format!("last index {i}"), None => "none".to_string() }
    )]
    CommittedNotCovered {
        committed: u64,
        last_log: Option<u64>,
        snapshot_last: Option<u64>,
    },
    /// The vote is older than the log: the vote was lost or replaced.
    #[error(
        "the vote's term {vote_term} is behind the term {log_term} of the last log entry (raft/)"
    )]
    VoteBehindLog { vote_term: u64, log_term: u64 },
    /// The log holds the snapshot's last index with another log id.
    #[error(
        "snapshot.bin ends at log id {snapshot} but the Raft log (raft/) holds {log} at that index"
    )]
    SnapshotDiverges { snapshot: LogId, log: LogId },
    /// `snapshot.bin` is there but the Raft database was just created.
    #[error("snapshot.bin is there but the Raft database (raft/) is new: it was removed or wiped")]
    DatabaseWiped,
}

/// Storage settings.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Settings of the registry state machine.
    pub state: StateConfig,
    /// fsync the WAL before confirming a log write. Only tests turn it off.
    pub sync: bool,
    /// The data directory's free space: with it, a write that fails for
    /// want of space waits for space instead of failing (which openraft
    /// treats as fatal), and no snapshot is written without room for it.
    /// Without it (tests), such a write fails.
    pub disk: Option<DiskSpace>,
    /// Told of every WAL sync and snapshot built or installed, with their
    /// durations and sizes (the node's metrics); a no-op by default.
    pub observer: Observer,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            state: StateConfig::default(),
            sync: true,
            disk: None,
            observer: Observer::default(),
        }
    }
}

/// Options of the Raft database, for the node and for `inspect`: paranoid
/// checks, and a WAL recovery that refuses any damaged record (see the
/// module doc, and [`open_db`] for the one exception, a torn tail).
pub fn raft_db_options() -> Options {
    let mut o = Options::default();
    o.set_paranoid_checks(true);
    o.set_wal_recovery_mode(DBRecoveryMode::AbsoluteConsistency);
    o
}

/// What RocksDB says (log_reader.cc) when a WAL ends inside a record, and
/// only then: the last write was cut short.
const TORN_TAIL: [&str; 3] = [
    "truncated record body",
    "error reading trailing data",
    "truncated header",
];

/// Opens a database with `opts` (from [`raft_db_options`]) through `open`;
/// if RocksDB refuses only because the WAL ends inside a record, which a
/// crash in the middle of a write leaves (a `kill -9` does, see the module
/// doc), opens it again dropping that record, and says so. That record was
/// never acknowledged: the log store confirms a write only once the WAL is
/// synced past it. Any other damage is still refused.
pub fn open_db<T>(
    mut opts: Options,
    open: impl Fn(&Options) -> Result<T, rocksdb::Error>,
) -> Result<T, rocksdb::Error> {
    match open(&opts) {
        Err(e) if TORN_TAIL.iter().any(|t| e.as_ref().contains(t)) => {
            warn!(
                error = %e,
                "the WAL ends inside a record (a crash during a write): \
                 dropping that record, which was never acknowledged"
            );
            opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
            open(&opts)
        }
        other => other,
    }
}

fn io_err(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError<u64> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn read_logs_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_logs_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

/// Encodes a value with the format marker in front.
pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, bincode::Error> {
    let mut out = Vec::new();
    encode_into(&mut out, v)?;
    Ok(out)
}

/// [`encode`], written to `w` as it is produced.
fn encode_into<T: Serialize>(mut w: impl Write, v: &T) -> Result<(), bincode::Error> {
    w.write_all(&[FORMAT_VERSION])?;
    bincode::serialize_into(w, v)
}

/// Decodes a value written by [`encode`] of this release or of a release
/// that wrote format 1, by its format marker.
fn decode<T: Persisted>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (&format, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    let value = match format {
        FORMAT_VERSION => bincode::deserialize(rest),
        1 => T::decode_v1(rest),
        found => {
            return Err(DecodeError::UnsupportedVersion {
                found,
                supported: FORMAT_VERSION,
            })
        }
    };
    value.map_err(|source| DecodeError::Bincode { format, source })
}

/// A value persisted with a format marker in front: how to read the
/// bincode that format 1 wrote for it.
trait Persisted: Sized + for<'de> Deserialize<'de> {
    fn decode_v1(bytes: &[u8]) -> Result<Self, bincode::Error>;
}

/// Values whose encoding did not change in format 2.
macro_rules! same_in_v1 {
    ($($t:ty),*) => {$(
        impl Persisted for $t {
            fn decode_v1(bytes: &[u8]) -> Result<Self, bincode::Error> {
                bincode::deserialize(bytes)
            }
        }
    )*};
}

// A snapshot's data carries its own version (see `decode_snapshot_data`).
same_in_v1!(u64, LogId, Vote<u64>, StoredSnapshot);

/// A log entry as format 1 wrote it: openraft's `Entry` (same field and
/// variant order) around a version-1 command.
#[derive(Deserialize)]
struct EntryV1 {
    log_id: LogId,
    payload: PayloadV1,
}

#[derive(Deserialize)]
enum PayloadV1 {
    Blank,
    Normal(registry_types::v1::Command),
    Membership(openraft::Membership<u64, openraft::BasicNode>),
}

impl Persisted for Entry {
    fn decode_v1(bytes: &[u8]) -> Result<Self, bincode::Error> {
        let e: EntryV1 = bincode::deserialize(bytes)?;
        Ok(Entry {
            log_id: e.log_id,
            payload: match e.payload {
                PayloadV1::Blank => EntryPayload::Blank,
                PayloadV1::Normal(c) => EntryPayload::Normal(c.into()),
                PayloadV1::Membership(m) => EntryPayload::Membership(m),
            },
        })
    }
}

/// Decodes a snapshot's state-machine data of the current format, of
/// format 4 (before A2A Agent Cards), of format 3 (before access control)
/// or of format 2 (written by releases
/// whose log format was 1), told apart by the
/// `format_version` field every format starts with.
pub fn decode_snapshot_data(bytes: &[u8]) -> Result<SnapshotData, DecodeError> {
    let format: u32 = bincode::deserialize(bytes).map_err(DecodeError::MissingSnapshotFormat)?;
    let data = match format {
        SNAPSHOT_FORMAT_VERSION => bincode::deserialize(bytes),
        4 => bincode::deserialize::<SnapshotDataV4>(bytes).map(SnapshotData::from),
        3 => bincode::deserialize::<SnapshotDataV3>(bytes).map(SnapshotData::from),
        2 => bincode::deserialize::<SnapshotDataV2>(bytes).map(SnapshotData::from),
        found => {
            return Err(DecodeError::UnsupportedSnapshotFormat {
                found,
                supported: SNAPSHOT_FORMAT_VERSION,
            })
        }
    };
    data.map_err(|source| DecodeError::SnapshotBincode { format, source })
}

/// Splits snapshot data into its header (checked, with the checksum of
/// the body) and its body. Data without a header, built by a release from
/// before headers, is all body, decoded as it always was.
pub fn open_snapshot_data(bytes: &[u8]) -> Result<(Option<SnapshotHeader>, &[u8]), DecodeError> {
    Ok(match SnapshotHeader::open(FrameKind::Data, bytes)? {
        Some((header, body)) => (Some(header), body),
        None => (None, bytes),
    })
}

/// Why snapshot data from a leader cannot be installed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotDataError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Cluster(#[from] IdentityError),
}

/// Checks snapshot data as `install_snapshot` will (header, checksum,
/// cluster id, a registry that decodes and restores), changing nothing.
/// The server runs it before the last chunk reaches openraft, which treats
/// a snapshot it cannot install as a fatal storage error.
pub fn verify_snapshot_data(
    config: StateConfig,
    bytes: &[u8],
    ours: Option<ClusterId>,
) -> Result<(), SnapshotDataError> {
    if bytes.is_empty() {
        return Err(DecodeError::EmptySnapshot.into());
    }
    let (header, body) = open_snapshot_data(bytes)?;
    if let (Some(theirs), Some(ours)) = (header.and_then(|h| h.cluster_id), ours) {
        if theirs != ours {
            return Err(IdentityError::Mismatch { ours, theirs }.into());
        }
    }
    restore_snapshot(config, body)?;
    Ok(())
}

/// Rebuilds the registry from a snapshot's body (see
/// [`open_snapshot_data`]), as [`open_store`] and `install_snapshot` both do.
fn restore_snapshot(config: StateConfig, body: &[u8]) -> Result<RegistryState, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::EmptySnapshot);
    }
    let data = decode_snapshot_data(body)?;
    Ok(RegistryState::restore(config, data)?)
}

fn id_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_id(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_be_bytes(b)
}

/// The Raft log store. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    sync: bool,
    /// Hands append callbacks to the WAL flusher thread.
    flusher: std::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
    /// Group-commit figures: WAL syncs done and appends they covered.
    pub wal_syncs: Arc<AtomicU64>,
    pub wal_synced_appends: Arc<AtomicU64>,
    /// Highest committed log index this node has been told of (for
    /// `/v1/cluster`; openraft 0.9 does not report it in its metrics).
    committed: Arc<AtomicU64>,
    /// The latest appended entries, decoded.
    recent: Arc<std::sync::Mutex<RecentEntries>>,
    /// Free space of the data directory (see [`StoreOptions::disk`]).
    disk: Option<DiskSpace>,
}

/// The tail of the log, kept decoded in memory.
///
/// openraft 0.9 reads every entry back from the log store twice on the
/// leader (to replicate it and to apply it) and once on a follower (to apply
/// it); from RocksDB each read is an iterator seek plus a bincode decode of
/// the whole entry, which was about a twentieth of a follower's CPU under a
/// registration load. The tail holds the entries most recently appended,
/// contiguous and ending at the last one in the log, so any read starting
/// inside it is answered from memory; older reads go to RocksDB.
#[derive(Default)]
pub struct RecentEntries {
    entries: std::collections::VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl RecentEntries {
    /// Entries kept at most, and their encoded size at most.
    const MAX_ENTRIES: usize = 4096;
    const MAX_BYTES: usize = 64 << 20;

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    /// Forgets entries at or after `index` (a truncation).
    fn truncate(&mut self, index: u64) {
        while let Some((e, n)) = self.entries.back() {
            if e.log_id.index < index {
                break;
            }
            self.bytes -= n;
            self.entries.pop_back();
        }
    }

    /// Forgets entries at or before `index` (a purge).
    fn purge(&mut self, index: u64) {
        while let Some((e, n)) = self.entries.front() {
            if e.log_id.index > index {
                break;
            }
            self.bytes -= n;
            self.entries.pop_front();
        }
    }

    fn push(&mut self, entry: Entry, size: usize) {
        let index = entry.log_id.index;
        self.truncate(index);
        if let Some((last, _)) = self.entries.back() {
            if last.log_id.index + 1 != index {
                // Not contiguous with what is kept: start over from here.
                self.entries.clear();
                self.bytes = 0;
            }
        }
        self.entries.push_back((entry, size));
        self.bytes += size;
        while self.entries.len() > Self::MAX_ENTRIES || self.bytes > Self::MAX_BYTES {
            match self.entries.pop_front() {
                Some((_, n)) => self.bytes -= n,
                None => break,
            }
        }
    }

    /// The entries of `range`, if its start is kept, within `budget`.
    fn get<RB: RangeBounds<u64>>(
        &self,
        range: &RB,
        start: u64,
        mut budget: ByteBudget,
    ) -> Option<Vec<Entry>> {
        let first = self.first_index()?;
        if start < first {
            return None;
        }
        let skip = (start - first) as usize;
        Some(
            self.entries
                .iter()
                .skip(skip)
                .take_while(|(e, n)| range.contains(&e.log_id.index) && budget.take(*n))
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

/// Most encoded bytes of log entries one AppendEntries carries (one entry
/// always goes, however large). openraft gives an AppendEntries one Raft
/// heartbeat interval (100 ms by default) to be answered, the follower's
/// fsync included, and otherwise sends up to 300 entries, each up to the
/// group commit's 1 MiB: a follower that had fallen behind was sent
/// hundreds of MiB at once, which never fit the interval, so it never
/// caught up (a fill of 100,000 agents with 4 KiB cards wedged that way).
/// 2 MiB crosses a gigabit link in about 17 ms.
pub const MAX_APPEND_BYTES: usize = 2 << 20;

/// A running total of entry sizes against a limit: the first entry is
/// always taken, later ones while the total stays within the limit.
#[derive(Clone, Copy, Debug)]
struct ByteBudget {
    limit: usize,
    used: usize,
    taken: usize,
}

impl ByteBudget {
    fn new(limit: usize) -> Self {
        ByteBudget {
            limit,
            used: 0,
            taken: 0,
        }
    }

    /// Whether an entry of `size` bytes fits; counts it when it does.
    fn take(&mut self, size: usize) -> bool {
        let used = self.used.saturating_add(size);
        if self.taken > 0 && used > self.limit {
            return false;
        }
        self.used = used;
        self.taken += 1;
        true
    }
}

/// A snapshot as kept on disk, the body of `snapshot.bin`.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta<u64, openraft::BasicNode>,
    /// The snapshot data as sent to peers: framed (header and checksum,
    /// see [`open_snapshot_data`]) when this release built or received it,
    /// bare when a previous release did.
    pub(crate) data: Vec<u8>,
}

/// The state-machine store: applies entries to the in-memory registry and
/// builds, installs and persists snapshots.
#[derive(Clone)]
pub struct StateMachineStore {
    shared: SharedState,
    dir: PathBuf,
    config: StateConfig,
    /// Counts snapshots built by this process, to make snapshot ids unique.
    built: Arc<AtomicU64>,
    /// The cluster this node belongs to: stamped on every snapshot it
    /// writes or sends, checked on every snapshot it installs.
    identity: ClusterIdentity,
    /// This node's id, stamped on the snapshots it writes.
    node_id: u64,
    /// Free space of the data directory (see [`StoreOptions::disk`]).
    disk: Option<DiskSpace>,
    /// The snapshot in `snapshot.bin` (what a build that cannot be
    /// written answers instead) and the time before which no build is
    /// tried again after one failed for want of space.
    kept: Arc<std::sync::Mutex<KeptSnapshot>>,
    /// Told of every snapshot built or installed (see [`StoreOptions::observer`]).
    observer: Observer,
}

/// What the state-machine store knows of `snapshot.bin` without reading it.
#[derive(Default)]
struct KeptSnapshot {
    meta: Option<SnapshotMeta<u64, openraft::BasicNode>>,
    /// Its size in bytes: what the next one needs, about.
    bytes: u64,
    /// No build is tried before this, after one found no space.
    retry_at: Option<std::time::Instant>,
}

/// Opens (or creates) the storage of node `node_id` under `dir`.
///
/// Refuses a directory that belongs to another node id, a damaged,
/// truncated or foreign `snapshot.bin` (another cluster than `identity`'s,
/// another node), and a snapshot, log and vote that contradict each other
/// (see [`Inconsistency`]). Loads the latest snapshot into the registry
/// state; openraft re-applies the committed log after it.
pub fn open_store(
    dir: &Path,
    node_id: u64,
    identity: ClusterIdentity,
    options: StoreOptions,
) -> Result<(LogStore, StateMachineStore, SharedState), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut db_opts = raft_db_options();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    let db_path = dir.join("raft");
    let db = open_db(db_opts, |opts| {
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_LOG, raft_db_options()),
            ColumnFamilyDescriptor::new(CF_META, raft_db_options()),
        ];
        DB::open_cf_descriptors(opts, &db_path, cfs)
    })
    .map_err(|source| StoreError::OpenDatabase {
        path: db_path.clone(),
        source,
    })?;
    let db = Arc::new(db);
    let meta = db
        .cf_handle(CF_META)
        .ok_or(StoreError::MissingColumnFamily(CF_META))?;
    let created = match db.get_cf(meta, KEY_NODE_ID)? {
        Some(v) => {
            let found: u64 = decode(&v)?;
            if found != node_id {
                return Err(StoreError::NodeIdMismatch {
                    found,
                    expected: node_id,
                });
            }
            false
        }
        None => true,
    };

    let snapshot_path = dir.join(SNAPSHOT_FILE);
    let snapshot = read_snapshot_file(dir)?;
    if created && snapshot.is_some() {
        return Err(StoreError::Inconsistent {
            path: dir.to_path_buf(),
            problem: Inconsistency::DatabaseWiped,
        });
    }
    let mut applied = AppliedState::new(RegistryState::new(options.state.clone()));
    if let Some(LoadedSnapshot {
        stored: snap,
        header,
    }) = &snapshot
    {
        match header {
            Some(h) => {
                if h.node_id != node_id {
                    return Err(StoreError::SnapshotNode {
                        path: snapshot_path,
                        found: h.node_id,
                        expected: node_id,
                    });
                }
                if let Some(found) = h.cluster_id {
                    if identity.get() != Some(found) {
                        return Err(StoreError::SnapshotCluster {
                            path: snapshot_path,
                            found,
                            ours: identity.get(),
                        });
                    }
                }
            }
            None => info!(
                file = %snapshot_path.display(),
                "snapshot file of the previous format (no header, no checksum to verify); \
                 the next snapshot is written in the current one"
            ),
        }
        let snapshot_err = |source| StoreError::Snapshot {
            path: snapshot_path.clone(),
            source,
        };
        let (_, body) = open_snapshot_data(&snap.data).map_err(snapshot_err)?;
        applied.registry = restore_snapshot(options.state.clone(), body).map_err(snapshot_err)?;
        applied.last_applied = snap.meta.last_log_id;
        applied.membership = snap.meta.last_membership.clone();
        info!(
            snapshot = %snap.meta.snapshot_id,
            agents = applied.registry.len(),
            revision = applied.registry.revision(),
            "loaded snapshot"
        );
    }
    let snapshot_last = snapshot.as_ref().and_then(|s| s.stored.meta.last_log_id);
    let summary = read_log_summary(&db, snapshot_last.map(|l| l.index))?;
    check_consistency(&summary, snapshot_last).map_err(|problem| StoreError::Inconsistent {
        path: dir.to_path_buf(),
        problem,
    })?;
    if created {
        // Only once the directory is known good: a refused start leaves
        // the database as it found it.
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let v = encode(&node_id).map_err(StoreError::EncodeNodeId)?;
        db.put_cf_opt(meta, KEY_NODE_ID, v, &wo)?;
    }
    let committed = summary.committed.map_or(0, |c| c.index);
    let shared = SharedState::new(applied);
    let wal_syncs = Arc::new(AtomicU64::new(0));
    let wal_synced_appends = Arc::new(AtomicU64::new(0));
    let flusher = spawn_flusher(
        Arc::downgrade(&db),
        options.sync,
        wal_syncs.clone(),
        wal_synced_appends.clone(),
        options.disk.clone(),
        options.observer.clone(),
    )?;
    let kept = KeptSnapshot {
        meta: snapshot.as_ref().map(|s| s.stored.meta.clone()),
        bytes: std::fs::metadata(&snapshot_path).map_or(0, |m| m.len()),
        retry_at: None,
    };
    let log = LogStore {
        db,
        sync: options.sync,
        flusher,
        wal_syncs,
        wal_synced_appends,
        committed: Arc::new(AtomicU64::new(committed)),
        recent: Default::default(),
        disk: options.disk.clone(),
    };
    let sm = StateMachineStore {
        shared: shared.clone(),
        dir: dir.to_path_buf(),
        config: options.state,
        built: Arc::new(AtomicU64::new(0)),
        identity,
        node_id,
        disk: options.disk,
        kept: Arc::new(std::sync::Mutex::new(kept)),
        observer: options.observer,
    };
    Ok((log, sm, shared))
}

/// The Raft state kept in the database, as read at start (to check it
/// against the snapshot) and by `inspect`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LogSummary {
    /// The latest vote this node saved.
    pub vote: Option<Vote<u64>>,
    /// The latest committed log id this node saved (not synced: it may lag).
    pub committed: Option<LogId>,
    /// The last log id purged (folded into a snapshot and deleted).
    pub last_purged: Option<LogId>,
    /// The first entry after the last purged one.
    pub first_log_id: Option<LogId>,
    /// The last entry of the log.
    pub last_log_id: Option<LogId>,
    /// Entries from the first to the last (there are no holes when it is
    /// `last - first + 1`).
    pub entries: u64,
    /// The log's entry at the snapshot's last index, when the log holds it.
    #[serde(skip)]
    pub at_snapshot: Option<LogId>,
}

/// Reads the vote, the committed and purged ids and the log's bounds;
/// `snapshot_last` is the index whose entry [`LogSummary::at_snapshot`]
/// reports.
fn read_log_summary(db: &DB, snapshot_last: Option<u64>) -> Result<LogSummary, StoreError> {
    let meta = db
        .cf_handle(CF_META)
        .ok_or(StoreError::MissingColumnFamily(CF_META))?;
    let log = db
        .cf_handle(CF_LOG)
        .ok_or(StoreError::MissingColumnFamily(CF_LOG))?;
    let get_meta =
        |key: &[u8]| -> Result<Option<Vec<u8>>, StoreError> { Ok(db.get_cf(meta, key)?) };
    let vote: Option<Vote<u64>> = get_meta(KEY_VOTE)?.map(|v| decode(&v)).transpose()?;
    let committed: Option<LogId> = get_meta(KEY_COMMITTED)?.map(|v| decode(&v)).transpose()?;
    let last_purged: Option<LogId> = get_meta(KEY_PURGED)?.map(|v| decode(&v)).transpose()?;
    // Entries at or below the purge point may be left by a crash inside a
    // purge; they are not part of the log.
    let start = last_purged.map_or(0, |p| p.index + 1);
    let mut first_log_id = None;
    let mut last_key = None;
    let mut entries = 0;
    // Keys only, so the whole log is walked without decoding it.
    let mut it = db.raw_iterator_cf(log);
    it.seek(id_key(start));
    while let Some(key) = it.key() {
        if first_log_id.is_none() {
            let v = it.value().unwrap_or_default();
            first_log_id = Some(decode::<Entry>(v)?.log_id);
        }
        last_key = Some(key_id(key));
        entries += 1;
        it.next();
    }
    it.status()?;
    let entry_at = |index: u64| -> Result<Option<LogId>, StoreError> {
        match db.get_cf(log, id_key(index))? {
            Some(v) => Ok(Some(decode::<Entry>(&v)?.log_id)),
            None => Ok(None),
        }
    };
    let last_log_id = match last_key {
        Some(index) => entry_at(index)?,
        None => None,
    };
    let at_snapshot = match snapshot_last {
        Some(index) if index >= start => entry_at(index)?,
        _ => None,
    };
    Ok(LogSummary {
        vote,
        committed,
        last_purged,
        first_log_id,
        last_log_id,
        entries,
        at_snapshot,
    })
}

/// Checks that the snapshot (its last log id), the log and the vote
/// describe one history: the log continues the snapshot without a gap and
/// without holes, the committed index is in one of them, the vote is not
/// older than the log.
///
/// A snapshot ahead of the committed id is fine (the committed id is saved
/// without a sync), and so is a log that ends before the snapshot (a
/// follower that installed a snapshot past its log).
pub fn check_consistency(
    log: &LogSummary,
    snapshot_last: Option<LogId>,
) -> Result<(), Inconsistency> {
    let snapshot_index = snapshot_last.map(|l| l.index);
    if let Some(purged) = log.last_purged {
        if snapshot_index.is_none_or(|s| purged.index > s) {
            return Err(Inconsistency::PurgedPastSnapshot {
                purged: purged.index,
                snapshot_last: snapshot_index,
            });
        }
    }
    if let (Some(first), Some(last)) = (log.first_log_id, log.last_log_id) {
        if log.entries != last.index - first.index + 1 {
            return Err(Inconsistency::LogHoles {
                first: first.index,
                last: last.index,
                count: log.entries,
            });
        }
        let needed = snapshot_index.map_or(0, |s| s + 1);
        if first.index > needed {
            return Err(Inconsistency::LogGap {
                snapshot_last: snapshot_index,
                first_log: first.index,
            });
        }
    }
    if let Some(committed) = log.committed {
        let last_log = log.last_log_id.map(|l| l.index);
        if last_log
            .max(snapshot_index)
            .is_none_or(|c| committed.index > c)
        {
            return Err(Inconsistency::CommittedNotCovered {
                committed: committed.index,
                last_log,
                snapshot_last: snapshot_index,
            });
        }
    }
    if let Some(last) = log.last_log_id {
        let vote_term = log.vote.map_or(0, |v| v.leader_id().get_term());
        if vote_term < last.leader_id.term {
            return Err(Inconsistency::VoteBehindLog {
                vote_term,
                log_term: last.leader_id.term,
            });
        }
    }
    if let (Some(snapshot), Some(log)) = (snapshot_last, log.at_snapshot) {
        if snapshot != log {
            return Err(Inconsistency::SnapshotDiverges { snapshot, log });
        }
    }
    Ok(())
}

/// A RocksDB write that failed for want of space, waiting for space: the
/// node is marked short of space (it proposes and accepts no new entries)
/// and the write is tried again, 50 ms after the first failure doubling to
/// 1 s, until it succeeds. Failing instead would be fatal for openraft, and
/// a node that exits on a full disk restarts onto the same full disk;
/// waiting, the node stays up, serves reads, and resumes by itself when
/// space is freed (RocksDB clears its own error then). Once waiting, any
/// error is waited on while the disk is short of space, or for a minute
/// after: RocksDB's own recovery reports its progress as other errors.
struct SpaceWait<'a> {
    what: &'static str,
    disk: Option<&'a DiskSpace>,
    started: Option<std::time::Instant>,
    space_back: Option<std::time::Instant>,
    pause: std::time::Duration,
    warned: std::time::Instant,
}

impl<'a> SpaceWait<'a> {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(50);
    const MOST: std::time::Duration = std::time::Duration::from_secs(1);
    /// How long other errors are still waited on after the disk has room.
    const GRACE: std::time::Duration = std::time::Duration::from_secs(60);

    fn new(what: &'static str, disk: Option<&'a DiskSpace>) -> Self {
        SpaceWait {
            what,
            disk,
            started: None,
            space_back: None,
            pause: Self::FIRST,
            warned: std::time::Instant::now(),
        }
    }

    /// After a failed attempt: how long to wait before the next one, or
    /// `None` when the error is to be reported.
    fn pause(&mut self, e: &dyn std::fmt::Display, no_space: bool) -> Option<std::time::Duration> {
        let disk = self.disk?;
        let now = std::time::Instant::now();
        if no_space {
            disk.note_no_space();
            self.space_back = None;
        } else {
            self.started?;
            if disk.below_floor() {
                self.space_back = None;
            } else if now.duration_since(*self.space_back.get_or_insert(now)) > Self::GRACE {
                return None;
            }
        }
        match self.started {
            None => {
                self.started = Some(now);
                disk.waiting_writes(1);
                warn!(write = self.what, error = %e, "no space left for a write: waiting for space (reads go on)");
            }
            Some(since)
                if now.duration_since(self.warned) >= std::time::Duration::from_secs(30) =>
            {
                self.warned = now;
                warn!(write = self.what, error = %e, waited_s = now.duration_since(since).as_secs(), "still waiting for disk space");
            }
            Some(_) => {}
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(Self::MOST);
        Some(pause)
    }
}

impl Drop for SpaceWait<'_> {
    fn drop(&mut self) {
        if let (Some(since), Some(disk)) = (self.started, self.disk) {
            disk.waiting_writes(-1);
            info!(
                write = self.what,
                waited_ms = since.elapsed().as_millis() as u64,
                "write done after waiting for disk space"
            );
        }
    }
}

/// Starts the WAL flusher thread: it waits for one pending append, takes
/// every other one already queued, syncs the WAL once and confirms them all
/// in order. It ends when every `LogStore` clone is dropped.
///
/// It holds the database weakly, as a strong reference only while syncing:
/// otherwise the thread, ending after the stores are gone, could be the one
/// to close RocksDB, racing the process's exit (RocksDB aborted with
/// "pthread lock: Invalid argument" at the end of the conformance suite).
fn spawn_flusher(
    db: std::sync::Weak<DB>,
    sync: bool,
    syncs: Arc<AtomicU64>,
    covered: Arc<AtomicU64>,
    disk: Option<DiskSpace>,
    observer: Observer,
) -> Result<std::sync::mpsc::Sender<LogFlushed<TypeConfig>>, StoreError> {
    let (tx, rx) = std::sync::mpsc::channel::<LogFlushed<TypeConfig>>();
    std::thread::Builder::new()
        .name("wal-flusher".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                let started = std::time::Instant::now();
                let res = match (sync, db.upgrade()) {
                    (false, _) => Ok(()),
                    (true, Some(db)) => {
                        let mut waiting = SpaceWait::new("WAL sync", disk.as_ref());
                        loop {
                            match db.flush_wal(true) {
                                Ok(()) => break Ok(()),
                                Err(e) => match waiting.pause(&e, is_no_space_rocksdb(&e)) {
                                    Some(pause) => std::thread::sleep(pause),
                                    None => break Err(e.to_string()),
                                },
                            }
                        }
                    }
                    (true, None) => Err("the log store is closed".to_string()),
                };
                syncs.fetch_add(1, Ordering::Relaxed);
                covered.fetch_add(batch.len() as u64, Ordering::Relaxed);
                observer.wal_synced(started.elapsed(), batch.len());
                if let Err(e) = &res {
                    tracing::error!(error = %e, "WAL sync failed");
                }
                for cb in batch {
                    let r = res
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| std::io::Error::other(e.clone()));
                    cb.log_io_completed(r);
                }
            }
        })
        .map_err(|source| StoreError::Io {
            path: PathBuf::from("wal-flusher thread"),
            source,
        })?;
    Ok(tx)
}

/// What `agent-registry inspect` reports of a data directory.
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub data_dir: PathBuf,
    /// The node the directory belongs to (`None`: never started).
    pub node_id: Option<u64>,
    /// The cluster its `cluster-id` file names (`None`: no file yet).
    pub cluster_id: Option<ClusterId>,
    /// Index of the log's first entry (after the last purged one).
    pub first_log_index: Option<u64>,
    /// Index of the log's last entry.
    pub last_log_index: Option<u64>,
    /// The vote, committed and purged ids and the log's bounds.
    #[serde(flatten)]
    pub log: LogSummary,
    /// `snapshot.bin`, if there is one.
    pub snapshot: Option<SnapshotReport>,
    /// What would stop the node from starting on this directory (a
    /// damaged snapshot, files that contradict each other); empty when
    /// nothing was found.
    pub problems: Vec<String>,
    /// The entry asked for with `--entry`, decoded (`None`: not in the log).
    pub entry: Option<Entry>,
}

/// What `inspect` reports of `snapshot.bin`.
#[derive(Debug, Default, Serialize)]
pub struct SnapshotReport {
    pub path: PathBuf,
    /// Size of the file, in bytes.
    pub bytes: u64,
    /// `header v1`, or `previous (no header), marker N` for a file written
    /// by a release from before headers.
    pub format: String,
    /// Whether the file's checksums (header and body) match; `None` for a
    /// format without one.
    pub checksum_ok: Option<bool>,
    /// The file header's cluster id.
    pub cluster_id: Option<ClusterId>,
    /// The file header's node id (the node that wrote the file).
    pub node_id: Option<u64>,
    /// The last log id the snapshot covers.
    pub last_log_id: Option<LogId>,
    pub snapshot_id: Option<String>,
    /// Whether the snapshot data inside has its own header and checksum
    /// (`false`: built by a previous release), and whether it matches.
    pub data_framed: Option<bool>,
    pub data_checksum_ok: Option<bool>,
    /// Format number of the registry snapshot inside.
    pub data_format: Option<u32>,
    /// Why the file cannot be read, if it cannot.
    pub error: Option<String>,
}

/// Reports on the data directory `dir` without changing anything in it:
/// the Raft database is opened read-only, so this is safe on a stopped
/// node's directory (and harmless on a running one's). With `entry`, the
/// log entry at that index is decoded too.
pub fn inspect(dir: &Path, entry: Option<u64>) -> Result<Inspection, StoreError> {
    let db_path = dir.join("raft");
    let db = open_db(raft_db_options(), |opts| {
        DB::open_cf_for_read_only(opts, &db_path, [CF_LOG, CF_META], false)
    })
    .map_err(|source| StoreError::OpenDatabase {
        path: db_path.clone(),
        source,
    })?;
    let meta = db
        .cf_handle(CF_META)
        .ok_or(StoreError::MissingColumnFamily(CF_META))?;
    let node_id: Option<u64> = db
        .get_cf(meta, KEY_NODE_ID)?
        .map(|v| decode(&v))
        .transpose()?;
    let cluster_id = ClusterIdentity::load(dir)?.get();
    let snapshot = inspect_snapshot(dir);
    let snapshot_last = snapshot.as_ref().and_then(|s| s.last_log_id);
    let log = read_log_summary(&db, snapshot_last.map(|l| l.index))?;
    let mut problems = Vec::new();
    if let Some(e) = snapshot.as_ref().and_then(|s| s.error.clone()) {
        problems.push(format!("{SNAPSHOT_FILE}: {e}"));
    }
    if let Some(s) = &snapshot {
        if s.cluster_id.is_some() && s.cluster_id != cluster_id {
            problems.push(format!(
                "{SNAPSHOT_FILE} belongs to another cluster than the cluster-id file names"
            ));
        }
        if s.node_id.is_some() && s.node_id != node_id {
            problems.push(format!("{SNAPSHOT_FILE} was written by another node"));
        }
    }
    if let Err(p) = check_consistency(&log, snapshot_last) {
        problems.push(p.to_string());
    }
    let entry = match entry {
        Some(index) => {
            let cf = db
                .cf_handle(CF_LOG)
                .ok_or(StoreError::MissingColumnFamily(CF_LOG))?;
            db.get_cf(cf, id_key(index))?
                .map(|v| decode::<Entry>(&v))
                .transpose()?
        }
        None => None,
    };
    Ok(Inspection {
        data_dir: dir.to_path_buf(),
        node_id,
        cluster_id,
        first_log_index: log.first_log_id.map(|l| l.index),
        last_log_index: log.last_log_id.map(|l| l.index),
        log,
        snapshot,
        problems,
        entry,
    })
}

/// Reads `snapshot.bin` for [`inspect`]: whatever can be told of it, and
/// why it cannot be read if it cannot.
fn inspect_snapshot(dir: &Path) -> Option<SnapshotReport> {
    let path = dir.join(SNAPSHOT_FILE);
    let mut report = SnapshotReport {
        path: path.clone(),
        ..SnapshotReport::default()
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            report.error = Some(e.to_string());
            return Some(report);
        }
    };
    report.bytes = bytes.len() as u64;
    let framed = frame::is_framed(FrameKind::File, &bytes);
    report.format = match bytes.first() {
        _ if framed => format!("header v{}", frame::HEADER_VERSION),
        Some(marker) => format!("previous (no header), marker {marker}"),
        None => "empty".to_string(),
    };
    if let Ok(Some(h)) = SnapshotHeader::read(FrameKind::File, &bytes) {
        report.cluster_id = h.cluster_id;
        report.node_id = Some(h.node_id);
    }
    match decode_snapshot_file(&bytes) {
        Ok((header, stored)) => {
            report.checksum_ok = header.map(|_| true);
            report.last_log_id = stored.meta.last_log_id;
            report.snapshot_id = Some(stored.meta.snapshot_id.clone());
            report.data_framed = Some(frame::is_framed(FrameKind::Data, &stored.data));
            match open_snapshot_data(&stored.data) {
                Ok((header, body)) => {
                    report.data_checksum_ok = header.map(|_| true);
                    report.data_format = bincode::deserialize::<u32>(body).ok();
                }
                Err(e) => {
                    report.data_checksum_ok = Some(false);
                    report.error = Some(format!("snapshot data: {e}"));
                }
            }
        }
        Err(e) => {
            report.checksum_ok = match e {
                DecodeError::Frame(_) => Some(false),
                _ => framed.then_some(true),
            };
            report.error = Some(e.to_string());
        }
    }
    Some(report)
}

/// A snapshot read back from `snapshot.bin`.
struct LoadedSnapshot {
    stored: StoredSnapshot,
    /// The file's header (its checksum verified); `None` for a file of the
    /// previous release, which has no header and no checksum.
    header: Option<SnapshotHeader>,
}

/// Decodes the bytes of `snapshot.bin`: a file with a header (its
/// checksum verified first), or a file of the previous release (its format
/// marker and bincode, nothing to verify).
pub(crate) fn decode_snapshot_file(
    bytes: &[u8],
) -> Result<(Option<SnapshotHeader>, StoredSnapshot), DecodeError> {
    match SnapshotHeader::open(FrameKind::File, bytes)? {
        Some((header, body)) => Ok((Some(header), decode(body)?)),
        None => Ok((None, decode(bytes)?)),
    }
}

fn read_snapshot_file(dir: &Path) -> Result<Option<LoadedSnapshot>, StoreError> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StoreError::Io { path, source }),
    };
    match decode_snapshot_file(&bytes) {
        Ok((header, stored)) => Ok(Some(LoadedSnapshot { stored, header })),
        Err(source) => Err(StoreError::Snapshot { path, source }),
    }
}

/// Writes the snapshot file atomically and durably, with a header naming
/// the cluster and the node and checksumming the rest.
pub(crate) fn write_snapshot_file(
    dir: &Path,
    cluster_id: Option<ClusterId>,
    node_id: u64,
    snap: &StoredSnapshot,
) -> std::io::Result<()> {
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let written = write_snapshot_tmp(&tmp, cluster_id, node_id, snap);
    if written.is_err() {
        // Not left to fill the disk: the next attempt writes it anew.
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

fn write_snapshot_tmp(
    tmp: &Path,
    cluster_id: Option<ClusterId>,
    node_id: u64,
    snap: &StoredSnapshot,
) -> std::io::Result<()> {
    // Streamed: a snapshot is hundreds of MB at 100,000 agents and need
    // not exist twice in memory. The header comes first but depends on
    // the body: a placeholder is written, then the body (checksummed
    // on its way out), then the header over the placeholder.
    let mut f = std::fs::File::create(tmp)?;
    f.write_all(&[0; HEADER_LEN])?;
    let mut w = CrcWriter::new(std::io::BufWriter::new(f));
    encode_into(&mut w, snap).map_err(|e| match *e {
        // Kept as it is: a full disk is told apart by its error code.
        bincode::ErrorKind::Io(io) => io,
        other => std::io::Error::other(other),
    })?;
    let (buf, body_crc, body_len) = w.finish();
    let mut f = buf.into_inner().map_err(|e| e.into_error())?;
    let header = SnapshotHeader {
        cluster_id,
        node_id,
        body_len,
        body_crc,
    };
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&header.encode(FrameKind::File))?;
    f.sync_all()
}

impl LogStore {
    fn recent(&self) -> std::sync::MutexGuard<'_, RecentEntries> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cf_log(&self) -> &rocksdb::ColumnFamily {
        // Both families are created on open; their absence is a bug.
        self.db.cf_handle(CF_LOG).expect("log column family exists")
    }

    fn cf_meta(&self) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(CF_META)
            .expect("meta column family exists")
    }

    fn write_opts(&self) -> WriteOptions {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync);
        wo
    }

    fn get_meta<T: Persisted>(&self, key: &[u8]) -> Result<Option<T>, StorageError<u64>> {
        let v = self.db.get_cf(self.cf_meta(), key).map_err(read_logs_err)?;
        v.map(|v| decode(&v).map_err(read_logs_err)).transpose()
    }

    /// Runs the RocksDB write `op` until it succeeds, waiting for space
    /// while it fails for want of it (see [`SpaceWait`]).
    async fn write_waiting<T>(
        &self,
        what: &'static str,
        mut op: impl FnMut() -> Result<T, rocksdb::Error>,
    ) -> Result<T, rocksdb::Error> {
        let mut waiting = SpaceWait::new(what, self.disk.as_ref());
        loop {
            match op() {
                Ok(v) => return Ok(v),
                Err(e) => match waiting.pause(&e, is_no_space_rocksdb(&e)) {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => return Err(e),
                },
            }
        }
    }

    /// Whether a failed write that may be skipped (it only saves work at the
    /// next start) failed for want of space: then it is skipped, and the
    /// node is marked short of space.
    fn skippable(&self, what: &str, e: &rocksdb::Error) -> bool {
        match &self.disk {
            Some(disk) if is_no_space_rocksdb(e) => {
                disk.note_no_space();
                warn!(write = what, error = %e, "no space left: skipped (it only saves work at the next start)");
                true
            }
            _ => false,
        }
    }

    /// Highest committed log index this node knows of.
    pub fn committed_index(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// A handle to read the committed index later.
    pub fn committed_handle(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    /// The id of the last entry in the log (or of the last purged one when
    /// the log is empty): from the in-memory tail when it holds entries,
    /// else from RocksDB. Used by pre-vote, which compares logs.
    pub async fn last_log_id(&mut self) -> Result<Option<LogId>, StorageError<u64>> {
        let tail = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .back()
            .map(|(e, _)| e.log_id);
        match tail {
            Some(id) => Ok(Some(id)),
            None => Ok(RaftLogStorage::get_log_state(self).await?.last_log_id),
        }
    }

    /// Whether this store has ever held any Raft state (a vote or a log).
    pub async fn is_pristine(&mut self) -> Result<bool, StorageError<u64>> {
        let state = RaftLogStorage::get_log_state(self).await?;
        let vote = RaftLogStorage::read_vote(self).await?;
        Ok(state.last_log_id.is_none() && vote.is_none())
    }
}

impl LogStore {
    /// The entries of `range` in order, as many as `budget` allows (their
    /// encoded sizes as stored).
    fn entries_within<RB: RangeBounds<u64>>(
        &self,
        range: RB,
        mut budget: ByteBudget,
    ) -> Result<Vec<Entry>, StorageError<u64>> {
        let start = match range.start_bound() {
            std::ops::Bound::Included(x) => *x,
            std::ops::Bound::Excluded(x) => x.saturating_add(1),
            std::ops::Bound::Unbounded => 0,
        };
        if let Some(hit) = self.recent().get(&range, start, budget) {
            return Ok(hit);
        }
        let from = id_key(start);
        let iter = self
            .db
            .iterator_cf(self.cf_log(), IteratorMode::From(&from, Direction::Forward));
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(read_logs_err)?;
            let index = key_id(&k);
            if !range.contains(&index) || !budget.take(v.len()) {
                break;
            }
            let entry: Entry = decode(&v).map_err(read_logs_err)?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<u64>> {
        self.entries_within(range, ByteBudget::new(usize::MAX))
    }

    /// What replication sends a follower: at most [`MAX_APPEND_BYTES`] of
    /// entries (at least one), so that each AppendEntries is answered
    /// within the heartbeat interval openraft allows it.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError<u64>> {
        self.entries_within(start..end, ByteBudget::new(MAX_APPEND_BYTES))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let last_purged: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let last = self.db.iterator_cf(self.cf_log(), IteratorMode::End).next();
        let last_log_id = match last {
            Some(item) => {
                let (_, v) = item.map_err(read_logs_err)?;
                let entry: Entry = decode(&v).map_err(read_logs_err)?;
                Some(entry.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let bytes = encode(vote).map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        let wo = self.write_opts();
        self.write_waiting("vote", || {
            self.db.put_cf_opt(self.cf_meta(), KEY_VOTE, &bytes, &wo)
        })
        .await
        .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError<u64>> {
        let Some(c) = committed else { return Ok(()) };
        self.committed.fetch_max(c.index, Ordering::Relaxed);
        // Not synced: losing the latest committed id only means re-applying
        // a little less on restart; openraft learns it again from the leader.
        let bytes = encode(&c).map_err(write_logs_err)?;
        match self.db.put_cf(self.cf_meta(), KEY_COMMITTED, bytes) {
            Err(e) if !self.skippable("committed log id", &e) => Err(write_logs_err(e)),
            _ => Ok(()),
        }
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<u64>> {
        self.get_meta(KEY_COMMITTED)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut kept = Vec::new();
        for entry in entries {
            let bytes = encode(&entry).map_err(write_logs_err)?;
            kept.push((entry, bytes));
        }
        // Written without a sync; the flusher confirms the append to
        // openraft only after the WAL holding it has been synced.
        let res = self
            .write_waiting("log append", || {
                let mut batch = WriteBatch::default();
                for (entry, bytes) in &kept {
                    batch.put_cf(self.cf_log(), id_key(entry.log_id.index), bytes);
                }
                self.db.write(batch)
            })
            .await;
        debug!(entries = kept.len(), ok = res.is_ok(), "log append");
        match res {
            Ok(()) => {
                {
                    let mut recent = self.recent();
                    for (entry, bytes) in kept {
                        recent.push(entry, bytes.len());
                    }
                }
                if let Err(std::sync::mpsc::SendError(cb)) = self.flusher.send(callback) {
                    cb.log_io_completed(Err(std::io::Error::other("WAL flusher stopped")));
                }
                Ok(())
            }
            Err(e) => {
                // What the failed write may have replaced is unknown here.
                *self.recent() = RecentEntries::default();
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_logs_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<u64>> {
        debug!(%log_id, "truncate log since");
        self.recent().truncate(log_id.index);
        let from = id_key(log_id.index);
        let to = id_key(u64::MAX);
        let wo = self.write_opts();
        self.write_waiting("log truncation", || {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(self.cf_log(), from, to);
            // delete_range excludes its end key.
            batch.delete_cf(self.cf_log(), to);
            self.db.write_opt(batch, &wo)
        })
        .await
        .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<u64>> {
        debug!(%log_id, "purge log upto");
        self.recent().purge(log_id.index);
        // Record the purge point first: a crash in between leaves extra
        // entries below it, which are ignored, never a hole above it. A
        // purge without space is skipped (the entries stay until the next
        // one): the log read at the next start is then longer, never
        // shorter.
        let bytes = encode(&log_id).map_err(write_logs_err)?;
        let wo = self.write_opts();
        if let Err(e) = self.db.put_cf_opt(self.cf_meta(), KEY_PURGED, bytes, &wo) {
            return if self.skippable("log purge", &e) {
                Ok(())
            } else {
                Err(write_logs_err(e))
            };
        }
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf_log(), id_key(0), id_key(log_id.index + 1));
        match self.db.write_opt(batch, &wo) {
            Err(e) if !self.skippable("log purge", &e) => Err(write_logs_err(e)),
            _ => Ok(()),
        }
    }
}

impl StateMachineStore {
    /// The shared applied state this store writes.
    pub fn shared(&self) -> &SharedState {
        &self.shared
    }
}

impl StateMachineStore {
    fn kept(&self) -> std::sync::MutexGuard<'_, KeptSnapshot> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a build answers when it writes nothing: the snapshot already in
    /// `snapshot.bin` (none: an empty meta). openraft keeps the snapshot it
    /// has when a build answers one no newer, purges nothing, and builds
    /// again later.
    fn kept_snapshot(kept: &KeptSnapshot) -> Snapshot<TypeConfig> {
        Snapshot {
            meta: kept.meta.clone().unwrap_or_default(),
            snapshot: Box::new(Cursor::new(Vec::new())),
        }
    }

    /// Whether a build is to be skipped for want of space: the node is
    /// short of space, there is no room for a new snapshot about the size
    /// of the last one beside it (the old one is replaced only once the
    /// new one is written), or a build found no space less than
    /// [`Self::BUILD_RETRY`] ago.
    fn no_room_to_build(&self) -> Option<Snapshot<TypeConfig>> {
        let disk = self.disk.as_ref()?;
        let mut kept = self.kept();
        let now = std::time::Instant::now();
        if kept.retry_at.is_some_and(|at| now < at) {
            return Some(Self::kept_snapshot(&kept));
        }
        let need = kept.bytes.saturating_add(kept.bytes / 4);
        if disk.has_room_for(need) {
            return None;
        }
        warn!(
            free_mb = disk.free() >> 20,
            need_mb = need >> 20,
            min_free_mb = disk.min_free() >> 20,
            "no room for a snapshot: keeping the one there is, and the log"
        );
        kept.retry_at = Some(now + Self::BUILD_RETRY);
        Some(Self::kept_snapshot(&kept))
    }

    /// How long after a build that found no space the next one is tried.
    const BUILD_RETRY: std::time::Duration = std::time::Duration::from_secs(30);
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    /// Builds a snapshot and tells the observer how it went.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let started = std::time::Instant::now();
        match self.build().await {
            Ok((snapshot, Some(bytes))) => {
                self.observer.snapshot_built(started.elapsed(), bytes);
                Ok(snapshot)
            }
            Ok((kept, None)) => {
                self.observer.snapshot_build_failed(BuildFailure::NoSpace);
                Ok(kept)
            }
            Err(e) => {
                self.observer.snapshot_build_failed(BuildFailure::Error);
                Err(e)
            }
        }
    }
}

impl StateMachineStore {
    /// Builds and writes a snapshot: with its size when it was written;
    /// without (the snapshot already there instead) when there was no room.
    async fn build(&mut self) -> Result<(Snapshot<TypeConfig>, Option<u64>), StorageError<u64>> {
        if let Some(kept) = self.no_room_to_build() {
            return Ok((kept, None));
        }
        // Capture state, applied id and membership together under one lock
        // so they describe the same point of the log.
        // Encoded straight from the tables, into a buffer of the exact size
        // (behind room for the header): no copy of the records, no
        // regrowth, and the lock is held only for the encoding.
        let (bytes, agents, last_applied, membership) = {
            let g = self.shared.read();
            let view = g.registry.snapshot_view();
            let err = |e| io_err(ErrorSubject::StateMachine, ErrorVerb::Read, e);
            let size = bincode::serialized_size(&view).map_err(err)?;
            let mut bytes = Vec::with_capacity(HEADER_LEN + size as usize);
            bytes.extend_from_slice(&[0; HEADER_LEN]);
            bincode::serialize_into(&mut bytes, &view).map_err(err)?;
            (
                bytes,
                view.agents.len(),
                g.last_applied,
                g.membership.clone(),
            )
        };
        let n = self.built.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, n),
            None => format!("none-{n}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let mut stored = StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        };
        let dir = self.dir.clone();
        let (cluster_id, node_id) = (self.identity.get(), self.node_id);
        let written = tokio::task::spawn_blocking(move || {
            // The checksum of hundreds of MB is not computed on the runtime.
            frame::seal_data(&mut stored.data, cluster_id, node_id);
            write_snapshot_file(&dir, cluster_id, node_id, &stored).map(|_| stored)
        })
        .await
        .map_err(|e| {
            io_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })?;
        let stored = match (written, &self.disk) {
            (Ok(stored), _) => stored,
            (Err(e), Some(disk)) if is_no_space_io(&e) => {
                disk.note_no_space();
                warn!(snapshot = %meta.snapshot_id, error = %e, "no space for the snapshot: keeping the one there is, and the log");
                let mut kept = self.kept();
                kept.retry_at = Some(std::time::Instant::now() + Self::BUILD_RETRY);
                return Ok((Self::kept_snapshot(&kept), None));
            }
            (Err(e), _) => {
                return Err(io_err(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Write,
                    e,
                ))
            }
        };
        *self.kept() = KeptSnapshot {
            meta: Some(meta.clone()),
            bytes: stored.data.len() as u64,
            retry_at: None,
        };
        info!(snapshot = %meta.snapshot_id, bytes = stored.data.len(), agents, "built snapshot");
        let bytes = stored.data.len() as u64;
        Ok((
            Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(stored.data)),
            },
            Some(bytes),
        ))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, openraft::BasicNode>), StorageError<u64>>
    {
        let g = self.shared.read();
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut pos = None;
        // The write lock is taken per entry, not per call: openraft hands
        // over every committed entry at once, and a run of checkpoints or
        // full group-commit batches held under one lock would stall every
        // reader for its whole length.
        for entry in entries {
            let mut g = self.shared.write();
            g.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(cmd) => Some(g.registry.apply(entry.log_id.index, &cmd)),
                EntryPayload::Membership(m) => {
                    g.membership = StoredMembership::new(Some(entry.log_id), m);
                    None
                }
            };
            out.push(Applied {
                revision: g.registry.revision(),
                log_index: entry.log_id.index,
                result,
            });
            pos = Some(AppliedPosition {
                log_index: g.last_applied.map_or(0, |l| l.index),
                revision: g.registry.revision(),
            });
        }
        if let Some(pos) = pos {
            self.shared.publish(pos);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    /// Installs a snapshot a leader sent, after checking it: refused (with
    /// nothing changed) when it is empty, damaged (its checksum), of
    /// another cluster than this node's, or does not decode. Data without
    /// a header, from a peer of a previous release, carries no checksum
    /// and no cluster: it is installed if it decodes (logged).
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let started = std::time::Instant::now();
        let bytes = snapshot.get_ref().len() as u64;
        match self.install(meta, snapshot).await {
            Ok(()) => {
                self.observer.snapshot_installed(started.elapsed(), bytes);
                Ok(())
            }
            Err(e) => {
                self.observer.snapshot_install_failed();
                Err(e)
            }
        }
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let dir = self.dir.clone();
        let (cluster_id, node_id) = (self.identity.get(), self.node_id);
        let snap = tokio::task::spawn_blocking(move || {
            read_snapshot_file(&dir).map(|s| {
                s.map(|LoadedSnapshot { mut stored, .. }| {
                    // Data a previous release built goes out framed: the
                    // peer then checks it like any other.
                    if !frame::is_framed(FrameKind::Data, &stored.data) {
                        stored.data = frame::frame_data(&stored.data, cluster_id, node_id);
                    }
                    stored
                })
            })
        })
        .await
        .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?
        .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(snap.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

impl StateMachineStore {
    /// [`RaftStateMachine::install_snapshot`], before the observer is told.
    async fn install(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let refuse = |e: DecodeError| io_err(subject(), ErrorVerb::Read, e);
        let refuse_cluster = |e: IdentityError| io_err(subject(), ErrorVerb::Read, e);
        if bytes.is_empty() {
            return Err(refuse(DecodeError::EmptySnapshot));
        }
        let (header, body) = open_snapshot_data(&bytes).map_err(refuse)?;
        let theirs = header.and_then(|h| h.cluster_id);
        if let (Some(theirs), Some(ours)) = (theirs, self.identity.get()) {
            if theirs != ours {
                return Err(refuse_cluster(IdentityError::Mismatch { ours, theirs }));
            }
        }
        if header.is_none() {
            warn!(
                snapshot = %meta.snapshot_id,
                "snapshot data without a header (sent by a node of a previous release): \
                 no checksum or cluster id to verify"
            );
        }
        let registry = restore_snapshot(self.config.clone(), body).map_err(refuse)?;
        if let Some(theirs) = theirs {
            // Adopts the id on a node that has none yet: the first change.
            self.identity.check(theirs).map_err(refuse_cluster)?;
        }
        let bytes_len = bytes.len() as u64;
        let stored = Arc::new(StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        });
        let (cluster_id, node_id) = (self.identity.get(), self.node_id);
        // The leader sends a snapshot only once the node has room for it
        // (the peer routes refuse its chunks otherwise); should the disk
        // fill up meanwhile, the install waits for space (see `SpaceWait`).
        let mut waiting = SpaceWait::new("snapshot install", self.disk.as_ref());
        loop {
            let (dir, stored) = (self.dir.clone(), stored.clone());
            let written = tokio::task::spawn_blocking(move || {
                write_snapshot_file(&dir, cluster_id, node_id, &stored)
            })
            .await
            .map_err(|e| io_err(subject(), ErrorVerb::Write, e))?;
            match written {
                Ok(()) => break,
                Err(e) => match waiting.pause(&e, is_no_space_io(&e)) {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => return Err(io_err(subject(), ErrorVerb::Write, e)),
                },
            }
        }
        drop(waiting);
        *self.kept() = KeptSnapshot {
            meta: Some(meta.clone()),
            bytes: bytes_len,
            retry_at: None,
        };
        let pos = {
            let mut g = self.shared.write();
            g.registry = registry;
            g.last_applied = meta.last_log_id;
            g.membership = meta.last_membership.clone();
            AppliedPosition {
                log_index: g.last_applied.map_or(0, |l| l.index),
                revision: g.registry.revision(),
            }
        };
        self.shared.publish(pos);
        info!(snapshot = %meta.snapshot_id, revision = pos.revision, "installed snapshot");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};
    use registry_types::{AgentId, Command, Timestamp};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(v: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn recent_entries_answer_only_reads_starting_inside_them() {
        let mut r = RecentEntries::default();
        let all = || ByteBudget::new(usize::MAX);
        assert_eq!(indexes(r.get(&(1..), 1, all())), None);
        for i in 5..=9 {
            r.push(entry(i), 10);
        }
        assert_eq!(indexes(r.get(&(4..), 4, all())), None, "4 was never kept");
        assert_eq!(indexes(r.get(&(6..8), 6, all())), Some(vec![6, 7]));
        assert_eq!(indexes(r.get(&(7..), 7, all())), Some(vec![7, 8, 9]));
        assert_eq!(indexes(r.get(&(12..), 12, all())), Some(vec![]));

        // A truncation drops the tail; an append after it continues there.
        r.truncate(8);
        assert_eq!(indexes(r.get(&(5..), 5, all())), Some(vec![5, 6, 7]));
        r.push(entry(8), 10);
        assert_eq!(indexes(r.get(&(5..), 5, all())), Some(vec![5, 6, 7, 8]));
        // Overwriting an index drops it and everything after it.
        r.push(entry(6), 10);
        assert_eq!(indexes(r.get(&(5..), 5, all())), Some(vec![5, 6]));
        assert_eq!(r.bytes, 20);

        // A purge drops the head: reads from there go to the database.
        r.purge(5);
        assert_eq!(indexes(r.get(&(5..), 5, all())), None);
        assert_eq!(indexes(r.get(&(6..), 6, all())), Some(vec![6]));

        // A gap (entries appended elsewhere) starts over.
        r.push(entry(20), 10);
        assert_eq!(indexes(r.get(&(6..), 6, all())), None);
        assert_eq!(indexes(r.get(&(20..), 20, all())), Some(vec![20]));
        assert_eq!(r.bytes, 10);
    }

    #[test]
    fn a_byte_budget_takes_the_first_entry_always_and_then_what_fits() {
        let mut b = ByteBudget::new(25);
        assert!(b.take(10) && b.take(15), "25 of 25");
        assert!(!b.take(1), "over the limit");
        let mut b = ByteBudget::new(5);
        assert!(b.take(100), "the first entry goes however large");
        assert!(!b.take(1));
        let mut b = ByteBudget::new(usize::MAX);
        assert!(b.take(usize::MAX) && b.take(usize::MAX), "no overflow");

        let mut r = RecentEntries::default();
        for i in 1..=6 {
            r.push(entry(i), 10);
        }
        let within = |limit| indexes(r.get(&(2..), 2, ByteBudget::new(limit)));
        assert_eq!(within(30), Some(vec![2, 3, 4]));
        assert_eq!(within(39), Some(vec![2, 3, 4]));
        assert_eq!(within(0), Some(vec![2]));
        assert_eq!(within(usize::MAX), Some(vec![2, 3, 4, 5, 6]));
    }

    #[tokio::test]
    async fn replication_reads_at_most_the_append_budget_from_cache_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _sm, _shared) = open_store(dir.path(), 1, no_cluster(), options()).unwrap();
        let size = encode(&entry(1)).unwrap().len();
        for i in 1..=10 {
            log.db
                .put_cf(log.cf_log(), id_key(i), encode(&entry(i)).unwrap())
                .unwrap();
        }
        // From disk (nothing cached): a budget of three entries and a bit.
        let got = log
            .entries_within(2..10, ByteBudget::new(3 * size + size / 2))
            .unwrap();
        assert_eq!(indexes(Some(got)), Some(vec![2, 3, 4]));
        let got = log.entries_within(2..10, ByteBudget::new(0)).unwrap();
        assert_eq!(indexes(Some(got)), Some(vec![2]), "one entry at least");
        // Small entries: replication gets the whole range asked for.
        let got = log.limited_get_log_entries(3, 9).await.unwrap();
        assert_eq!(indexes(Some(got)), Some((3..9).collect()));
        let got = log.try_get_log_entries(1..=10).await.unwrap();
        assert_eq!(got.len(), 10);
        // From the cache: the sizes it recorded count.
        for i in 1..=10 {
            log.recent().push(entry(i), MAX_APPEND_BYTES / 4);
        }
        let got = log.limited_get_log_entries(1, 11).await.unwrap();
        assert_eq!(indexes(Some(got)), Some(vec![1, 2, 3, 4]));
        let got = log.try_get_log_entries(1..11).await.unwrap();
        assert_eq!(
            got.len(),
            10,
            "reads other than replication are not limited"
        );
    }

    #[test]
    fn a_write_waits_for_space_only_once_it_met_a_full_disk() {
        let dir = tempfile::tempdir().unwrap();
        // Without a disk to watch, nothing waits.
        assert_eq!(SpaceWait::new("test", None).pause(&"full", true), None);
        let disk = DiskSpace::new(dir.path(), 0);
        {
            let mut w = SpaceWait::new("test", Some(&disk));
            // Another error before any no-space one is reported at once.
            assert_eq!(w.pause(&"io error", false), None);
            assert!(!disk.is_short());
            // A full disk: wait, doubling, marked short meanwhile.
            let ms = std::time::Duration::from_millis;
            assert_eq!(w.pause(&"No space left on device", true), Some(ms(50)));
            assert!(disk.is_short());
            assert_eq!(disk.waiting(), 1);
            assert_eq!(disk.status().no_space_errors, 1);
            // Once waiting, other errors (RocksDB recovering) are waited
            // on while the disk is short, and the pause grows to 1 s.
            assert_eq!(w.pause(&"recovery in progress", false), Some(ms(100)));
            for _ in 0..6 {
                w.pause(&"No space left on device", true);
            }
            assert_eq!(w.pause(&"No space left on device", true), Some(ms(1000)));
            // A sample that finds room clears the floor, not the waiting
            // write: the node stays short until the write is through.
            disk.sample();
            assert!(disk.is_short());
            assert!(w.pause(&"recovery in progress", false).is_some());
        }
        assert_eq!(disk.waiting(), 0, "a finished write stops waiting");
        assert!(!disk.is_short());
    }

    #[test]
    fn recent_entries_are_bounded() {
        let mut r = RecentEntries::default();
        for i in 1..=(RecentEntries::MAX_ENTRIES as u64 + 10) {
            r.push(entry(i), 1);
        }
        assert_eq!(r.entries.len(), RecentEntries::MAX_ENTRIES);
        assert_eq!(r.first_index(), Some(11));
        let mut r = RecentEntries::default();
        r.push(entry(1), RecentEntries::MAX_BYTES);
        r.push(entry(2), 1);
        assert_eq!(r.first_index(), Some(2));
        assert_eq!(r.bytes, 1);
    }

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(3, 1), index)
    }

    /// `bytes` with a format marker in front.
    fn marked(format: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![format];
        out.extend_from_slice(bytes);
        out
    }

    /// A log entry as format 1 wrote it (the mirror of `EntryV1`).
    #[derive(Serialize)]
    struct EntryV1Out {
        log_id: LogId,
        payload: PayloadV1Out,
    }

    #[derive(Serialize)]
    #[allow(dead_code)] // Only the variant order matters: it is the encoding.
    enum PayloadV1Out {
        Blank,
        Normal(registry_types::v1::Command),
    }

    #[test]
    fn decode_reads_the_current_format_and_format_1() {
        // The current format: what `encode` writes.
        assert_eq!(decode::<u64>(&encode(&7u64).unwrap()).unwrap(), 7);
        let e = Entry {
            log_id: log_id(5),
            payload: EntryPayload::Normal(Command::Deregister {
                agent_id: AgentId::parse("a").unwrap(),
                now: Timestamp(9),
            }),
        };
        assert_eq!(decode::<Entry>(&encode(&e).unwrap()).unwrap(), e);

        // Format 1: the same bincode for values that did not change...
        let v1 = marked(1, &bincode::serialize(&log_id(4)).unwrap());
        assert_eq!(decode::<LogId>(&v1).unwrap(), log_id(4));
        // ...and a version-1 command, converted and marked as such.
        let cmd = registry_types::v1::Command::Deregister {
            agent_id: AgentId::parse("a").unwrap(),
            now: Timestamp(9),
        };
        let old = EntryV1Out {
            log_id: log_id(6),
            payload: PayloadV1Out::Normal(cmd.clone()),
        };
        let decoded: Entry = decode(&marked(1, &bincode::serialize(&old).unwrap())).unwrap();
        assert_eq!(decoded.log_id, log_id(6));
        assert_eq!(decoded.payload, EntryPayload::Normal(Command::from(cmd)));
    }

    #[test]
    fn decode_refuses_an_empty_value() {
        let err = decode::<u64>(&[]).unwrap_err();
        assert!(matches!(err, DecodeError::Empty), "{err:?}");
        assert_eq!(err.to_string(), "empty value");
    }

    #[test]
    fn decode_refuses_an_unknown_format_marker() {
        let good = bincode::serialize(&7u64).unwrap();
        for found in [0, FORMAT_VERSION + 1, u8::MAX] {
            let err = decode::<u64>(&marked(found, &good)).unwrap_err();
            assert!(
                matches!(err, DecodeError::UnsupportedVersion { found: f, supported: FORMAT_VERSION } if f == found),
                "{err:?}"
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "encoding version {found} is not supported (this build reads 1 and {FORMAT_VERSION})"
                )
            );
        }
    }

    #[test]
    fn decode_refuses_garbage_after_a_known_format_marker() {
        // Too short for a u64, in either format.
        for format in [1, FORMAT_VERSION] {
            let err = decode::<u64>(&[format, 1, 2]).unwrap_err();
            assert!(
                matches!(&err, DecodeError::Bincode { format: f, .. } if *f == format),
                "{err:?}"
            );
            assert!(
                err.to_string().starts_with(&format!("format {format}: ")),
                "{err}"
            );
            assert!(std::error::Error::source(&err).is_some());
        }
        // An entry whose payload variant does not exist (3 variants in format 1).
        let mut bytes = bincode::serialize(&log_id(1)).unwrap();
        bytes.extend_from_slice(&7u32.to_le_bytes());
        let err = decode::<Entry>(&marked(1, &bytes)).unwrap_err();
        assert!(
            matches!(err, DecodeError::Bincode { format: 1, .. }),
            "{err:?}"
        );
    }

    /// Snapshot data of format 2, as the previous release wrote it.
    fn snapshot_v2(revision: u64) -> SnapshotDataV2 {
        SnapshotDataV2 {
            format_version: 2,
            revision,
            total_registrations: 4,
            agents: vec![],
            events_compacted_through: revision,
            events: vec![],
            brake_engaged: true,
            scaling_policies: vec![],
            advisories: vec![],
        }
    }

    #[test]
    fn decode_snapshot_data_reads_the_current_format_and_format_2() {
        let current = RegistryState::new(StateConfig::default()).snapshot();
        let bytes = bincode::serialize(&current).unwrap();
        assert_eq!(decode_snapshot_data(&bytes).unwrap(), current);

        let bytes = bincode::serialize(&snapshot_v2(11)).unwrap();
        let data = decode_snapshot_data(&bytes).unwrap();
        assert_eq!(data, SnapshotData::from(snapshot_v2(11)));
        assert_eq!(data.format_version, SNAPSHOT_FORMAT_VERSION);
        assert_eq!(data.revision, 11);

        let state = restore_snapshot(StateConfig::default(), &bytes).unwrap();
        assert_eq!(state.revision(), 11);
    }

    /// Snapshot data of format 3, as the release before access control
    /// wrote it: one agent and one event, without who made them.
    fn snapshot_v3() -> SnapshotDataV3 {
        let record = registry_types::v3::AgentRecord {
            agent_id: AgentId::parse("a-1").unwrap(),
            name: "a".into(),
            agent_type: "llm".into(),
            runtime_id: "rt".into(),
            endpoint: "http://a:1".into(),
            version: "1".into(),
            description: String::new(),
            capabilities: vec![],
            tags: vec![],
            metadata: Default::default(),
            status: registry_types::AgentStatus::Active,
            health_score: 1.0,
            load_factor: 0.0,
            performance_metrics: Default::default(),
            ttl_seconds: 30,
            offline_after_seconds: 60,
            deregister_after_seconds: 300,
            registered_at: Timestamp(5),
            updated_at: Timestamp(5),
            last_heartbeat: Timestamp(5),
            create_revision: 1,
            revision: 1,
            epoch: 1,
        };
        let event = registry_types::v3::Event {
            revision: 1,
            kind: registry_types::EventKind::AgentRegistered,
            agent_id: Some(record.agent_id.clone()),
            at: Timestamp(5),
            cause: registry_types::command::Cause::Registration,
            status: Some(registry_types::AgentStatus::Active),
            previous_status: None,
            runtime_id: "rt".into(),
            detail: String::new(),
            capabilities: vec![],
            advisory: None,
        };
        SnapshotDataV3 {
            format_version: 3,
            revision: 1,
            total_registrations: 1,
            agents: vec![record],
            events_compacted_through: 0,
            events: vec![event],
            brake_engaged: false,
            scaling_policies: vec![],
            advisories: vec![],
            counters: Default::default(),
        }
    }

    #[test]
    fn decode_snapshot_data_reads_format_3_with_anonymous_actors_and_no_tokens() {
        let bytes = bincode::serialize(&snapshot_v3()).unwrap();
        let data = decode_snapshot_data(&bytes).unwrap();
        assert_eq!(data.format_version, SNAPSHOT_FORMAT_VERSION);
        assert_eq!(data.agents.len(), 1);
        assert_eq!(data.agents[0].endpoint, "http://a:1");
        // Every caller was anonymous before access control.
        let anonymous = Some(registry_types::auth::Actor::anonymous());
        assert_eq!(data.agents[0].registered_by, anonymous);
        assert_eq!(data.events.len(), 1);
        assert_eq!(data.events[0].actor, anonymous, "a registration's event");
        assert!(data.tokens.is_empty());
        let state = restore_snapshot(StateConfig::default(), &bytes).unwrap();
        assert_eq!(state.len(), 1);
        assert_eq!(state.tokens().count(), 0);
    }

    /// Snapshot data of format 4, as the release before A2A Agent Cards
    /// wrote it: the format-3 agent and event with their actors.
    fn snapshot_v4() -> SnapshotDataV4 {
        let v3 = snapshot_v3();
        let anonymous = Some(registry_types::auth::Actor::anonymous());
        let r = v3.agents[0].clone();
        let record = registry_types::v4::AgentRecord {
            agent_id: r.agent_id,
            name: r.name,
            agent_type: r.agent_type,
            runtime_id: r.runtime_id,
            endpoint: r.endpoint,
            version: r.version,
            description: r.description,
            capabilities: r.capabilities,
            tags: r.tags,
            metadata: r.metadata,
            status: r.status,
            health_score: r.health_score,
            load_factor: r.load_factor,
            performance_metrics: r.performance_metrics,
            ttl_seconds: r.ttl_seconds,
            offline_after_seconds: r.offline_after_seconds,
            deregister_after_seconds: r.deregister_after_seconds,
            registered_at: r.registered_at,
            updated_at: r.updated_at,
            last_heartbeat: r.last_heartbeat,
            create_revision: r.create_revision,
            revision: r.revision,
            epoch: r.epoch,
            registered_by: anonymous.clone(),
        };
        let e = v3.events[0].clone();
        let event = registry_types::v4::Event {
            revision: e.revision,
            kind: e.kind,
            agent_id: e.agent_id,
            at: e.at,
            cause: e.cause,
            status: e.status,
            previous_status: e.previous_status,
            runtime_id: e.runtime_id,
            detail: e.detail,
            capabilities: e.capabilities,
            advisory: e.advisory,
            actor: anonymous,
        };
        SnapshotDataV4 {
            format_version: 4,
            revision: 1,
            total_registrations: 1,
            agents: vec![record],
            events_compacted_through: 0,
            events: vec![event],
            brake_engaged: false,
            scaling_policies: vec![],
            advisories: vec![],
            counters: Default::default(),
            tokens: vec![],
        }
    }

    #[test]
    fn decode_snapshot_data_reads_format_4_without_cards() {
        let bytes = bincode::serialize(&snapshot_v4()).unwrap();
        let data = decode_snapshot_data(&bytes).unwrap();
        assert_eq!(data.format_version, SNAPSHOT_FORMAT_VERSION);
        assert_eq!(data.agents.len(), 1);
        assert_eq!(data.agents[0].endpoint, "http://a:1");
        assert_eq!(data.agents[0].agent_card, None);
        assert_eq!(data.events[0].card_etag, None);
        assert_eq!(
            data.events[0].actor,
            Some(registry_types::auth::Actor::anonymous())
        );
        // The same state as format 3 gave: nothing but the encoding moved.
        let from_v3 = decode_snapshot_data(&bincode::serialize(&snapshot_v3()).unwrap()).unwrap();
        assert_eq!(data, from_v3);
        let state = restore_snapshot(StateConfig::default(), &bytes).unwrap();
        assert_eq!(state.len(), 1);
    }

    #[test]
    fn decode_snapshot_data_refuses_what_it_cannot_read() {
        // Too short for the format number.
        let err = decode_snapshot_data(&[3, 0]).unwrap_err();
        assert!(
            matches!(err, DecodeError::MissingSnapshotFormat(_)),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("snapshot data has no format number: "),
            "{err}"
        );

        // A format number this build does not read.
        for found in [0, 1, SNAPSHOT_FORMAT_VERSION + 1] {
            let mut bytes = bincode::serialize(&snapshot_v2(1)).unwrap();
            bytes[..4].copy_from_slice(&found.to_le_bytes());
            let err = decode_snapshot_data(&bytes).unwrap_err();
            assert!(
                matches!(err, DecodeError::UnsupportedSnapshotFormat { found: f, supported: SNAPSHOT_FORMAT_VERSION } if f == found),
                "{err:?}"
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "snapshot format {found} is not supported (this build reads 2, 3, 4 and {SNAPSHOT_FORMAT_VERSION})"
                )
            );
        }

        // A known format number followed by too little.
        for format in [2, SNAPSHOT_FORMAT_VERSION] {
            let mut bytes = format.to_le_bytes().to_vec();
            bytes.extend_from_slice(&[0xff; 3]);
            let err = decode_snapshot_data(&bytes).unwrap_err();
            assert!(
                matches!(&err, DecodeError::SnapshotBincode { format: f, .. } if *f == format),
                "{err:?}"
            );
            assert!(
                err.to_string()
                    .starts_with(&format!("snapshot format {format}: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_refused_restore_reads_as_the_registry_said() {
        let refused = RestoreError::UnsupportedFormat {
            found: 9,
            supported: SNAPSHOT_FORMAT_VERSION,
        };
        let err = DecodeError::from(refused.clone());
        assert!(matches!(&err, DecodeError::Restore(r) if *r == refused));
        assert_eq!(err.to_string(), refused.to_string());
        assert_eq!(
            err.to_string(),
            format!(
                "snapshot format 9 is not supported (this build reads {SNAPSHOT_FORMAT_VERSION})"
            )
        );
    }

    fn options() -> StoreOptions {
        StoreOptions {
            sync: false,
            ..StoreOptions::default()
        }
    }

    fn no_cluster() -> ClusterIdentity {
        ClusterIdentity::ephemeral(None)
    }

    /// Opens the store of node 1 in `dir` once and closes it, so that the
    /// directory has a Raft database (a snapshot file without one is
    /// refused).
    fn init_dir(dir: &Path) {
        drop(open_store(dir, 1, no_cluster(), options()).unwrap());
    }

    /// Registry snapshot data of revision `revision`, without a header (as
    /// a previous release built it).
    fn bare_data(revision: u64) -> Vec<u8> {
        bincode::serialize(&snapshot_v2(revision)).unwrap()
    }

    fn stored(index: Option<u64>, data: Vec<u8>) -> StoredSnapshot {
        StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: index.map(log_id),
                last_membership: StoredMembership::default(),
                snapshot_id: "test-snapshot".into(),
            },
            data,
        }
    }

    fn snapshot_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join(SNAPSHOT_FILE)
    }

    #[test]
    fn open_store_refuses_a_snapshot_file_it_cannot_read() {
        // An unknown marker in front of the whole file (no header: read as
        // the previous format).
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(snapshot_path(&dir), [9u8, 0, 0]).unwrap();
        let err = open_store(dir.path(), 1, no_cluster(), options())
            .err()
            .expect("refused");
        assert!(
            matches!(
                &err,
                StoreError::Snapshot { source: DecodeError::UnsupportedVersion { found: 9, .. }, path } if *path == snapshot_path(&dir)
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{}: encoding version 9 is not supported (this build reads 1 and {FORMAT_VERSION}); {RECOVERY}",
                snapshot_path(&dir).display()
            )
        );

        // A well-formed file around snapshot data of an unknown format.
        let dir = tempfile::tempdir().unwrap();
        init_dir(dir.path());
        let snap = stored(None, bincode::serialize(&99u32).unwrap());
        write_snapshot_file(dir.path(), None, 1, &snap).unwrap();
        let err = open_store(dir.path(), 1, no_cluster(), options())
            .err()
            .expect("refused");
        assert!(
            matches!(
                err,
                StoreError::Snapshot {
                    source: DecodeError::UnsupportedSnapshotFormat { found: 99, .. },
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn the_snapshot_file_header_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = ClusterId::random();
        let data = frame::frame_data(&bare_data(11), Some(cluster), 1);
        write_snapshot_file(dir.path(), Some(cluster), 1, &stored(Some(4), data.clone())).unwrap();
        let bytes = std::fs::read(snapshot_path(&dir)).unwrap();
        assert!(bytes.starts_with(b"AREGSNAP"));
        let loaded = read_snapshot_file(dir.path()).unwrap().expect("a snapshot");
        let header = loaded.header.expect("a header");
        assert_eq!(header.cluster_id, Some(cluster));
        assert_eq!(header.node_id, 1);
        assert_eq!(header.body_len as usize, bytes.len() - HEADER_LEN);
        assert_eq!(header.body_crc, crc32c::crc32c(&bytes[HEADER_LEN..]));
        assert_eq!(loaded.stored.meta.last_log_id, Some(log_id(4)));
        assert_eq!(loaded.stored.data, data);
        // No temporary file is left behind.
        assert!(!dir.path().join(format!("{SNAPSHOT_FILE}.tmp")).exists());
    }

    /// Writes a good snapshot file of cluster `cluster` (node 1, index 4,
    /// revision 11) into a fresh directory with a Raft database.
    fn dir_with_snapshot(cluster: Option<ClusterId>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        init_dir(dir.path());
        let data = frame::frame_data(&bare_data(11), cluster, 1);
        write_snapshot_file(dir.path(), cluster, 1, &stored(Some(4), data)).unwrap();
        dir
    }

    #[test]
    fn a_good_snapshot_file_is_loaded() {
        let cluster = ClusterId::random();
        let dir = dir_with_snapshot(Some(cluster));
        let identity = ClusterIdentity::ephemeral(Some(cluster));
        let (_log, _sm, shared) = open_store(dir.path(), 1, identity, options()).unwrap();
        let g = shared.read();
        assert_eq!(g.registry.revision(), 11);
        assert_eq!(g.last_applied, Some(log_id(4)));
    }

    #[test]
    fn a_snapshot_file_with_a_flipped_byte_is_refused() {
        let cluster = ClusterId::random();
        let dir = dir_with_snapshot(Some(cluster));
        let path = snapshot_path(&dir);
        let clean = std::fs::read(&path).unwrap();
        // In the body, then in the header.
        for at in [clean.len() / 2, 20] {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x01;
            std::fs::write(&path, &bytes).unwrap();
            let identity = ClusterIdentity::ephemeral(Some(cluster));
            let err = open_store(dir.path(), 1, identity, options())
                .err()
                .expect("refused");
            let StoreError::Snapshot {
                path: p,
                source: DecodeError::Frame(frame_err),
            } = &err
            else {
                panic!("{err:?}")
            };
            assert_eq!(*p, path);
            if at < HEADER_LEN {
                assert_eq!(*frame_err, FrameError::HeaderChecksum);
            } else {
                assert!(matches!(frame_err, FrameError::Checksum { .. }), "{err}");
                assert!(err.to_string().contains("checksum mismatch"), "{err}");
            }
            assert!(err.to_string().contains("snapshot.bin"), "{err}");
            assert!(
                err.to_string().contains("move the data directory aside"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_truncated_snapshot_file_is_refused() {
        let cluster = ClusterId::random();
        let dir = dir_with_snapshot(Some(cluster));
        let path = snapshot_path(&dir);
        let clean = std::fs::read(&path).unwrap();
        for len in [clean.len() - 1, clean.len() / 2, HEADER_LEN - 1, 0] {
            std::fs::write(&path, &clean[..len]).unwrap();
            let identity = ClusterIdentity::ephemeral(Some(cluster));
            let err = open_store(dir.path(), 1, identity, options())
                .err()
                .expect("refused");
            let text = err.to_string();
            match len {
                0 => assert!(text.contains("empty value"), "{text}"),
                _ => assert!(
                    text.contains(&format!("truncated: {len} bytes where")),
                    "{text}"
                ),
            }
        }
    }

    #[test]
    fn another_clusters_or_nodes_snapshot_file_is_refused() {
        let theirs = ClusterId::random();
        let dir = dir_with_snapshot(Some(theirs));
        let ours = ClusterId::random();
        let err = open_store(
            dir.path(),
            1,
            ClusterIdentity::ephemeral(Some(ours)),
            options(),
        )
        .err()
        .expect("refused");
        assert!(
            matches!(&err, StoreError::SnapshotCluster { found, ours: Some(o), .. } if *found == theirs && *o == ours),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains(&format!("belongs to cluster {theirs}")),
            "{err}"
        );
        // A directory that names no cluster: its snapshot was copied in.
        let err = open_store(dir.path(), 1, no_cluster(), options())
            .err()
            .expect("refused");
        assert!(
            matches!(err, StoreError::SnapshotCluster { ours: None, .. }),
            "{err:?}"
        );
        // Another node's file, same cluster.
        let dir = tempfile::tempdir().unwrap();
        init_dir(dir.path());
        let data = frame::frame_data(&bare_data(11), Some(ours), 2);
        write_snapshot_file(dir.path(), Some(ours), 2, &stored(Some(4), data)).unwrap();
        let err = open_store(
            dir.path(),
            1,
            ClusterIdentity::ephemeral(Some(ours)),
            options(),
        )
        .err()
        .expect("refused");
        assert!(
            matches!(
                err,
                StoreError::SnapshotNode {
                    found: 2,
                    expected: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_old_format_snapshot_file_is_read_and_replaced_by_the_new_format() {
        let dir = tempfile::tempdir().unwrap();
        init_dir(dir.path());
        // What the previous release wrote: the format marker and the
        // bincode of the stored snapshot, its data bare.
        let mut old = Vec::new();
        encode_into(&mut old, &stored(Some(4), bare_data(11))).unwrap();
        std::fs::write(snapshot_path(&dir), &old).unwrap();
        let cluster = ClusterId::random();
        let identity = ClusterIdentity::ephemeral(Some(cluster));
        let (_log, mut sm, shared) = open_store(dir.path(), 1, identity, options()).unwrap();
        assert_eq!(shared.read().registry.revision(), 11);

        // Sent to a peer, it goes out framed.
        let current = sm
            .get_current_snapshot()
            .await
            .unwrap()
            .expect("a snapshot");
        let sent = current.snapshot.into_inner();
        let (header, body) = open_snapshot_data(&sent).unwrap();
        assert_eq!(
            header.map(|h| (h.cluster_id, h.node_id)),
            Some((Some(cluster), 1))
        );
        assert_eq!(body, &bare_data(11)[..]);

        // The next snapshot is written in the new format.
        sm.build_snapshot().await.unwrap();
        let loaded = read_snapshot_file(dir.path()).unwrap().expect("a snapshot");
        assert_eq!(loaded.header.map(|h| h.cluster_id), Some(Some(cluster)));
        assert!(frame::is_framed(FrameKind::Data, &loaded.stored.data));
    }

    #[test]
    fn a_snapshot_without_its_raft_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = frame::frame_data(&bare_data(11), None, 1);
        write_snapshot_file(dir.path(), None, 1, &stored(Some(4), data)).unwrap();
        let err = open_store(dir.path(), 1, no_cluster(), options())
            .err()
            .expect("refused");
        assert!(
            matches!(
                err,
                StoreError::Inconsistent {
                    problem: Inconsistency::DatabaseWiped,
                    ..
                }
            ),
            "{err:?}"
        );
        // Refusing wrote nothing: the directory is still refused the same way.
        assert!(open_store(dir.path(), 1, no_cluster(), options()).is_err());
    }

    fn summary() -> LogSummary {
        LogSummary {
            vote: Some(Vote::new_committed(3, 1)),
            committed: Some(log_id(8)),
            last_purged: Some(log_id(3)),
            first_log_id: Some(log_id(4)),
            last_log_id: Some(log_id(9)),
            entries: 6,
            at_snapshot: Some(log_id(5)),
        }
    }

    #[test]
    fn consistent_files_pass_the_check() {
        check_consistency(&summary(), Some(log_id(5))).unwrap();
        // A fresh node, and a follower that installed a snapshot past its log.
        check_consistency(&LogSummary::default(), None).unwrap();
        let installed = LogSummary {
            last_purged: None,
            first_log_id: Some(log_id(0)),
            last_log_id: Some(log_id(2)),
            entries: 3,
            committed: Some(log_id(2)),
            at_snapshot: None,
            ..summary()
        };
        check_consistency(&installed, Some(log_id(40))).unwrap();
        // A snapshot ahead of the committed id saved (not synced).
        let lagging = LogSummary {
            committed: Some(log_id(4)),
            ..summary()
        };
        check_consistency(&lagging, Some(log_id(5))).unwrap();
    }

    #[test]
    fn contradicting_files_are_refused() {
        let cases: Vec<(LogSummary, Option<LogId>, Inconsistency)> = vec![
            (
                summary(),
                Some(log_id(2)),
                Inconsistency::PurgedPastSnapshot {
                    purged: 3,
                    snapshot_last: Some(2),
                },
            ),
            (
                LogSummary {
                    last_purged: None,
                    ..summary()
                },
                None,
                Inconsistency::LogGap {
                    snapshot_last: None,
                    first_log: 4,
                },
            ),
            (
                LogSummary {
                    entries: 5,
                    ..summary()
                },
                Some(log_id(5)),
                Inconsistency::LogHoles {
                    first: 4,
                    last: 9,
                    count: 5,
                },
            ),
            // The log wiped, the vote and committed id kept.
            (
                LogSummary {
                    first_log_id: None,
                    last_log_id: None,
                    entries: 0,
                    at_snapshot: None,
                    ..summary()
                },
                Some(log_id(5)),
                Inconsistency::CommittedNotCovered {
                    committed: 8,
                    last_log: None,
                    snapshot_last: Some(5),
                },
            ),
            (
                LogSummary {
                    vote: Some(Vote::new_committed(2, 1)),
                    ..summary()
                },
                Some(log_id(5)),
                Inconsistency::VoteBehindLog {
                    vote_term: 2,
                    log_term: 3,
                },
            ),
            (
                LogSummary {
                    at_snapshot: Some(LogId::new(CommittedLeaderId::new(2, 1), 5)),
                    ..summary()
                },
                Some(log_id(5)),
                Inconsistency::SnapshotDiverges {
                    snapshot: log_id(5),
                    log: LogId::new(CommittedLeaderId::new(2, 1), 5),
                },
            ),
        ];
        for (log, snapshot, expected) in cases {
            assert_eq!(check_consistency(&log, snapshot), Err(expected.clone()));
            assert!(
                expected.to_string().contains("raft/")
                    || expected.to_string().contains("snapshot.bin")
            );
        }
    }

    #[tokio::test]
    async fn open_store_refuses_a_wiped_log_with_a_kept_vote() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _sm, _shared) =
                open_store(dir.path(), 1, no_cluster(), options()).unwrap();
            log.save_vote(&Vote::new_committed(3, 1)).await.unwrap();
            log.save_committed(Some(log_id(8))).await.unwrap();
        }
        let err = open_store(dir.path(), 1, no_cluster(), options())
            .err()
            .expect("refused");
        assert!(
            matches!(
                err,
                StoreError::Inconsistent {
                    problem: Inconsistency::CommittedNotCovered { committed: 8, .. },
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("the log was wiped or lost"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn install_snapshot_reports_undecodable_data_as_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut sm, shared) = open_store(dir.path(), 1, no_cluster(), options()).unwrap();
        let data = bincode::serialize(&99u32).unwrap();
        let err = sm
            .install_snapshot(&SnapshotMeta::default(), Box::new(Cursor::new(data)))
            .await
            .unwrap_err();
        // The typed error is the source openraft reports.
        let text = err.to_string();
        assert!(text.contains("DecodeError"), "{text}");
        assert!(
            text.contains("snapshot format 99 is not supported"),
            "{text}"
        );
        assert!(matches!(err, StorageError::IO { .. }), "{err:?}");
        assert!(text.starts_with("when Read Snapshot"), "{text}");
        // Nothing was installed.
        assert_eq!(shared.read().last_applied, None);
        assert!(!dir.path().join(SNAPSHOT_FILE).exists());
    }

    /// Installs `data` on a fresh node whose identity is `identity`, and
    /// returns the error text (`None`: installed) and what changed.
    async fn install(identity: ClusterIdentity, data: Vec<u8>) -> (Option<String>, bool) {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut sm, shared) = open_store(dir.path(), 1, identity, options()).unwrap();
        let meta = stored(Some(4), vec![]).meta;
        let res = sm
            .install_snapshot(&meta, Box::new(Cursor::new(data)))
            .await;
        let changed = shared.read().last_applied.is_some() || snapshot_path(&dir).exists();
        (res.err().map(|e| e.to_string()), changed)
    }

    #[tokio::test]
    async fn install_snapshot_refuses_empty_damaged_and_foreign_data() {
        let ours = ClusterId::random();
        let theirs = ClusterId::random();
        let good = frame::frame_data(&bare_data(11), Some(ours), 2);

        // An empty body (an attacker's done=true with no data).
        let (err, changed) = install(ClusterIdentity::ephemeral(Some(ours)), vec![]).await;
        assert!(err.expect("refused").contains("empty snapshot data"));
        assert!(!changed);
        // A header and nothing behind it.
        let empty = frame::frame_data(&[], Some(ours), 2);
        let (err, changed) = install(ClusterIdentity::ephemeral(Some(ours)), empty).await;
        assert!(err.expect("refused").contains("empty snapshot data"));
        assert!(!changed);
        // A flipped byte.
        let mut damaged = good.clone();
        let at = damaged.len() - 3;
        damaged[at] ^= 0x40;
        let (err, changed) = install(ClusterIdentity::ephemeral(Some(ours)), damaged).await;
        assert!(err.expect("refused").contains("checksum mismatch"));
        assert!(!changed);
        // Truncated in transit.
        let (err, changed) = install(
            ClusterIdentity::ephemeral(Some(ours)),
            good[..good.len() - 10].to_vec(),
        )
        .await;
        assert!(err.expect("refused").contains("truncated"));
        assert!(!changed);
        // Another cluster's.
        let identity = ClusterIdentity::ephemeral(Some(theirs));
        let (err, changed) = install(identity.clone(), good.clone()).await;
        let err = err.expect("refused");
        assert!(
            err.contains(&format!(
                "this node belongs to cluster {theirs}, not {ours}"
            )),
            "{err}"
        );
        assert!(!changed);
        assert_eq!(identity.get(), Some(theirs));
    }

    #[tokio::test]
    async fn install_snapshot_adopts_the_cluster_and_accepts_an_old_peers_data() {
        let ours = ClusterId::random();
        // A node with no cluster yet adopts the snapshot's.
        let identity = no_cluster();
        let good = frame::frame_data(&bare_data(11), Some(ours), 2);
        let (err, changed) = install(identity.clone(), good).await;
        assert_eq!(err, None);
        assert!(changed);
        assert_eq!(identity.get(), Some(ours));
        // But not from data that fails to decode.
        let identity = no_cluster();
        let bad = frame::frame_data(&bincode::serialize(&99u32).unwrap(), Some(ours), 2);
        let (err, changed) = install(identity.clone(), bad).await;
        assert!(err.is_some());
        assert!(!changed);
        assert_eq!(identity.get(), None);
        // Data of a peer of the previous release: no header, installed.
        let identity = ClusterIdentity::ephemeral(Some(ours));
        let (err, changed) = install(identity, bare_data(11)).await;
        assert_eq!(err, None);
        assert!(changed);
    }

    #[tokio::test]
    async fn a_built_snapshot_installs_on_a_peer_and_survives_a_restart() {
        let cluster = ClusterId::random();
        let a = tempfile::tempdir().unwrap();
        let (_log, mut sm_a, _) = open_store(
            a.path(),
            1,
            ClusterIdentity::ephemeral(Some(cluster)),
            options(),
        )
        .unwrap();
        let built = sm_a.build_snapshot().await.unwrap();
        let b = tempfile::tempdir().unwrap();
        {
            let identity = no_cluster();
            let (_log, mut sm_b, _) = open_store(b.path(), 2, identity.clone(), options()).unwrap();
            sm_b.install_snapshot(&built.meta, built.snapshot)
                .await
                .unwrap();
            assert_eq!(identity.get(), Some(cluster));
        }
        // Restarted, node 2 reads its file (written by node 2, cluster kept).
        open_store(
            b.path(),
            2,
            ClusterIdentity::ephemeral(Some(cluster)),
            options(),
        )
        .unwrap();
    }

    /// Records what a store reports, as the server's metrics would.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);

    impl crate::observe::StoreObserver for Recorder {
        fn snapshot_built(&self, _took: std::time::Duration, bytes: u64) {
            self.0.lock().unwrap().push(format!("built {bytes}"));
        }
        fn snapshot_build_failed(&self, why: BuildFailure) {
            self.0
                .lock()
                .unwrap()
                .push(format!("build failed {}", why.as_str()));
        }
        fn snapshot_installed(&self, _took: std::time::Duration, bytes: u64) {
            self.0.lock().unwrap().push(format!("installed {bytes}"));
        }
        fn snapshot_install_failed(&self) {
            self.0.lock().unwrap().push("install failed".into());
        }
    }

    #[tokio::test]
    async fn the_observer_hears_of_each_snapshot_built_installed_or_refused() {
        let cluster = ClusterId::random();
        let recorder = Arc::new(Recorder::default());
        let observed = StoreOptions {
            observer: Observer::new(recorder.clone()),
            ..options()
        };
        let a = tempfile::tempdir().unwrap();
        let (_log, mut sm_a, _) = open_store(
            a.path(),
            1,
            ClusterIdentity::ephemeral(Some(cluster)),
            observed.clone(),
        )
        .unwrap();
        let built = sm_a.build_snapshot().await.unwrap();
        let size = built.snapshot.get_ref().len();
        let b = tempfile::tempdir().unwrap();
        let (_log, mut sm_b, _) = open_store(
            b.path(),
            2,
            ClusterIdentity::ephemeral(Some(cluster)),
            observed,
        )
        .unwrap();
        let mut damaged = built.snapshot.get_ref().clone();
        let at = damaged.len() - 3;
        damaged[at] ^= 0x40;
        let refused = sm_b
            .install_snapshot(&built.meta, Box::new(Cursor::new(damaged)))
            .await;
        assert!(refused.is_err());
        sm_b.install_snapshot(&built.meta, built.snapshot)
            .await
            .unwrap();
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [
                format!("built {size}"),
                "install failed".to_string(),
                format!("installed {size}"),
            ]
        );
    }

    #[test]
    fn inspect_reports_without_changing_anything() {
        let cluster = ClusterId::random();
        let dir = dir_with_snapshot(Some(cluster));
        ClusterIdentity::load(dir.path())
            .unwrap()
            .adopt(cluster)
            .unwrap();
        let listing = |d: &Path| -> Vec<(PathBuf, Vec<u8>)> {
            let mut out = Vec::new();
            let mut stack = vec![d.to_path_buf()];
            while let Some(p) = stack.pop() {
                for e in std::fs::read_dir(&p).unwrap() {
                    let e = e.unwrap();
                    if e.file_type().unwrap().is_dir() {
                        stack.push(e.path());
                    } else {
                        out.push((e.path(), std::fs::read(e.path()).unwrap()));
                    }
                }
            }
            out.sort();
            out
        };
        let before = listing(dir.path());
        let report = inspect(dir.path(), Some(1)).unwrap();
        assert_eq!(listing(dir.path()), before);
        assert_eq!(report.node_id, Some(1));
        assert_eq!(report.cluster_id, Some(cluster));
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(report.entry.is_none());
        let snap = report.snapshot.expect("a snapshot");
        assert_eq!(snap.checksum_ok, Some(true));
        assert_eq!(snap.data_checksum_ok, Some(true));
        assert_eq!(snap.last_log_id, Some(log_id(4)));
        assert_eq!(snap.format, "header v1");
        let json = serde_json::to_value(inspect(dir.path(), None).unwrap()).unwrap();
        assert_eq!(json["node_id"], 1);
        assert_eq!(json["snapshot"]["checksum_ok"], true);

        // A damaged file is reported, not fatal.
        let path = snapshot_path(&dir);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let report = inspect(dir.path(), None).unwrap();
        assert_eq!(report.snapshot.unwrap().checksum_ok, Some(false));
        assert!(
            report.problems[0].contains("checksum mismatch"),
            "{:?}",
            report.problems
        );
    }
}
