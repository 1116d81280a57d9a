//! Online backup and restore, with real processes.
//!
//! - A 3-node cluster holding a fleet of agents is backed up from a
//!   follower while writes and heartbeats run; the backup holds every
//!   write acknowledged before the save began, and writes and heartbeats
//!   went on during it. It is restored into a fresh 3-node cluster: the
//!   same listing and revision, no agent expired by the restore, a new
//!   cluster id; a node of the old cluster put in the new one's place is
//!   refused by it and refuses it.
//! - Damaged, truncated, foreign and future backup files are refused by
//!   `agent-registry restore` (and `registryctl snapshot inspect`) with a
//!   clear error and nothing written; a directory that is not empty is
//!   refused.
//!
//! The fleet has `REGISTRY_TEST_BACKUP_AGENTS` agents (default 20,000, so
//! the normal test run stays within a few minutes on two cores); the
//! figures in docs/operations.md come from a run with 100,000.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use registry_client::types::api::{
    BatchHeartbeatItem, BatchHeartbeatRequest, ListFilter, RegisterRequest,
};
use registry_client::types::backup::{BackupHeader, BACKUP_HEADER_LEN};
use registry_client::types::{AgentStatus, Revision};
use registry_client::{Client, ReadOptions};
use serde_json::Value;

use common::{wait_until, wait_until_for, Cluster};

