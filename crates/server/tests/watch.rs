//! The change stream through the client, on a real three-node cluster:
//!
//! - a watcher on a follower while a writer goes through the other nodes;
//!   the follower is SIGKILLed mid-stream and restarted later. The watcher
//!   must fail over, resume after its last event and, at the end, hold
//!   exactly the event list every node serves (identical on all of them):
//!   strictly increasing, no gap, no duplicate, every write's event in it;
//! - a resume below a small `--event-window` is refused as compacted: 410
//!   `revision_compacted` with the current revision over raw HTTP, and
//!   `WatchError::Compacted` through the client, never a silent gap;
//! - the `registryctl` binary's `discover` and `select` against the cluster.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use futures::StreamExt;
use registry_client::types::api::RegisterRequest;
use registry_client::types::{AgentStatus, Event, EventKind, NodeId, Revision};
use registry_client::{Client, WatchError, WatchOptions};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use common::{send, wait_until, Cluster};

/// Writes per phase of the writer (before, during and after the follower's
/// downtime). Each registration, status change or deletion is one event or
/// more.
const WRITES_PER_PHASE: usize = 12;

fn agent(id: &str, description: &str, capability: &str, health: f64, load: f64) -> RegisterRequest {
    serde_json::from_value(json!({
        "agent_id": id,
        "name": format!("agent {id}"),
        "endpoint": format!("http://{id}.agents.test:9000"),
        "description": description,
        "runtime_id": "pod-watch",
        "capabilities": [{"name": capability, "description": "does it", "tags": ["w"]}],
        "health_score": health,
        "load_factor": load,
        // Long leases: no agent changes status on its own during the test.
        "ttl_seconds": 3600,
        "offline_after_seconds": 7200,
        "deregister_after_seconds": 0,
    }))
    .expect("registration")
}

/// One acknowledged write and the event it must have produced.
#[derive(Debug)]
struct Write {
    agent_id: String,
    /// The kind, when the write decides it alone.
    kind: Option<EventKind>,
    /// The revision the answer reported for the change.
    revision: Revision,
}

/// Runs one writer phase through `client`: register, re-register, suspend
/// and delete agents in turn.
async fn write_phase(client: &Client, phase: usize) -> Vec<Write> {
    let mut done = Vec::new();
    for i in 0..WRITES_PER_PHASE {
        let id = format!("w{phase}-{}", i / 4);
        let write = match i % 4 {
            0 => {
                let r = client
                    .register(&agent(&id, "first", "watching", 0.9, 0.1))
                    .await
                    .expect("register");
                assert!(r.created, "{id} is new");
                Write {
                    agent_id: id,
                    kind: Some(EventKind::AgentRegistered),
                    revision: r.agent.revision,
                }
            }
            1 => {
                let r = client
                    .register(&agent(&id, "second", "watching", 0.9, 0.1))
                    .await
                    .expect("re-register");
                assert!(!r.created, "{id} exists");
                Write {
                    agent_id: id,
                    kind: None,
                    revision: r.agent.revision,
                }
            }
            2 => {
                let r = client
                    .set_status(&id, AgentStatus::Suspended)
                    .await
                    .expect("suspend");
                Write {
                    agent_id: id,
                    kind: None,
                    revision: r.agent.revision,
                }
            }
            _ => {
                let r = client.delete_agent(&id).await.expect("delete");
                Write {
                    agent_id: id,
                    kind: Some(EventKind::AgentDeregistered),
                    revision: r.revision,
                }
            }
        };
        done.push(write);
    }
    done
}

/// Every event node `id` keeps from revision 1 through `through`, read with
/// stale long polls that do not wait (so a follower answers alone).
async fn event_list(c: &Cluster, id: NodeId, through: Revision) -> Vec<Value> {
    c.wait_revision(id, through).await;
    let mut events = Vec::new();
    let mut from = 1;
    while from <= through {
        let url = format!(
            "{}/v1/events?from_revision={from}&wait=0ms&consistency=stale",
            c.url(id)
        );
        let r = send(&c.http, Method::GET, &url, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status, 200, "node {id}: {}", r.text);
        let page = r.json();
        let batch = page["events"].as_array().expect("events").clone();
        let next = page["next_from_revision"].as_u64().expect("next");
        assert!(next > from || batch.is_empty(), "node {id}: no progress");
        if batch.is_empty() {
            break;
        }
        events.extend(batch);
        from = next;
    }
    events.retain(|e| e["revision"].as_u64().unwrap_or(u64::MAX) <= through);
    events
}

/// The events a consumer task has received so far, and how it ended.
#[derive(Default)]
struct Seen {
    events: Vec<Event>,
    ended: Option<Result<(), WatchError>>,
}

impl Seen {
    fn last(&self) -> Revision {
        self.events.last().map_or(0, |e| e.revision)
    }
}

