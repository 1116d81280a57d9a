//! Online backup and restore.
//!
//! A backup (`registry_types::backup` describes the file) is the serving
//! node's `snapshot.bin` behind a header. [`open_backup`] prepares one from
//! a node's data directory without decoding or copying the snapshot: it
//! reads the file's header and the snapshot's metadata, and hands back the
//! open file to stream. The snapshot itself is built by openraft's snapshot
//! builder like any periodic one (the server triggers a build first, see
//! `agent_registry::backup`).
//!
//! [`restore`] prepares the data directory of one node of a new cluster
//! from a backup: everything is checked (both headers, every checksum, the
//! registry decoded and rebuilt) before anything is written, the directory
//! is written aside and renamed into place, and it carries a new cluster id,
//! so the restored cluster and the old one refuse each other.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use openraft::{BasicNode, Membership, SnapshotMeta, StoredMembership, Vote};
use rocksdb::{ColumnFamilyDescriptor, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use registry_state::{RegistryState, StateConfig};
use registry_types::backup::{BackupError, BackupHeader};
use registry_types::Timestamp;

use crate::frame::{self, FrameKind, SnapshotHeader, HEADER_LEN};
use crate::identity::{ClusterId, ClusterIdentity, IdentityError};
use crate::store::{
    self, decode_snapshot_data, decode_snapshot_file, encode, open_snapshot_data, raft_db_options,
    write_snapshot_file, DecodeError, StoredSnapshot, CF_LOG, CF_META, KEY_COMMITTED, KEY_NODE_ID,
    KEY_PURGED, KEY_VOTE, SNAPSHOT_FILE,
};
use crate::{LogId, FORMAT_VERSION};

/// Why a node cannot serve a backup from its data directory.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No snapshot was written yet.
    #[error("{0} does not exist yet")]
    Missing(PathBuf),
    /// `snapshot.bin` was written by a release from before headers; the
    /// next build replaces it.
    #[error("{0} has no header (written by a previous release)")]
    Unframed(PathBuf),
    /// `snapshot.bin` cannot be read.
    #[error("{path}: {source}")]
    Damaged { path: PathBuf, source: DecodeError },
    /// The snapshot on disk is older than the position asked for (a newer
    /// one is being built).
    #[error("the snapshot on disk ends at log index {found}, before {wanted}")]
    Behind { found: u64, wanted: u64 },
}

/// A backup ready to stream: its header, then the file from its start.
pub struct BackupSource {
    pub header: BackupHeader,
    /// `snapshot.bin`, open at its first byte. Held open, it stays whole
    /// even if a newer snapshot replaces the file meanwhile (a rename).
    pub file: std::fs::File,
}

/// The start of a stored snapshot: its metadata and the length of its data
/// (bincode writes a `Vec<u8>` as its length, then its bytes).
#[derive(Deserialize)]
struct StoredPrefix {
    meta: SnapshotMeta<u64, BasicNode>,
    data_len: u64,
}

/// The first fields of every registry snapshot format (2 to 4).
#[derive(Deserialize)]
struct DataPrefix {
    format_version: u32,
    revision: u64,
    _total_registrations: u64,
    agents: u64,
}

