//! The recorded history of one chaos run: the contract between the runner,
//! which writes it, and the checkers, which read it.
//!
//! Times are microseconds since the start of the run (`t_us`), read from one
//! monotonic clock in the runner process. Every operation has an invocation
//! time and, unless the run ended first, a completion time. An operation whose
//! outcome is not known (timeout, connection cut after sending, 504) is
//! [`Outcome::Unknown`]: it may or may not have taken effect, and a checker
//! must allow both.
//!
//! The file is one JSON document (`history.json`).
use serde::{Deserialize, Serialize};

/// Microseconds since the start of the run.
pub type Micros = u64;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub meta: RunMeta,
    /// Client operations, in invocation order.
    pub ops: Vec<Op>,
    /// What every watcher received, connection by connection.
    pub watches: Vec<WatchSession>,
    /// `GET /v1/cluster` sampled on every node during the run.
    pub samples: Vec<RaftSample>,
    /// Faults injected, with the window each was in force.
    pub faults: Vec<FaultWindow>,
    /// After healing: each node's full state and event log, read when every
    /// node had applied the same index (or the best the runner could get).
    pub finals: Vec<FinalState>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub seed: u64,
    pub scenario: String,
    /// Node ids and their client addresses (`host:port`).
    pub nodes: Vec<(u64, String)>,
    pub started_at: String,
    pub duration_us: Micros,
    /// Liveness settings the nodes ran with, for the liveness checker.
    pub liveness: LivenessParams,
}

/// The liveness contract the nodes were started with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LivenessParams {
    /// An agent's TTL: silent this long, it is marked offline.
    pub offline_after_ms: u64,
    /// Slack the checker allows for clock reading, scheduling and
    /// checkpoint intervals (stated in the report).
    pub grace_ms: u64,
    /// Documented bound: a silent agent is offline on every node within
    /// `offline_after_ms + expiry_bound_ms` of its last acknowledged
    /// heartbeat, when a leader exists.
    pub expiry_bound_ms: u64,
    /// Documented lag of a revival: a heartbeat to an agent that is already
    /// offline brings it back at the leader's next checkpoint, so reads up
    /// to this long after the heartbeat's answer may still show it offline.
    #[serde(default)]
    pub revival_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Unique within the run.
    pub id: u64,
    /// The client (logical process) that issued it; one op at a time each.
    pub process: u32,
    /// The node the request was sent to.
    pub node: u64,
    pub agent_id: String,
    pub kind: OpKind,
    pub invoke_us: Micros,
    /// `None` when the run ended before an answer (then outcome is Unknown).
    pub complete_us: Option<Micros>,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpKind {
    /// Register (create or replace) the agent with `value` written into its
    /// record (the runner puts it in the description), so reads can tell
    /// which write they see. Values are unique per run.
    Register { value: String },
    /// Linearizable `GET /v1/agents/{id}`.
    Get,
    /// `DELETE /v1/agents/{id}`.
    Delete,
    /// `POST /v1/agents/{id}/heartbeat`.
    Heartbeat,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Definitely happened; `read` is set for a Get (None = 404, absent) and
    /// for a Heartbeat (the status it answered); `existed` for a Delete
    /// (false = the 404 `agent_not_found` answer, which is a definite read of
    /// "absent").
    Ok {
        #[serde(default)]
        read: Option<ReadValue>,
        #[serde(default)]
        existed: Option<bool>,
    },
    /// Definitely did not happen (4xx, or 503 before the write was proposed).
    Fail { status: u16, code: String },
    /// May or may not have happened.
    Unknown { reason: String },
}

/// What a read saw of one agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadValue {
    /// The `value` of the Register it shows.
    pub value: String,
    /// Its status name (active, offline, ...).
    pub status: String,
    /// The X-Registry-Revision of the answer.
    pub revision: u64,
}

/// One watcher connection: `GET /v1/events` (SSE or long poll) on `node`,
/// resumed from `from_revision`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchSession {
    pub watcher: u32,
    pub node: u64,
    pub from_revision: u64,
    pub opened_us: Micros,
    pub closed_us: Micros,
    /// How it ended: "cut" (the runner dropped it), "error", "end", or
    /// "compacted" (410 revision_compacted).
    pub end: String,
    pub events: Vec<SeenEvent>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeenEvent {
    pub revision: u64,
    /// Event type, e.g. AGENT_REGISTERED.
    pub kind: String,
    pub agent_id: Option<String>,
    pub received_us: Micros,
    /// The event's leader-stamped time (RFC 3339), if any.
    #[serde(default)]
    pub at: Option<String>,
    /// The status it carries (status changes, expiries).
    #[serde(default)]
    pub status: Option<String>,
}

/// One reading of `GET /v1/cluster` on one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RaftSample {
    pub node: u64,
    /// Changes each time the runner restarts the node's process; indexes are
    /// only required to be monotonic within one incarnation.
    pub incarnation: u32,
    pub t_us: Micros,
    pub role: String,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub revision: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// Nemesis family: kill, kill_all, pause, partition, delay, loss,
    /// snapshot_install, restart.
    pub kind: String,
    /// Human description, e.g. "isolate leader n2" or "ring n1-n2-n3".
    pub detail: String,
    pub nodes: Vec<u64>,
    pub start_us: Micros,
    /// When healed.
    pub end_us: Micros,
}

/// One node's state after healing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinalState {
    pub node: u64,
    pub applied_index: u64,
    pub revision: u64,
    /// Every agent it holds, sorted by id.
    pub agents: Vec<FinalAgent>,
    /// Its event log from the oldest revision it still holds.
    pub events: Vec<SeenEvent>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinalAgent {
    pub agent_id: String,
    pub value: String,
    pub status: String,
}