/// Waits until the watcher has delivered revision `revision` or later.
async fn wait_seen(seen: &Arc<Mutex<Seen>>, revision: Revision, what: &str) {
    wait_until(what, || {
        let s = seen.lock().unwrap();
        let r = match &s.ended {
            Some(end) => Err(format!("the watch ended: {end:?}")),
            None if s.last() >= revision => Ok(()),
            None => Err(format!("watcher at revision {}", s.last())),
        };
        async move { r }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_a_killed_follower_resumes_without_gap_or_duplicate() {
    eprintln!("--- start a 3-node cluster and pick a follower to watch");
    let mut c = Cluster::start(3, &[]).await;
    let (leader, _) = c.wait_leader(&c.ids()).await;
    let follower = *c
        .ids()
        .iter()
        .find(|id| **id != leader)
        .expect("a follower");
    let others: Vec<NodeId> = c.ids().into_iter().filter(|id| *id != follower).collect();

    eprintln!("--- watch every event from revision 1 on node {follower}");
    let mut order = vec![follower];
    order.extend(&others);
    let watcher = c.client(&order);
    let mut watch = watcher.watch(WatchOptions::from_revision(1).prefer_node(c.url(follower)));
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let sink = seen.clone();
    let consumer = tokio::spawn(async move {
        while let Some(item) = watch.next().await {
            match item {
                Ok(e) => sink.lock().unwrap().events.push(e),
                Err(e) => {
                    sink.lock().unwrap().ended = Some(Err(e));
                    return;
                }
            }
        }
        sink.lock().unwrap().ended = Some(Ok(()));
    });

    eprintln!("--- a writer goes through nodes {others:?}, in three phases");
    let writer = c.client(&others);
    let (killed_tx, killed_rx) = oneshot::channel::<()>();
    let (during_tx, during_rx) = oneshot::channel::<Revision>();
    let (back_tx, back_rx) = oneshot::channel::<()>();
    let writing = tokio::spawn(async move {
        let mut all = write_phase(&writer, 1).await;
        killed_rx.await.expect("the follower was killed");
        let during = write_phase(&writer, 2).await;
        let last_during = during.iter().map(|w| w.revision).max().expect("writes");
        all.extend(during);
        let _ = during_tx.send(last_during);
        back_rx.await.expect("the follower is back");
        all.extend(write_phase(&writer, 3).await);
        all
    });

    eprintln!("--- kill -9 node {follower} once its stream has delivered events");
    wait_seen(&seen, 3, "the watcher to receive its first events").await;
    c.kill(follower);
    let _ = killed_tx.send(());

    eprintln!("--- while it is down, the watcher follows through another node");
    let last_during = during_rx.await.expect("phase 2 written");
    wait_seen(
        &seen,
        last_during,
        "the watcher to follow while its node is down",
    )
    .await;

    eprintln!("--- restart node {follower}; the writer's last phase follows");
    c.start_node(follower);
    c.wait_ready(follower).await;
    let _ = back_tx.send(());
    let writes = writing.await.expect("writer");
    let last_write = writes.iter().map(|w| w.revision).max().expect("writes");
    wait_seen(&seen, last_write, "the watcher to see the last write").await;

    eprintln!("--- compare with the event list of every node");
    let watched: Vec<Event> = seen.lock().unwrap().events.clone();
    let through = watched.last().expect("events").revision;
    let mut lists = Vec::new();
    for id in c.ids() {
        lists.push((id, event_list(&c, id, through).await));
    }
    for (id, list) in &lists[1..] {
        assert_eq!(
            list, &lists[0].1,
            "node {id} and node {} serve different events",
            lists[0].0
        );
    }
    let full: Vec<Revision> = lists[0]
        .1
        .iter()
        .map(|e| e["revision"].as_u64().expect("revision"))
        .collect();
    let got: Vec<Revision> = watched.iter().map(|e| e.revision).collect();
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "revisions not strictly increasing: {got:?}"
    );
    assert_eq!(
        got, full,
        "the watcher's revisions differ from the nodes' event list"
    );
    let as_json: Vec<Value> = watched
        .iter()
        .map(|e| serde_json::to_value(e).expect("event"))
        .collect();
    assert_eq!(
        as_json, lists[0].1,
        "the watcher's events differ from the nodes'"
    );
    for w in &writes {
        let e = watched
            .iter()
            .find(|e| e.revision == w.revision)
            .unwrap_or_else(|| panic!("no event at revision {} for {w:?}", w.revision));
        assert_eq!(
            e.agent_id.as_ref().map(|a| a.as_str()),
            Some(w.agent_id.as_str()),
            "{w:?}: {e:?}"
        );
        if let Some(kind) = w.kind {
            assert_eq!(e.kind, kind, "{w:?}");
        }
    }
    assert!(
        seen.lock().unwrap().ended.is_none(),
        "the watch ended early"
    );
    consumer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_below_the_event_window_is_refused_as_compacted() {
    eprintln!("--- start a 3-node cluster keeping only 5 events");
    let c = Cluster::start(3, &["--event-window", "5"]).await;
    let client = c.client(&c.ids());

    eprintln!("--- write more than the window");
    let mut last = 0;
    for i in 0..8 {
        let r = client
            .register(&agent(&format!("c{i}"), "x", "compacting", 0.9, 0.1))
            .await
            .expect("register");
        last = r.revision.max(last);
    }
    for id in c.ids() {
        c.wait_revision(id, last).await;
    }

    eprintln!("--- raw HTTP: from_revision=1 and Last-Event-ID: 1 get 410 with the revision");
    for id in c.ids() {
        let url = format!("{}/v1/events?from_revision=1", c.url(id));
        let r = send(&c.http, Method::GET, &url, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status, 410, "node {id}: {}", r.text);
        let body = r.json();
        assert_eq!(body["error"]["code"], "revision_compacted", "{body}");
        let current: Revision = r
            .header("x-registry-revision")
            .expect("revision header")
            .parse()
            .expect("a number");
        assert!(current >= last, "node {id} reports {current} < {last}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            message.contains(&format!("current revision {current}")),
            "{message}"
        );
        let resumed = c
            .http
            .get(format!("{}/v1/events", c.url(id)))
            .header("last-event-id", "1")
            .send()
            .await
            .expect("request");
        assert_eq!(resumed.status(), 410, "node {id}: Last-Event-ID 1");
    }

    eprintln!("--- through the client: an explicit, final Compacted error");
    let mut watch = client.watch(WatchOptions::from_revision(1));
    match watch.next().await.expect("an item") {
        Err(WatchError::Compacted {
            requested,
            current_revision,
        }) => {
            assert_eq!(requested, 1);
            assert!(current_revision >= last, "{current_revision} < {last}");
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(watch.next().await.is_none(), "the stream ends after it");

    eprintln!("--- from within the window, the watch delivers the kept events");
    let mut watch = client.watch(WatchOptions::after(last - 2));
    let e = watch.next().await.expect("an item").expect("an event");
    assert_eq!(e.revision, last - 1);
}

/// The `registryctl` binary of this build: next to the test executable's
/// `deps` directory. A workspace build (or `cargo build -p registryctl`)
/// puts it there; when it is missing it is built once, with the same cargo
/// and target directory as this test.
fn registryctl() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>/deps/<test>");
        let bin = profile_dir.join(format!("registryctl{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            let target_dir = profile_dir.parent().expect("target dir");
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--release", "-p", "registryctl"])
                .env("CARGO_TARGET_DIR", target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build -p registryctl");
            assert!(status.success(), "cargo build -p registryctl failed");
        }
        assert!(bin.exists(), "no registryctl at {}", bin.display());
        bin
    })
    .clone()
}

/// Runs `registryctl --nodes <nodes> <args>`; returns exit code, stdout and
/// stderr.
async fn run_registryctl(nodes: &str, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(registryctl())
        .env_remove("REGISTRY_NODES")
        .arg("--nodes")
        .arg(nodes)
        .args(args)
        .output()
        .await
        .expect("run registryctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registryctl_discovers_and_selects_on_the_cluster() {
    eprintln!("--- start a 3-node cluster with three translators");
    let c = Cluster::start(3, &[]).await;
    let client = c.client(&c.ids());
    for (id, health, load) in [("tr-a", 0.9, 0.6), ("tr-b", 0.95, 0.1), ("tr-c", 0.7, 0.2)] {
        client
            .register(&agent(id, "translates", "Translation", health, load))
            .await
            .expect("register");
    }
    let nodes = c
        .ids()
        .iter()
        .map(|id| c.url(*id))
        .collect::<Vec<_>>()
        .join(",");

    eprintln!("--- discover: best performance (health × (1 − load)) first");
    let (code, out, err) = run_registryctl(
        &nodes,
        &[
            "discover",
            "--capability",
            "translation",
            "--limit",
            "2",
            "--explain",
        ],
    )
    .await;
    assert_eq!(code, 0, "stderr: {err}");
    let found: Value = serde_json::from_str(&out).expect("JSON on stdout");
    let ids: Vec<&str> = found["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|h| h["agent"]["agent_id"].as_str().expect("id"))
        .collect();
    // tr-b 0.855, tr-c 0.56, tr-a 0.36.
    assert_eq!(ids, ["tr-b", "tr-c"], "{out}");
    assert_eq!(found["sort_by"], "performance");
    assert_eq!(found["filters"]["qualified"], 3, "{out}");

    eprintln!("--- select: the healthiest, and nobody for an unknown capability");
    let (code, out, err) = run_registryctl(
        &nodes,
        &[
            "select",
            "--capability",
            "Translation",
            "--strategy",
            "best_health",
        ],
    )
    .await;
    assert_eq!(code, 0, "stderr: {err}");
    let picked: Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(picked["agent_id"], "tr-b", "{out}");
    let (code, out, err) = run_registryctl(&nodes, &["select", "--capability", "juggling"]).await;
    assert_eq!(code, 1, "stdout: {out}");
    assert!(err.contains("no_agent_available"), "{err}");
}
