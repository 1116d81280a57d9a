//! Integrity at rest, on a real node: a node whose data directory is
//! damaged (a flipped byte in the WAL or in `snapshot.bin`, a truncated
//! snapshot), foreign (another cluster's `snapshot.bin`) or contradicts
//! itself (the log wiped, the vote and committed index kept) refuses to
//! start, exits non-zero and names the file and the problem; the same
//! directory untouched restarts with every agent it acknowledged.
//! `agent-registry inspect` reports on such a directory without changing it.
//!
//! Each case starts from a copy of one directory, taken after a `kill -9`
//! (so the latest entries are still only in RocksDB's WAL, not in tables).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{send, wait_until, Cluster};
use reqwest::Method;
use serde_json::{json, Value};

/// `--snapshot-logs`: small enough that a snapshot is taken within the test.
const SNAPSHOT_LOGS: u64 = 30;

/// Agents registered after the snapshot: fewer than [`SNAPSHOT_LOGS`], so
/// they stay in the log only.
const AFTER_SNAPSHOT: usize = 5;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let entry = entry.expect("dir entry");
            if entry.file_type().expect("file type").is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(entry.path(), std::fs::read(entry.path()).expect("read"));
            }
        }
    }
    out
}

/// Gives the node's data directory a cluster id before its first start, as
/// the bootstrapping member does.
fn seed_cluster_id(data_dir: &Path) -> String {
    std::fs::create_dir_all(data_dir).expect("data dir");
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::write(data_dir.join("cluster-id"), format!("{id}\n")).expect("cluster-id");
    id
}

async fn register(c: &Cluster, id: &str) {
    let body = json!({"agent_id": id, "name": id, "endpoint": format!("http://{id}.test:1"),
                      "capabilities": [{"name": "summarize"}],
                      "ttl_seconds": 3600, "offline_after_seconds": 7200});
    let r = send(
        &c.http,
        Method::POST,
        &format!("{}/v1/agents", c.url(1)),
        Some(body.to_string().into_bytes()),
    )
    .await
    .expect("the node answers");
    assert_eq!(r.status, 201, "registering {id}: {}", r.text);
}

/// Registers agents `prefix-0`, `prefix-1`, ... until the node has taken a
/// snapshot, then `after` more; returns every id registered.
async fn fill(c: &Cluster, prefix: &str, after: usize) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let id = format!("{prefix}-{}", ids.len());
        register(c, &id).await;
        ids.push(id);
        if c.info(1).await.expect("info").snapshot_index.is_some() {
            break;
        }
        assert!(
            ids.len() < 10 * SNAPSHOT_LOGS as usize,
            "no snapshot after {} registrations",
            ids.len()
        );
    }
    for _ in 0..after {
        let id = format!("{prefix}-{}", ids.len());
        register(c, &id).await;
        ids.push(id);
    }
    ids
}

async fn agent_ids(c: &Cluster) -> Vec<String> {
    let r = send(
        &c.http,
        Method::GET,
        &format!("{}/v1/agents?limit=1000", c.url(1)),
        None,
    )
    .await
    .expect("the node answers");
    assert_eq!(r.status, 200, "{}", r.text);
    let mut ids: Vec<String> = r.json()["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| a["agent_id"].as_str().expect("agent_id").to_string())
        .collect();
    ids.sort();
    ids
}

/// `agent-registry inspect --data-dir DIR [--entry N]`: its JSON report.
fn inspect(dir: &Path, entry: Option<u64>) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-registry"));
    cmd.arg("inspect").arg("--data-dir").arg(dir);
    if let Some(i) = entry {
        cmd.arg("--entry").arg(i.to_string());
    }
    let out = cmd.output().expect("run inspect");
    assert!(
        out.status.success(),
        "inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inspect prints JSON")
}

