//! The concurrent clients of a run. Each task is one logical process that
//! issues one operation at a time, recorded before it is sent and completed
//! when its answer (or its absence) is known.
//!
//! - [`register_client`]: register / get / delete on a small shared key
//!   space, values unique per run, long TTLs (liveness never touches them).
//! - [`heartbeat_client`]: one short-TTL agent beating steadily; told to fall
//!   silent at the end, it polls its agent until it reads `offline`.
//! - [`watcher`]: `GET /v1/events` server-sent events, cut and resumed with
//!   `Last-Event-ID`, sometimes on another node.
//! - [`sampler`]: `GET /v1/cluster` on one node every ~100 ms.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use registry_types::query::{EventsPoll, ReadOptions};
use registry_types::AgentStatus;

use super::api;
use super::classify::classify;
use super::cluster::Incarnations;
use super::recorder::Recorder;
use crate::history::{OpKind, Outcome, RaftSample, WatchSession};

/// Agent ids of the register workload: few, so operations contend.
pub const KEYS: usize = 20;
/// TTL of the register workload's agents: a day, far beyond any run.
pub const LONG_TTL_S: u32 = 86_400;
/// Liveness of the heartbeat workload's agents. The server requires
/// ttl ≥ 2 × the maximum election timeout (2 × 10 × 100 ms = 2 s).
pub const HB_TTL_S: u32 = 2;
pub const HB_OFFLINE_S: u32 = 3;
/// Beat every third of the TTL or so, as docs/api.md advises.
pub const HB_INTERVAL: Duration = Duration::from_millis(600);
/// Poll interval of a silent agent's reads.
pub const SILENT_POLL: Duration = Duration::from_millis(100);

/// What every workload task shares.
pub struct Ctx {
    pub rec: Arc<Recorder>,
    pub http: reqwest::Client,
    /// `http://host:port` of each node, index = id - 1.
    pub urls: Vec<String>,
    /// Set when the run's workload phase is over.
    pub stop: Arc<AtomicBool>,
    pub seed: u64,
    /// A node the register clients stay away from while bursting (0:
    /// none): the follower a snapshot-install step keeps cut off, where
    /// every write would wait out the server's write timeout.
    pub avoid: Arc<AtomicU64>,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn url(&self, node: u64) -> &str {
        &self.urls[node as usize - 1]
    }

    fn random_node(&self, rng: &mut StdRng) -> u64 {
        rng.gen_range(1..=self.urls.len() as u64)
    }

    /// Runs one operation: record, send, classify, complete.
    async fn op(&self, process: u32, node: u64, agent_id: &str, kind: OpKind) -> Outcome {
        let h = self.rec.invoke(process, node, agent_id, kind.clone());
        let url = self.url(node);
        let answer = match &kind {
            OpKind::Register { value } => {
                let (ttl, offline) = if agent_id.starts_with("hb-") {
                    (HB_TTL_S, HB_OFFLINE_S)
                } else {
                    (LONG_TTL_S, LONG_TTL_S)
                };
                api::register(
                    &self.http,
                    url,
                    &api::register_body(agent_id, value, ttl, offline),
                )
                .await
            }
            OpKind::Get => api::get(&self.http, url, agent_id).await,
            OpKind::Delete => api::delete(&self.http, url, agent_id).await,
            OpKind::Heartbeat => api::heartbeat(&self.http, url, agent_id).await,
        };
        let outcome = classify(&kind, answer);
        self.rec.complete(h, outcome.clone());
        outcome
    }
}

/// Sleeps `d`, or less if the run stops.
async fn nap(ctx: &Ctx, d: Duration) {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !left.is_zero() && !ctx.stopped() {
        let s = left.min(step);
        tokio::time::sleep(s).await;
        left -= s;
    }
}

/// Register / get / delete on [`KEYS`] agent ids until stopped.
/// `burst` (set during snapshot-install) drops the pause between operations.
pub async fn register_client(ctx: Arc<Ctx>, process: u32, burst: Arc<AtomicBool>) {
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ (0x5eed_0000 + process as u64));
    let mut counter = 0u64;
    while !ctx.stopped() {
        let agent_id = format!("key-{}", rng.gen_range(0..KEYS));
        let mut node = ctx.random_node(&mut rng);
        let avoid = ctx.avoid.load(Ordering::Relaxed);
        if node == avoid {
            node = node % ctx.urls.len() as u64 + 1;
        }
        let roll = rng.gen_range(0..100);
        let kind = if roll < 45 || burst.load(Ordering::Relaxed) {
            counter += 1;
            OpKind::Register {
                value: format!("p{process}-{counter}"),
            }
        } else if roll < 85 {
            OpKind::Get
        } else {
            OpKind::Delete
        };
        ctx.op(process, node, &agent_id, kind).await;
        if !burst.load(Ordering::Relaxed) {
            nap(&ctx, Duration::from_millis(rng.gen_range(10..60))).await;
        }
    }
}

/// Phase of a heartbeat agent, set by the runner at the end of the run.
#[derive(Default)]
pub struct HbControl {
    /// Stop beating; poll the agent until it reads offline.
    pub silent: AtomicBool,
    /// Set by the task when a linearizable read showed it offline.
    pub seen_offline: AtomicBool,
}

