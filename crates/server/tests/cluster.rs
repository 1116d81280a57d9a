//! A real three-node cluster, told as one story: writes through a follower,
//! the leader killed with SIGKILL, the old leader back, the whole cluster
//! killed and restarted, a follower kept down past log compaction (it must
//! catch up by snapshot), and graceful shutdown on SIGTERM.
//!
//! A ledger of every acknowledged registration and deletion is kept along the
//! way; after each disruption a full listing (following cursors) must match it
//! exactly. Nothing but the test writes, so the registry revision is also
//! tracked and compared.

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;

use futures::future::join_all;
use registry_client::types::api::{ListFilter, RegisterRequest, RegisterResponse};
use registry_client::types::{ErrorCode, NodeId};
use registry_client::{Client, ReadOptions};
use reqwest::Method;

use common::{send, wait_until, Cluster, Reply};

/// `--snapshot-logs`: small, so that compaction happens within the test.
const SNAPSHOT_LOGS: u64 = 50;

/// Acknowledged state: agent id -> the name it was last registered with.
type Ledger = BTreeMap<String, String>;

fn agent(id: &str, name: &str) -> RegisterRequest {
    serde_json::from_value(serde_json::json!({
        "agent_id": id,
        "name": name,
        "endpoint": format!("http://{id}.agents.test:9000"),
        "capabilities": [{"name": "summarize", "description": "summarizes text", "tags": ["nlp"]}],
        "tags": ["story"],
        // Long leases: no agent may change status on its own during the test.
        "ttl_seconds": 3600,
        "offline_after_seconds": 7200,
        "deregister_after_seconds": 0,
    }))
    .expect("a valid RegisterRequest")
}

/// Registers until acknowledged. Re-sending the same registration is
/// idempotent, so a 503 or an unknown outcome is simply sent again.
async fn register(client: &Client, id: &str, name: &str) -> RegisterResponse {
    let req = agent(id, name);
    wait_until(
        &format!("registration of {id} to be acknowledged"),
        || async {
            match client.register(&req).await {
                Ok(r) => Ok(r),
                Err(e) if e.is_retryable() || e.is_outcome_unknown() => Err(e.to_string()),
                Err(e) => panic!("registration of {id} was refused: {e}"),
            }
        },
    )
    .await
}

/// Registers all `(id, name)` pairs, a batch at a time, and records them.
async fn register_all(client: &Client, ledger: &mut Ledger, agents: &[(String, String)]) {
    for batch in agents.chunks(25) {
        let acks = join_all(batch.iter().map(|(id, name)| register(client, id, name))).await;
        for ((id, name), ack) in batch.iter().zip(acks) {
            assert_eq!(ack.agent_id.as_str(), id);
            assert_eq!(ack.agent.name, *name);
            ledger.insert(id.clone(), name.clone());
        }
    }
}

/// Deletes until acknowledged. After an attempt of unknown outcome,
/// `agent_not_found` means that attempt did apply.
async fn delete(client: &Client, ledger: &mut Ledger, id: &str) {
    let unsure = Cell::new(false);
    wait_until(&format!("deletion of {id} to be acknowledged"), || async {
        match client.delete_agent(id).await {
            Ok(_) => Ok(()),
            Err(e) if unsure.get() && e.code() == Some(ErrorCode::AgentNotFound) => Ok(()),
            Err(e) if e.is_retryable() || e.is_outcome_unknown() => {
                unsure.set(unsure.get() || e.is_outcome_unknown());
                Err(e.to_string())
            }
            Err(e) => panic!("deletion of {id} was refused: {e}"),
        }
    })
    .await;
    ledger.remove(id);
}