/// The WAL file holding the latest writes (the largest `*.log` under
/// `raft/`).
fn wal_file(data_dir: &Path) -> PathBuf {
    std::fs::read_dir(data_dir.join("raft"))
        .expect("raft dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max_by_key(|p| std::fs::metadata(p).expect("metadata").len())
        .expect("a WAL file")
}

/// Flips one byte inside the payload of the WAL record nearest the middle
/// of the file: RocksDB's log is 32 KiB blocks of records, each a 7-byte
/// header (CRC32C, length, type) and its payload.
fn flip_wal_byte(path: &Path) {
    const BLOCK: usize = 32 * 1024;
    const HEADER: usize = 7;
    let mut bytes = std::fs::read(path).expect("read WAL");
    let mut payloads = Vec::new();
    let mut pos = 0;
    while pos + HEADER <= bytes.len() {
        let left = BLOCK - pos % BLOCK;
        if left < HEADER {
            pos += left; // the block's zero trailer
            continue;
        }
        let len = u16::from_le_bytes([bytes[pos + 4], bytes[pos + 5]]) as usize;
        if len == 0 && bytes[pos + 6] == 0 {
            break; // preallocated, never written
        }
        payloads.push((pos + HEADER, len));
        pos += HEADER + len;
    }
    let middle = bytes.len() / 2;
    let (start, len) = payloads
        .into_iter()
        .filter(|(_, len)| *len > 0)
        .min_by_key(|(start, _)| start.abs_diff(middle))
        .expect("a WAL record");
    bytes[start + len / 2] ^= 0x20;
    std::fs::write(path, bytes).expect("write WAL");
}

/// Starts node 1 on a copy of `pristine` damaged by `damage`, waits for it
/// to exit by itself, and returns what it logged.
async fn refused_start(c: &mut Cluster, pristine: &Path, damage: impl FnOnce(&Path)) -> String {
    let dir = c.node(1).data_dir.clone();
    std::fs::remove_dir_all(&dir).expect("remove the data dir");
    copy_dir(pristine, &dir);
    damage(&dir);
    c.start_node(1);
    let status = c.wait_exit(1).await;
    let log = c.node(1).log_since_last_start();
    assert!(
        !status.success(),
        "node started on a damaged directory ({status}); its log:\n{log}"
    );
    log
}

fn assert_names(log: &str, needles: &[&str]) {
    for n in needles {
        assert!(
            log.contains(n),
            "the node's log does not name {n:?}:\n{log}"
        );
    }
    assert!(
        log.contains("move the data directory aside"),
        "the node's log does not say what to do:\n{log}"
    );
}

#[tokio::test]
async fn a_node_refuses_damaged_or_foreign_files_and_says_which() {
    let args = ["--snapshot-logs", "30"];
    assert_eq!(args[1], SNAPSHOT_LOGS.to_string());

    eprintln!("--- another cluster, with a snapshot of its own");
    let mut theirs = Cluster::new(1, &args);
    let their_id = seed_cluster_id(&theirs.node(1).data_dir);
    theirs.start_node(1);
    theirs.wait_ready(1).await;
    fill(&theirs, "theirs", 0).await;
    theirs.terminate(1).await;
    let their_snapshot = theirs.node(1).data_dir.join("snapshot.bin");

    eprintln!("--- our node: a snapshot, {AFTER_SNAPSHOT} agents after it, then kill -9");
    let mut c = Cluster::new(1, &args);
    let our_id = seed_cluster_id(&c.node(1).data_dir);
    c.start_node(1);
    c.wait_ready(1).await;
    let mut ids = fill(&c, "ours", AFTER_SNAPSHOT).await;
    ids.sort();
    assert_eq!(agent_ids(&c).await, ids);
    c.kill(1);
    let kept = tempfile::tempdir().expect("temp dir");
    let pristine = kept.path().join("data");
    copy_dir(&c.node(1).data_dir, &pristine);

    eprintln!("--- inspect reports the directory and changes nothing in it");
    let before = contents(&pristine);
    let report = inspect(&pristine, None);
    assert_eq!(contents(&pristine), before, "inspect changed the directory");
    assert_eq!(report["node_id"], 1);
    assert_eq!(report["cluster_id"], our_id.as_str());
    assert_eq!(report["problems"], json!([]));
    let snapshot = &report["snapshot"];
    assert_eq!(snapshot["format"], "header v1");
    assert_eq!(snapshot["checksum_ok"], true);
    assert_eq!(snapshot["data_checksum_ok"], true);
    assert_eq!(snapshot["cluster_id"], our_id.as_str());
    let snapshot_index = snapshot["last_log_id"]["index"]
        .as_u64()
        .expect("snapshot index");
    let committed = report["committed"]["index"]
        .as_u64()
        .expect("committed index");
    let last = report["last_log_index"].as_u64().expect("last log index");
    assert!(
        report["vote"]["leader_id"]["term"].as_u64() >= Some(1),
        "{report}"
    );
    assert!(
        committed > snapshot_index && last >= committed,
        "the agents after the snapshot are committed in the log: {report}"
    );
    let entry = inspect(&pristine, Some(last))["entry"].clone();
    assert_eq!(entry["log_id"]["index"], last, "{entry}");
    assert!(
        entry["payload"]["Normal"].is_object(),
        "the last entry is a command: {entry}"
    );
    assert_eq!(inspect(&pristine, Some(last + 100))["entry"], Value::Null);

    eprintln!("--- a flipped byte in the WAL");
    let log = refused_start(&mut c, &pristine, |d| flip_wal_byte(&wal_file(d))).await;
    assert_names(
        &log,
        &["cannot open the Raft database", "/raft", "Corruption"],
    );

    eprintln!("--- a flipped byte in snapshot.bin");
    let log = refused_start(&mut c, &pristine, |d| {
        let path = d.join("snapshot.bin");
        let mut bytes = std::fs::read(&path).expect("read");
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&path, bytes).expect("write");
    })
    .await;
    assert_names(&log, &["snapshot.bin", "checksum mismatch"]);

    eprintln!("--- a truncated snapshot.bin");
    let log = refused_start(&mut c, &pristine, |d| {
        let path = d.join("snapshot.bin");
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write");
    })
    .await;
    assert_names(&log, &["snapshot.bin", "truncated"]);

    eprintln!("--- another cluster's snapshot.bin");
    let log = refused_start(&mut c, &pristine, |d| {
        std::fs::copy(&their_snapshot, d.join("snapshot.bin")).expect("copy");
    })
    .await;
    assert_names(
        &log,
        &[
            "snapshot.bin",
            &format!("belongs to cluster {their_id}"),
            &format!("to cluster {our_id}"),
        ],
    );

    eprintln!("--- the log wiped, the vote and committed index kept");
    let log = refused_start(&mut c, &pristine, |d| {
        let db = rocksdb::DB::open_cf(
            &rocksdb::Options::default(),
            d.join("raft"),
            ["log", "meta"],
        )
        .expect("open the Raft database");
        let cf = db.cf_handle("log").expect("log column family");
        db.delete_range_cf(cf, 0u64.to_be_bytes(), u64::MAX.to_be_bytes())
            .expect("wipe the log");
        db.flush_wal(true).expect("sync");
    })
    .await;
    assert_names(
        &log,
        &[
            &format!("the committed index {committed} is in neither the Raft log"),
            "the log was wiped or lost",
        ],
    );

    eprintln!("--- control: the untouched directory restarts with every agent");
    std::fs::remove_dir_all(&c.node(1).data_dir).expect("remove the data dir");
    copy_dir(&pristine, &c.node(1).data_dir);
    c.start_node(1);
    c.wait_ready(1).await;
    let all = ids.clone();
    wait_until("every agent back after the restart", || async {
        let now = agent_ids(&c).await;
        if now == all {
            Ok(())
        } else {
            Err(format!("{} of {} agents", now.len(), all.len()))
        }
    })
    .await;
}
