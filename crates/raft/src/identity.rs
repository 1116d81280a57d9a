//! The cluster's identity: a random id created when the cluster is
//! bootstrapped, kept in every member's data directory (`cluster-id`, one
//! line of text) and carried by every node-to-node request and snapshot, so
//! that a node refuses requests, snapshots and data of another cluster.
//!
//! The member that initializes the cluster creates the id; every other
//! member adopts it from the first authenticated request of a peer that
//! carries one, and keeps it from then on. A data directory whose id differs
//! from a request's is never changed by it.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// File, in the data directory, holding the cluster id.
pub const CLUSTER_ID_FILE: &str = "cluster-id";

/// A cluster's id: 128 random bits, written as a UUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterId(pub uuid::Uuid);

impl ClusterId {
    /// A new random id.
    pub fn random() -> ClusterId {
        ClusterId(uuid::Uuid::new_v4())
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ClusterId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s.trim()).map(ClusterId)
    }
}

/// Why the cluster identity could not be read, kept or changed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} does not hold a cluster id ({source}); restore the data directory from a peer"
    )]
    Corrupt { path: PathBuf, source: uuid::Error },
    /// The data directory belongs to another cluster than the one named.
    #[error("this node belongs to cluster {ours}, not {theirs}")]
    Mismatch { ours: ClusterId, theirs: ClusterId },
}

/// The cluster id of one node, shared by everything that stamps or checks
/// it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ClusterIdentity {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    id: RwLock<Option<ClusterId>>,
}

impl ClusterIdentity {
    /// Reads the id kept in `dir` (none yet on a node's first start).
    pub fn load(dir: &Path) -> Result<ClusterIdentity, IdentityError> {
        let path = dir.join(CLUSTER_ID_FILE);
        let id = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text.parse().map_err(|source| IdentityError::Corrupt {
                path: path.clone(),
                source,
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(IdentityError::Io { path, source }),
        };
        Ok(ClusterIdentity {
            inner: Arc::new(Inner {
                path,
                id: RwLock::new(id),
            }),
        })
    }

    /// An identity kept nowhere (tests, tools reading a copy).
    pub fn ephemeral(id: Option<ClusterId>) -> ClusterIdentity {
        ClusterIdentity {
            inner: Arc::new(Inner {
                path: PathBuf::new(),
                id: RwLock::new(id),
            }),
        }
    }

    /// The id, once the node has one.
    pub fn get(&self) -> Option<ClusterId> {
        *self.inner.id.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `id` as this node's cluster id if it has none yet (persisted
    /// before it returns); succeeds if it already is, and refuses another.
    pub fn adopt(&self, id: ClusterId) -> Result<(), IdentityError> {
        let mut slot = self.inner.id.write().unwrap_or_else(|p| p.into_inner());
        match *slot {
            Some(ours) if ours == id => Ok(()),
            Some(ours) => Err(IdentityError::Mismatch { ours, theirs: id }),
            None => {
                if !self.inner.path.as_os_str().is_empty() {
                    write_durably(&self.inner.path, &format!("{id}\n"))?;
                }
                *slot = Some(id);
                Ok(())
            }
        }
    }

    /// Checks that `theirs` is this node's cluster, adopting it if this
    /// node has none yet.
    pub fn check(&self, theirs: ClusterId) -> Result<(), IdentityError> {
        match self.get() {
            Some(ours) if ours == theirs => Ok(()),
            Some(ours) => Err(IdentityError::Mismatch { ours, theirs }),
            None => self.adopt(theirs),
        }
    }

    /// The id, created (at random) and persisted if there is none: the
    /// bootstrapping member calls this before it initializes the cluster.
    pub fn get_or_create(&self) -> Result<ClusterId, IdentityError> {
        if let Some(id) = self.get() {
            return Ok(id);
        }
        let id = ClusterId::random();
        match self.adopt(id) {
            Ok(()) => Ok(id),
            // Adopted from a peer meanwhile.
            Err(IdentityError::Mismatch { ours, .. }) => Ok(ours),
            Err(e) => Err(e),
        }
    }
}

/// Writes `text` to `path` atomically (temporary file, fsync, rename, fsync
/// of the directory).
fn write_durably(path: &Path, text: &str) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_created_once_kept_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let identity = ClusterIdentity::load(dir.path()).unwrap();
        assert_eq!(identity.get(), None);
        let id = identity.get_or_create().unwrap();
        assert_eq!(identity.get_or_create().unwrap(), id);
        let again = ClusterIdentity::load(dir.path()).unwrap();
        assert_eq!(again.get(), Some(id));
    }

    #[test]
    fn another_cluster_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let identity = ClusterIdentity::load(dir.path()).unwrap();
        let ours = ClusterId::random();
        identity.check(ours).unwrap();
        let theirs = ClusterId::random();
        assert!(matches!(
            identity.check(theirs),
            Err(IdentityError::Mismatch { .. })
        ));
        assert!(identity.adopt(theirs).is_err());
        assert_eq!(ClusterIdentity::load(dir.path()).unwrap().get(), Some(ours));
    }

    #[test]
    fn the_same_cluster_is_taken_again() {
        let identity = ClusterIdentity::ephemeral(None);
        let ours = ClusterId::random();
        identity.adopt(ours).unwrap();
        identity.adopt(ours).unwrap();
        identity.check(ours).unwrap();
        identity.check(ours).unwrap();
        assert_eq!(identity.get(), Some(ours));
        assert_eq!(identity.get_or_create().unwrap(), ours);
    }

    #[test]
    fn an_unreadable_file_is_an_error_not_a_new_node() {
        // Only a missing file means "no id yet": one that cannot be read
        // must not let the node take another cluster's id.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(CLUSTER_ID_FILE)).unwrap();
        assert!(matches!(
            ClusterIdentity::load(dir.path()),
            Err(IdentityError::Io { .. })
        ));
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CLUSTER_ID_FILE), "not an id\n").unwrap();
        assert!(matches!(
            ClusterIdentity::load(dir.path()),
            Err(IdentityError::Corrupt { .. })
        ));
    }
}