/// Prepares a backup of the snapshot in `dir` (a node's data directory),
/// which must cover log index `at_least`. Reads the snapshot's headers and
/// metadata only (a few hundred bytes): the body is streamed as it is.
pub fn open_backup(
    dir: &Path,
    at_least: u64,
    cluster_id: Option<ClusterId>,
    node_id: u64,
    created_at: Timestamp,
) -> Result<BackupSource, SourceError> {
    let path = dir.join(SNAPSHOT_FILE);
    let io = |source| SourceError::Io {
        path: path.clone(),
        source,
    };
    let damaged = |source: DecodeError| SourceError::Damaged {
        path: path.clone(),
        source,
    };
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SourceError::Missing(path.clone()))
        }
        Err(e) => return Err(io(e)),
    };
    let file_len = file.metadata().map_err(io)?.len();
    let mut head = [0u8; HEADER_LEN];
    file.read_exact(&mut head).map_err(io)?;
    let inner = SnapshotHeader::read(FrameKind::File, &head)
        .map_err(|e| damaged(e.into()))?
        .ok_or_else(|| SourceError::Unframed(path.clone()))?;
    if file_len != HEADER_LEN as u64 + inner.body_len {
        return Err(damaged(DecodeError::Frame(frame::FrameError::Truncated {
            expected: HEADER_LEN as u64 + inner.body_len,
            found: file_len,
        })));
    }
    let (meta, data) = {
        let mut r = BufReader::new(&file);
        let mut marker = [0u8; 1];
        r.read_exact(&mut marker).map_err(io)?;
        if marker[0] != FORMAT_VERSION && marker[0] != 1 {
            return Err(damaged(DecodeError::UnsupportedVersion {
                found: marker[0],
                supported: FORMAT_VERSION,
            }));
        }
        let prefix: StoredPrefix = bincode::deserialize_from(&mut r).map_err(|source| {
            damaged(DecodeError::Bincode {
                format: marker[0],
                source,
            })
        })?;
        // The data's own header, if framed, then its first fields.
        let want = (HEADER_LEN + 28).min(prefix.data_len as usize);
        let mut start = vec![0u8; want];
        r.read_exact(&mut start).map_err(io)?;
        let body = match frame::is_framed(FrameKind::Data, &start) {
            true => &start[HEADER_LEN.min(start.len())..],
            false => &start[..],
        };
        let data: DataPrefix = bincode::deserialize(body)
            .map_err(|e| damaged(DecodeError::MissingSnapshotFormat(e)))?;
        (prefix.meta, data)
    };
    let Some(log_id) = meta.last_log_id.filter(|l| l.index >= at_least) else {
        return Err(SourceError::Behind {
            found: meta.last_log_id.map_or(0, |l| l.index),
            wanted: at_least,
        });
    };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    // The body's checksum, from the one the file's header recorded: the
    // file is not read twice.
    let body_crc = crc32c::crc32c_combine(
        crc32c::crc32c(&head),
        inner.body_crc,
        inner.body_len as usize,
    );
    let header = BackupHeader {
        snapshot_format: data.format_version,
        revision: data.revision,
        log_term: log_id.leader_id.term,
        log_index: log_id.index,
        cluster_id: cluster_id.map(|c| c.0),
        node_id,
        created_at,
        agents: data.agents,
        body_len: file_len,
        body_crc,
    };
    Ok(BackupSource { header, file })
}

/// Why a backup cannot be restored. Every one is found before anything
/// is written.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Backup { path: PathBuf, source: BackupError },
    #[error("{path}: the snapshot inside is damaged or unreadable: {source}")]
    Snapshot { path: PathBuf, source: DecodeError },
    /// The header and the snapshot it fronts disagree.
    #[error("{path}: the header says {header}, the snapshot inside holds {found}")]
    Mismatch {
        path: PathBuf,
        header: String,
        found: String,
    },
    #[error("{0} is not empty: restore prepares a new node's directory and never overwrites one")]
    NotEmpty(PathBuf),
    #[error("node {node} is not in --initial-cluster ({members})")]
    NotAMember { node: u64, members: String },
    #[error(
        "--cluster-id {0} is the id of the cluster the backup was taken from; a restored cluster needs a new one"
    )]
    SameCluster(ClusterId),
    #[error("writing the cluster id: {0}")]
    Identity(#[from] IdentityError),
    #[error("writing the Raft database: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("encoding: {0}")]
    Encode(#[from] bincode::Error),
    #[error("the prepared directory does not check out: {0}")]
    Check(String),
}

/// What [`restore`] is asked to do.
#[derive(Clone, Debug)]
pub struct RestorePlan {
    /// The backup file.
    pub snapshot: PathBuf,
    /// The new node's data directory: absent or empty.
    pub data_dir: PathBuf,
    pub node_id: u64,
    /// The new cluster's voters, by id.
    pub members: BTreeMap<u64, String>,
    /// The new cluster's id; `None`: derived from the backup and the
    /// members ([`derive_cluster_id`]), the same on every node.
    pub cluster_id: Option<ClusterId>,
    /// State settings (the event window) the registry is rebuilt with.
    pub state: StateConfig,
}

/// What [`restore`] did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub data_dir: PathBuf,
    pub node_id: u64,
    /// The new cluster's id.
    pub cluster_id: ClusterId,
    /// The header of the backup restored.
    pub backup: BackupHeader,
    pub agents: u64,
    pub revision: u64,
    /// Size of the snapshot written, in bytes.
    pub snapshot_bytes: u64,
}

