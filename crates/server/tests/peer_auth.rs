//! Node-to-node routes under attack, on a real three-node cluster.
//!
//! First, requests without valid peer credentials (none, the wrong secret,
//! another cluster's id, a node that is not a member, a stale timestamp,
//! another target, a replay) to every internal route: each is refused and
//! changes nothing on any node.
//!
//! Then requests signed with the cluster's own secret, as member 3 (stopped
//! for the purpose) would sign them, with hostile content: an empty snapshot
//! installed with `done`, a chunk at a huge offset, a `u64::MAX` term, a
//! membership that leaves its sender out at an index far beyond the log, a
//! higher vote with a rewritten
//! entry sent from another address than member 3's, batches nested 850
//! deep, internal-only commands and NaN heartbeats through forwarding. Each
//! is refused or harmless: no node exits, and every node serves the same
//! agents as before. Member 3 then comes back and the cluster takes writes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta,
    StoredMembership, Vote,
};
use reqwest::Method;
use serde::Serialize;

use agent_registry::liveness::Beat;
use registry_raft::auth::{self, Credentials, PeerKey};
use registry_raft::network::{ForwardRequest, PreVoteRequest, BINCODE_CONTENT_TYPE};
use registry_raft::{ClusterId, TypeConfig};
use registry_types::{AgentId, Command, Timestamp};

use common::{send, wait_until, Cluster, Reply};

/// Every node-to-node route.
const ROUTES: &[&str] = &[
    "/internal/raft/append",
    "/internal/raft/vote",
    "/internal/raft/snapshot",
    "/internal/forward",
    "/internal/forward-many",
    "/internal/read-index",
    "/internal/pre-vote",
    "/internal/state",
    "/internal/heartbeats",
];

/// The next sequence number of any forger. One counter for all of them:
/// a node keeps one replay window (4,096 wide) per claimed sender, so a
/// forger's number must not fall far behind one another forger sent before
/// as the same member (each counting from its own creation time did, once
/// building an HTTP client took a few milliseconds).
fn next_seq() -> u64 {
    static SEQ: OnceLock<AtomicU64> = OnceLock::new();
    SEQ.get_or_init(|| {
        AtomicU64::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64,
        )
    })
    .fetch_add(1, Ordering::Relaxed)
}

/// Signs requests as a peer would, with whatever it is given.
struct Forger {
    http: reqwest::Client,
    key: Option<PeerKey>,
    cluster: Option<ClusterId>,
    from: u64,
}

impl Forger {
    fn new(key: Option<PeerKey>, cluster: Option<ClusterId>, from: u64, source: IpAddr) -> Self {
        Forger {
            http: reqwest::Client::builder()
                .no_proxy()
                .local_address(source)
                .build()
                .expect("client"),
            key,
            cluster,
            from,
        }
    }

    /// POSTs `body` to `path` of the node at `addr` (HOST:PORT), signed
    /// after `tweak` changed the credentials.
    async fn send(
        &self,
        addr: &str,
        path: &str,
        body: Vec<u8>,
        tweak: impl FnOnce(&mut Credentials),
    ) -> Reply {
        let mut creds = Credentials {
            cluster: self.cluster,
            from: self.from,
            to: addr.to_string(),
            timestamp_ms: auth::now_ms(),
            seq: next_seq(),
        };
        tweak(&mut creds);
        let mut req = self
            .http
            .post(format!("http://{addr}{path}"))
            .header("content-type", BINCODE_CONTENT_TYPE)
            .header(auth::HEADER_FROM, creds.from)
            .header(auth::HEADER_TO, &creds.to)
            .header(auth::HEADER_TIMESTAMP, creds.timestamp_ms)
            .header(auth::HEADER_SEQ, creds.seq);
        if let Some(c) = creds.cluster {
            req = req.header(auth::HEADER_CLUSTER, c.to_string());
        }
        if let Some(key) = &self.key {
            req = req.header(auth::HEADER_MAC, creds.sign(key, "POST", path, &body));
        }
        let resp = req.body(body).send().await.expect("send");
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().await.unwrap_or_default(),
        }
    }
}

