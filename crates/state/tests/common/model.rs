//! A reference model of the registry, written from the documented rules with
//! plain maps and no index: the property tests compare the real state
//! machine's records, results and events with it after every command.
//!
//! The liveness commands (checkpoint, expire, brake) follow the rules of the
//! liveness issue, restated on each function. The model also says, per batch
//! entry, which rule it took ([`Outcome`]), so that the property tests can
//! count how often each rule was exercised.

use std::collections::BTreeMap;

use registry_types::auth::{permits, Actor, Existing, Rights, Role, TokenId, TokenRecord};
use registry_types::command::{
    Cause, CheckpointEntry, ExpireEntry, ExpiryStep, ItemResult, Rejection,
};
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
    pub brake_engaged: bool,
    /// The replicated counters: heartbeats as checkpoints count them, steps
    /// taken by expiry entries, discovery requests as nodes report them.
    pub counters: registry_state::Counters,
    /// What each entry of the last applied batch command did, in entry order
    /// (empty after any other command).
    pub outcomes: Vec<Outcome>,
    /// Tokens by id.
    pub tokens: BTreeMap<TokenId, TokenRecord>,
    /// Whom the events of the client change being applied name.
    acting: Option<Actor>,
    /// The card of the `RegisterCard` being applied (its registration is
    /// applied as a `Register` that takes it).
    card: Option<registry_types::AgentCard>,
}

/// The rule one batch entry took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Checkpoint or expire entry naming no live agent.
    Unknown,
    /// Checkpoint: liveness fields refreshed, status kept (no revision).
    Refreshed,
    /// Checkpoint: the status changed, for this cause.
    Changed(Cause),
    /// Expire: the agent re-registered since the decision.
    StaleEpoch,
    /// Expire: the step does not fit the agent's current status.
    Unfit(ExpiryStep),
    /// Expire: the step was taken.
    Stepped(ExpiryStep),
}

/// Whether an expiry `step` may be taken from `status`, as the liveness issue
/// lists it.
pub fn step_fits(step: ExpiryStep, status: AgentStatus) -> bool {
    use AgentStatus::*;
    match step {
        ExpiryStep::Unhealthy => {
            [Registering, Active, Busy, Degraded, Deregistering].contains(&status)
        }
        ExpiryStep::Offline => ![Offline, Suspended].contains(&status),
        ExpiryStep::Remove => true,
    }
}

/// The model does not fix the wording of a brake event's detail; it keeps
/// the two figures the text must mention, as "held fleet".
pub fn brake_detail(held: u64, fleet: u64) -> String {
    format!("{held} {fleet}")
}