/// Lists every agent through `client` (following cursors) and checks the
/// listing is exactly the ledger. Returns the listing's revision.
async fn assert_listing(what: &str, client: &Client, opts: ReadOptions, ledger: &Ledger) -> u64 {
    let list = client
        .list_all_agents(&ListFilter::default(), opts)
        .await
        .unwrap_or_else(|e| panic!("{what}: listing failed: {e}"));
    let got: Ledger = list
        .agents
        .iter()
        .map(|a| (a.agent_id.to_string(), a.name.clone()))
        .collect();
    assert_eq!(
        got.len(),
        list.agents.len(),
        "{what}: an agent listed twice"
    );
    let missing: Vec<_> = ledger.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !ledger.contains_key(*k)).collect();
    let changed: Vec<_> = ledger
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && changed.is_empty(),
        "{what}: listing differs from the acknowledged writes:\n  missing {missing:?}\n  \
         unexpected {extra:?}\n  changed {changed:?}"
    );
    list.revision
}

/// Checks the `x-registry-*` headers of an answer from node `node` and
/// returns the revision header.
fn check_headers(r: &Reply, node: NodeId, leader: NodeId) -> u64 {
    let header = |name: &str| {
        r.header(name)
            .unwrap_or_else(|| panic!("node {node}: header {name} missing: {:?}", r.headers))
            .to_string()
    };
    let revision: u64 = header("x-registry-revision")
        .parse()
        .expect("x-registry-revision is a number");
    assert_eq!(header("x-registry-node"), node.to_string());
    assert_eq!(header("x-registry-leader"), leader.to_string());
    let contact: i64 = header("x-registry-last-contact-ms")
        .parse()
        .expect("x-registry-last-contact-ms is a number");
    if node == leader {
        assert_eq!(contact, 0, "the leader's last contact is itself");
    } else {
        assert!(contact >= 0, "follower {node} never heard from its leader");
    }
    revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_survives_kills_restarts_and_compaction() {
    eprintln!("--- start a 3-node cluster (snapshot every {SNAPSHOT_LOGS} entries)");
    let snapshot_logs = SNAPSHOT_LOGS.to_string();
    let mut c = Cluster::start(3, &["--snapshot-logs", &snapshot_logs]).await;
    let all_ids = c.ids();
    let (leader, term) = c.wait_leader(&all_ids).await;
    let all = c.client(&all_ids);
    let mut ledger = Ledger::new();

    eprintln!("--- register through a follower, read it back on every node");
    let follower = *all_ids
        .iter()
        .find(|id| **id != leader)
        .expect("a follower");
    let via_follower = c.client(&[follower]);
    let ack = via_follower
        .register_with_meta(&agent("story-0", "story zero"))
        .await
        .expect("registration through a follower");
    assert!(ack.value.created, "story-0 is new");
    assert_eq!(ack.meta.status, 201);
    assert_eq!(
        ack.meta.node.as_deref(),
        Some(follower.to_string().as_str())
    );
    assert_eq!(
        ack.meta.leader.as_deref(),
        Some(leader.to_string().as_str())
    );
    ledger.insert("story-0".into(), "story zero".into());
    let written = ack.value.revision;
    // Read-your-writes on the node that took the write: its answer's
    // revision header covers the write, so the client's `last_revision`
    // (fed by that header) is a valid `min_revision` for the next read.
    assert_eq!(
        ack.meta.revision,
        Some(written),
        "x-registry-revision of a write through follower {follower}"
    );
    assert_eq!(via_follower.last_revision(), written);
    for id in &all_ids {
        let url = format!("{}/v1/agents/story-0", c.url(*id));
        let r = send(&c.http, Method::GET, &url, None).await.expect("GET");
        assert_eq!(r.status, 200, "linearizable read on node {id}: {}", r.text);
        let header_rev = check_headers(&r, *id, leader);
        let body = r.json();
        assert_eq!(body["agent"]["name"], "story zero", "node {id}");
        assert_eq!(body["agent"]["revision"], written, "node {id}");
        // Nothing else writes: the node's revision is the write's.
        assert_eq!(body["revision"], written, "node {id}");
        assert_eq!(header_rev, written, "node {id}: header revision");

        let url = format!("{url}?consistency=stale&min_revision={written}");
        let r = send(&c.http, Method::GET, &url, None).await.expect("GET");
        assert_eq!(r.status, 200, "stale read on node {id}: {}", r.text);
        assert_eq!(check_headers(&r, *id, leader), written, "node {id}");
        assert_eq!(r.json()["agent"]["name"], "story zero", "node {id}");
    }

    eprintln!("--- kill -9 the leader (node {leader})");
    let old_leader = leader;
    c.kill(old_leader);
    let survivors: Vec<NodeId> = c.running();
    // Sent at once, through a client that still lists the dead node: the
    // write waits out the election on a survivor.
    register(&all, "during-election", "written during the election").await;
    ledger.insert(
        "during-election".into(),
        "written during the election".into(),
    );
    let (leader, new_term) = c.wait_leader(&survivors).await;
    assert_ne!(leader, old_leader, "a survivor leads");
    assert!(new_term > term, "new term {new_term} after {term}");

    eprintln!("--- writes resume through the survivors (leader {leader}, term {new_term})");
    let fleet: Vec<(String, String)> = (0..120)
        .map(|i| (format!("fleet-{i:03}"), format!("fleet agent {i}")))
        .collect();
    register_all(&all, &mut ledger, &fleet).await;
    for i in 0..10 {
        delete(&all, &mut ledger, &format!("fleet-{i:03}")).await;
    }
    let renamed: Vec<(String, String)> = (10..20)
        .map(|i| (format!("fleet-{i:03}"), format!("fleet agent {i}, v2")))
        .collect();
    register_all(&all, &mut ledger, &renamed).await;
    let revision = assert_listing(
        "after the leader was killed",
        &all,
        ReadOptions::linearizable(),
        &ledger,
    )
    .await;
    // story-0, during-election, 120 fleet agents, 10 deletions, 10 updates.
    assert_eq!(
        revision,
        written + 1 + 120 + 10 + 10,
        "one revision per write"
    );

    eprintln!("--- restart the old leader (node {old_leader}): it catches up");
    c.start_node(old_leader);
    c.wait_revision(old_leader, revision).await;
    let only_old = c.client(&[old_leader]);
    assert_listing(
        "on the restarted old leader",
        &only_old,
        ReadOptions::stale().with_min_revision(revision),
        &ledger,
    )
    .await;
    c.wait_ready(old_leader).await;
    assert_listing(
        "on the restarted old leader, linearizable",
        &only_old,
        ReadOptions::linearizable(),
        &ledger,
    )
    .await;

    eprintln!("--- SIGKILL all three nodes, then start all three");
    for id in &all_ids {
        c.kill(*id);
    }
    for id in &all_ids {
        c.start_node(*id);
    }
    for id in &all_ids {
        c.wait_ready(*id).await;
    }
    let (leader, _) = c.wait_leader(&all_ids).await;
    let after_restart = assert_listing(
        "after restarting the whole cluster",
        &all,
        ReadOptions::linearizable(),
        &ledger,
    )
    .await;
    assert_eq!(
        after_restart, revision,
        "the revision survives a full restart"
    );
    for id in &all_ids {
        assert_listing(
            &format!("node {id} after the full restart"),
            &c.client(&[*id]),
            ReadOptions::stale().with_min_revision(revision),
            &ledger,
        )
        .await;
    }

    let lagger = *all_ids
        .iter()
        .find(|id| **id != leader)
        .expect("a follower");
    eprintln!("--- keep follower {lagger} down past log compaction (leader {leader})");
    let had = c.info(lagger).await.expect("lagger info").last_log_index;
    c.kill(lagger);
    let live = c.client(&c.running());
    // Write until the leader has purged its log past what the lagger holds
    // (it snapshots every SNAPSHOT_LOGS entries and purges in batches behind
    // its snapshot), and its log grew by at least 3 x SNAPSHOT_LOGS entries.
    // Concurrent writes share entries (group commit), so entries are counted
    // on the leader, not inferred from the writes.
    let mut batch = 0;
    let mut written_entries = 0;
    let first_index = c.metric(leader, "registry_raft_last_log_index").await;
    let purged = loop {
        let purged = c.metric(leader, "registry_raft_purged_index").await;
        let grown = c.metric(leader, "registry_raft_last_log_index").await - first_index;
        if grown > 3 * SNAPSHOT_LOGS && purged > had {
            break purged;
        }
        assert!(
            batch < 100,
            "the leader purged its log only up to {purged} after {written_entries} writes \
             ({grown} entries); the lagger holds up to {had}"
        );
        let agents: Vec<(String, String)> = (0..SNAPSHOT_LOGS)
            .map(|i| {
                (
                    format!("bulk-{batch:02}-{i:03}"),
                    format!("bulk {batch} {i}"),
                )
            })
            .collect();
        register_all(&live, &mut ledger, &agents).await;
        written_entries += SNAPSHOT_LOGS;
        batch += 1;
    };
    let revision = live.stats().await.expect("stats").revision;
    assert_eq!(revision, after_restart + written_entries);

    eprintln!("--- restart follower {lagger}: the leader purged up to {purged}, it had {had}");
    c.start_node(lagger);
    let info = c.wait_revision(lagger, revision).await;
    let snapshot = info.snapshot_index.expect("the lagger has a snapshot");
    assert!(
        snapshot >= purged,
        "the lagger's snapshot ({snapshot}) is not past the leader's purge point ({purged})"
    );
    let log = c.node(lagger).log_since_last_start();
    assert!(
        log.contains("installed snapshot"),
        "node {lagger} caught up without installing a snapshot; its log since restart:\n{log}"
    );
    assert_listing(
        &format!("on follower {lagger} after the snapshot"),
        &c.client(&[lagger]),
        ReadOptions::stale().with_min_revision(revision),
        &ledger,
    )
    .await;

    eprintln!("--- graceful shutdown: SIGTERM each node, each exits 0");
    // A follower first, then the leader (one follower still up), then the
    // last node alone, without quorum.
    let (leader, _) = c.wait_leader(&all_ids).await;
    let mut order: Vec<NodeId> = all_ids.iter().copied().filter(|id| *id != leader).collect();
    order.insert(1, leader);
    for id in order {
        let status = c.terminate(id).await;
        assert!(
            status.success(),
            "node {id} exited with {status} after SIGTERM"
        );
        let log = c.node(id).log_since_last_start();
        assert!(
            log.contains("stopped"),
            "node {id} did not log its shutdown:\n{log}"
        );
    }
}

/// Clean stops, many times over one data directory: each SIGTERM must end
/// in exit status 0 (RocksDB once aborted the process at exit, about one
/// stop in fifty, when compactions had just run) and every write must
/// survive the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sigterm_restarts_exit_zero_and_keep_everything() {
    const CYCLES: usize = 20;
    const PER_CYCLE: usize = 30;
    let mut c = Cluster::new(1, &["--snapshot-logs", "10"]);
    let mut ledger = Ledger::new();
    for cycle in 0..CYCLES {
        eprintln!("--- cycle {cycle}: start, check, write {PER_CYCLE}, SIGTERM");
        c.start_node(1);
        c.wait_ready(1).await;
        let client = c.client(&[1]);
        assert_listing(
            &format!("after restart {cycle}"),
            &client,
            ReadOptions::linearizable(),
            &ledger,
        )
        .await;
        let agents: Vec<(String, String)> = (0..PER_CYCLE)
            .map(|i| {
                (
                    format!("c{cycle:02}-{i:02}"),
                    format!("cycle {cycle} agent {i}"),
                )
            })
            .collect();
        register_all(&client, &mut ledger, &agents).await;
        let status = c.terminate(1).await;
        assert!(
            status.success(),
            "cycle {cycle}: exit {status} after SIGTERM"
        );
    }
    c.start_node(1);
    c.wait_ready(1).await;
    assert_listing(
        "at the end",
        &c.client(&[1]),
        ReadOptions::linearizable(),
        &ledger,
    )
    .await;
}