/// One heartbeat agent `hb-{index}`: registers, beats every
/// [`HB_INTERVAL`] on a random node (sooner after a failed beat,
/// re-registering on 404), and when told
/// to fall silent, reads it every [`SILENT_POLL`] until it is offline.
pub async fn heartbeat_client(ctx: Arc<Ctx>, process: u32, index: usize, control: Arc<HbControl>) {
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ (0x4b00_0000 + process as u64));
    let agent_id = format!("hb-{index}");
    let mut registered = false;
    let mut counter = 0u64;
    while !ctx.stopped() {
        let node = ctx.random_node(&mut rng);
        if control.silent.load(Ordering::Relaxed) {
            if control.seen_offline.load(Ordering::Relaxed) {
                nap(&ctx, SILENT_POLL).await;
                continue;
            }
            let out = ctx.op(process, node, &agent_id, OpKind::Get).await;
            if let Outcome::Ok { read: Some(r), .. } = &out {
                if r.status == AgentStatus::Offline.into_str() {
                    control.seen_offline.store(true, Ordering::Relaxed);
                }
            }
            nap(&ctx, SILENT_POLL).await;
            continue;
        }
        if !registered {
            counter += 1;
            let value = format!("hb{index}-{counter}");
            let out = ctx
                .op(process, node, &agent_id, OpKind::Register { value })
                .await;
            registered = matches!(out, Outcome::Ok { .. });
            if !registered {
                nap(&ctx, Duration::from_millis(300)).await;
            }
            continue;
        }
        let out = ctx.op(process, node, &agent_id, OpKind::Heartbeat).await;
        if let Outcome::Fail { status: 404, .. } = out {
            registered = false;
        }
        // Beat again on schedule after a success; soon (on another random
        // node) after a failure, as docs/api.md advises.
        let pause = match out {
            Outcome::Ok { .. } => HB_INTERVAL + Duration::from_millis(rng.gen_range(0..100)),
            _ => Duration::from_millis(rng.gen_range(100..200)),
        };
        nap(&ctx, pause).await;
    }
}

/// Parses server-sent events out of a byte stream: returns complete
/// `(id, event, data)` blocks and keeps the unfinished tail in `buf`.
pub fn parse_sse(buf: &mut String) -> Vec<(Option<String>, Option<String>, String)> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let block: String = buf.drain(..end + 2).collect();
        let (mut id, mut event, mut data) = (None, None, String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("event:") {
                event = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if id.is_some() || event.is_some() || !data.is_empty() {
            out.push((id, event, data));
        }
    }
    out
}

/// A watcher: sessions of 1.5 to 5 s on a random node, each resumed with
/// `Last-Event-ID` from the last revision received. Every session is
/// recorded, however it ended.
pub async fn watcher(ctx: Arc<Ctx>, watcher: u32) {
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ (0x3a7c_0000 + watcher as u64));
    let mut last: Option<u64> = None;
    while !ctx.stopped() {
        let node = ctx.random_node(&mut rng);
        let hold = Duration::from_millis(rng.gen_range(1_500..5_000));
        let from_revision = last.map_or(1, |l| l + 1);
        let opened_us = ctx.rec.now_us();
        let mut req = ctx
            .http
            .get(format!("{}/v1/events", ctx.url(node)))
            .query(&ReadOptions::stale());
        req = match last {
            Some(l) => req.header("Last-Event-ID", l.to_string()),
            None => req.query(&EventsPoll {
                from_revision: Some(1),
                wait: None,
            }),
        };
        let mut events = Vec::new();
        let end = match tokio::time::timeout(Duration::from_secs(2), req.send()).await {
            Err(_) | Ok(Err(_)) => "error".to_string(),
            Ok(Ok(resp)) if resp.status().as_u16() == 410 => "compacted".to_string(),
            Ok(Ok(resp)) if !resp.status().is_success() => "error".to_string(),
            Ok(Ok(resp)) => {
                let mut stream = resp.bytes_stream();
                let mut buf = String::new();
                let deadline = tokio::time::Instant::now() + hold;
                loop {
                    if ctx.stopped() {
                        break "cut".to_string();
                    }
                    let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
                        Err(_) => break "cut".to_string(),
                        Ok(None) => break "end".to_string(),
                        Ok(Some(Err(_))) => break "error".to_string(),
                        Ok(Some(Ok(c))) => c,
                    };
                    buf.push_str(&String::from_utf8_lossy(&chunk));
                    let now = ctx.rec.now_us();
                    let mut compacted = false;
                    for (_, kind, data) in parse_sse(&mut buf) {
                        if kind.as_deref() == Some("error") {
                            compacted = true;
                            continue;
                        }
                        let Ok(v) = serde_json::from_str(&data) else {
                            continue;
                        };
                        if let Some(e) = api::seen_event(&v, now) {
                            last = Some(e.revision);
                            events.push(e);
                        }
                    }
                    if compacted {
                        break "compacted".to_string();
                    }
                }
            }
        };
        let failed = end == "error";
        ctx.rec.watch(WatchSession {
            watcher,
            node,
            from_revision,
            opened_us,
            closed_us: ctx.rec.now_us(),
            end,
            events,
        });
        if failed {
            nap(&ctx, Duration::from_millis(300)).await;
        }
    }
}

/// Samples `GET /v1/cluster` on `node` every ~100 ms until stopped.
pub async fn sampler(ctx: Arc<Ctx>, node: u64, incarnations: Incarnations) {
    while !ctx.stopped() {
        let t_us = ctx.rec.now_us();
        // Read the incarnation before asking: a restart during the request
        // then cannot attribute a new process's answer to the old one...
        let before = incarnations[node as usize - 1].load(Ordering::SeqCst);
        let view = api::cluster(&ctx.http, ctx.url(node), Duration::from_millis(300)).await;
        // ...nor an old process's answer to the new one.
        let after = incarnations[node as usize - 1].load(Ordering::SeqCst);
        if let Some(v) = view.filter(|_| before == after) {
            ctx.rec.sample(RaftSample {
                node,
                incarnation: after,
                t_us,
                role: v.role.to_lowercase(),
                term: v.term,
                leader_id: v.leader_id,
                commit_index: v.commit_index,
                applied_index: v.applied_index,
                revision: v.revision,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
