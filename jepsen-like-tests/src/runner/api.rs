//! The few HTTP calls the runner makes, with plain reqwest (no retries: the
//! history must show every attempt) and the slices of the answers it reads.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::classify::{transport_answer, Answer};
use crate::history::{ReadValue, SeenEvent};

/// Client timeout of one operation: above the server's write timeout (5 s)
/// so a 503/504 answer normally arrives before the client gives up.
pub const OP_TIMEOUT: Duration = Duration::from_secs(7);

/// Client timeout of a heartbeat: an agent with a 2 s TTL cannot wait out
/// the server's 5 s write timeout on a node cut off from the leader; like a
/// real agent it gives up after a second and beats again, on another node
/// (heartbeats are idempotent).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);

/// The parts of `GET /v1/cluster` the runner uses.
#[derive(Clone, Debug, Deserialize)]
pub struct ClusterView {
    pub node_id: u64,
    pub role: String,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub snapshot_index: Option<u64>,
    pub revision: u64,
    #[serde(default)]
    pub members: Vec<MemberView>,
}

/// One member in `GET /v1/cluster`.
#[derive(Clone, Debug, Deserialize)]
pub struct MemberView {
    pub node_id: u64,
    pub addr: String,
    pub voter: bool,
}

impl ClusterView {
    /// The voters this node's membership names.
    pub fn voters(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.node_id)
            .collect()
    }
}

/// A membership change's answer: the status and the error code, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeAnswer {
    pub status: Option<u16>,
    pub code: Option<String>,
}

impl ChangeAnswer {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

async fn change(req: reqwest::RequestBuilder) -> ChangeAnswer {
    match req.timeout(Duration::from_secs(30)).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            ChangeAnswer {
                status: Some(status),
                code: body["error"]["code"].as_str().map(str::to_string),
            }
        }
        Err(_) => ChangeAnswer {
            status: None,
            code: None,
        },
    }
}

/// `DELETE /v1/cluster/members/{id}`.
pub async fn remove_member(http: &reqwest::Client, base: &str, id: u64) -> ChangeAnswer {
    change(http.delete(format!("{base}/v1/cluster/members/{id}"))).await
}

/// `POST /v1/cluster/members`: added as a learner, promoted once caught up.
pub async fn add_member(http: &reqwest::Client, base: &str, id: u64, addr: &str) -> ChangeAnswer {
    change(
        http.post(format!("{base}/v1/cluster/members"))
            .json(&json!({"node_id": id, "address": addr, "voter": true})),
    )
    .await
}

/// Builds the one HTTP client of the run. Its connections come from
/// 127.0.0.1 so that the iptables rules (on 127.0.1.x sources) never
/// touch client traffic. With `token`, every request carries it; with
/// `ca_pem`, https answers are trusted when that CA signed them.
pub fn http_client(
    bind_loopback: bool,
    token: Option<&str>,
    ca_pem: Option<&[u8]>,
) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {token}"))
            .expect("a generated token is a header value");
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let mut b = reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(Duration::from_secs(1))
        .pool_idle_timeout(Duration::from_secs(10))
        .no_proxy();
    if bind_loopback {
        b = b.local_address(Some(std::net::IpAddr::from([127, 0, 0, 1])));
    }
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(
            reqwest::Certificate::from_pem(pem).expect("the run's CA is a PEM certificate"),
        );
    }
    b.build()
        .expect("a reqwest client with static settings builds")
}

/// `GET /v1/cluster` with a short timeout; `None` when no answer.
pub async fn cluster(http: &reqwest::Client, base: &str, timeout: Duration) -> Option<ClusterView> {
    let resp = http
        .get(format!("{base}/v1/cluster"))
        .timeout(timeout)
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

fn header_u64(resp: &reqwest::Response, name: &str) -> u64 {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sends a request and reduces the answer to an [`Answer`]; `read` pulls a
/// [`ReadValue`] out of a success body.
async fn send(
    req: reqwest::RequestBuilder,
    read: impl FnOnce(&Value, u64) -> Option<ReadValue>,
) -> Answer {
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return transport_answer(&e),
    };
    let status = resp.status().as_u16();
    let revision = header_u64(&resp, "x-registry-revision");
    let body: Value = match resp.bytes().await {
        Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
        // The status line arrived: the server decided; a cut body does not
        // change what happened.
        Err(_) => Value::Null,
    };
    let code = body["error"]["code"].as_str().map(str::to_string);
    let read = if (200..300).contains(&status) {
        read(&body, revision)
    } else {
        None
    };
    Answer::Http { status, code, read }
}

/// The register body of a workload agent: `value` goes in `description`.
pub fn register_body(agent_id: &str, value: &str, ttl: u32, offline: u32) -> Value {
    json!({
        "agent_id": agent_id,
        "name": agent_id,
        "endpoint": format!("http://127.0.0.1:9/{agent_id}"),
        "agent_type": "chaos",
        "runtime_id": "registry-chaos",
        "description": value,
        "capabilities": [{"name": "chaos"}],
        "ttl_seconds": ttl,
        "offline_after_seconds": offline,
        // 0: never removed, so a silent agent stays visible as offline.
        "deregister_after_seconds": 0,
    })
}

pub async fn register(http: &reqwest::Client, base: &str, body: &Value) -> Answer {
    send(http.post(format!("{base}/v1/agents")).json(body), |_, _| {
        None
    })
    .await
}

pub async fn get(http: &reqwest::Client, base: &str, agent_id: &str) -> Answer {
    send(
        http.get(format!("{base}/v1/agents/{agent_id}")),
        |body, rev| {
            let agent = &body["agent"];
            Some(ReadValue {
                value: agent["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                status: agent["status"].as_str().unwrap_or_default().to_string(),
                revision: rev,
            })
        },
    )
    .await
}

pub async fn delete(http: &reqwest::Client, base: &str, agent_id: &str) -> Answer {
    send(
        http.delete(format!("{base}/v1/agents/{agent_id}")),
        |_, _| None,
    )
    .await
}

pub async fn heartbeat(http: &reqwest::Client, base: &str, agent_id: &str) -> Answer {
    send(
        http.post(format!("{base}/v1/agents/{agent_id}/heartbeat"))
            .timeout(HEARTBEAT_TIMEOUT),
        |body, rev| {
            Some(ReadValue {
                value: String::new(),
                status: body["status"].as_str().unwrap_or_default().to_string(),
                revision: rev,
            })
        },
    )
    .await
}

/// One event as the server sends it (SSE data or long-poll item).
pub fn seen_event(v: &Value, received_us: u64) -> Option<SeenEvent> {
    Some(SeenEvent {
        revision: v["revision"].as_u64()?,
        kind: v["type"].as_str()?.to_string(),
        agent_id: v["agent_id"].as_str().map(str::to_string),
        received_us,
        at: v["at"].as_str().map(str::to_string),
        status: v["status"].as_str().map(str::to_string),
    })
}

/// One page of `GET /v1/agents?consistency=stale`.
#[derive(Debug, Deserialize)]
pub struct AgentPage {
    pub agents: Vec<Value>,
    pub next_cursor: Option<String>,
    pub revision: u64,
}
