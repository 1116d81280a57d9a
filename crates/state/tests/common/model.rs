//! A reference model of the registry, written from the documented rules with
//! plain maps and no index: the property tests compare the real state
//! machine's records, results and events with it after every command.

use std::collections::BTreeMap;

use registry_types::command::{Cause, Rejection};
use registry_types::{
    AgentId, AgentRecord, AgentStatus, Command, CommandResult, Event, EventKind, Revision,
    Timestamp,
};

#[derive(Default)]
pub struct Model {
    pub agents: BTreeMap<AgentId, AgentRecord>,
    pub events: Vec<Event>,
    pub revision: Revision,
    pub total_registrations: u64,
}

impl Model {
    fn runtime_used(&self, rt: &str) -> bool {
        self.agents.values().any(|r| r.runtime_id == rt)
    }

    fn event(
        &mut self,
        kind: EventKind,
        r: Option<&AgentRecord>,
        previous_status: Option<AgentStatus>,
        at: Timestamp,
        cause: Cause,
    ) {
        self.revision += 1;
        self.events.push(Event {
            revision: self.revision,
            kind,
            agent_id: r.map(|r| r.agent_id.clone()),
            at,
            cause,
            status: r.map(|r| r.status),
            previous_status,
            runtime_id: r.map(|r| r.runtime_id.clone()).unwrap_or_default(),
        });
    }

