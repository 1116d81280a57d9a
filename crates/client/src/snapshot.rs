//! Saving a backup (`GET /v1/snapshot`) to a file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use registry_types::backup::{BackupCheck, BackupHeader};

use crate::client::{api_error, backoff_delay, Call, Client};
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
    /// call. Tries the configured nodes in turn, with the client's attempt
    /// budget and backoff (a save during an election waits for it), until
    /// one serves a whole, undamaged backup.
    ///
    /// Written to a temporary file of its own beside `path`, readable by its
    /// owner only (a backup holds the whole registry, token hashes
    /// included), its checksum verified as it arrives, synced, then renamed
    /// to `path`: `path` is never a partial or damaged file, two saves to
    /// one path never write into each other, and an error leaves nothing
    /// behind.
    pub async fn save_snapshot(&self, path: &Path) -> Result<SavedSnapshot, SaveError> {
        let mut last = None;
        for attempt in 0..self.attempts() {
            if attempt > 0 {
                let delay = backoff_delay(self.config(), attempt, None, &mut rand::thread_rng());
                tokio::time::sleep(delay).await;
            }
            let idx = self.preferred_index() + attempt as usize;
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
        // Removed when dropped unless persisted: every error path cleans up.
        let (file, partial) = partial_file(path)?;
        let header = write_checked(resp, file, &partial, node).await?;
        finish(partial, path).await?;
        Ok(header)
    }
}

/// A new temporary file beside `path` (same file system, for the rename),
/// `.NAME.XXXXXX.partial`, mode 0600 on Unix.
fn partial_file(path: &Path) -> Result<(tokio::fs::File, tempfile::TempPath), SaveError> {
    let dir = parent_dir(path);
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(".");
    let (file, temp) = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".partial")
        .tempfile_in(&dir)
        .map_err(|e| file_error(&dir, e))?
        .into_parts();
    Ok((tokio::fs::File::from_std(file), temp))
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_error(path: &Path, source: std::io::Error) -> SaveError {
    SaveError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// Streams the answer into `file` (at `partial`), checking it as it
/// comes, and syncs it.
async fn write_checked(
    mut resp: reqwest::Response,
    mut file: tokio::fs::File,
    partial: &Path,
    node: &str,
) -> Result<BackupHeader, SaveError> {
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
async fn finish(partial: tempfile::TempPath, path: &Path) -> Result<(), SaveError> {
    let target = path.to_path_buf();
    tokio::task::spawn_blocking(move || partial.persist(&target))
        .await
        .map_err(|e| file_error(path, std::io::Error::other(e)))?
        .map_err(|e| file_error(path, e.error))?;
    if let Ok(d) = tokio::fs::File::open(parent_dir(path)).await {
        let _ = d.sync_all().await;
    }
    Ok(())
}
