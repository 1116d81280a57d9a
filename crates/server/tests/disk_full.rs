//! A full disk degrades instead of aborting: each node's data directory is
//! a small tmpfs of its own, which the test fills for real.
//!
//! - Below the floor (`--min-free-disk-mb`): writes get 507 `no_space`,
//!   reads and heartbeats are served, `/v1/cluster` and the metrics show
//!   it, and writes resume by themselves once space is freed.
//! - With no floor, a disk filled to the last byte: the store's writes fail
//!   with ENOSPC and wait instead of failing; the node stays up and catches
//!   up once space is freed, with every acknowledged write there.
//!
//! Mounting needs root. Outside CI a test run without it says so and skips;
//! in CI (`CI=true`) it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{send, wait_until, Cluster};
use registry_client::types::NodeId;
use registry_raft::disk::available_bytes;
use reqwest::Method;
use serde_json::json;

const MIB: u64 = 1 << 20;

/// A tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size_mb: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("create the mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount tmpfs on {}: {status}",
            dir.display()
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the node may still hold files open while it is killed.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Whether this run may mount file systems; panics in CI when it may not.
fn may_mount(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} mounts a tmpfs and needs root; CI runs as root");
    }
    eprintln!("SKIPPED {test}: mounting a tmpfs needs root");
    false
}

/// A cluster of three whose data directories are tmpfs of `size_mb` each.
async fn start_on_tmpfs(size_mb: u64, args: &[&str]) -> (Cluster, Vec<Tmpfs>) {
    let mut c = Cluster::new(3, args);
    let mounts = c
        .ids()
        .iter()
        .map(|id| Tmpfs::mount(&c.node(*id).data_dir, size_mb))
        .collect();
    for id in c.ids() {
        c.start_node(id);
    }
    for id in c.ids() {
        c.wait_ready(id).await;
    }
    (c, mounts)
}

/// Writes a ballast file into `dir` until at most `leave` bytes are free
/// (or the disk is full); returns its path.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).expect("create the ballast");
    let block = vec![0xa5u8; MIB as usize];
    // Bounded: the tmpfs is a few hundred MiB.
    for _ in 0..4096 {
        let free = available_bytes(dir).expect("statvfs");
        if free <= leave {
            break;
        }
        let n = (free - leave).min(MIB) as usize;
        if let Err(e) = f.write_all(&block[..n]) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "ballast: {e}");
            break;
        }
    }
    let _ = f.sync_all();
    path
}