fn bin<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("encode")
}

fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn membership(ids: &[u64], cluster: &Cluster) -> Membership<u64, BasicNode> {
    let voters: BTreeSet<u64> = ids.iter().copied().collect();
    let nodes: BTreeMap<u64, BasicNode> = ids
        .iter()
        .map(|id| {
            let addr = if cluster.nodes.contains_key(id) {
                format!("127.0.0.1:{}", cluster.node(*id).port)
            } else {
                "203.0.113.9:8009".to_string()
            };
            (*id, BasicNode { addr })
        })
        .collect();
    Membership::new(vec![voters], nodes)
}

/// The simplest forged change the registry would apply without question.
fn deregister(id: &str) -> Command {
    Command::Deregister {
        agent_id: AgentId::parse(id).unwrap(),
        now: Timestamp::now(),
    }
}

/// A body for each route, hostile where it can be: what it would do if it
/// were let in.
fn hostile_body(route: &str, cluster: &Cluster, term: u64) -> Vec<u8> {
    let deregister = deregister("agent-0");
    match route {
        "/internal/raft/append" => bin(&openraft::raft::AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(term + 5, 2),
            prev_log_id: None,
            entries: vec![Entry::<TypeConfig> {
                log_id: log_id(term + 5, 2, 1),
                payload: EntryPayload::Normal(deregister),
            }],
            leader_commit: Some(log_id(term + 5, 2, 1)),
        }),
        "/internal/raft/vote" => bin(&openraft::raft::VoteRequest::<u64> {
            vote: Vote::new(term + 5, 2),
            last_log_id: Some(log_id(term + 5, 2, 1 << 40)),
        }),
        "/internal/raft/snapshot" => empty_snapshot(cluster, term + 5, 2),
        "/internal/forward" => bin(&ForwardRequest {
            command: deregister,
        }),
        "/internal/forward-many" => bin(&vec![ForwardRequest {
            command: deregister,
        }]),
        "/internal/pre-vote" => bin(&PreVoteRequest {
            candidate: 2,
            last_log_id: Some(log_id(term + 5, 2, 1 << 40)),
        }),
        "/internal/heartbeats" => bin(&vec![(AgentId::parse("agent-0").unwrap(), Beat::default())]),
        _ => bin(&()),
    }
}

fn empty_snapshot(cluster: &Cluster, term: u64, leader: u64) -> Vec<u8> {
    bin(&openraft::raft::InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(term, leader),
        meta: SnapshotMeta {
            last_log_id: Some(log_id(term, leader, 1 << 20)),
            last_membership: StoredMembership::new(
                Some(log_id(term, leader, 1)),
                membership(&[1, 2, 3], cluster),
            ),
            snapshot_id: "forged".into(),
        },
        offset: 0,
        data: Vec::new(),
        done: true,
    })
}

