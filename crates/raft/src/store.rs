//! RocksDB-backed Raft storage.
//!
//! Layout of one node's data directory:
//! - `raft/`: a RocksDB database with two column families:
//!   - `log`: key = log index (u64, big endian), value = `[FORMAT_VERSION]`
//!     followed by the bincode of the entry;
//!   - `meta`: the vote, the committed log id, the last purged log id and the
//!     node id this directory belongs to.
//! - `snapshot.bin`: the latest state-machine snapshot, replaced atomically
//!   (write to a temporary file, fsync, rename, fsync the directory).
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

use std::fmt::Debug;
use std::io::{Cursor, Write};
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
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use registry_state::{
    RegistryState, RestoreError, SnapshotData, SnapshotDataV2, StateConfig, SNAPSHOT_FORMAT_VERSION,
};

use crate::shared::{AppliedPosition, AppliedState, SharedState};
use crate::{Applied, Entry, LogId, TypeConfig, FORMAT_VERSION};

const CF_LOG: &str = "log";
const CF_META: &str = "meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";
const KEY_NODE_ID: &[u8] = b"node_id";
const SNAPSHOT_FILE: &str = "snapshot.bin";

/// Errors opening a node's storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
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
    #[error("snapshot format {found} is not supported (this build reads 2 and {supported})")]
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
}

