//! Online backup (`GET /v1/snapshot`) and `agent-registry restore`.
//!
//! A backup is served from the node's own snapshot, built by openraft's
//! snapshot builder as every periodic snapshot is, then streamed from the
//! file: the request asks for a read index first (on a follower, from the
//! leader), waits until this node has applied that far, and has a snapshot
//! built unless the one on disk already covers it. The backup thus holds
//! every change acknowledged before the request began, whichever node
//! answers it; a follower serves its own copy and the leader does no more
//! work than for any read. Heartbeats are not touched (they live in the
//! leader's memory); writes are applied meanwhile except while the builder
//! encodes the registry under the state's read lock, as for every periodic
//! snapshot. Memory: the encoded snapshot exists once, in the builder, and
//! the stream reads the file in pieces.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use clap::Parser;
use tokio::io::AsyncReadExt;
use tracing::{info, warn};

use registry_raft::backup::{open_backup, restore, BackupSource, RestorePlan, SourceError};
use registry_state::StateConfig;
use registry_types::{ErrorCode, Timestamp};

use crate::error::{ApiError, ApiResult};
use crate::node::Node;
use crate::openapi::{Internal, ReadUnavailable};

/// Content type of a backup.
pub const BACKUP_CONTENT_TYPE: &str = "application/vnd.agent-registry.backup";

/// How long a snapshot build may take before the request gives up: within
/// the request timeout, and far above the few seconds a build of 100,000
/// agents takes.
const BUILD_WAIT: Duration = Duration::from_secs(50);

/// Bytes read from the file per piece of the stream.
const PIECE: usize = 256 * 1024;

/// Stream a backup.
///
/// A consistent point-in-time snapshot of the whole registry (every change
/// acknowledged before the request), as a backup file: a 96-byte header
/// (magic `AREGBKUP`, format, revision, Raft log id, cluster id, node,
/// time, agent count, CRC32C of the body) and the node's snapshot file.
/// Any node answers, from its own state after a read index. Admin only
/// under `--auth on`. `registryctl snapshot save FILE` writes it;
/// `agent-registry restore` makes a new cluster from it.
#[utoipa::path(
    get,
    path = "/v1/snapshot",
    operation_id = "saveSnapshot",
    tag = "cluster",
    responses(
        (status = 200, description = "The backup file, streamed (`application/vnd.agent-registry.backup`). `x-registry-snapshot-revision`, `-log-index` and `-crc32c` repeat what its header says.", content_type = "application/vnd.agent-registry.backup", body = Vec<u8>),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn snapshot(State(node): State<Node>) -> ApiResult<Response> {
    let created_at = Timestamp::now();
    node.linearize().await?;
    let target = node.shared.position().log_index;
    let source = fresh_snapshot(&node, target, created_at).await?;
    let h = source.header;
    info!(
        revision = h.revision,
        log_index = h.log_index,
        bytes = h.file_len(),
        agents = h.agents,
        "serving a backup"
    );
    let file = tokio::fs::File::from_std(source.file);
    let head = Bytes::copy_from_slice(&h.encode());
    let stream = futures::stream::unfold((Some(head), Some(file)), |(head, file)| async move {
        if let Some(head) = head {
            return Some((Ok(head), (None, file)));
        }
        let mut file = file?;
        let mut buf = vec![0u8; PIECE];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), (None, Some(file))))
            }
            Err(e) => {
                // The client sees a short body: its length check fails.
                warn!(error = %e, "reading the snapshot for a backup");
                Some((Err(e), (None, None)))
            }
        }
    });
    let mut resp = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(BACKUP_CONTENT_TYPE),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(h.file_len()));
    headers.insert(
        "x-registry-snapshot-revision",
        HeaderValue::from(h.revision),
    );
    headers.insert(
        "x-registry-snapshot-log-index",
        HeaderValue::from(h.log_index),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{:08x}", h.body_crc)) {
        headers.insert("x-registry-snapshot-crc32c", v);
    }
    Ok(resp)
}