/// What every running node serves: its agents (id and endpoint), term
/// and members.
async fn states(cluster: &Cluster) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    for id in cluster.running() {
        let agents = send(
            &cluster.http,
            Method::GET,
            &format!("{}/v1/agents?consistency=stale&limit=1000", cluster.url(id)),
            None,
        )
        .await
        .expect("list");
        assert_eq!(agents.status, 200, "{}", agents.text);
        let info = cluster.info(id).await.expect("cluster info");
        let ids: Vec<(String, String)> = agents.json()["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["agent_id"].as_str().unwrap().to_string(),
                    a["endpoint"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let members: Vec<u64> = info.members.iter().map(|m| m.node_id).collect();
        out.insert(
            id,
            format!("agents {ids:?} term {} members {members:?}", info.term),
        );
    }
    out
}

/// A node's state as [`states`] gives it, without its Raft term.
fn without_term(state: &str) -> String {
    let (head, rest) = state.split_once(" term ").expect("a state names its term");
    let (_, tail) = rest
        .split_once(' ')
        .expect("the term is followed by the members");
    format!("{head} {tail}")
}

async fn register_agents(cluster: &Cluster, n: usize) {
    let client = cluster.client(&cluster.running());
    for i in 0..n {
        let req = serde_json::from_value(serde_json::json!({
            "agent_id": format!("agent-{i}"),
            "name": format!("agent {i}"),
            "endpoint": format!("http://agent-{i}.test:9000"),
            "ttl_seconds": 3600,
            "offline_after_seconds": 7200,
        }))
        .unwrap();
        wait_until(&format!("registration of agent-{i}"), || async {
            client.register(&req).await.map_err(|e| e.to_string())
        })
        .await;
    }
}

async fn cluster_id(cluster: &Cluster, id: u64) -> ClusterId {
    let info = cluster.info(id).await.expect("info");
    info.cluster_id
        .expect("a cluster id")
        .parse()
        .expect("a uuid")
}

/// Waits until every running node serves the same state, and answers it.
async fn converged(cluster: &Cluster) -> String {
    wait_until("every node to serve the same state", || async {
        let s = states(cluster).await;
        let distinct: BTreeSet<&String> = s.values().collect();
        if distinct.len() == 1 {
            Ok(s.into_values().next().unwrap())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await
}

/// A way to get credentials wrong: what, who signs, how the credentials
/// are changed after signing's inputs are set, and the status expected.
type Case = (
    &'static str,
    Forger,
    Box<dyn Fn(&mut Credentials) + Send + Sync>,
    u16,
);

fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_without_valid_credentials_are_refused_and_change_nothing() {
    let cluster = Cluster::start(3, &[]).await;
    eprintln!("--- three nodes, signed with the cluster secret, four agents");
    let (_, term) = cluster.wait_leader(&cluster.ids()).await;
    register_agents(&cluster, 4).await;
    let before = converged(&cluster).await;
    let info = cluster.info(1).await.unwrap();
    assert_eq!(
        info.peer_auth,
        registry_types::api::PeerAuthMode::HmacSha256
    );
    let ours = cluster_id(&cluster, 1).await;
    for id in cluster.ids() {
        assert_eq!(cluster_id(&cluster, id).await, ours, "one cluster id");
    }
    let secret = std::fs::read(&cluster.secret_path).unwrap();
    let key = PeerKey::from_secret(&secret);
    let wrong_key = PeerKey::from_secret(b"not the secret of this cluster, but long enough");

    let valid = Forger::new(Some(key.clone()), Some(ours), 2, localhost());
    let cases: Vec<Case> = vec![
        (
            "no signature",
            Forger::new(None, Some(ours), 2, localhost()),
            Box::new(|_| {}),
            401,
        ),
        (
            "the wrong secret",
            Forger::new(Some(wrong_key), Some(ours), 2, localhost()),
            Box::new(|_| {}),
            401,
        ),
        (
            "another cluster's id",
            Forger::new(Some(key.clone()), Some(ClusterId::random()), 2, localhost()),
            Box::new(|_| {}),
            403,
        ),
        (
            "a node that is not a member",
            Forger::new(Some(key.clone()), Some(ours), 99, localhost()),
            Box::new(|_| {}),
            403,
        ),
        (
            "a timestamp a minute old",
            Forger::new(Some(key.clone()), Some(ours), 2, localhost()),
            Box::new(|c| c.timestamp_ms -= 60_000),
            401,
        ),
        (
            "another target",
            Forger::new(Some(key.clone()), Some(ours), 2, localhost()),
            Box::new(|c| c.to = "127.0.0.1:1".into()),
            403,
        ),
        (
            "member 2's id from another address",
            Forger::new(
                Some(key.clone()),
                Some(ours),
                2,
                "127.0.0.2".parse().unwrap(),
            ),
            Box::new(|_| {}),
            403,
        ),
    ];
    for target in [1u64, 3] {
        let addr = format!("127.0.0.1:{}", cluster.node(target).port);
        for (what, forger, tweak, status) in &cases {
            eprintln!("--- {what}, to node {target}, on every route");
            for route in ROUTES {
                let r = forger
                    .send(&addr, route, hostile_body(route, &cluster, term), tweak)
                    .await;
                assert_eq!(r.status, *status, "{what} on {route}: {}", r.text);
                let body = r.json();
                assert!(
                    body["error"]["message"].as_str().is_some(),
                    "{what} on {route}: an error body {body}"
                );
            }
        }
        eprintln!("--- no identity headers at all, to node {target}");
        for route in ROUTES {
            let r = cluster
                .http
                .post(format!("http://{addr}{route}"))
                .header("content-type", BINCODE_CONTENT_TYPE)
                .body(hostile_body(route, &cluster, term))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 401, "{route}");
        }
        eprintln!("--- a replayed request, to node {target}");
        let seq = next_seq();
        let now = auth::now_ms();
        let once = |c: &mut Credentials| {
            c.seq = seq;
            c.timestamp_ms = now;
        };
        let first = valid.send(&addr, "/internal/state", bin(&()), once).await;
        assert_eq!(first.status, 200, "{}", first.text);
        let again = valid.send(&addr, "/internal/state", bin(&()), once).await;
        assert_eq!(again.status, 401, "{}", again.text);
    }

    eprintln!("--- nothing changed, no node exited");
    assert_eq!(cluster.running(), cluster.ids());
    assert_eq!(converged(&cluster).await, before);
}

/// Bytes of a `ForwardRequest` whose command is `depth` batches nested in
/// each other.
fn nested_batches(depth: usize) -> Vec<u8> {
    let batch_tag = bin(&Command::Batch(Vec::new()))[..4].to_vec();
    let mut out = Vec::new();
    for _ in 0..depth {
        out.extend_from_slice(&batch_tag);
        out.extend_from_slice(&1u64.to_le_bytes());
    }
    out.extend_from_slice(&batch_tag);
    out.extend_from_slice(&0u64.to_le_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_s_credentials_with_hostile_content_are_refused_or_harmless() {
    let mut cluster = Cluster::start(3, &[]).await;
    register_agents(&cluster, 4).await;
    eprintln!("--- member 3 stops: its credentials are now the forger's");
    cluster.kill(3);
    let (leader, term) = cluster.wait_leader(&[1, 2]).await;
    let before = converged(&cluster).await;
    let ours = cluster_id(&cluster, leader).await;
    let key = PeerKey::from_secret(&std::fs::read(&cluster.secret_path).unwrap());
    let as3 = Forger::new(Some(key.clone()), Some(ours), 3, localhost());
    let as3_elsewhere = Forger::new(Some(key), Some(ours), 3, "127.0.0.2".parse().unwrap());
    let agent0 = AgentId::parse("agent-0").unwrap();

    for target in [1u64, 2] {
        let addr = format!("127.0.0.1:{}", cluster.node(target).port);
        let refused = |r: &Reply, what: &str| {
            assert!(
                (400..500).contains(&r.status),
                "{what} to node {target}: HTTP {} {}",
                r.status,
                r.text
            );
        };
        eprintln!("--- an empty snapshot, installed with done, to node {target}");
        let r = as3
            .send(
                &addr,
                "/internal/raft/snapshot",
                empty_snapshot(&cluster, term + 1, 3),
                |_| {},
            )
            .await;
        refused(&r, "an empty snapshot");

        eprintln!("--- a snapshot chunk at offset 2^62, to node {target}");
        let mut chunk: openraft::raft::InstallSnapshotRequest<TypeConfig> =
            bincode::deserialize(&empty_snapshot(&cluster, term + 1, 3)).unwrap();
        chunk.offset = 1 << 62;
        chunk.data = vec![1, 2, 3];
        chunk.done = false;
        let r = as3
            .send(&addr, "/internal/raft/snapshot", bin(&chunk), |_| {})
            .await;
        refused(&r, "a chunk far away");

        eprintln!("--- snapshot data that is not a registry, to node {target}");
        let mut garbage: openraft::raft::InstallSnapshotRequest<TypeConfig> =
            bincode::deserialize(&empty_snapshot(&cluster, term + 1, 3)).unwrap();
        garbage.data = vec![0xff; 64];
        garbage.meta.snapshot_id = "garbage".into();
        let r = as3
            .send(&addr, "/internal/raft/snapshot", bin(&garbage), |_| {})
            .await;
        refused(&r, "garbage snapshot data");

        eprintln!("--- a u64::MAX term, in an append and in a vote, to node {target}");
        let r = as3
            .send(
                &addr,
                "/internal/raft/append",
                bin(&openraft::raft::AppendEntriesRequest::<TypeConfig> {
                    vote: Vote::new_committed(u64::MAX, 3),
                    prev_log_id: None,
                    entries: vec![],
                    leader_commit: None,
                }),
                |_| {},
            )
            .await;
        refused(&r, "a u64::MAX term");
        let r = as3
            .send(
                &addr,
                "/internal/raft/vote",
                bin(&openraft::raft::VoteRequest::<u64> {
                    vote: Vote::new(u64::MAX, 3),
                    last_log_id: None,
                }),
                |_| {},
            )
            .await;
        refused(&r, "a u64::MAX vote");

        eprintln!("--- a membership leaving its sender out, far beyond the log, to node {target}");
        let r = as3
            .send(
                &addr,
                "/internal/raft/append",
                bin(&openraft::raft::AppendEntriesRequest::<TypeConfig> {
                    vote: Vote::new_committed(term + 1, 3),
                    prev_log_id: None,
                    entries: vec![Entry::<TypeConfig> {
                        log_id: log_id(term + 1, 3, 1 << 30),
                        payload: EntryPayload::Membership(membership(&[1, 99], &cluster)),
                    }],
                    leader_commit: None,
                }),
                |_| {},
            )
            .await;
        refused(&r, "a foreign membership with a hole before it");

        eprintln!("--- a message on behalf of another node, to node {target}");
        let r = as3
            .send(
                &addr,
                "/internal/raft/vote",
                bin(&openraft::raft::VoteRequest::<u64> {
                    vote: Vote::new(term + 1, 1),
                    last_log_id: None,
                }),
                |_| {},
            )
            .await;
        refused(&r, "a vote on behalf of node 1");

        eprintln!(
            "--- a higher vote with a rewritten entry, from another address, to node {target}"
        );
        let r = as3_elsewhere
            .send(
                &addr,
                "/internal/raft/append",
                hostile_body("/internal/raft/append", &cluster, term)
                    .into_iter()
                    .collect(),
                |_| {},
            )
            .await;
        assert_eq!(r.status, 403, "{}", r.text);

        eprintln!("--- batches nested 850 deep, forwarded, to node {target}");
        let r = as3
            .send(&addr, "/internal/forward", nested_batches(850), |_| {})
            .await;
        refused(&r, "nested batches");

        eprintln!("--- internal-only commands, forwarded, to node {target}");
        let internal_only = [
            Command::Expire {
                entries: vec![registry_types::command::ExpireEntry {
                    agent_id: agent0.clone(),
                    epoch: 1,
                    step: registry_types::command::ExpiryStep::Remove,
                }],
                now: Timestamp::now(),
            },
            Command::Brake {
                engaged: true,
                held: 0,
                fleet: 0,
                now: Timestamp::now(),
            },
            Command::Checkpoint {
                entries: vec![],
                heartbeats: u64::MAX,
                now: Timestamp::now(),
            },
            Command::Batch(vec![Command::Deregister {
                agent_id: agent0.clone(),
                now: Timestamp::now(),
            }]),
        ];
        for cmd in internal_only {
            let what = cmd.kind();
            let r = as3
                .send(
                    &addr,
                    "/internal/forward",
                    bin(&ForwardRequest {
                        command: cmd.clone(),
                    }),
                    |_| {},
                )
                .await;
            refused(&r, what);
            let r = as3
                .send(
                    &addr,
                    "/internal/forward-many",
                    bin(&vec![ForwardRequest { command: cmd }]),
                    |_| {},
                )
                .await;
            refused(&r, what);
        }

        eprintln!("--- NaN and out-of-range heartbeats, forwarded, to node {target}");
        for beat in [
            Beat {
                health_score: Some(f64::NAN),
                ..Beat::default()
            },
            Beat {
                load_factor: Some(7.0),
                ..Beat::default()
            },
            Beat {
                metrics: (0..10_000).map(|i| (format!("m{i}"), 1.0)).collect(),
                ..Beat::default()
            },
        ] {
            let r = as3
                .send(
                    &addr,
                    "/internal/heartbeats",
                    bin(&vec![(agent0.clone(), beat)]),
                    |_| {},
                )
                .await;
            refused(&r, "a bad heartbeat");
        }

        eprintln!("--- too many forwarded writes in one call, to node {target}");
        let many: Vec<ForwardRequest> = (0..100_000)
            .map(|_| ForwardRequest {
                command: Command::CountDiscoveryRequests {
                    count: 1,
                    now: Timestamp::now(),
                },
            })
            .collect();
        let r = as3
            .send(&addr, "/internal/forward-many", bin(&many), |_| {})
            .await;
        refused(&r, "100,000 forwarded writes");
    }

    eprintln!("--- no node exited, nothing changed");
    assert_eq!(cluster.running(), vec![1, 2]);
    assert_eq!(converged(&cluster).await, before);

    eprintln!("--- member 3 comes back; the cluster takes a write on every node");
    cluster.start_node(3);
    cluster.wait_ready(3).await;
    let client = cluster.client(&[3]);
    let req = serde_json::from_value(serde_json::json!({
        "agent_id": "after",
        "name": "after the attack",
        "endpoint": "http://after.test:9000",
    }))
    .unwrap();
    wait_until("a registration through node 3", || async {
        client.register(&req).await.map_err(|e| e.to_string())
    })
    .await;
    let after = converged(&cluster).await;
    assert!(after.contains("\"after\""), "{after}");
}

#[test]
fn a_multi_node_cluster_refuses_to_start_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_agent-registry"))
            .env_clear()
            .args(["--node-id", "1", "--listen", "127.0.0.1:0"])
            .args([
                "--initial-cluster",
                "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra)
            .output()
            .expect("run agent-registry");
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, stderr) = run(&[]);
    assert!(!status.success());
    assert!(stderr.contains("--cluster-secret-file"), "{stderr}");
    let short = dir.path().join("short-secret");
    std::fs::write(&short, "too short\n").unwrap();
    let (status, stderr) = run(&["--cluster-secret-file", short.to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("at least 32"), "{stderr}");
    let (status, stderr) = run(&["--cluster-secret-file", "/nonexistent/secret"]);
    assert!(!status.success());
    assert!(stderr.contains("/nonexistent/secret"), "{stderr}");
}

/// A cluster bootstrapped by a release without cluster ids has none in any
/// data directory: after the upgrade its leader gives it one, every node
/// adopts it, and nothing else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_without_an_id_gets_one_after_an_upgrade() {
    let mut cluster = Cluster::start(3, &[]).await;
    register_agents(&cluster, 3).await;
    // The term may move: stopping the leader hands leadership over.
    let before = without_term(&converged(&cluster).await);
    let original = cluster_id(&cluster, 1).await;
    // What the previous release left: the same data without `cluster-id`.
    for id in cluster.ids() {
        cluster.terminate(id).await;
        std::fs::remove_file(cluster.node(id).data_dir.join("cluster-id")).unwrap();
    }
    for id in cluster.ids() {
        cluster.start_node(id);
    }
    cluster.wait_leader(&cluster.ids()).await;
    let named = wait_until("every node to hold the same new cluster id", || async {
        let mut ids = BTreeSet::new();
        for id in cluster.ids() {
            ids.insert(cluster.info(id).await?.cluster_id);
        }
        match ids.into_iter().collect::<Vec<_>>().as_slice() {
            [Some(one)] => Ok(one.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_ne!(named, original.to_string(), "a new id, not the lost one");
    for id in cluster.ids() {
        let kept = std::fs::read_to_string(cluster.node(id).data_dir.join("cluster-id")).unwrap();
        assert_eq!(kept.trim(), named, "node {id} keeps it");
    }
    assert_eq!(without_term(&converged(&cluster).await), before);
    register_agents(&cluster, 4).await;
    assert!(converged(&cluster).await.contains("agent-3"));
}