async fn register(c: &Cluster, node: NodeId, id: &str) -> common::Reply {
    let body =
        json!({"agent_id": id, "name": id, "endpoint": format!("http://10.1.0.1:9000/{id}")});
    send(
        &c.http,
        Method::POST,
        &format!("{}/v1/agents", c.url(node)),
        Some(body.to_string().into_bytes()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The agents node `node` lists (a stale read: what it applied).
async fn agents_on(c: &Cluster, node: NodeId) -> Result<Vec<String>, String> {
    let url = format!("{}/v1/agents?consistency=stale&limit=1000", c.url(node));
    let r = send(&c.http, Method::GET, &url, None).await?;
    if r.status != 200 {
        return Err(format!("node {node}: HTTP {}: {}", r.status, r.text));
    }
    let mut ids: Vec<String> = r.json()["agents"]
        .as_array()
        .ok_or("no agents array")?
        .iter()
        .filter_map(|a| a["agent_id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Waits until node `node` reports `no_space` as `short`.
async fn wait_no_space(c: &Cluster, node: NodeId, short: bool, what: &str) {
    wait_until(what, || async {
        let info = c.info(node).await?;
        if info.disk.no_space == short {
            Ok(())
        } else {
            Err(format!("{:?}", info.disk))
        }
    })
    .await;
}

/// Waits until node `node` lists exactly the `acknowledged` agents (sorted).
async fn wait_holds(c: &Cluster, node: NodeId, acknowledged: &[String], what: &str) {
    wait_until(what, || async {
        let held = agents_on(c, node).await?;
        if held == acknowledged {
            Ok(())
        } else {
            Err(format!(
                "{} of {} agents: {held:?}",
                held.len(),
                acknowledged.len()
            ))
        }
    })
    .await;
}

fn assert_never_restarted(c: &Cluster, pids: &[(NodeId, Option<u32>)]) {
    for (id, pid) in pids {
        let node = c.node(*id);
        assert!(node.is_running(), "node {id} exited");
        assert_eq!(node.pid(), *pid, "node {id} was restarted");
        let log = node.log_since_last_start();
        assert!(!log.contains("panicked"), "node {id} panicked:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_below_the_floor_refuses_writes_serves_reads_and_heartbeats_and_recovers() {
    if !may_mount("a_leader_below_the_floor_refuses_writes") {
        return;
    }
    let (c, _mounts) = start_on_tmpfs(160, &["--min-free-disk-mb", "48"]).await;
    let ids = c.ids();
    let (leader, _) = c.wait_leader(&ids).await;
    let follower = *ids.iter().find(|id| **id != leader).unwrap();
    let pids: Vec<_> = ids.iter().map(|id| (*id, c.node(*id).pid())).collect();
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let id = format!("agent-{i:02}");
        let r = register(&c, follower, &id).await;
        assert_eq!(r.status, 201, "{}", r.text);
        acknowledged.push(id);
    }
    let info = c.info(leader).await.unwrap();
    assert!(!info.disk.no_space, "{:?}", info.disk);
    assert_eq!(info.disk.min_free_bytes, 48 * MIB);
    assert!(info.disk.free_bytes > 48 * MIB, "{:?}", info.disk);

    // Below the floor.
    let ballast = fill(&c.node(leader).data_dir, 24 * MIB);
    wait_no_space(&c, leader, true, "the leader to report no_space").await;
    assert_eq!(c.metric(leader, "registry_disk_no_space").await, 1);

    // Writes are refused, sent to the leader or through a follower, and
    // change nothing.
    for node in [leader, follower] {
        let r = register(&c, node, "refused").await;
        assert_eq!(r.status, 507, "node {node}: {}", r.text);
        let body = r.json();
        assert_eq!(body["error"]["code"], "no_space", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("--min-free-disk-mb"), "{message}");
        assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    }
    assert!(
        c.metric(leader, "registry_writes_refused_no_space_total")
            .await
            >= 2
    );

    // Reads (linearizable, so the leader answers a read index) and
    // heartbeats are served on every node.
    for node in &ids {
        let url = format!("{}/v1/agents?limit=1000", c.url(*node));
        let r = send(&c.http, Method::GET, &url, None).await.unwrap();
        assert_eq!(r.status, 200, "node {node}: {}", r.text);
        assert_eq!(r.json()["agents"].as_array().unwrap().len(), 10);
        let url = format!("{}/v1/agents/agent-00/heartbeat", c.url(*node));
        let r = send(&c.http, Method::POST, &url, Some(b"{}".to_vec()))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "node {node}: {}", r.text);
    }
    let url = format!("{}/v1/agents/refused", c.url(follower));
    let r = send(&c.http, Method::GET, &url, None).await.unwrap();
    assert_eq!(r.status, 404, "{}", r.text);

    // Space freed: writes resume by themselves.
    std::fs::remove_file(&ballast).unwrap();
    wait_until("writes to be accepted again", || async {
        let r = register(&c, follower, "after").await;
        match r.status {
            200 | 201 => Ok(()),
            s => Err(format!("HTTP {s}: {}", r.text)),
        }
    })
    .await;
    acknowledged.push("after".to_string());
    acknowledged.sort();
    assert!(!c.info(leader).await.unwrap().disk.no_space);
    for node in &ids {
        let what = format!("node {node} to hold every acknowledged agent");
        wait_holds(&c, *node, &acknowledged, &what).await;
    }
    assert_never_restarted(&c, &pids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_disk_fills_up_stays_up_and_catches_up() {
    if !may_mount("a_follower_whose_disk_fills_up_stays_up") {
        return;
    }
    // No floor: the follower's own writes run into the full disk. Small
    // snapshots, so the leader compacts its log meanwhile and the follower
    // catches up by snapshot.
    let (c, _mounts) =
        start_on_tmpfs(160, &["--min-free-disk-mb", "0", "--snapshot-logs", "10"]).await;
    let ids = c.ids();
    let (leader, _) = c.wait_leader(&ids).await;
    let follower = *ids.iter().find(|id| **id != leader).unwrap();
    let pids: Vec<_> = ids.iter().map(|id| (*id, c.node(*id).pid())).collect();

    let ballast = fill(&c.node(follower).data_dir, 0);
    let mut acknowledged = Vec::new();
    for i in 0..40 {
        let id = format!("agent-{i:02}");
        let r = register(&c, leader, &id).await;
        assert_eq!(r.status, 201, "{}", r.text);
        acknowledged.push(id);
    }
    wait_no_space(&c, follower, true, "the full follower to report no_space").await;
    assert!(
        c.metric(follower, "registry_disk_no_space_errors_total")
            .await
            >= 1
    );
    // It still answers (what it has).
    agents_on(&c, follower).await.unwrap();

    std::fs::remove_file(&ballast).unwrap();
    let what = format!("node {follower} to catch up after space was freed");
    wait_holds(&c, follower, &acknowledged, &what).await;
    wait_no_space(&c, follower, false, "the follower to leave no_space").await;
    // And it takes new entries again.
    let r = register(&c, leader, "after").await;
    assert_eq!(r.status, 201, "{}", r.text);
    acknowledged.push("after".to_string());
    acknowledged.sort();
    wait_holds(
        &c,
        follower,
        &acknowledged,
        "the follower to apply the next write",
    )
    .await;
    assert_never_restarted(&c, &pids);
}
