//! Helpers shared by the state machine's integration tests: command builders,
//! a harness that numbers log entries, and brute-force reference queries that
//! scan `records()` instead of using the index.

#![allow(dead_code)]

pub mod model;

use std::collections::BTreeMap;

use registry_state::query::{match_capability, MAX_PAGE};
use registry_state::RegistryState;
use registry_types::api::{CapabilityMatch, ListFilter, MatchKind, Stats};
use registry_types::command::{CheckpointEntry, ExpireEntry, ExpiryStep, RegisterCommand};
use registry_types::{
    AgentId, AgentRecord, AgentStatus, Capability, Command, CommandResult, Metadata, Timestamp,
};

/// Normalization as the API documents it: trimmed, lower case, inner white
/// space collapsed. Written out here again so that the reference queries do
/// not lean on the code under test.
pub fn norm(s: &str) -> String {
    s.split_whitespace()
        .map(|w| w.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn id(s: &str) -> AgentId {
    AgentId::parse(s).expect("valid test id")
}

pub fn cap(name: &str, description: &str, tags: &[&str]) -> Capability {
    Capability {
        name: name.to_string(),
        description: description.to_string(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        cost_estimate: None,
        parameters: Default::default(),
    }
}

/// A plain registration with every optional field left to the state machine.
pub fn reg(agent: &str, now: i64) -> RegisterCommand {
    RegisterCommand {
        agent_id: id(agent),
        name: format!("agent {agent}"),
        agent_type: String::new(),
        runtime_id: String::new(),
        endpoint: format!("http://{agent}.local"),
        version: "1".into(),
        description: String::new(),
        capabilities: Vec::new(),
        tags: Vec::new(),
        metadata: Metadata::default(),
        status: None,
        health_score: None,
        load_factor: None,
        performance_metrics: None,
        ttl_seconds: 30,
        offline_after_seconds: 90,
        deregister_after_seconds: 0,
        if_absent: false,
        expected_revision: None,
        keep: Default::default(),
        now: Timestamp(now),
    }
}

pub fn register(c: RegisterCommand) -> Command {
    Command::Register(Box::new(c))
}

pub fn deregister(agent: &str, now: i64) -> Command {
    Command::Deregister {
        agent_id: id(agent),
        now: Timestamp(now),
    }
}

pub fn set_status(agent: &str, status: AgentStatus, now: i64) -> Command {
    Command::SetStatus {
        agent_id: id(agent),
        status,
        now: Timestamp(now),
    }
}

pub fn set_health(
    agent: &str,
    health: Option<f64>,
    load: Option<f64>,
    metrics: &[(&str, f64)],
    now: i64,
) -> Command {
    Command::SetHealth {
        agent_id: id(agent),
        health_score: health,
        load_factor: load,
        metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        now: Timestamp(now),
    }
}

/// A heartbeat the leader heard from `agent` at `at`, with nothing reported.
pub fn heard(agent: &str, at: i64) -> CheckpointEntry {
    CheckpointEntry {
        agent_id: id(agent),
        last_heartbeat: Timestamp(at),
        status: None,
        health_score: None,
        load_factor: None,
        metrics: BTreeMap::new(),
    }
}

/// A checkpoint counting one heartbeat per entry.
pub fn checkpoint(entries: Vec<CheckpointEntry>, now: i64) -> Command {
    Command::Checkpoint {
        heartbeats: entries.len() as u64,
        entries,
        now: Timestamp(now),
    }
}

/// An expiry decision for `agent` at registration epoch `epoch`.
pub fn silent(agent: &str, epoch: u64, step: ExpiryStep) -> ExpireEntry {
    ExpireEntry {
        agent_id: id(agent),
        epoch,
        step,
    }
}

pub fn expire(entries: Vec<ExpireEntry>, now: i64) -> Command {
    Command::Expire {
        entries,
        now: Timestamp(now),
    }
}

pub fn brake(engaged: bool, held: u64, fleet: u64, now: i64) -> Command {
    Command::Brake {
        engaged,
        held,
        fleet,
        now: Timestamp(now),
    }
}

/// A state plus the next log index, so tests read as a list of commands.
pub struct Harness {
    pub state: RegistryState,
    pub log_index: u64,
}

impl Harness {
    pub fn new() -> Self {
        Harness::with(RegistryState::default())
    }

    pub fn with(state: RegistryState) -> Self {
        Harness {
            state,
            log_index: 0,
        }
    }

    pub fn apply(&mut self, cmd: Command) -> CommandResult {
        self.log_index += 1;
        self.state.apply(self.log_index, &cmd)
    }

    /// Applies a registration and returns the resulting record, panicking on
    /// a rejection.
    pub fn register(&mut self, c: RegisterCommand) -> AgentRecord {
        match self.apply(register(c)) {
            CommandResult::Agent { record, .. } => *record,
            other => panic!("registration refused: {other:?}"),
        }
    }
}

/// Every agent matching `f`, by scanning the table.
pub fn scan_list(state: &RegistryState, f: &ListFilter) -> Vec<AgentRecord> {
    state
        .records()
        .filter(|r| f.status.is_none_or(|s| r.status == s))
        .filter(|r| {
            f.capability
                .as_ref()
                .is_none_or(|c| r.capabilities.iter().any(|x| norm(&x.name) == norm(c)))
        })
        .filter(|r| {
            f.tag
                .as_ref()
                .is_none_or(|t| r.tags.iter().any(|x| norm(x) == norm(t)))
        })
        .filter(|r| {
            f.agent_type
                .as_ref()
                .is_none_or(|t| !r.agent_type.is_empty() && norm(&r.agent_type) == norm(t))
        })
        .filter(|r| {
            f.runtime_id
                .as_ref()
                .is_none_or(|rt| !r.runtime_id.is_empty() && &r.runtime_id == rt)
        })
        .cloned()
        .collect()
}

/// Follows `list` through every cursor, checking that each page respects the
/// limit and that only the last page lacks a cursor.
pub fn list_all(state: &RegistryState, f: &ListFilter, page: usize) -> Vec<AgentRecord> {
    let mut out: Vec<AgentRecord> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (agents, next) = state.list(f, cursor.as_deref(), page);
        assert!(
            agents.len() <= page.max(1),
            "page of {} over limit {page}",
            agents.len()
        );
        if next.is_some() {
            assert_eq!(
                agents.len(),
                page.max(1),
                "a page with a cursor must be full"
            );
            assert_eq!(
                next.as_deref(),
                agents.last().map(|r| r.agent_id.as_str()),
                "the cursor is the last id of the page"
            );
        }
        out.extend(agents);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(out.len() <= state.len(), "paging does not terminate");
    }
    out
}

pub fn ids(records: &[AgentRecord]) -> Vec<String> {
    records.iter().map(|r| r.agent_id.to_string()).collect()
}

/// Capability search by evaluating `match_capability` on every capability.
pub fn scan_search(
    state: &RegistryState,
    q: &str,
    status: Option<AgentStatus>,
    limit: usize,
) -> Vec<(String, usize, MatchKind)> {
    let q = norm(q);
    if q.is_empty() {
        return Vec::new();
    }
    let mut hits = Vec::new();
    for r in state.records() {
        if status.is_some_and(|s| r.status != s) {
            continue;
        }
        for (pos, c) in r.capabilities.iter().enumerate() {
            if let Some(kind) = match_capability(&q, c) {
                hits.push((kind, r.agent_id.to_string(), pos));
            }
        }
    }
    hits.sort();
    hits.into_iter()
        .take(limit.clamp(1, MAX_PAGE))
        .map(|(k, id, pos)| (id, pos, k))
        .collect()
}

/// The search answer reduced to (agent, capability position, kind), checking
/// on the way that every match carries the record's own fields.
pub fn search_keys(
    state: &RegistryState,
    matches: &[CapabilityMatch],
) -> Vec<(String, usize, MatchKind)> {
    // Equal capabilities of one agent are told apart by order: hits of one
    // (kind, agent) come in position order.
    let mut last: Option<(MatchKind, String, usize)> = None;
    matches
        .iter()
        .map(|m| {
            let r = state.get(&m.agent_id).expect("a match names a live agent");
            let from = match &last {
                Some((k, a, p)) if *k == m.match_kind && a == m.agent_id.as_str() => p + 1,
                _ => 0,
            };
            let pos = from
                + r.capabilities[from.min(r.capabilities.len())..]
                    .iter()
                    .position(|c| *c == m.capability)
                    .expect("the match carries one of the agent's capabilities");
            last = Some((m.match_kind, m.agent_id.to_string(), pos));
            assert_eq!(m.agent_name, r.name);
            assert_eq!(m.status, r.status);
            assert_eq!(m.endpoint, r.endpoint);
            assert_eq!(m.cost_estimate, m.capability.cost_estimate);
            (m.agent_id.to_string(), pos, m.match_kind)
        })
        .collect()
}

/// Stats computed by scanning the table. `total_registrations` cannot be
/// seen in the table; the caller supplies it.
pub fn scan_stats(state: &RegistryState, total_registrations: u64) -> Stats {
    let mut by_status: BTreeMap<AgentStatus, u64> = BTreeMap::new();
    let mut distribution: BTreeMap<String, u64> = BTreeMap::new();
    let mut total_capabilities = 0;
    for r in state.records() {
        *by_status.entry(r.status).or_default() += 1;
        total_capabilities += r.capabilities.len() as u64;
        let mut names: Vec<String> = r.capabilities.iter().map(|c| norm(&c.name)).collect();
        names.sort();
        names.dedup();
        for n in names {
            *distribution.entry(n).or_default() += 1;
        }
    }
    // Bands by their bounds, not by the state crate's helper.
    let mut health: BTreeMap<String, u64> = ["0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0"]
        .into_iter()
        .map(|b| (b.to_string(), 0))
        .collect();
    for r in state.records() {
        let band = match r.health_score {
            h if h < 0.2 => "0.0-0.2",
            h if h < 0.4 => "0.2-0.4",
            h if h < 0.6 => "0.4-0.6",
            h if h < 0.8 => "0.6-0.8",
            _ => "0.8-1.0",
        };
        *health.get_mut(band).expect("every band is present") += 1;
    }
    let count = |s: AgentStatus| by_status.get(&s).copied().unwrap_or(0);
    // The counters cannot be seen in the table: the model checks them.
    let c = state.counters();
    Stats {
        total_agents: state.len() as u64,
        registered_agents: state.len() as u64,
        active_agents: count(AgentStatus::Active),
        offline_agents: count(AgentStatus::Offline),
        degraded_agents: count(AgentStatus::Degraded),
        agents_by_status: by_status,
        total_registrations,
        total_capabilities,
        capabilities_distribution: distribution.clone(),
        capability_distribution: distribution,
        discovery_requests: c.discovery_requests,
        service_discovery_requests: c.discovery_requests,
        health_checks_performed: c.heartbeats,
        failed_health_checks: c.missed_heartbeat_transitions,
        auto_scaling_events: c.advisories_raised,
        health_distribution: health,
        revision: state.revision(),
    }
}