/// Storage settings.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Settings of the registry state machine.
    pub state: StateConfig,
    /// fsync the WAL before confirming a log write. Only tests turn it off.
    pub sync: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            state: StateConfig::default(),
            sync: true,
        }
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
fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, bincode::Error> {
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

/// Decodes a snapshot's state-machine data of the current format or of
/// format 2 (written by releases whose log format was 1), told apart by the
/// `format_version` field every format starts with.
pub fn decode_snapshot_data(bytes: &[u8]) -> Result<SnapshotData, DecodeError> {
    let format: u32 = bincode::deserialize(bytes).map_err(DecodeError::MissingSnapshotFormat)?;
    let data = match format {
        SNAPSHOT_FORMAT_VERSION => bincode::deserialize(bytes),
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

/// Rebuilds the registry from a snapshot's data, as [`open_store`] and
/// `install_snapshot` both do.
fn restore_snapshot(config: StateConfig, bytes: &[u8]) -> Result<RegistryState, DecodeError> {
    let data = decode_snapshot_data(bytes)?;
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

    /// The entries of `range`, if its start is kept.
    fn get<RB: RangeBounds<u64>>(&self, range: &RB, start: u64) -> Option<Vec<Entry>> {
        let first = self.first_index()?;
        if start < first {
            return None;
        }
        let skip = (start - first) as usize;
        Some(
            self.entries
                .iter()
                .skip(skip)
                .take_while(|(e, _)| range.contains(&e.log_id.index))
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

/// A snapshot as kept on disk.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, openraft::BasicNode>,
    data: Vec<u8>,
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
}

/// Opens (or creates) the storage of node `node_id` under `dir`.
///
/// Refuses a directory that belongs to another node id. Loads the latest
/// snapshot into the registry state; openraft re-applies the committed log
/// after it.
pub fn open_store(
    dir: &Path,
    node_id: u64,
    options: StoreOptions,
) -> Result<(LogStore, StateMachineStore, SharedState), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    let cfs = vec![
        ColumnFamilyDescriptor::new(CF_LOG, Options::default()),
        ColumnFamilyDescriptor::new(CF_META, Options::default()),
    ];
    let db = DB::open_cf_descriptors(&db_opts, dir.join("raft"), cfs)?;
    let db = Arc::new(db);
    let meta = db
        .cf_handle(CF_META)
        .ok_or(StoreError::MissingColumnFamily(CF_META))?;
    match db.get_cf(meta, KEY_NODE_ID)? {
        Some(v) => {
            let found: u64 = decode(&v)?;
            if found != node_id {
                return Err(StoreError::NodeIdMismatch {
                    found,
                    expected: node_id,
                });
            }
        }
        None => {
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            let v = encode(&node_id).map_err(StoreError::EncodeNodeId)?;
            db.put_cf_opt(meta, KEY_NODE_ID, v, &wo)?;
        }
    }
    let committed = match db.get_cf(meta, KEY_COMMITTED)? {
        Some(v) => decode::<LogId>(&v)?.index,
        None => 0,
    };

    let mut applied = AppliedState::new(RegistryState::new(options.state.clone()));
    if let Some(snap) = read_snapshot_file(dir)? {
        applied.registry = restore_snapshot(options.state.clone(), &snap.data)?;
        applied.last_applied = snap.meta.last_log_id;
        applied.membership = snap.meta.last_membership.clone();
        info!(
            snapshot = %snap.meta.snapshot_id,
            agents = applied.registry.len(),
            revision = applied.registry.revision(),
            "loaded snapshot"
        );
    }
    let shared = SharedState::new(applied);
    let wal_syncs = Arc::new(AtomicU64::new(0));
    let wal_synced_appends = Arc::new(AtomicU64::new(0));
    let flusher = spawn_flusher(
        Arc::downgrade(&db),
        options.sync,
        wal_syncs.clone(),
        wal_synced_appends.clone(),
    )?;
    let log = LogStore {
        db,
        sync: options.sync,
        flusher,
        wal_syncs,
        wal_synced_appends,
        committed: Arc::new(AtomicU64::new(committed)),
        recent: Default::default(),
    };
    let sm = StateMachineStore {
        shared: shared.clone(),
        dir: dir.to_path_buf(),
        config: options.state,
        built: Arc::new(AtomicU64::new(0)),
    };
    Ok((log, sm, shared))
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
) -> Result<std::sync::mpsc::Sender<LogFlushed<TypeConfig>>, StoreError> {
    let (tx, rx) = std::sync::mpsc::channel::<LogFlushed<TypeConfig>>();
    std::thread::Builder::new()
        .name("wal-flusher".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                let res = match (sync, db.upgrade()) {
                    (false, _) => Ok(()),
                    (true, Some(db)) => db.flush_wal(true).map_err(|e| e.to_string()),
                    (true, None) => Err("the log store is closed".to_string()),
                };
                syncs.fetch_add(1, Ordering::Relaxed);
                covered.fetch_add(batch.len() as u64, Ordering::Relaxed);
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

fn read_snapshot_file(dir: &Path) -> Result<Option<StoredSnapshot>, StoreError> {
    let path = dir.join(SNAPSHOT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(decode(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io { path, source }),
    }
}

/// Writes the snapshot file atomically and durably.
fn write_snapshot_file(dir: &Path, snap: &StoredSnapshot) -> std::io::Result<()> {
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    {
        // Streamed: a snapshot is hundreds of MB at 100,000 agents and need
        // not exist twice in memory.
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        encode_into(&mut f, snap).map_err(std::io::Error::other)?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
    std::fs::File::open(dir)?.sync_all()
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

    fn put_meta<T: Serialize>(
        &self,
        key: &[u8],
        v: &T,
        subject: ErrorSubject<u64>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = encode(v).map_err(|e| io_err(subject.clone(), ErrorVerb::Write, e))?;
        self.db
            .put_cf_opt(self.cf_meta(), key, bytes, &self.write_opts())
            .map_err(|e| io_err(subject, ErrorVerb::Write, e))
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

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<u64>> {
        let start = match range.start_bound() {
            std::ops::Bound::Included(x) => *x,
            std::ops::Bound::Excluded(x) => x.saturating_add(1),
            std::ops::Bound::Unbounded => 0,
        };
        if let Some(hit) = self.recent().get(&range, start) {
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
            if !range.contains(&index) {
                break;
            }
            let entry: Entry = decode(&v).map_err(read_logs_err)?;
            out.push(entry);
        }
        Ok(out)
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
        self.put_meta(KEY_VOTE, vote, ErrorSubject::Vote)
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
        self.db
            .put_cf(self.cf_meta(), KEY_COMMITTED, bytes)
            .map_err(write_logs_err)
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
        let mut batch = WriteBatch::default();
        let mut kept = Vec::new();
        for entry in entries {
            let bytes = encode(&entry).map_err(write_logs_err)?;
            batch.put_cf(self.cf_log(), id_key(entry.log_id.index), &bytes);
            kept.push((entry, bytes.len()));
        }
        // Written without a sync; the flusher confirms the append to
        // openraft only after the WAL holding it has been synced.
        let res = self.db.write(batch);
        debug!(entries = kept.len(), ok = res.is_ok(), "log append");
        match res {
            Ok(()) => {
                {
                    let mut recent = self.recent();
                    for (entry, size) in kept {
                        recent.push(entry, size);
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
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf_log(), from, to);
        // delete_range excludes its end key.
        batch.delete_cf(self.cf_log(), to);
        self.db
            .write_opt(batch, &self.write_opts())
            .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<u64>> {
        debug!(%log_id, "purge log upto");
        self.recent().purge(log_id.index);
        // Record the purge point first: a crash in between leaves extra
        // entries below it, which are ignored, never a hole above it.
        self.put_meta(KEY_PURGED, &log_id, ErrorSubject::Logs)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf_log(), id_key(0), id_key(log_id.index + 1));
        self.db
            .write_opt(batch, &self.write_opts())
            .map_err(write_logs_err)
    }
}

impl StateMachineStore {
    /// The shared applied state this store writes.
    pub fn shared(&self) -> &SharedState {
        &self.shared
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        // Capture state, applied id and membership together under one lock
        // so they describe the same point of the log.
        // Encoded straight from the tables, into a buffer of the exact size:
        // no copy of the records, no regrowth, and the lock is held only
        // for the encoding.
        let (bytes, agents, last_applied, membership) = {
            let g = self.shared.read();
            let view = g.registry.snapshot_view();
            let err = |e| io_err(ErrorSubject::StateMachine, ErrorVerb::Read, e);
            let size = bincode::serialized_size(&view).map_err(err)?;
            let mut bytes = Vec::with_capacity(size as usize);
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
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        };
        let dir = self.dir.clone();
        let stored =
            tokio::task::spawn_blocking(move || write_snapshot_file(&dir, &stored).map(|_| stored))
                .await
                .map_err(|e| {
                    io_err(
                        ErrorSubject::Snapshot(Some(meta.signature())),
                        ErrorVerb::Write,
                        e,
                    )
                })?
                .map_err(|e| {
                    io_err(
                        ErrorSubject::Snapshot(Some(meta.signature())),
                        ErrorVerb::Write,
                        e,
                    )
                })?;
        info!(snapshot = %meta.snapshot_id, bytes = stored.data.len(), agents, "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
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

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let registry = restore_snapshot(self.config.clone(), &bytes)
            .map_err(|e| io_err(subject(), ErrorVerb::Read, e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        };
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_snapshot_file(&dir, &stored))
            .await
            .map_err(|e| io_err(subject(), ErrorVerb::Write, e))?
            .map_err(|e| io_err(subject(), ErrorVerb::Write, e))?;
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

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let dir = self.dir.clone();
        let snap = tokio::task::spawn_blocking(move || read_snapshot_file(&dir))
            .await
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(snap.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
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
        assert_eq!(indexes(r.get(&(1..), 1)), None);
        for i in 5..=9 {
            r.push(entry(i), 10);
        }
        assert_eq!(indexes(r.get(&(4..), 4)), None, "4 was never kept");
        assert_eq!(indexes(r.get(&(6..8), 6)), Some(vec![6, 7]));
        assert_eq!(indexes(r.get(&(7..), 7)), Some(vec![7, 8, 9]));
        assert_eq!(indexes(r.get(&(12..), 12)), Some(vec![]));

        // A truncation drops the tail; an append after it continues there.
        r.truncate(8);
        assert_eq!(indexes(r.get(&(5..), 5)), Some(vec![5, 6, 7]));
        r.push(entry(8), 10);
        assert_eq!(indexes(r.get(&(5..), 5)), Some(vec![5, 6, 7, 8]));
        // Overwriting an index drops it and everything after it.
        r.push(entry(6), 10);
        assert_eq!(indexes(r.get(&(5..), 5)), Some(vec![5, 6]));
        assert_eq!(r.bytes, 20);

        // A purge drops the head: reads from there go to the database.
        r.purge(5);
        assert_eq!(indexes(r.get(&(5..), 5)), None);
        assert_eq!(indexes(r.get(&(6..), 6)), Some(vec![6]));

        // A gap (entries appended elsewhere) starts over.
        r.push(entry(20), 10);
        assert_eq!(indexes(r.get(&(6..), 6)), None);
        assert_eq!(indexes(r.get(&(20..), 20)), Some(vec![20]));
        assert_eq!(r.bytes, 10);
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
                    "snapshot format {found} is not supported (this build reads 2 and {SNAPSHOT_FORMAT_VERSION})"
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

    #[test]
    fn open_store_refuses_a_snapshot_file_it_cannot_read() {
        // An unknown marker in front of the whole file.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SNAPSHOT_FILE), [9u8, 0, 0]).unwrap();
        let err = open_store(dir.path(), 1, options()).err().expect("refused");
        assert!(
            matches!(
                err,
                StoreError::Corrupt(DecodeError::UnsupportedVersion { found: 9, .. })
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "corrupt or unsupported data: encoding version 9 is not supported (this build reads 1 and {FORMAT_VERSION})"
            )
        );

        // A well-formed file around snapshot data of an unknown format.
        let dir = tempfile::tempdir().unwrap();
        let stored = StoredSnapshot {
            meta: SnapshotMeta::default(),
            data: bincode::serialize(&99u32).unwrap(),
        };
        write_snapshot_file(dir.path(), &stored).unwrap();
        let err = open_store(dir.path(), 1, options()).err().expect("refused");
        assert!(
            matches!(
                err,
                StoreError::Corrupt(DecodeError::UnsupportedSnapshotFormat { found: 99, .. })
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn install_snapshot_reports_undecodable_data_as_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut sm, shared) = open_store(dir.path(), 1, options()).unwrap();
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
}