/// The new cluster's id when the operator gives none: SHA-256 of the
/// backup's header (which names the old cluster, the snapshot's position
/// and checksum, and the time it was taken) and of the members, so every
/// node restored from the same file into the same `--initial-cluster`
/// computes the same id, and no other cluster has it.
pub fn derive_cluster_id(backup: &BackupHeader, members: &BTreeMap<u64, String>) -> ClusterId {
    let mut h = Sha256::new();
    h.update(b"agent-registry restore\0");
    h.update(backup.encode());
    for (id, addr) in members {
        h.update(format!("{id}={addr}\n").as_bytes());
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    ClusterId(uuid::Builder::from_random_bytes(bytes).into_uuid())
}

/// Prepares `plan.data_dir` for node `plan.node_id` of a new cluster from
/// a backup. Refuses a directory that is not empty, and a damaged,
/// truncated, foreign or future file, before writing anything; writes the
/// directory aside (`.NAME.restore-PID` beside it) and renames it into
/// place once it is complete and checks out.
///
/// The node's Raft state starts at the backup's log position: the snapshot
/// (its registry, with the new members as the membership), the log purged
/// up to it, that position committed, and a vote of the backup's term; the
/// nodes elect a leader among themselves at the next term.
pub fn restore(plan: &RestorePlan) -> Result<RestoreReport, RestoreError> {
    let dir = &plan.data_dir;
    check_empty(dir)?;
    if !plan.members.contains_key(&plan.node_id) {
        return Err(RestoreError::NotAMember {
            node: plan.node_id,
            members: plan
                .members
                .iter()
                .map(|(id, a)| format!("{id}={a}"))
                .collect::<Vec<_>>()
                .join(","),
        });
    }
    let path = &plan.snapshot;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RestoreError::Io { path, source }
    };

    // --- read and check everything, writing nothing.
    let bytes = std::fs::read(path).map_err(io(path.as_path()))?;
    let (header, body) = BackupHeader::open(&bytes).map_err(|source| RestoreError::Backup {
        path: path.clone(),
        source,
    })?;
    let bad = |source| RestoreError::Snapshot {
        path: path.clone(),
        source,
    };
    let (_, stored) = decode_snapshot_file(body).map_err(bad)?;
    let (_, data_body) = open_snapshot_data(&stored.data).map_err(bad)?;
    let data = decode_snapshot_data(data_body).map_err(bad)?;
    let last = stored.meta.last_log_id;
    let found = (
        data.revision,
        last.map_or(0, |l| l.leader_id.term),
        last.map_or(0, |l| l.index),
    );
    let Some(last) = last.filter(|_| found == (header.revision, header.log_term, header.log_index))
    else {
        return Err(RestoreError::Mismatch {
            path: path.clone(),
            header: format!(
                "revision {} at log id {}-{}",
                header.revision, header.log_term, header.log_index
            ),
            found: format!("revision {} at log id {}-{}", found.0, found.1, found.2),
        });
    };
    drop(stored);
    drop(bytes);
    let cluster_id = match plan.cluster_id {
        Some(id) => id,
        None => derive_cluster_id(&header, &plan.members),
    };
    if header.cluster_id == Some(cluster_id.0) {
        return Err(RestoreError::SameCluster(cluster_id));
    }
    let registry = RegistryState::restore(plan.state.clone(), data).map_err(|e| bad(e.into()))?;
    let agents = registry.len() as u64;
    let revision = registry.revision();
    let mut snapshot = Vec::new();
    snapshot.extend_from_slice(&[0; HEADER_LEN]);
    bincode::serialize_into(&mut snapshot, &registry.snapshot_view())?;
    drop(registry);
    frame::seal_data(&mut snapshot, Some(cluster_id), plan.node_id);

    // --- write aside, check, rename into place.
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = parent.join(format!(".{name}.restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = write_dir(&tmp, plan, cluster_id, last, snapshot).and_then(|bytes| {
        let report = store::inspect(&tmp, None).map_err(|e| RestoreError::Check(e.to_string()))?;
        if !report.problems.is_empty() {
            return Err(RestoreError::Check(report.problems.join("; ")));
        }
        Ok(bytes)
    });
    let snapshot_bytes = match written {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // An empty directory is replaced by the rename; it is checked again
    // here, right before.
    if let Err(e) = check_empty(dir).and_then(|()| {
        std::fs::rename(&tmp, dir).map_err(io(dir.as_path()))?;
        std::fs::File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(io(parent.as_path()))
    }) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(RestoreReport {
        data_dir: dir.clone(),
        node_id: plan.node_id,
        cluster_id,
        backup: header,
        agents,
        revision,
        snapshot_bytes,
    })
}

/// Refuses a path that exists and is not an empty directory.
fn check_empty(dir: &Path) -> Result<(), RestoreError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(RestoreError::NotEmpty(dir.to_path_buf())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(RestoreError::NotEmpty(dir.to_path_buf()))
        }
        Err(source) => Err(RestoreError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Writes a restored node's directory: cluster id, Raft database (node id,
/// vote, committed and purged ids at the snapshot) and `snapshot.bin`.
/// Returns the snapshot file's size.
fn write_dir(
    tmp: &Path,
    plan: &RestorePlan,
    cluster_id: ClusterId,
    last: LogId,
    data: Vec<u8>,
) -> Result<u64, RestoreError> {
    let io = |source| RestoreError::Io {
        path: tmp.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(tmp).map_err(io)?;
    ClusterIdentity::load(tmp)?.adopt(cluster_id)?;
    {
        let mut opts = raft_db_options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_LOG, raft_db_options()),
            ColumnFamilyDescriptor::new(CF_META, raft_db_options()),
        ];
        let db = DB::open_cf_descriptors(&opts, tmp.join("raft"), cfs)?;
        let meta = db
            .cf_handle(CF_META)
            .ok_or(store::StoreError::MissingColumnFamily(CF_META))
            .map_err(|e| RestoreError::Check(e.to_string()))?;
        // The vote is of the backup's term, for this node and not
        // committed: a node that starts there stands at the next term.
        let vote = Vote::new(last.leader_id.term, plan.node_id);
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, KEY_NODE_ID, encode(&plan.node_id)?);
        batch.put_cf(meta, KEY_VOTE, encode(&vote)?);
        batch.put_cf(meta, KEY_COMMITTED, encode(&last)?);
        batch.put_cf(meta, KEY_PURGED, encode(&last)?);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(batch, &wo)?;
    }
    let voters: BTreeSet<u64> = plan.members.keys().copied().collect();
    let nodes: BTreeMap<u64, BasicNode> = plan
        .members
        .iter()
        .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
        .collect();
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: StoredMembership::new(Some(last), Membership::new(vec![voters], nodes)),
        snapshot_id: format!("restore-{}-{}", last.leader_id.term, last.index),
    };
    let stored = StoredSnapshot { meta, data };
    write_snapshot_file(tmp, Some(cluster_id), plan.node_id, &stored).map_err(io)?;
    Ok(std::fs::metadata(tmp.join(SNAPSHOT_FILE))
        .map_err(io)?
        .len())
}