/// The node's snapshot once it covers log index `target`: the one on disk
/// if it does, else one built for it (a build already under way is waited
/// for, then another one asked for).
async fn fresh_snapshot(
    node: &Node,
    target: u64,
    created_at: Timestamp,
) -> ApiResult<BackupSource> {
    let deadline = tokio::time::Instant::now() + BUILD_WAIT;
    let mut metrics = node.raft.metrics();
    loop {
        let covered = metrics.borrow_and_update().snapshot.map_or(0, |l| l.index);
        if covered >= target && target > 0 {
            let (dir, cluster, id) = (node.config.data_dir.clone(), node.identity.get(), node.id);
            let opened = tokio::task::spawn_blocking(move || {
                open_backup(&dir, target, cluster, id, created_at)
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "backup task");
                ApiError::internal()
            })?;
            match opened {
                Ok(source) => return Ok(source),
                // The file is older than the metrics said (replaced in
                // between): build again.
                Err(SourceError::Behind { .. } | SourceError::Missing(_)) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot serve a backup from the snapshot");
                    return Err(ApiError::internal());
                }
            }
        }
        if let Err(e) = node.raft.trigger().snapshot().await {
            warn!(error = %e, "cannot trigger a snapshot");
            return Err(ApiError::unavailable(format!("raft is stopping: {e}")));
        }
        // A build already under way ignores the trigger: wait for it, then
        // ask again. Bounded by the deadline.
        let slice = (tokio::time::Instant::now() + Duration::from_secs(2)).min(deadline);
        let built = metrics.wait_for(|m| m.snapshot.is_some_and(|l| l.index >= target));
        let _ = tokio::time::timeout_at(slice, built).await;
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "no snapshot covering log index {target} could be built within {} s (is the disk short of space? see the node's log); retry later",
                    BUILD_WAIT.as_secs()
                ),
            ));
        }
    }
}

/// Prepares the data directory of one node of a new cluster from a backup.
///
/// Run it on every node of the new cluster, with the same `--snapshot` and
/// `--initial-cluster`, then start the nodes as usual (same
/// `--initial-cluster`, no other flag needed). The new cluster gets a new
/// id, so its nodes and the old cluster's refuse each other.
#[derive(Clone, Debug, Parser)]
#[command(name = "agent-registry restore", version, about, long_about = None)]
pub struct RestoreArgs {
    /// The backup file (`registryctl snapshot save FILE`).
    #[arg(long)]
    pub snapshot: PathBuf,

    /// The new node's data directory: absent or empty.
    #[arg(long, env = "REGISTRY_DATA_DIR")]
    pub data_dir: PathBuf,

    /// The new node's id (one of --initial-cluster).
    #[arg(long, env = "REGISTRY_NODE_ID")]
    pub node_id: u64,

    /// The new cluster's voters, `id=host:port,...` as the nodes will be
    /// started with.
    #[arg(long, env = "REGISTRY_INITIAL_CLUSTER")]
    pub initial_cluster: String,

    /// The new cluster's id (a UUID). Without it the id is derived from the
    /// backup and --initial-cluster, so every node computes the same one;
    /// give one to restore the same backup into two clusters with the same
    /// addresses.
    #[arg(long)]
    pub cluster_id: Option<String>,

    /// Events kept for watchers to resume from (as the node's
    /// --event-window).
    #[arg(long, env = "REGISTRY_EVENT_WINDOW", default_value_t = 100_000)]
    pub event_window: usize,
}

/// Whether the command line asks for `restore` (its first argument).
pub fn requested() -> bool {
    crate::config::subcommand_requested("restore")
}

/// Runs `agent-registry restore ARGS...` and returns the exit code: 0 with
/// a JSON report on stdout, 1 with the reason on stderr (and nothing
/// written).
pub fn run() -> i32 {
    let args = RestoreArgs::parse_from(crate::config::subcommand_args());
    let fail = |m: String| {
        eprintln!("agent-registry restore: {m}");
        1
    };
    let members = match crate::config::parse_members(&args.initial_cluster) {
        Ok(m) => m,
        Err(e) => return fail(format!("--initial-cluster: {e}")),
    };
    let cluster_id = match args.cluster_id.as_deref().map(str::parse).transpose() {
        Ok(id) => id,
        Err(e) => return fail(format!("--cluster-id: {e}")),
    };
    let plan = RestorePlan {
        snapshot: args.snapshot,
        data_dir: args.data_dir,
        node_id: args.node_id,
        members,
        cluster_id,
        state: StateConfig {
            event_window: args.event_window,
        },
    };
    let started = std::time::Instant::now();
    let report = match restore(&plan) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let mut json = serde_json::json!(report);
    if let Some(fields) = json.as_object_mut() {
        fields.insert(
            "elapsed_ms".into(),
            serde_json::json!(started.elapsed().as_millis() as u64),
        );
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{json:#}").and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => fail(format!("writing the report: {e}")),
    }
}
