//! Saving a backup (`GET /v1/snapshot`) to a file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use registry_types::backup::{BackupCheck, BackupHeader};

use crate::client::{api_error, Call, Client};
use crate::config::parse_node_url;
use crate::error::ClientError;

/// How long the answer's headers may take: the node builds a snapshot
/// first (seconds at 100,000 agents), within its own request timeout
/// (60 s by default). The body has no overall bound: it is as long as the
/// registry is large; each piece must come within the same wait.
const HEADERS_WAIT: Duration = Duration::from_secs(65);

/// Why [`Client::save_snapshot`] failed; nothing is left under the path.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// No node served a whole, undamaged backup.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The file could not be written.
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A backup written to a file by [`Client::save_snapshot`].
#[derive(Clone, Debug)]
pub struct SavedSnapshot {
    /// The file written.
    pub path: PathBuf,
    /// Its header (revision, log id, cluster, checksum...), verified
    /// against the body.
    pub header: BackupHeader,
    /// The node that served it.
    pub node: String,
}

impl Client {
    /// Saves a backup of the whole registry to `path`: a consistent
    /// point-in-time snapshot holding every change acknowledged before the
    /// call. Tries the configured nodes in turn until one answers.
    ///
    /// Written to `PATH.partial` (its checksum verified as it arrives,
    /// synced), then renamed to `path`: `path` is never a partial or
    /// damaged file, and an error leaves nothing behind.
    pub async fn save_snapshot(&self, path: &Path) -> Result<SavedSnapshot, SaveError> {
        let mut last = None;
        for attempt in 0..self.node_count() {
            let idx = self.preferred_index() + attempt;
            let node = self.node_name(idx).to_string();
            match self.save_from(&node, path).await {
                Ok(header) => {
                    return Ok(SavedSnapshot {
                        path: path.to_path_buf(),
                        header,
                        node,
                    })
                }
                // An error of the file, or a refusal every node would give
                // (no admin token), is not worth another node.
                Err(e @ SaveError::File { .. }) => return Err(e),
                Err(SaveError::Client(e)) if matches!(e.status(), Some(400..=499)) => {
                    return Err(e.into())
                }
                Err(SaveError::Client(e)) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| ClientError::Transport("no node to ask".into()))
            .into())
    }

    /// One attempt on one node.
    async fn save_from(&self, node: &str, path: &Path) -> Result<BackupHeader, SaveError> {
        let url = Call::read(&["v1", "snapshot"]).url(&parse_node_url(node)?)?;
        let resp = tokio::time::timeout(HEADERS_WAIT, self.stream_client().get(url).send())
            .await
            .map_err(|_| {
                ClientError::Transport(format!("{node}: no answer within {HEADERS_WAIT:?}"))
            })?
            .map_err(|e| ClientError::Transport(format!("{node}: {e}")))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = tokio::time::timeout(HEADERS_WAIT, resp.bytes())
                .await
                .map_err(|_| "the error body did not arrive in time".to_string())
                .and_then(|r| r.map(|b| b.to_vec()).map_err(|e| e.to_string()));
            return Err(api_error(status, &body).into());
        }
        let partial = partial_path(path);
        let written = write_checked(resp, &partial, node).await;
        let done = match written {
            Ok(header) => finish(&partial, path).await.map(|()| header),
            Err(e) => Err(e),
        };
        if done.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        done
    }
}

/// `PATH.partial`, beside `path` (same file system, for the rename).
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

fn file_error(path: &Path, source: std::io::Error) -> SaveError {
    SaveError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// Streams the answer into `partial`, checking it as it comes, and syncs it.
async fn write_checked(
    mut resp: reqwest::Response,
    partial: &Path,
    node: &str,
) -> Result<BackupHeader, SaveError> {
    let mut file = tokio::fs::File::create(partial)
        .await
        .map_err(|e| file_error(partial, e))?;
    let mut check = BackupCheck::default();
    let damaged = |e| ClientError::Decode(format!("{node}: the backup received is damaged: {e}"));
    loop {
        let chunk = tokio::time::timeout(HEADERS_WAIT, resp.chunk())
            .await
            .map_err(|_| ClientError::Transport(format!("{node}: the backup stalled")))?
            .map_err(|e| ClientError::Transport(format!("{node}: {e}")))?;
        let Some(chunk) = chunk else { break };
        check.update(&chunk).map_err(damaged)?;
        file.write_all(&chunk)
            .await
            .map_err(|e| file_error(partial, e))?;
    }
    let header = check.finish().map_err(damaged)?;
    file.sync_all().await.map_err(|e| file_error(partial, e))?;
    Ok(header)
}

/// Renames the complete file into place and syncs its directory.
async fn finish(partial: &Path, path: &Path) -> Result<(), SaveError> {
    tokio::fs::rename(partial, path)
        .await
        .map_err(|e| file_error(path, e))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Ok(d) = tokio::fs::File::open(&dir).await {
        let _ = d.sync_all().await;
    }
    Ok(())
}
