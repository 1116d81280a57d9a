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
//! Mounting needs root (CAP_SYS_ADMIN) and tmpfs in the kernel. A run
//! without them says so and skips, outside CI; in CI (`CI=true`, run as
//! root) it fails. The mount is mount(2) itself (no `mount` binary to find
//! or wait for), and the test checks it got a tmpfs of the size it asked
//! before it fills anything, so the ballast never lands on the real disk.
//! Every wait is bounded (`wait_until`, the HTTP client's timeout; the
//! ballast by the tmpfs's size).

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use common::{send, wait_until, Cluster};
use registry_client::types::NodeId;
use registry_raft::disk::available_bytes;
use reqwest::Method;
use serde_json::json;

const MIB: u64 = 1 << 20;

/// A tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs(PathBuf);

/// Why no tmpfs was mounted.
enum MountError {
    /// This run may not mount a tmpfs: not root (no CAP_SYS_ADMIN), or no
    /// tmpfs in the kernel.
    NotHere(String),
    /// Anything else: the test fails.
    Failed(String),
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("a path without NUL")
}

impl Tmpfs {
    fn mount(dir: &Path, size_mb: u64) -> Result<Tmpfs, MountError> {
        std::fs::create_dir_all(dir).expect("create the mount point");
        let target = c_path(dir);
        let options = CString::new(format!("size={size_mb}m")).expect("no NUL");
        // SAFETY: every pointer is a NUL-terminated string that outlives
        // the call; mount(2) reads them and keeps none.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            let why = format!("mount tmpfs on {}: {e}", dir.display());
            return Err(match e.raw_os_error() {
                Some(libc::EPERM | libc::EACCES | libc::ENODEV) => MountError::NotHere(why),
                _ => MountError::Failed(why),
            });
        }
        let mounted = Tmpfs(dir.to_path_buf());
        // SAFETY: statfs fills the zeroed struct it is given; the path is
        // a NUL-terminated string.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statfs(target.as_ptr(), &mut st) };
        let size = st.f_blocks as u64 * st.f_bsize as u64;
        if rc != 0 || st.f_type != libc::TMPFS_MAGIC || size != size_mb * MIB {
            return Err(MountError::Failed(format!(
                "{} is not the tmpfs of {size_mb} MiB just mounted (statfs: rc {rc}, type {:#x}, {size} bytes)",
                dir.display(),
                st.f_type
            )));
        }
        Ok(mounted)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Detached (lazy): the node may still hold files open while it is
        // killed.
        // SAFETY: a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c_path(&self.0).as_ptr(), libc::MNT_DETACH) };
    }
}

/// A cluster of three whose data directories are tmpfs of `size_mb` each;
/// `None` when this run may not mount them (see the module docs): the test
/// skips, saying why, or fails in CI.
async fn start_on_tmpfs(test: &str, size_mb: u64, args: &[&str]) -> Option<(Cluster, Vec<Tmpfs>)> {
    let mut c = Cluster::new(3, args);
    let mut mounts = Vec::new();
    for id in c.ids() {
        match Tmpfs::mount(&c.node(id).data_dir, size_mb) {
            Ok(m) => mounts.push(m),
            Err(MountError::NotHere(why)) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{test} needs a tmpfs of its own, and CI runs as root: {why}");
                }
                eprintln!(
                    "SKIPPED {test}: it mounts a tmpfs, which this run may not (it needs root with CAP_SYS_ADMIN): {why}"
                );
                return None;
            }
            Err(MountError::Failed(why)) => panic!("{why}"),
        }
    }
    for id in c.ids() {
        c.start_node(id);
    }
    for id in c.ids() {
        c.wait_ready(id).await;
    }
    Some((c, mounts))
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
    let test = "a_leader_below_the_floor_refuses_writes";
    let Some((c, _mounts)) = start_on_tmpfs(test, 160, &["--min-free-disk-mb", "48"]).await else {
        return;
    };
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
    // No floor: the follower's own writes run into the full disk. Small
    // snapshots, so the leader compacts its log meanwhile and the follower
    // catches up by snapshot.
    let test = "a_follower_whose_disk_fills_up_stays_up";
    let args = ["--min-free-disk-mb", "0", "--snapshot-logs", "10"];
    let Some((c, _mounts)) = start_on_tmpfs(test, 160, &args).await else {
        return;
    };
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