    fn runtime_event(&mut self, kind: EventKind, rt: &str, at: Timestamp, cause: Cause) {
        self.revision += 1;
        self.events.push(Event {
            revision: self.revision,
            kind,
            agent_id: None,
            at,
            cause,
            status: None,
            previous_status: None,
            runtime_id: rt.to_string(),
        });
    }

    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        match cmd {
            Command::Register(c) => {
                let prev = self.agents.get(&c.agent_id).cloned();
                let actual = prev.as_ref().map_or(0, |p| p.revision);
                if let Some(expected) = c.expected_revision {
                    if expected != actual {
                        return CommandResult::Rejected(Rejection::RevisionMismatch {
                            agent_id: c.agent_id.clone(),
                            expected,
                            actual,
                        });
                    }
                }
                if c.if_absent && prev.is_some() {
                    return CommandResult::Rejected(Rejection::AlreadyExists {
                        agent_id: c.agent_id.clone(),
                        revision: actual,
                    });
                }
                let status = match prev.as_ref().map(|p| p.status) {
                    Some(AgentStatus::Suspended) => AgentStatus::Suspended,
                    Some(s @ (AgentStatus::Active | AgentStatus::Busy | AgentStatus::Degraded)) => {
                        c.status.unwrap_or(s)
                    }
                    _ => c.status.unwrap_or(AgentStatus::Active),
                };
                let rev = self.revision + 1;
                let record = AgentRecord {
                    agent_id: c.agent_id.clone(),
                    name: c.name.clone(),
                    agent_type: c.agent_type.clone(),
                    runtime_id: c.runtime_id.clone(),
                    endpoint: c.endpoint.clone(),
                    version: c.version.clone(),
                    description: c.description.clone(),
                    capabilities: c.capabilities.clone(),
                    tags: c.tags.clone(),
                    metadata: c.metadata.clone(),
                    status,
                    health_score: c
                        .health_score
                        .or(prev.as_ref().map(|p| p.health_score))
                        .unwrap_or(1.0),
                    load_factor: c
                        .load_factor
                        .or(prev.as_ref().map(|p| p.load_factor))
                        .unwrap_or(0.0),
                    performance_metrics: c
                        .performance_metrics
                        .clone()
                        .or(prev.as_ref().map(|p| p.performance_metrics.clone()))
                        .unwrap_or_default(),
                    ttl_seconds: c.ttl_seconds,
                    offline_after_seconds: c.offline_after_seconds,
                    deregister_after_seconds: c.deregister_after_seconds,
                    registered_at: prev.as_ref().map_or(c.now, |p| p.registered_at),
                    updated_at: c.now,
                    last_heartbeat: c.now,
                    create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                    revision: rev,
                    epoch: rev,
                };
                let new_rt =
                    !record.runtime_id.is_empty() && !self.runtime_used(&record.runtime_id);
                self.agents.insert(c.agent_id.clone(), record.clone());
                let kind = if prev.is_none() {
                    self.total_registrations += 1;
                    EventKind::AgentRegistered
                } else {
                    EventKind::AgentUpdated
                };
                self.event(
                    kind,
                    Some(&record),
                    prev.as_ref().map(|p| p.status),
                    c.now,
                    Cause::Registration,
                );
                if let Some(p) = &prev {
                    if !p.runtime_id.is_empty() && !self.runtime_used(&p.runtime_id) {
                        self.runtime_event(
                            EventKind::RuntimeLeft,
                            &p.runtime_id,
                            c.now,
                            Cause::Registration,
                        );
                    }
                }
                if new_rt {
                    self.runtime_event(
                        EventKind::RuntimeJoined,
                        &record.runtime_id,
                        c.now,
                        Cause::Registration,
                    );
                }
                if let Some(p) = prev.as_ref().filter(|p| p.status != status) {
                    self.event(
                        EventKind::AgentStatusChanged,
                        Some(&record),
                        Some(p.status),
                        c.now,
                        Cause::Registration,
                    );
                }
                CommandResult::Agent {
                    record: Box::new(record),
                    created: prev.is_none(),
                }
            }
            Command::Deregister { agent_id, now } => {
                let Some(r) = self.agents.remove(agent_id) else {
                    return CommandResult::Rejected(Rejection::NotFound {
                        agent_id: agent_id.clone(),
                    });
                };
                self.event(
                    EventKind::AgentDeregistered,
                    Some(&r),
                    Some(r.status),
                    *now,
                    Cause::Deregistration,
                );
                let revision = self.revision;
                if !r.runtime_id.is_empty() && !self.runtime_used(&r.runtime_id) {
                    self.runtime_event(
                        EventKind::RuntimeLeft,
                        &r.runtime_id,
                        *now,
                        Cause::Deregistration,
                    );
                }
                CommandResult::Removed {
                    agent_id: agent_id.clone(),
                    revision,
                }
            }
            Command::SetStatus {
                agent_id,
                status,
                now,
            } => {
                let Some(r) = self.agents.get(agent_id).cloned() else {
                    return CommandResult::Rejected(Rejection::NotFound {
                        agent_id: agent_id.clone(),
                    });
                };
                if r.status == *status {
                    return CommandResult::Agent {
                        record: Box::new(r),
                        created: false,
                    };
                }
                let mut n = r.clone();
                n.status = *status;
                n.updated_at = *now;
                n.revision = self.revision + 1;
                self.agents.insert(agent_id.clone(), n.clone());
                self.event(
                    EventKind::AgentStatusChanged,
                    Some(&n),
                    Some(r.status),
                    *now,
                    Cause::Operator,
                );
                CommandResult::Agent {
                    record: Box::new(n),
                    created: false,
                }
            }
            Command::SetHealth {
                agent_id,
                health_score,
                load_factor,
                metrics,
                now,
            } => {
                let Some(mut n) = self.agents.get(agent_id).cloned() else {
                    return CommandResult::Rejected(Rejection::NotFound {
                        agent_id: agent_id.clone(),
                    });
                };
                n.health_score = health_score.unwrap_or(n.health_score);
                n.load_factor = load_factor.unwrap_or(n.load_factor);
                n.performance_metrics
                    .extend(metrics.iter().map(|(k, v)| (k.clone(), *v)));
                n.updated_at = *now;
                n.revision = self.revision + 1;
                self.agents.insert(agent_id.clone(), n.clone());
                self.event(
                    EventKind::AgentUpdated,
                    Some(&n),
                    None,
                    *now,
                    Cause::AgentReport,
                );
                CommandResult::Agent {
                    record: Box::new(n),
                    created: false,
                }
            }
        }
    }
}
