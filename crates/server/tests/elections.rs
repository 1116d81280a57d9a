//! Elections with pre-vote, against real three-node clusters.
//!
//! - `a_lone_follower_neither_raises_its_term_nor_deposes_the_leader`: the
//!   leader and the other follower are paused (SIGSTOP), so one follower
//!   hears from nobody. Without pre-vote it would stand again and again,
//!   raising its term, and depose the leader when it came back. With it,
//!   it loses pre-vote after pre-vote and stays in the term; once the others
//!   resume, the same leader leads in the same term.
//! - `the_survivors_elect_one_leader_after_the_leader_is_killed`: a leader
//!   killed with -9, three times, is replaced: the survivors agree on a
//!   leader in a higher term, one of them stood (openraft's own election
//!   timer is off), and every acknowledged write is there.
//!
//! `--heartbeat-ms 50`: leader lease 300 ms, election timeouts 100–300 ms.
//! Every wait polls a condition; nothing asserts a wall-clock time.

mod common;

use registry_client::types::api::RegisterRequest;
use registry_client::{Client, ReadOptions};

use common::{wait_until, Cluster};

const FAST: &[&str] = &["--heartbeat-ms", "50"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_follower_neither_raises_its_term_nor_deposes_the_leader() {
    let c = Cluster::start(3, FAST).await;
    let all = c.ids();
    let (leader, term) = c.wait_leader(&all).await;
    for id in &all {
        c.wait_ready(*id).await;
    }
    let lone = *all.iter().find(|id| **id != leader).unwrap();
    let other = *all
        .iter()
        .find(|id| **id != leader && **id != lone)
        .unwrap();
    let lost_before = c.metric(lone, "registry_raft_pre_votes_lost_total").await;
    let stood_before = c
        .metric(lone, "registry_raft_elections_started_total")
        .await;

    c.signal(other, libc::SIGSTOP);
    c.signal(leader, libc::SIGSTOP);
    // The lone follower tries, several times, and never gets a majority.
    wait_until("the lone follower to lose three pre-votes", || async {
        let lost = c.metric(lone, "registry_raft_pre_votes_lost_total").await;
        if lost >= lost_before + 3 {
            Ok(())
        } else {
            Err(format!("pre-votes lost: {}", lost - lost_before))
        }
    })
    .await;
    let info = c.info(lone).await.expect("the lone follower answers");
    assert_eq!(info.term, term, "the lone follower raised its term");
    assert_eq!(
        c.metric(lone, "registry_raft_elections_started_total")
            .await,
        stood_before,
        "the lone follower stood for election without a majority"
    );

    // The leader first, so the lone follower hears from it again; then the
    // other follower, which must not unseat it either.
    c.signal(leader, libc::SIGCONT);
    wait_until(
        "the lone follower to hear from its leader again",
        || async {
            let info = c.info(lone).await?;
            match info.last_contact_ms {
                Some(ms) if ms < 200 => Ok(()),
                other => Err(format!("last contact {other:?} ms ago")),
            }
        },
    )
    .await;
    c.signal(other, libc::SIGCONT);
    for id in &all {
        c.wait_ready(*id).await;
    }
    let (after, term_after) = c.wait_leader(&all).await;
    assert_eq!(
        (after, term_after),
        (leader, term),
        "the leader changed after a follower was alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_survivors_elect_one_leader_after_the_leader_is_killed() {
    let mut c = Cluster::start(3, FAST).await;
    let all = c.ids();
    let client: Client = c.client(&all);
    for round in 0..3 {
        let running = c.running();
        let (leader, term) = c.wait_leader(&running).await;
        for id in &running {
            c.wait_ready(*id).await;
        }
        let mut acked = Vec::new();
        for k in 0..20 {
            let id = format!("e{round}-{k}");
            let req: RegisterRequest = serde_json::from_value(serde_json::json!({
                "agent_id": id, "name": "elect", "endpoint": "http://e.test:1",
                "ttl_seconds": 3600, "offline_after_seconds": 7200,
            }))
            .expect("a valid RegisterRequest");
            wait_until(&format!("registration of {id}"), || async {
                match client.register(&req).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_retryable() || e.is_outcome_unknown() => Err(e.to_string()),
                    Err(e) => panic!("registration of {id} was refused: {e}"),
                }
            })
            .await;
            acked.push(id);
        }
        let stood: u64 = {
            let mut n = 0;
            for id in running.iter().filter(|id| **id != leader) {
                n += c.metric(*id, "registry_raft_elections_started_total").await;
            }
            n
        };
        c.kill(leader);
        let survivors: Vec<_> = running.iter().copied().filter(|id| *id != leader).collect();
        let (new_leader, new_term) = c.wait_leader(&survivors).await;
        assert!(new_term > term, "round {round}: term did not advance");
        let mut stood_after = 0;
        for id in &survivors {
            stood_after += c.metric(*id, "registry_raft_elections_started_total").await;
        }
        // openraft's own timer is off: the new term comes from a survivor
        // that won a pre-vote and stood.
        assert!(
            stood_after > stood,
            "round {round}: node {new_leader} leads but nobody stood"
        );
        for id in &acked {
            let got = wait_until(&format!("round {round}: read of {id}"), || async {
                client
                    .get_agent(id, ReadOptions::linearizable())
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
            assert_eq!(got.agent_id.as_str(), id, "round {round}");
        }
        c.start_node(leader);
        c.wait_ready(leader).await;
    }
}