/// Agents in the fleet backed up.
fn fleet_size() -> usize {
    std::env::var("REGISTRY_TEST_BACKUP_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn agent(id: &str) -> RegisterRequest {
    serde_json::from_value(serde_json::json!({
        "agent_id": id,
        "name": format!("agent {id}"),
        "endpoint": format!("http://{id}.test:9000"),
        "agent_type": "worker",
        "runtime_id": format!("rt-{}", id.len() % 7),
        "capabilities": [{"name": format!("cap-{}", id.len() % 13)}],
        "tags": ["backup-test"],
        // Nothing expires during the test by itself: any expiry is the
        // restore's doing.
        "ttl_seconds": 3600,
        "offline_after_seconds": 7200,
        "deregister_after_seconds": 0,
    }))
    .expect("registration")
}

/// Registers `ids`, 64 at a time, spread over the client's nodes.
async fn register_all(client: &Client, ids: Vec<String>) {
    let n = ids.len();
    let done = futures::stream::iter(ids)
        .map(|id| {
            let client = client.clone();
            async move {
                let req = agent(&id);
                // Retried while no node takes it (an election); refused
                // outright, the test fails.
                wait_until(&format!("a node to take {id}"), || async {
                    match client.register(&req).await {
                        Ok(_) => Ok(()),
                        Err(e) if e.code().is_some_and(|c| c.http_status() < 500) => {
                            panic!("registering {id}: {e}")
                        }
                        Err(e) => Err(e.to_string()),
                    }
                })
                .await;
            }
        })
        .buffer_unordered(64)
        .count()
        .await;
    assert_eq!(done, n);
}

/// Every agent of a node's listing (linearizable), by id, as JSON.
async fn listing(client: &Client) -> BTreeMap<String, Value> {
    let list = client
        .list_all_agents(&ListFilter::default(), ReadOptions::default())
        .await
        .expect("listing");
    list.agents
        .into_iter()
        .map(|a| {
            (
                a.agent_id.to_string(),
                serde_json::to_value(&a).expect("json"),
            )
        })
        .collect()
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Runs `agent-registry restore` and returns its exit status, stdout and
/// stderr.
async fn restore(
    snapshot: &Path,
    data_dir: &Path,
    node: u64,
    initial_cluster: &str,
) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent-registry"))
        .arg("restore")
        .arg("--snapshot")
        .arg(snapshot)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--node-id")
        .arg(node.to_string())
        .arg("--initial-cluster")
        .arg(initial_cluster)
        .env_remove("REGISTRY_DATA_DIR")
        .env_remove("REGISTRY_NODE_ID")
        .env_remove("REGISTRY_INITIAL_CLUSTER")
        .output()
        .await
        .expect("run agent-registry restore");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn initial_cluster(c: &Cluster) -> String {
    c.nodes
        .values()
        .map(|n| format!("{}=127.0.0.1:{}", n.id, n.port))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `registryctl` binary built beside the node's.
fn registryctl() -> PathBuf {
    if let Some(path) = std::env::var_os("REGISTRY_CTL") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_BIN_EXE_agent-registry")).with_file_name("registryctl");
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// `registryctl snapshot inspect FILE`: success and the JSON printed.
fn inspect(file: &Path) -> (bool, Value) {
    let out = std::process::Command::new(registryctl())
        .args(["snapshot", "inspect"])
        .arg(file)
        .output()
        .expect("run registryctl");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "registryctl snapshot inspect printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), json)
}

/// What a load task saw: acknowledged registrations (id, revision, when)
/// and failures.
#[derive(Default)]
struct Ledger {
    acked: Mutex<Vec<(String, Revision, Instant)>>,
    write_errors: AtomicU64,
    beats: AtomicU64,
    beat_errors: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_into_a_new_cluster() {
    let fleet = fleet_size();
    eprintln!("--- start a 3-node cluster and register {fleet} agents");
    let old = Cluster::start(3, &[]).await;
    let all = old.ids();
    let client = old.client(&all);
    let started = Instant::now();
    register_all(&client, (0..fleet).map(|i| format!("base-{i}")).collect()).await;
    eprintln!(
        "registered {fleet} agents in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (leader, _) = old.wait_leader(&all).await;
    let follower = *all.iter().find(|id| **id != leader).expect("a follower");

    eprintln!("--- writes and heartbeats run; save a backup from follower {follower}");
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    let next = Arc::new(AtomicU64::new(0));
    for _ in 0..4 {
        let (client, ledger, stop, next) =
            (client.clone(), ledger.clone(), stop.clone(), next.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let id = format!("load-{}", next.fetch_add(1, Ordering::Relaxed));
                match client.register(&agent(&id)).await {
                    Ok(r) => ledger
                        .acked
                        .lock()
                        .unwrap()
                        .push((id, r.revision, Instant::now())),
                    Err(e) => {
                        eprintln!("write {id} failed: {e}");
                        ledger.write_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    {
        let (client, ledger, stop) = (client.clone(), ledger.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                // 1,000 agents per batch, a different slice each round.
                let from = (round * 1000) % fleet;
                let batch = BatchHeartbeatRequest {
                    heartbeats: (from..(from + 1000).min(fleet))
                        .map(|i| BatchHeartbeatItem {
                            agent_id: format!("base-{i}"),
                            heartbeat: Default::default(),
                        })
                        .collect(),
                };
                match client.heartbeats(&batch).await {
                    Ok(r) => {
                        ledger.beats.fetch_add(r.accepted, Ordering::Relaxed);
                        ledger.beat_errors.fetch_add(r.rejected, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("heartbeat batch failed: {e}");
                        ledger
                            .beat_errors
                            .fetch_add(batch.heartbeats.len() as u64, Ordering::Relaxed);
                    }
                }
                round += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    wait_until("the load to be acknowledged", || async {
        let n = ledger.acked.lock().unwrap().len();
        (n >= 20)
            .then_some(())
            .ok_or(format!("{n} writes acknowledged"))
    })
    .await;
    let pid = old.node(follower).pid().expect("follower runs");
    let rss_before = rss_kib(pid).unwrap_or(0);
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let acked_before = ledger
        .acked
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.1)
        .max()
        .unwrap_or(0);
    let file = old.dir().join("backup.areg");
    let save_start = Instant::now();
    let saved = old
        .client(&[follower])
        .save_snapshot(&file)
        .await
        .expect("save the backup");
    let save_time = save_start.elapsed();
    let save_end = Instant::now();
    sampling.store(false, Ordering::Relaxed);
    let rss_peak = sampler.await.expect("sampler");
    let h = saved.header;
    eprintln!(
        "FIGURE backup of {} agents: {} bytes ({:.1} MiB) in {:.2} s; follower RSS {} MiB before, peak {} MiB during",
        h.agents,
        h.file_len(),
        h.file_len() as f64 / (1 << 20) as f64,
        save_time.as_secs_f64(),
        rss_before >> 10,
        rss_peak >> 10
    );
    assert_eq!(std::fs::metadata(&file).unwrap().len(), h.file_len());
    assert_no_partial_file(old.dir());
    assert!(
        h.revision >= acked_before,
        "the backup (revision {}) holds every write acknowledged before the save (up to {acked_before})",
        h.revision
    );
    assert!(h.agents >= fleet as u64);
    let (ok, inspected) = inspect(&file);
    assert!(ok, "inspect: {inspected}");
    assert_eq!(inspected["revision"], h.revision);
    assert_eq!(inspected["checksum_ok"], true);

    eprintln!("--- the load went on during the save; stop it");
    wait_until("a write acknowledged after the save", || async {
        let last = ledger.acked.lock().unwrap().last().map(|a| a.2);
        last.filter(|t| *t > save_end)
            .map(|_| ())
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    let during_save = ledger
        .acked
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.2 > save_start && a.2 < save_end)
        .count();
    eprintln!(
        "writes acknowledged during the save: {during_save}; heartbeats {} ({} refused)",
        ledger.beats.load(Ordering::Relaxed),
        ledger.beat_errors.load(Ordering::Relaxed)
    );
    assert_eq!(ledger.write_errors.load(Ordering::Relaxed), 0);
    assert_eq!(ledger.beat_errors.load(Ordering::Relaxed), 0);
    assert!(ledger.beats.load(Ordering::Relaxed) > 0);

    eprintln!("--- the old cluster's listing at the backup's revision");
    // Writes after the backup's revision are left out; every other record
    // is as the backup holds it.
    let after: Vec<String> = ledger
        .acked
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.1 > h.revision)
        .map(|a| a.0.clone())
        .collect();
    let mut expected = listing(&old.client(&[leader])).await;
    for id in &after {
        expected.remove(id);
    }
    assert_eq!(expected.len() as u64, h.agents);

    eprintln!("--- restore into a fresh 3-node cluster (same cluster secret)");
    let secret = old.secret_path.display().to_string();
    let mut new = Cluster::new(3, &["--cluster-secret-file", &secret]);
    let spec = initial_cluster(&new);
    let mut cluster_ids = Vec::new();
    for id in new.ids() {
        let started = Instant::now();
        let (ok, out, err) = restore(&file, &new.node(id).data_dir, id, &spec).await;
        assert!(ok, "restore of node {id}: {err}");
        eprintln!(
            "FIGURE restore of node {id}: {:.2} s",
            started.elapsed().as_secs_f64()
        );
        let report: Value = serde_json::from_str(&out).expect("restore report");
        assert_eq!(report["revision"], h.revision);
        assert_eq!(report["agents"], h.agents);
        cluster_ids.push(report["cluster_id"].as_str().unwrap().to_string());
    }
    let old_cluster = old.info(leader).await.unwrap().cluster_id.unwrap();
    assert!(cluster_ids.iter().all(|c| *c == cluster_ids[0]));
    assert_ne!(cluster_ids[0], old_cluster, "a new cluster id");
    let started = Instant::now();
    for id in new.ids() {
        new.start_node(id);
    }
    for id in new.ids() {
        new.wait_ready(id).await;
    }
    let (new_leader, _) = new.wait_leader(&new.ids()).await;
    eprintln!(
        "FIGURE restored cluster ready (3 nodes, leader {new_leader}) {:.2} s after start",
        started.elapsed().as_secs_f64()
    );

    eprintln!("--- same revision and listing on every node; nothing expired");
    for id in new.ids() {
        let info = new.info(id).await.unwrap();
        assert_eq!(info.cluster_id.as_deref(), Some(cluster_ids[0].as_str()));
        assert_eq!(info.revision, h.revision, "node {id}");
        let got = listing(&new.client(&[id])).await;
        assert_eq!(got.len(), expected.len(), "node {id}");
        for (agent, record) in &expected {
            let mine = got.get(agent);
            if mine != Some(record) {
                // Beats the old cluster checkpointed after the backup
                // move last_heartbeat only.
                let strip = |v: &Value| {
                    let mut v = v.clone();
                    v.as_object_mut().unwrap().remove("last_heartbeat");
                    v
                };
                assert_eq!(
                    mine.map(strip),
                    Some(strip(record)),
                    "node {id}: agent {agent}"
                );
            }
        }
    }
    // The new leader's deadlines start after its grace: let it sweep past
    // the grace, then check that no agent went unhealthy, offline or away.
    let sweeps = |body: &str| -> u64 {
        body.lines()
            .find(|l| {
                l.starts_with("registry_liveness_sweep_duration_seconds_count")
                    && l.contains("plan")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    let metrics_url = format!("{}/metrics", new.url(new_leader));
    let first = sweeps(
        &new.http
            .get(&metrics_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    wait_until("the new leader to sweep three times", || async {
        let body = new
            .http
            .get(&metrics_url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let n = sweeps(&body);
        (n >= first + 3).then_some(()).ok_or(format!("{n} sweeps"))
    })
    .await;
    let stats = new.client(&[new_leader]).stats().await.unwrap();
    let stats = serde_json::to_value(&stats).unwrap();
    eprintln!("restored cluster stats: {stats}");
    let now = listing(&new.client(&[new_leader])).await;
    assert_eq!(now.len(), expected.len(), "no agent removed");
    let not_active: Vec<&String> = now
        .iter()
        .filter(|(_, r)| r["status"] != serde_json::json!(AgentStatus::Active))
        .map(|(id, _)| id)
        .collect();
    assert!(
        not_active.is_empty(),
        "{} agents changed status: {:?}",
        not_active.len(),
        &not_active[..not_active.len().min(5)]
    );

    eprintln!("--- the new cluster takes writes");
    let client_new = new.client(&new.ids());
    client_new
        .register(&agent("after-restore"))
        .await
        .expect("a write on the new cluster");

    eprintln!("--- a node of the old cluster put in the new one's place is refused");
    // Node 3 of the new cluster is stopped; node 3 of the old cluster
    // (its data directory, the same secret) takes its address.
    let mut old = old;
    old.terminate(3).await;
    new.terminate(3).await;
    new.nodes.get_mut(&3).unwrap().data_dir = old.node(3).data_dir.clone();
    new.start_node(3);
    wait_until("the old node to serve", || async {
        new.info(3).await.map(|_| ())
    })
    .await;
    client_new
        .register(&agent("after-swap"))
        .await
        .expect("the new cluster goes on with two nodes");
    // The old node neither adopts the new cluster nor takes its entries;
    // the new cluster's leader is refused by it.
    wait_until_for(
        "the new leader's appends to be refused by the old node",
        Duration::from_secs(30),
        || async {
            let log = new.node(3).log_since_last_start();
            log.contains("belongs to cluster")
                .then_some(())
                .ok_or_else(|| "not in the old node's log yet".to_string())
        },
    )
    .await;
    let info3 = new.info(3).await.unwrap();
    assert_eq!(info3.cluster_id.as_deref(), Some(old_cluster.as_str()));
    let stale = new
        .client(&[3])
        .get_agent(
            "after-swap",
            ReadOptions {
                consistency: registry_client::Consistency::Stale,
                min_revision: None,
            },
        )
        .await;
    assert!(stale.is_err(), "the old node has no new-cluster write");
    drop(new);
    drop(old);
}

/// A small backup to damage.
async fn small_backup(c: &Cluster) -> (PathBuf, BackupHeader, Vec<u8>) {
    let client = c.client(&c.ids());
    register_all(&client, (0..200).map(|i| format!("small-{i}")).collect()).await;
    let file = c.dir().join("small.areg");
    let saved = client.save_snapshot(&file).await.expect("save");
    assert_no_partial_file(c.dir());
    // A backup holds the whole registry, token hashes included.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a saved backup is readable by its owner only");
    let bytes = std::fs::read(&file).unwrap();
    (file, saved.header, bytes)
}

/// Nothing `*.partial` (a save's temporary file) is left in `dir`.
fn assert_no_partial_file(dir: &Path) {
    let partial: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".partial"))
        .collect();
    assert!(partial.is_empty(), "partial files left: {partial:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_truncated_foreign_and_future_backups_are_refused_with_nothing_written() {
    let c = Cluster::start(1, &[]).await;
    let (good, header, bytes) = small_backup(&c).await;
    let (ok, json) = inspect(&good);
    assert!(ok, "{json}");
    assert_eq!(json["agents"], 200);

    let dir = c.dir().join("restores");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3";
    let mut future = bytes.clone();
    future[8..10].copy_from_slice(&2u16.to_le_bytes());
    let crc = crc32c(&future[..92]);
    future[92..96].copy_from_slice(&crc.to_le_bytes());
    let mut wrong_magic = bytes.clone();
    wrong_magic[..8].copy_from_slice(b"NOTABKUP");
    let mut flipped = bytes.clone();
    let mid = BACKUP_HEADER_LEN + (bytes.len() - BACKUP_HEADER_LEN) / 2;
    flipped[mid] ^= 0x01;
    let mut header_flipped = bytes.clone();
    header_flipped[20] ^= 0x80;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("flipped", flipped, "checksum mismatch"),
        ("header-flipped", header_flipped, "damaged header"),
        (
            "truncated",
            bytes[..bytes.len() - 1000].to_vec(),
            "truncated",
        ),
        (
            "header-only",
            bytes[..BACKUP_HEADER_LEN].to_vec(),
            "truncated",
        ),
        ("cut-header", bytes[..40].to_vec(), "truncated"),
        ("wrong-magic", wrong_magic, "not an agent-registry backup"),
        ("future", future, "header version 2 is not supported"),
        ("empty", Vec::new(), "not an agent-registry backup"),
        (
            "trailing",
            [bytes.clone(), vec![0]].concat(),
            "trailing bytes",
        ),
    ];
    for (name, content, says) in cases {
        eprintln!("--- {name}: refused, nothing written");
        let file = dir.join(format!("{name}.areg"));
        std::fs::write(&file, &content).unwrap();
        let target = dir.join(format!("{name}-data"));
        let (ok, _, err) = restore(&file, &target, 1, spec).await;
        assert!(!ok, "{name} was restored");
        assert!(err.contains(says), "{name}: {err}");
        assert!(!target.exists(), "{name}: {} was created", target.display());
        let (ok, json) = inspect(&file);
        assert!(!ok, "{name}: inspect passed: {json}");
        assert_eq!(json["checksum_ok"], false, "{name}");
        assert!(
            json["error"].as_str().unwrap().contains(says),
            "{name}: {json}"
        );
    }
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".areg"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");

    eprintln!("--- a data directory that is not empty is refused and left alone");
    let busy = dir.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep"), b"mine").unwrap();
    let (ok, _, err) = restore(&good, &busy, 1, spec).await;
    assert!(!ok);
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(std::fs::read(busy.join("keep")).unwrap(), b"mine");
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);

    eprintln!("--- a node outside --initial-cluster is refused");
    let (ok, _, err) = restore(&good, &dir.join("outsider"), 9, spec).await;
    assert!(!ok);
    assert!(err.contains("not in --initial-cluster"), "{err}");
    assert!(!dir.join("outsider").exists());

    eprintln!("--- the good file restores, into an empty directory too");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, out, err) = restore(&good, &empty, 2, spec).await;
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["revision"], header.revision);
    assert!(empty.join("snapshot.bin").exists());
    assert!(empty.join("cluster-id").exists());
    let other = dir.join("other");
    let (ok, out2, err) = restore(&good, &other, 3, spec).await;
    assert!(ok, "{err}");
    let report2: Value = serde_json::from_str(&out2).unwrap();
    assert_eq!(
        report["cluster_id"], report2["cluster_id"],
        "every node of the new cluster derives the same id"
    );
    assert_ne!(
        report["cluster_id"].as_str(),
        header.cluster_id.map(|u| u.to_string()).as_deref()
    );
}

fn crc32c(bytes: &[u8]) -> u32 {
    // CRC32C (Castagnoli), bitwise: the test needs it for one header.
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