/// Compares the machine's events with the model's: equal in every field,
/// except that a brake event's detail, free prose, must mention the held
/// count and then the fleet size.
pub fn same_events(real: &[Event], model: &[Event]) -> Result<(), String> {
    if real.len() != model.len() {
        return Err(format!(
            "{} events, model {}: {real:#?} vs {model:#?}",
            real.len(),
            model.len()
        ));
    }
    for (r, m) in real.iter().zip(model) {
        let brake = matches!(
            m.kind,
            EventKind::LivenessBrakeEngaged | EventKind::LivenessBrakeReleased
        );
        if brake {
            let numbers: Vec<&str> = r
                .detail
                .split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty())
                .collect();
            let want: Vec<&str> = m.detail.split(' ').collect();
            let mut rest = numbers.iter();
            let mentioned = want.iter().all(|w| rest.any(|n| n == w));
            if !mentioned {
                return Err(format!(
                    "brake detail {:?} should mention {:?}",
                    r.detail, want
                ));
            }
            let r = Event {
                detail: m.detail.clone(),
                ..r.clone()
            };
            if &r != m {
                return Err(format!("event {r:?}\n model {m:?}"));
            }
        } else if r != m {
            return Err(format!("event {r:?}\n model {m:?}"));
        }
    }
    Ok(())
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
            detail: String::new(),
            capabilities: r
                .map(|r| {
                    let mut names: Vec<String> = r
                        .capabilities
                        .iter()
                        .map(|c| super::norm(&c.name))
                        .collect();
                    names.sort();
                    names.dedup();
                    names
                })
                .unwrap_or_default(),
            advisory: None,
            actor: self.actor(cause),
            card_etag: r
                .and_then(|r| r.agent_card.as_ref())
                .map(|c| c.etag().to_string()),
        });
    }

    /// Who an event names: the token behind the change; `anonymous` for a
    /// registration, removal or status change without one; nobody for the
    /// registry's own changes or an agent's report without a token.
    fn actor(&self, cause: Cause) -> Option<Actor> {
        let acting = self.acting.clone()?;
        match cause {
            Cause::Registration | Cause::Deregistration | Cause::Operator => Some(acting),
            Cause::AgentReport if acting.token_id.is_some() => Some(acting),
            Cause::AgentReport
            | Cause::MissedHeartbeats
            | Cause::Heartbeat
            | Cause::Brake
            | Cause::ScalingPolicy => None,
        }
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
            detail: String::new(),
            capabilities: Vec::new(),
            advisory: None,
            actor: self.actor(cause),
            card_etag: None,
        });
    }

    /// Removes an agent with a `kind` event, then `RUNTIME_LEFT` when it
    /// was the last of its runtime. Returns the removal's revision.
    fn remove(
        &mut self,
        id: &AgentId,
        now: Timestamp,
        kind: EventKind,
        cause: Cause,
    ) -> Option<Revision> {
        let r = self.agents.remove(id)?;
        self.event(kind, Some(&r), Some(r.status), now, cause);
        let revision = self.revision;
        if !r.runtime_id.is_empty() && !self.runtime_used(&r.runtime_id) {
            self.runtime_event(EventKind::RuntimeLeft, &r.runtime_id, now, cause);
        }
        Some(revision)
    }

    /// Moves `id` to `status` with an `AGENT_STATUS_CHANGED` event, unless
    /// it is there already.
    fn set_status(&mut self, id: &AgentId, status: AgentStatus, now: Timestamp, cause: Cause) {
        let r = self.agents[id].clone();
        if r.status == status {
            return;
        }
        let mut n = r.clone();
        n.status = status;
        n.updated_at = now;
        n.revision = self.revision + 1;
        self.agents.insert(id.clone(), n.clone());
        self.event(
            EventKind::AgentStatusChanged,
            Some(&n),
            Some(r.status),
            now,
            cause,
        );
    }

    /// Checkpoint: for each entry whose agent exists, the newer of the two
    /// last heartbeats, health and load when given, metrics merged. Status:
    /// suspended and deregistering stay; unhealthy, offline and registering
    /// become the reported status if an agent may report it, else active
    /// (cause `heartbeat`); active, busy and degraded take a reported status
    /// (cause `agent_report`). Only a status change is a revision.
    fn checkpoint(&mut self, entries: &[CheckpointEntry], now: Timestamp) -> CommandResult {
        use AgentStatus::*;
        let (mut applied, mut skipped) = (0, 0);
        for e in entries {
            let Some(mut n) = self.agents.get(&e.agent_id).cloned() else {
                skipped += 1;
                self.outcomes.push(Outcome::Unknown);
                continue;
            };
            applied += 1;
            n.last_heartbeat = n.last_heartbeat.max(e.last_heartbeat);
            n.health_score = e.health_score.unwrap_or(n.health_score);
            n.load_factor = e.load_factor.unwrap_or(n.load_factor);
            n.performance_metrics
                .extend(e.metrics.iter().map(|(k, v)| (k.clone(), *v)));
            let reported = e.status.filter(|s| [Active, Busy, Degraded].contains(s));
            let (target, cause) = match n.status {
                Suspended | Deregistering => (n.status, Cause::Heartbeat),
                Unhealthy | Offline | Registering => (reported.unwrap_or(Active), Cause::Heartbeat),
                Active | Busy | Degraded => (reported.unwrap_or(n.status), Cause::AgentReport),
            };
            self.agents.insert(e.agent_id.clone(), n.clone());
            if target == n.status {
                self.outcomes.push(Outcome::Refreshed);
            } else {
                self.set_status(&e.agent_id, target, now, cause);
                self.outcomes.push(Outcome::Changed(cause));
            }
        }
        CommandResult::EntriesApplied { applied, skipped }
    }

    /// Expire: skipped when the agent is gone, was re-registered since the
    /// decision (another epoch) or the step does not fit its status;
    /// otherwise unhealthy/offline (cause `missed_heartbeats`) or removal
    /// with `AGENT_EXPIRED`.
    fn expire(&mut self, entries: &[ExpireEntry], now: Timestamp) -> CommandResult {
        let (mut applied, mut skipped) = (0, 0);
        for e in entries {
            let outcome = match self.agents.get(&e.agent_id) {
                None => Outcome::Unknown,
                Some(r) if r.epoch != e.epoch => Outcome::StaleEpoch,
                Some(r) if !step_fits(e.step, r.status) => Outcome::Unfit(e.step),
                Some(_) => Outcome::Stepped(e.step),
            };
            self.outcomes.push(outcome);
            if outcome != Outcome::Stepped(e.step) {
                skipped += 1;
                continue;
            }
            applied += 1;
            let cause = Cause::MissedHeartbeats;
            match e.step {
                ExpiryStep::Unhealthy => {
                    self.set_status(&e.agent_id, AgentStatus::Unhealthy, now, cause)
                }
                ExpiryStep::Offline => {
                    self.set_status(&e.agent_id, AgentStatus::Offline, now, cause)
                }
                ExpiryStep::Remove => {
                    self.remove(&e.agent_id, now, EventKind::AgentExpired, cause);
                }
            }
        }
        CommandResult::EntriesApplied { applied, skipped }
    }

    /// Brake: the flag, and one event without an agent.
    fn brake(&mut self, engaged: bool, held: u64, fleet: u64, now: Timestamp) -> CommandResult {
        self.brake_engaged = engaged;
        self.revision += 1;
        self.events.push(Event {
            revision: self.revision,
            kind: if engaged {
                EventKind::LivenessBrakeEngaged
            } else {
                EventKind::LivenessBrakeReleased
            },
            agent_id: None,
            at: now,
            cause: Cause::Brake,
            status: None,
            previous_status: None,
            runtime_id: String::new(),
            detail: brake_detail(held, fleet),
            capabilities: Vec::new(),
            advisory: None,
            actor: None,
            card_etag: None,
        });
        CommandResult::EntriesApplied {
            applied: 1,
            skipped: 0,
        }
    }

    /// Applies `cmd`; a client change without a token is anonymous.
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        if cmd.is_client_change() && self.acting.is_none() {
            self.acting = Some(Actor::anonymous());
            let result = self.apply_command(cmd);
            self.acting = None;
            return result;
        }
        self.apply_command(cmd)
    }

    fn apply_command(&mut self, cmd: &Command) -> CommandResult {
        self.outcomes.clear();
        match cmd {
            // The token must exist, be unexpired at the command's time and
            // allow the change on the agent as it is.
            Command::Authorized { token, command } => {
                let now = command.now();
                let Some(t) = self.tokens.get(token).cloned() else {
                    return CommandResult::Rejected(Rejection::Unauthenticated {
                        message: format!("token {token} does not exist (it was revoked)"),
                    });
                };
                if t.expires_at.is_some_and(|e| now >= e) {
                    return CommandResult::Rejected(Rejection::Unauthenticated {
                        message: format!(
                            "token {token} expired at {}",
                            t.expires_at.unwrap_or_default().to_rfc3339()
                        ),
                    });
                }
                let existing = command
                    .agent_id()
                    .and_then(|id| self.agents.get(id))
                    .map(|r| Existing {
                        runtime_id: &r.runtime_id,
                        status: r.status,
                    });
                if let Err(message) = permits(Rights::of(&t), command, existing) {
                    return CommandResult::Rejected(Rejection::Forbidden { message });
                }
                self.acting = Some(Actor::token(&t));
                let result = self.apply_command(command);
                self.acting = None;
                result
            }
            Command::CreateToken(t) => {
                if self.tokens.values().any(|o| o.name == t.name) {
                    return CommandResult::Rejected(Rejection::TokenExists {
                        name: t.name.clone(),
                    });
                }
                if self.tokens.contains_key(&t.id) {
                    return CommandResult::Rejected(Rejection::Invalid {
                        field: "id".into(),
                        message: format!("token id {} is taken", t.id),
                    });
                }
                if self
                    .tokens
                    .values()
                    .any(|o| o.secret_sha256 == t.secret_sha256)
                {
                    return CommandResult::Rejected(Rejection::Invalid {
                        field: "token".into(),
                        message: "another token has this secret".into(),
                    });
                }
                let mut t = (**t).clone();
                if let Some(a) = self.acting.as_ref().filter(|a| a.token_id.is_some()) {
                    t.created_by = Some(a.clone());
                }
                let info = Box::new(t.info());
                self.tokens.insert(t.id.clone(), t);
                CommandResult::Token {
                    info,
                    revoked: false,
                }
            }
            Command::RevokeToken { id, .. } => {
                let Some(t) = self.tokens.get(id) else {
                    return CommandResult::Rejected(Rejection::TokenNotFound { id: id.clone() });
                };
                let admins = self
                    .tokens
                    .values()
                    .filter(|t| t.role == Role::Admin)
                    .count();
                if t.role == Role::Admin && admins == 1 {
                    return CommandResult::Rejected(Rejection::Invalid {
                        field: "id".into(),
                        message: format!(
                            "token {id} is the last admin token: create another admin token before revoking it"
                        ),
                    });
                }
                let t = self.tokens.remove(id).expect("present");
                CommandResult::Token {
                    info: Box::new(t.info()),
                    revoked: true,
                }
            }
            Command::Checkpoint {
                entries,
                heartbeats,
                now,
            } => {
                self.counters.heartbeats += heartbeats;
                self.checkpoint(entries, *now)
            }
            Command::Expire { entries, now } => {
                let result = self.expire(entries, *now);
                self.counters.missed_heartbeat_transitions += self
                    .outcomes
                    .iter()
                    .filter(|o| matches!(o, Outcome::Stepped(_)))
                    .count() as u64;
                result
            }
            // Applied as the inner command, counting nothing.
            Command::Format1(inner) => {
                let counters = self.counters;
                let result = self.apply(inner);
                self.counters = counters;
                result
            }
            // Counts; no record, no event, no revision.
            Command::CountDiscoveryRequests { count, .. } => {
                self.counters.discovery_requests += count;
                CommandResult::EntriesApplied {
                    applied: 1,
                    skipped: 0,
                }
            }
            Command::Brake {
                engaged,
                held,
                fleet,
                now,
            } => self.brake(*engaged, *held, *fleet, *now),
            // Scaling policies have their own tests (tests/scaling.rs); the
            // generators here never produce them.
            Command::SetScalingPolicy { .. } => {
                unimplemented!("the reference model does not cover scaling policies")
            }
            // A batch is its commands applied one after the other.
            Command::Batch(cmds) => CommandResult::Grouped(
                cmds.iter()
                    .map(|c| {
                        let result = self.apply(c);
                        ItemResult {
                            revision: self.revision,
                            result,
                        }
                    })
                    .collect(),
            ),
            Command::RegisterCard { register, card } => {
                self.card = Some(card.clone());
                let result = self.apply_command(&Command::Register(register.clone()));
                self.card = None;
                result
            }
            // The fields mapped from the card replace the record's; the
            // rest stays. One AGENT_UPDATED; no runtime or status change.
            Command::SetCard(c) => {
                let Some(prev) = self.agents.get(&c.agent_id).cloned() else {
                    return CommandResult::Rejected(Rejection::NotFound {
                        agent_id: c.agent_id.clone(),
                    });
                };
                let n = AgentRecord {
                    name: c.name.clone(),
                    endpoint: c.endpoint.clone(),
                    version: c.version.clone(),
                    description: c.description.clone(),
                    capabilities: c.capabilities.clone(),
                    agent_card: Some(c.card.clone()),
                    updated_at: c.now,
                    revision: self.revision + 1,
                    ..prev.clone()
                };
                self.agents.insert(c.agent_id.clone(), n.clone());
                self.event(
                    EventKind::AgentUpdated,
                    Some(&n),
                    Some(prev.status),
                    c.now,
                    Cause::Registration,
                );
                CommandResult::Agent {
                    record: Box::new(n),
                    created: false,
                }
            }
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
                // An update keeps the parts `keep` names; a creation takes
                // the command's values whatever `keep` says.
                let profile = prev.as_ref().filter(|_| c.keep.profile);
                let caps = prev.as_ref().filter(|_| c.keep.capabilities);
                let lease = prev.as_ref().filter(|_| c.keep.lease);
                let metadata = prev.as_ref().filter(|_| c.keep.metadata);
                let record = AgentRecord {
                    agent_id: c.agent_id.clone(),
                    name: c.name.clone(),
                    agent_type: profile.map_or(c.agent_type.clone(), |p| p.agent_type.clone()),
                    runtime_id: profile.map_or(c.runtime_id.clone(), |p| p.runtime_id.clone()),
                    endpoint: c.endpoint.clone(),
                    version: profile.map_or(c.version.clone(), |p| p.version.clone()),
                    description: profile.map_or(c.description.clone(), |p| p.description.clone()),
                    capabilities: caps.map_or(c.capabilities.clone(), |p| p.capabilities.clone()),
                    tags: profile.map_or(c.tags.clone(), |p| p.tags.clone()),
                    metadata: metadata.map_or(c.metadata.clone(), |p| p.metadata.clone()),
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
                    ttl_seconds: lease.map_or(c.ttl_seconds, |p| p.ttl_seconds),
                    offline_after_seconds: lease
                        .map_or(c.offline_after_seconds, |p| p.offline_after_seconds),
                    deregister_after_seconds: lease
                        .map_or(c.deregister_after_seconds, |p| p.deregister_after_seconds),
                    registered_at: prev.as_ref().map_or(c.now, |p| p.registered_at),
                    updated_at: c.now,
                    last_heartbeat: c.now,
                    create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                    revision: rev,
                    epoch: rev,
                    registered_by: self.acting.clone(),
                    // A registration with a card takes it; one without
                    // keeps the card only with its profile.
                    agent_card: self
                        .card
                        .clone()
                        .or_else(|| profile.and_then(|p| p.agent_card.clone())),
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
                match self.remove(
                    agent_id,
                    *now,
                    EventKind::AgentDeregistered,
                    Cause::Deregistration,
                ) {
                    Some(revision) => CommandResult::Removed {
                        agent_id: agent_id.clone(),
                        revision,
                    },
                    None => CommandResult::Rejected(Rejection::NotFound {
                        agent_id: agent_id.clone(),
                    }),
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
