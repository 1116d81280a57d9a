//! The agent table and the single place where state changes.

use std::collections::BTreeMap;

use rustc_hash::FxHashSet;

use serde::{Deserialize, Serialize};
use tracing::debug;

use registry_types::card::media_major;
use registry_types::command::{
    Cause, CheckpointEntry, ExpireEntry, ExpiryStep, ItemResult, Placement, Rejection,
    SetCardCommand,
};
use registry_types::limits::{check_merged_metrics, check_metrics, Limits};
use registry_types::{
    AgentCard, AgentId, AgentRecord, AgentStatus, Command, CommandResult, Event, EventKind,
    Revision, Timestamp,
};

use registry_types::auth::{permits, Actor, Existing, Rights, TokenId, TokenRecord, MAX_TOKENS};
use registry_types::scaling::{ScalingAction, ScalingAdvisory, ScalingPolicy};

use crate::events::EventLog;
use crate::index::{normalize, words, AgentKey, Field, ShardedIndex};
use crate::ranked::RankedIndex;

/// The normalized, de-duplicated capability names of a record.
pub fn capability_names(record: &AgentRecord) -> Vec<String> {
    let mut names: Vec<String> = record
        .capabilities
        .iter()
        .map(|c| normalize(&c.name))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The most agents a registry holds at once: dense keys are `u32`, and
/// this leaves `AgentKey::MAX` unused.
pub const MAX_AGENT_KEY: usize = AgentKey::MAX as usize;

/// Version of the [`SnapshotData`] encoding. Bump it (and keep the old shape,
/// as [`SnapshotDataV2`], with a conversion) whenever the encoding of a
/// record, event or command changes.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 5;

/// Why [`RegistryState::restore`] refused a snapshot.
///
/// Every variant means the snapshot cannot become this node's state as it
/// is: retrying the same data fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The data claims a format this build does not restore: a newer
    /// release wrote it, or an older format was not converted on decoding.
    #[error("snapshot format {found} is not supported (this build reads {supported})")]
    UnsupportedFormat {
        /// The data's `format_version`.
        found: u32,
        /// The one format `restore` accepts ([`SNAPSHOT_FORMAT_VERSION`]).
        supported: u32,
    },
}

/// Replicated counters behind the statistics other registries report. Each
/// only grows; every replica counts the same because each is advanced by
/// applying a command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Heartbeats the leaders received (as counted in their checkpoints).
    pub heartbeats: u64,
    /// Liveness transitions caused by missed heartbeats: steps to unhealthy
    /// and to offline, and removals.
    pub missed_heartbeat_transitions: u64,
    /// Scaling advisories that came into force.
    pub advisories_raised: u64,
    /// Discovery requests the nodes reported.
    pub discovery_requests: u64,
}

/// Node-local settings of the state machine. They must be the same on every
/// node for `events` windows to match, but no replicated result depends on
/// them.
#[derive(Clone, Debug)]
pub struct StateConfig {
    /// How many events the watch window keeps.
    pub event_window: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            event_window: 100_000,
        }
    }
}

/// The whole replicated registry state.
#[derive(Clone, Debug)]
pub struct RegistryState {
    /// Agent id → dense key; ordered so listings page by id with stable
    /// cursors.
    pub(crate) agents: BTreeMap<AgentId, AgentKey>,
    /// The records, indexed by dense key: resolving an index posting is one
    /// array access (no id lookup). `None` for freed keys.
    pub(crate) slots: Vec<Option<AgentRecord>>,
    /// Freed keys, reused last-in-first-out (deterministic).
    free_keys: Vec<AgentKey>,
    pub(crate) index: ShardedIndex,
    /// Per-capability orderings by performance, load and health, for
    /// discovery's early-stopping walk. Derived: rebuilt on restore.
    pub(crate) ranked: RankedIndex,
    pub(crate) events: EventLog,
    /// The registry revision: +1 for every event.
    pub(crate) revision: Revision,
    /// Registrations that created an agent, ever.
    pub(crate) total_registrations: u64,
    /// Capabilities over all agents.
    pub(crate) total_capabilities: u64,
    /// The mass-expiry brake, as last decided by a leader.
    pub(crate) brake_engaged: bool,
    /// Scaling policies by normalized capability name.
    pub(crate) scaling_policies: BTreeMap<String, ScalingPolicy>,
    /// Advisories in force, by capability and action.
    pub(crate) advisories: BTreeMap<(String, ScalingAction), ScalingAdvisory>,
    pub(crate) counters: Counters,
    /// Tokens by id.
    pub(crate) tokens: BTreeMap<TokenId, TokenRecord>,
    /// Token id by the SHA-256 of its secret. Derived: rebuilt on restore.
    token_hashes: std::collections::HashMap<[u8; 32], TokenId>,
    /// Whom the events of the command being applied are attributed to
    /// (see [`Event::actor`]): set around a client change only.
    acting: Option<Actor>,
    config: StateConfig,
}

/// The portable form of the state, written into Raft snapshots (bincode).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotData {
    pub format_version: u32,
    pub revision: Revision,
    pub total_registrations: u64,
    pub agents: Vec<AgentRecord>,
    pub events_compacted_through: Revision,
    pub events: Vec<Event>,
    pub brake_engaged: bool,
    pub scaling_policies: Vec<ScalingPolicy>,
    pub advisories: Vec<ScalingAdvisory>,
    pub counters: Counters,
    pub tokens: Vec<TokenRecord>,
}

/// A snapshot of format 4 (before A2A Agent Cards): records without
/// `agent_card`, events without `card_etag`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDataV4 {
    pub format_version: u32,
    pub revision: Revision,
    pub total_registrations: u64,
    pub agents: Vec<registry_types::v4::AgentRecord>,
    pub events_compacted_through: Revision,
    pub events: Vec<registry_types::v4::Event>,
    pub brake_engaged: bool,
    pub scaling_policies: Vec<ScalingPolicy>,
    pub advisories: Vec<ScalingAdvisory>,
    pub counters: Counters,
    pub tokens: Vec<TokenRecord>,
}

impl From<SnapshotDataV4> for SnapshotData {
    fn from(d: SnapshotDataV4) -> Self {
        SnapshotData {
            format_version: SNAPSHOT_FORMAT_VERSION,
            revision: d.revision,
            total_registrations: d.total_registrations,
            agents: d.agents.into_iter().map(Into::into).collect(),
            events_compacted_through: d.events_compacted_through,
            events: d.events.into_iter().map(Into::into).collect(),
            brake_engaged: d.brake_engaged,
            scaling_policies: d.scaling_policies,
            advisories: d.advisories,
            counters: d.counters,
            tokens: d.tokens,
        }
    }
}

/// A snapshot of format 3 (before access control): records without
/// `registered_by`, events without `actor`, and no tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDataV3 {
    pub format_version: u32,
    pub revision: Revision,
    pub total_registrations: u64,
    pub agents: Vec<registry_types::v3::AgentRecord>,
    pub events_compacted_through: Revision,
    pub events: Vec<registry_types::v3::Event>,
    pub brake_engaged: bool,
    pub scaling_policies: Vec<ScalingPolicy>,
    pub advisories: Vec<ScalingAdvisory>,
    pub counters: Counters,
}

impl From<SnapshotDataV3> for SnapshotData {
    fn from(d: SnapshotDataV3) -> Self {
        SnapshotData {
            format_version: SNAPSHOT_FORMAT_VERSION,
            revision: d.revision,
            total_registrations: d.total_registrations,
            agents: d.agents.into_iter().map(Into::into).collect(),
            events_compacted_through: d.events_compacted_through,
            events: d.events.into_iter().map(Into::into).collect(),
            brake_engaged: d.brake_engaged,
            scaling_policies: d.scaling_policies,
            advisories: d.advisories,
            counters: d.counters,
            tokens: Vec::new(),
        }
    }
}

/// A snapshot of format 2 (written by releases whose Raft format was 1):
/// records held version-1 capabilities, and there were no counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDataV2 {
    pub format_version: u32,
    pub revision: Revision,
    pub total_registrations: u64,
    pub agents: Vec<registry_types::v1::AgentRecord>,
    pub events_compacted_through: Revision,
    pub events: Vec<registry_types::v3::Event>,
    pub brake_engaged: bool,
    pub scaling_policies: Vec<ScalingPolicy>,
    pub advisories: Vec<ScalingAdvisory>,
}

impl From<SnapshotDataV2> for SnapshotData {
    fn from(d: SnapshotDataV2) -> Self {
        SnapshotData {
            format_version: SNAPSHOT_FORMAT_VERSION,
            revision: d.revision,
            total_registrations: d.total_registrations,
            agents: d.agents.into_iter().map(Into::into).collect(),
            events_compacted_through: d.events_compacted_through,
            events: d.events.into_iter().map(Into::into).collect(),
            brake_engaged: d.brake_engaged,
            scaling_policies: d.scaling_policies,
            advisories: d.advisories,
            // Not counted before format 3.
            counters: Counters::default(),
            tokens: Vec::new(),
        }
    }
}

/// The state as a snapshot, borrowed: it serializes exactly as
/// [`SnapshotData`] (same fields in the same order, and serde writes a
/// sequence of references as it writes the values), so a node encodes its
/// snapshot straight from the tables. Copying 100,000 records first took
/// about a tenth of a node's CPU during a registration run, most of it the
/// kernel zeroing the fresh pages the copy landed in, all under the state
/// lock that applies wait for.
#[derive(Debug, Serialize)]
pub struct SnapshotView<'a> {
    pub format_version: u32,
    pub revision: Revision,
    pub total_registrations: u64,
    pub agents: Vec<&'a AgentRecord>,
    pub events_compacted_through: Revision,
    pub events: Vec<&'a Event>,
    pub brake_engaged: bool,
    pub scaling_policies: Vec<&'a ScalingPolicy>,
    pub advisories: Vec<&'a ScalingAdvisory>,
    pub counters: Counters,
    pub tokens: Vec<&'a TokenRecord>,
}

impl Default for RegistryState {
    fn default() -> Self {
        RegistryState::new(StateConfig::default())
    }
}

impl RegistryState {
    pub fn new(config: StateConfig) -> Self {
        RegistryState {
            agents: BTreeMap::new(),
            slots: Vec::new(),
            free_keys: Vec::new(),
            index: ShardedIndex::default(),
            ranked: RankedIndex::default(),
            events: EventLog::new(config.event_window),
            revision: 0,
            total_registrations: 0,
            total_capabilities: 0,
            brake_engaged: false,
            scaling_policies: BTreeMap::new(),
            advisories: BTreeMap::new(),
            counters: Counters::default(),
            tokens: BTreeMap::new(),
            token_hashes: std::collections::HashMap::new(),
            acting: None,
            config,
        }
    }

    /// The revision of the last applied change.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    pub fn get(&self, id: &AgentId) -> Option<&AgentRecord> {
        self.resolve(*self.agents.get(id)?)
    }

    /// The record under a dense key: O(1).
    pub(crate) fn resolve(&self, key: AgentKey) -> Option<&AgentRecord> {
        self.slots.get(key as usize)?.as_ref()
    }

    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// Every record, in id order.
    pub fn records(&self) -> impl Iterator<Item = &AgentRecord> {
        self.agents.values().filter_map(|k| self.resolve(*k))
    }

    /// Records in agent id order after `after` (from the first when
    /// `None`): lets a long pass over the table resume where it stopped
    /// after releasing the state lock.
    pub fn records_after<'a>(
        &'a self,
        after: Option<&AgentId>,
    ) -> impl Iterator<Item = &'a AgentRecord> + 'a {
        use std::ops::Bound::{Excluded, Unbounded};
        let lower = after.map_or(Unbounded, |id| Excluded(id.clone()));
        self.agents
            .range((lower, Unbounded))
            .filter_map(|(_, k)| self.resolve(*k))
    }

    /// The single entry point for changes. `log_index` is only for tracing.
    ///
    /// Total: whatever the command holds, this returns a result and never
    /// panics, because a panic on a committed entry would repeat on every
    /// replica and at every restart. A command that breaks the public API's
    /// rules ([`Command::check_fields`] with [`Limits::DEFAULT`], the
    /// placement rules of batches, and the checks that need the state:
    /// merged metrics, the number of scaling policies) is
    /// [`Rejection::Invalid`] on every replica and changes nothing.
    pub fn apply(&mut self, log_index: u64, cmd: &Command) -> CommandResult {
        self.apply_at(log_index, cmd, Placement::default())
    }

    /// Applies `cmd` found at `at` inside its log entry. Recursion is
    /// bounded: an item that may not sit where it is (a batch in a batch, a
    /// `Format1` in either) is rejected before anything inside it is looked at.
    fn apply_at(&mut self, log_index: u64, cmd: &Command, at: Placement) -> CommandResult {
        debug!(log_index, kind = cmd.kind(), "apply");
        if let Err(e) = cmd
            .check_placement(at)
            .and_then(|()| cmd.check_fields(&Limits::DEFAULT))
        {
            debug!(log_index, kind = cmd.kind(), error = %e.error.message, "rejected as invalid");
            return CommandResult::Rejected(Rejection::invalid(e));
        }
        if cmd.is_client_change() && !at.in_authorized {
            // Without a token: an anonymous caller, or any caller while
            // auth is off.
            return self.acting_as(Some(Actor::anonymous()), |s| s.dispatch(log_index, cmd, at));
        }
        self.dispatch(log_index, cmd, at)
    }

    /// Runs `f` with the events it makes attributed to `actor`.
    /// The actor of an event with `cause` made now: the caller behind the
    /// command being applied; none for the registry's own changes, and none
    /// for an agent's health or load report made without a token (the
    /// agent is the event's subject already). The second rule is what lets
    /// a snapshot of the release before access control convert exactly
    /// (`registry_types::v3`): there, a report carried by heartbeats and
    /// one made through the API look alike.
    fn actor_of(&self, cause: Cause) -> Option<Actor> {
        match &self.acting {
            _ if cause.by_registry() => None,
            Some(a) if a.token_id.is_none() && cause == Cause::AgentReport => None,
            acting => acting.clone(),
        }
    }

    fn acting_as<R>(&mut self, actor: Option<Actor>, f: impl FnOnce(&mut Self) -> R) -> R {
        let before = std::mem::replace(&mut self.acting, actor);
        let result = f(self);
        self.acting = before;
        result
    }

    /// Applies a checked command.
    fn dispatch(&mut self, log_index: u64, cmd: &Command, at: Placement) -> CommandResult {
        match cmd {
            Command::Register(c) => self.apply_register(c, None),
            Command::RegisterCard { register, card } => self.apply_register(register, Some(card)),
            Command::SetCard(c) => self.apply_set_card(c),
            Command::Deregister { agent_id, now } => self.apply_deregister(agent_id, *now),
            Command::SetStatus {
                agent_id,
                status,
                now,
            } => self.apply_set_status(agent_id, *status, *now),
            Command::SetHealth {
                agent_id,
                health_score,
                load_factor,
                metrics,
                now,
            } => self.apply_set_health(agent_id, *health_score, *load_factor, metrics, *now),
            Command::Checkpoint {
                entries,
                heartbeats,
                now,
            } => {
                self.counters.heartbeats = self.counters.heartbeats.saturating_add(*heartbeats);
                self.apply_checkpoint(entries, *now)
            }
            Command::Format1(inner) => {
                let counters = self.counters;
                let within = Placement {
                    in_format1: true,
                    ..at
                };
                let result = self.apply_at(log_index, inner, within);
                self.counters = counters;
                result
            }
            Command::CountDiscoveryRequests { count, .. } => {
                self.counters.discovery_requests =
                    self.counters.discovery_requests.saturating_add(*count);
                CommandResult::EntriesApplied {
                    applied: 1,
                    skipped: 0,
                }
            }
            Command::Expire { entries, now } => self.apply_expire(entries, *now),
            Command::Brake {
                engaged,
                held,
                fleet,
                now,
            } => self.apply_brake(*engaged, *held, *fleet, *now),
            Command::SetScalingPolicy {
                capability,
                policy,
                now,
            } => self.apply_set_scaling_policy(capability, policy.as_ref(), *now),
            Command::CreateToken(t) => self.apply_create_token(t),
            Command::RevokeToken { id, .. } => self.apply_revoke_token(id),
            Command::Authorized { token, command } => {
                self.apply_authorized(log_index, token, command, at)
            }
            Command::Batch(cmds) => {
                let within = Placement {
                    in_batch: true,
                    ..at
                };
                CommandResult::Grouped(
                    cmds.iter()
                        .map(|c| {
                            let result = self.apply_at(log_index, c, within);
                            ItemResult {
                                revision: self.revision,
                                result,
                            }
                        })
                        .collect(),
                )
            }
        }
    }

    /// The revision the next change takes. Saturating: 2^64 changes are
    /// out of reach, but a restored snapshot may claim anything, and an
    /// overflow must not panic or wrap to 0.
    fn next_revision(&self) -> Revision {
        self.revision.saturating_add(1)
    }

    /// Records heartbeats the leader received since its last checkpoint.
    /// A heartbeat revives an unhealthy or offline agent; an agent's own
    /// status report (active, busy, degraded) is applied unless an operator
    /// suspended it or it is exiting. Liveness refreshes alone (last
    /// heartbeat, health, load) do not advance the revision: only status
    /// transitions are changes with events.
    fn apply_checkpoint(&mut self, entries: &[CheckpointEntry], now: Timestamp) -> CommandResult {
        let (mut applied, mut skipped) = (0u64, 0u64);
        for e in entries {
            let Some(key) = self.agents.get(&e.agent_id).copied() else {
                skipped = skipped.saturating_add(1);
                continue;
            };
            let Some(r) = self.slots.get_mut(key as usize).and_then(Option::as_mut) else {
                skipped = skipped.saturating_add(1);
                continue;
            };
            if e.last_heartbeat > r.last_heartbeat {
                r.last_heartbeat = e.last_heartbeat;
            }
            // The heartbeat always counts; what the heartbeat path would
            // have refused is dropped from the report, part by part: a
            // score outside 0..=1 (or NaN), and metrics that are not finite
            // or would take the agent past the limit once merged. The
            // leader checks each heartbeat alone against its own state, and
            // the heartbeats of one interval merge into one entry, so
            // together they can overshoot; losing the liveness refresh for
            // it would let a live agent expire.
            let unit = |v: Option<f64>| v.filter(|x| (0.0..=1.0).contains(x));
            Self::set_scores(
                &mut self.ranked,
                key,
                r,
                unit(e.health_score),
                unit(e.load_factor),
            );
            let limits = &Limits::DEFAULT;
            if check_metrics("metrics", &e.metrics, limits).is_ok()
                && e.check_merged_metrics(&r.performance_metrics, limits)
                    .is_ok()
            {
                for (k, v) in &e.metrics {
                    r.performance_metrics.insert(k.clone(), *v);
                }
            }
            let current = r.status;
            let target = current.after_heartbeat(e.status);
            if target != current {
                let cause = if current.is_healthy() {
                    Cause::AgentReport
                } else {
                    Cause::Heartbeat
                };
                self.change_status(&e.agent_id, target, now, cause);
            }
            applied = applied.saturating_add(1);
        }
        self.evaluate_scaling(now);
        CommandResult::EntriesApplied { applied, skipped }
    }

    /// Applies the leader's liveness decisions. An entry whose epoch is not
    /// the agent's current one (it re-registered meanwhile), or whose step
    /// no longer fits the agent's status, is skipped.
    fn apply_expire(&mut self, entries: &[ExpireEntry], now: Timestamp) -> CommandResult {
        let (mut applied, mut skipped) = (0u64, 0u64);
        for e in entries {
            let Some(status) = self
                .get(&e.agent_id)
                .filter(|r| r.epoch == e.epoch)
                .map(|r| r.status)
            else {
                skipped = skipped.saturating_add(1);
                continue;
            };
            let fits = match e.step {
                ExpiryStep::Unhealthy => matches!(
                    status,
                    AgentStatus::Registering
                        | AgentStatus::Active
                        | AgentStatus::Busy
                        | AgentStatus::Degraded
                        | AgentStatus::Deregistering
                ),
                ExpiryStep::Offline => {
                    !matches!(status, AgentStatus::Offline | AgentStatus::Suspended)
                }
                ExpiryStep::Remove => true,
            };
            if !fits {
                skipped = skipped.saturating_add(1);
                continue;
            }
            self.counters.missed_heartbeat_transitions =
                self.counters.missed_heartbeat_transitions.saturating_add(1);
            match e.step {
                ExpiryStep::Unhealthy => {
                    self.change_status(
                        &e.agent_id,
                        AgentStatus::Unhealthy,
                        now,
                        Cause::MissedHeartbeats,
                    );
                }
                ExpiryStep::Offline => {
                    self.change_status(
                        &e.agent_id,
                        AgentStatus::Offline,
                        now,
                        Cause::MissedHeartbeats,
                    );
                }
                ExpiryStep::Remove => {
                    self.remove(
                        &e.agent_id,
                        now,
                        EventKind::AgentExpired,
                        Cause::MissedHeartbeats,
                    );
                }
            }
            applied = applied.saturating_add(1);
        }
        self.evaluate_scaling(now);
        CommandResult::EntriesApplied { applied, skipped }
    }

    fn apply_brake(
        &mut self,
        engaged: bool,
        held: u64,
        fleet: u64,
        now: Timestamp,
    ) -> CommandResult {
        self.brake_engaged = engaged;
        let kind = if engaged {
            EventKind::LivenessBrakeEngaged
        } else {
            EventKind::LivenessBrakeReleased
        };
        self.revision = self.next_revision();
        self.events.push(Event {
            revision: self.revision,
            kind,
            agent_id: None,
            at: now,
            cause: Cause::Brake,
            status: None,
            previous_status: None,
            runtime_id: String::new(),
            detail: if engaged {
                format!(
                    "{held} of {fleet} live agents would have gone offline in one sweep: held back"
                )
            } else {
                format!("released with {held} of {fleet} live agents due to go offline")
            },
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

    /// Moves an existing agent to `status`, keeping the index in step, and
    /// emits `AGENT_STATUS_CHANGED`. Returns the updated record.
    fn change_status(
        &mut self,
        id: &AgentId,
        status: AgentStatus,
        now: Timestamp,
        cause: Cause,
    ) -> Option<AgentRecord> {
        let key = *self.agents.get(id)?;
        let previous = self.resolve(key)?.status;
        if previous == status {
            return self.resolve(key).cloned();
        }
        self.index.remove(Field::Status, previous.into_str(), key);
        self.index.insert(Field::Status, status.into_str(), key);
        let revision = self.next_revision();
        let record = {
            let r = self.slots.get_mut(key as usize)?.as_mut()?;
            r.status = status;
            r.updated_at = now;
            r.revision = revision;
            r.clone()
        };
        self.push_event(
            EventKind::AgentStatusChanged,
            Some(&record),
            Some(previous),
            now,
            cause,
        );
        Some(record)
    }

    /// Removes an agent with its index entries and emits `kind` (and
    /// `RUNTIME_LEFT` when it was its runtime's last agent). Returns the
    /// event's revision.
    fn remove(
        &mut self,
        id: &AgentId,
        now: Timestamp,
        kind: EventKind,
        cause: Cause,
    ) -> Option<Revision> {
        let key = *self.agents.get(id)?;
        let record = self.slots.get_mut(key as usize)?.take()?;
        self.agents.remove(id);
        self.unindex(key, &record);
        self.free_keys.push(key);
        self.total_capabilities = self
            .total_capabilities
            .saturating_sub(record.capabilities.len() as u64);
        let revision = self.push_event(kind, Some(&record), Some(record.status), now, cause);
        self.runtime_left_if_empty(&record.runtime_id, now, cause);
        Some(revision)
    }

    /// The replicated counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Whether the mass-expiry brake is engaged (as last decided by a leader).
    pub fn brake_engaged(&self) -> bool {
        self.brake_engaged
    }

    /// A registration, with the card it came with (`RegisterCard`). Without
    /// one, an update drops the agent's card, unless it keeps its profile
    /// (the legacy routes, whose bodies cannot carry a card).
    fn apply_register(
        &mut self,
        c: &registry_types::command::RegisterCommand,
        card: Option<&AgentCard>,
    ) -> CommandResult {
        let existing = self.get(&c.agent_id);
        if let Some(expected) = c.expected_revision {
            let actual = existing.map_or(0, |r| r.revision);
            if actual != expected {
                return CommandResult::Rejected(Rejection::RevisionMismatch {
                    agent_id: c.agent_id.clone(),
                    expected,
                    actual,
                });
            }
        }
        if let (true, Some(r)) = (c.if_absent, existing) {
            return CommandResult::Rejected(Rejection::AlreadyExists {
                agent_id: c.agent_id.clone(),
                revision: r.revision,
            });
        }
        if existing.is_none() && self.free_keys.is_empty() && self.slots.len() >= MAX_AGENT_KEY {
            return CommandResult::Rejected(Rejection::Invalid {
                field: "agent_id".into(),
                message: format!("the registry holds the most agents it can ({MAX_AGENT_KEY})"),
            });
        }
        // The old record leaves its slot (put fills it again): no copy.
        let previous = self
            .agents
            .get(&c.agent_id)
            .and_then(|&k| self.slots.get_mut(k as usize)?.take());
        let created = previous.is_none();
        let status = match &previous {
            // An operator's suspension outlives re-registration.
            Some(p) if p.status == AgentStatus::Suspended => AgentStatus::Suspended,
            Some(p) => c.status.unwrap_or(match p.status {
                AgentStatus::Busy | AgentStatus::Degraded | AgentStatus::Active => p.status,
                // Re-registering revives an unhealthy, offline or exiting agent.
                _ => AgentStatus::Active,
            }),
            None => c.status.unwrap_or(AgentStatus::Active),
        };
        let record_revision = self.next_revision();
        // What the command does not carry, an update keeps.
        let kept = |keep: bool| previous.as_ref().filter(|_| keep);
        let profile = kept(c.keep.profile);
        let lease = kept(c.keep.lease);
        let record = AgentRecord {
            agent_id: c.agent_id.clone(),
            name: c.name.clone(),
            agent_type: profile.map_or(&c.agent_type, |p| &p.agent_type).clone(),
            runtime_id: profile.map_or(&c.runtime_id, |p| &p.runtime_id).clone(),
            endpoint: c.endpoint.clone(),
            version: profile.map_or(&c.version, |p| &p.version).clone(),
            description: profile.map_or(&c.description, |p| &p.description).clone(),
            capabilities: kept(c.keep.capabilities)
                .map_or(&c.capabilities, |p| &p.capabilities)
                .clone(),
            tags: profile.map_or(&c.tags, |p| &p.tags).clone(),
            metadata: kept(c.keep.metadata)
                .map_or(&c.metadata, |p| &p.metadata)
                .clone(),
            status,
            health_score: c
                .health_score
                .or(previous.as_ref().map(|p| p.health_score))
                .unwrap_or(1.0),
            load_factor: c
                .load_factor
                .or(previous.as_ref().map(|p| p.load_factor))
                .unwrap_or(0.0),
            performance_metrics: c
                .performance_metrics
                .clone()
                .or(previous.as_ref().map(|p| p.performance_metrics.clone()))
                .unwrap_or_default(),
            ttl_seconds: lease.map_or(c.ttl_seconds, |p| p.ttl_seconds),
            offline_after_seconds: lease
                .map_or(c.offline_after_seconds, |p| p.offline_after_seconds),
            deregister_after_seconds: lease
                .map_or(c.deregister_after_seconds, |p| p.deregister_after_seconds),
            registered_at: previous.as_ref().map_or(c.now, |p| p.registered_at),
            updated_at: c.now,
            last_heartbeat: c.now,
            create_revision: previous
                .as_ref()
                .map_or(record_revision, |p| p.create_revision),
            revision: record_revision,
            epoch: record_revision,
            registered_by: self.acting.clone(),
            agent_card: match card {
                Some(card) => Some(card.clone()),
                None => profile.and_then(|p| p.agent_card.clone()),
            },
        };
        let kind = if created {
            self.total_registrations = self.total_registrations.saturating_add(1);
            EventKind::AgentRegistered
        } else {
            EventKind::AgentUpdated
        };
        let previous_status = previous.as_ref().map(|p| p.status);
        // The one copy: the result for the caller. The table keeps its own.
        let result = Box::new(record.clone());
        self.put(previous, record, c.now, Cause::Registration, kind);
        let record = result;
        if let Some(prev) = previous_status.filter(|p| *p != status) {
            self.push_event(
                EventKind::AgentStatusChanged,
                Some(&record),
                Some(prev),
                c.now,
                Cause::Registration,
            );
        }
        CommandResult::Agent { record, created }
    }

    /// A new card for an agent that exists, with the fields the edge mapped
    /// from it; the rest of the record stays (it is not a registration: the
    /// epoch and the last heartbeat stay too). `AGENT_UPDATED`, and a status
    /// never changes.
    fn apply_set_card(&mut self, c: &SetCardCommand) -> CommandResult {
        let Some(previous) = self
            .agents
            .get(&c.agent_id)
            .and_then(|&k| self.slots.get_mut(k as usize)?.take())
        else {
            return CommandResult::Rejected(Rejection::NotFound {
                agent_id: c.agent_id.clone(),
            });
        };
        let record = AgentRecord {
            name: c.name.clone(),
            endpoint: c.endpoint.clone(),
            version: c.version.clone(),
            description: c.description.clone(),
            capabilities: c.capabilities.clone(),
            agent_card: Some(c.card.clone()),
            updated_at: c.now,
            revision: self.next_revision(),
            ..previous.clone()
        };
        let result = Box::new(record.clone());
        self.put(
            Some(previous),
            record,
            c.now,
            Cause::Registration,
            EventKind::AgentUpdated,
        );
        CommandResult::Agent {
            record: result,
            created: false,
        }
    }

    fn apply_deregister(&mut self, id: &AgentId, now: Timestamp) -> CommandResult {
        match self.remove(id, now, EventKind::AgentDeregistered, Cause::Deregistration) {
            Some(revision) => CommandResult::Removed {
                agent_id: id.clone(),
                revision,
            },
            None => CommandResult::Rejected(Rejection::NotFound {
                agent_id: id.clone(),
            }),
        }
    }

    fn apply_set_status(
        &mut self,
        id: &AgentId,
        status: AgentStatus,
        now: Timestamp,
    ) -> CommandResult {
        match self.change_status(id, status, now, Cause::Operator) {
            Some(record) => CommandResult::Agent {
                record: Box::new(record),
                created: false,
            },
            None => CommandResult::Rejected(Rejection::NotFound {
                agent_id: id.clone(),
            }),
        }
    }

    fn apply_set_health(
        &mut self,
        id: &AgentId,
        health_score: Option<f64>,
        load_factor: Option<f64>,
        metrics: &BTreeMap<String, f64>,
        now: Timestamp,
    ) -> CommandResult {
        let revision = self.next_revision();
        let Some(r) = self
            .agents
            .get(id)
            .copied()
            .and_then(|k| Some((k, self.slots.get_mut(k as usize)?.as_mut()?)))
        else {
            return CommandResult::Rejected(Rejection::NotFound {
                agent_id: id.clone(),
            });
        };
        let (key, r) = r;
        // Metrics merge: repeated reports of new names must not grow a
        // record without bound (the API checks this against its own,
        // possibly stale, state; this is the check every replica agrees on).
        if let Err(e) = check_merged_metrics(
            "metrics",
            &r.performance_metrics,
            None,
            metrics,
            &Limits::DEFAULT,
        ) {
            return CommandResult::Rejected(Rejection::invalid(e));
        }
        Self::set_scores(&mut self.ranked, key, r, health_score, load_factor);
        for (k, v) in metrics {
            r.performance_metrics.insert(k.clone(), *v);
        }
        r.updated_at = now;
        r.revision = revision;
        let record = r.clone();
        self.push_event(
            EventKind::AgentUpdated,
            Some(&record),
            None,
            now,
            Cause::AgentReport,
        );
        CommandResult::Agent {
            record: Box::new(record),
            created: false,
        }
    }

    /// Inserts or replaces a record, keeping indexes and counters in step,
    /// and emits `kind` (plus `RUNTIME_JOINED`/`RUNTIME_LEFT` as runtimes
    /// gain their first or lose their last agent).
    ///
    /// `previous` must already be out of its slot; `record` moves into it.
    /// Returns the record's key.
    fn put(
        &mut self,
        previous: Option<AgentRecord>,
        record: AgentRecord,
        now: Timestamp,
        cause: Cause,
        kind: EventKind,
    ) -> AgentKey {
        let key = match (&previous, self.agents.get(&record.agent_id).copied()) {
            (Some(prev), Some(key)) => {
                self.unindex(key, prev);
                self.total_capabilities = self
                    .total_capabilities
                    .saturating_sub(prev.capabilities.len() as u64);
                key
            }
            _ => self.allocate_key(),
        };
        let runtime_is_new = !record.runtime_id.is_empty()
            && previous
                .as_ref()
                .is_none_or(|p| p.runtime_id != record.runtime_id)
            && self
                .index
                .get(Field::Runtime, &record.runtime_id)
                .is_empty();
        self.index_record(key, &record);
        self.total_capabilities = self
            .total_capabilities
            .saturating_add(record.capabilities.len() as u64);
        if previous.is_none() {
            self.agents.insert(record.agent_id.clone(), key);
        }
        let revision = self.push_event(
            kind,
            Some(&record),
            previous.as_ref().map(|p| p.status),
            now,
            cause,
        );
        debug_assert_eq!(revision, record.revision);
        if let Some(prev) = previous.filter(|p| p.runtime_id != record.runtime_id) {
            self.runtime_left_if_empty(&prev.runtime_id, now, cause);
        }
        if runtime_is_new {
            self.push_runtime_event(EventKind::RuntimeJoined, &record.runtime_id, now, cause);
        }
        if let Some(slot) = self.slots.get_mut(key as usize) {
            *slot = Some(record);
        }
        key
    }

    /// A free dense key (its slot is empty until the caller fills it).
    /// Registration refuses a new agent when no key is left
    /// ([`MAX_AGENT_KEY`]), so the conversion never truncates.
    fn allocate_key(&mut self) -> AgentKey {
        match self.free_keys.pop() {
            Some(k) => k,
            None => {
                let key = AgentKey::try_from(self.slots.len()).unwrap_or(AgentKey::MAX);
                self.slots.push(None);
                key
            }
        }
    }

    /// Applies a reported health and load to record `r` (key `key`), moving
    /// it in its capabilities' orderings when either changes. A function of
    /// the two fields it needs, so callers can hold `r` borrowed from
    /// `slots` while the orderings change.
    fn set_scores(
        ranked: &mut RankedIndex,
        key: AgentKey,
        r: &mut AgentRecord,
        health: Option<f64>,
        load: Option<f64>,
    ) {
        let (old_health, old_load) = (r.health_score, r.load_factor);
        let new_health = health.unwrap_or(old_health);
        let new_load = load.unwrap_or(old_load);
        // Bit equality: a change between -0.0 and 0.0 need not move the
        // agent, any other change must.
        if new_health.to_bits() == old_health.to_bits() && new_load.to_bits() == old_load.to_bits()
        {
            return;
        }
        let names = capability_names(r);
        for name in &names {
            ranked.remove(name, &r.agent_id, old_health, old_load);
        }
        r.health_score = new_health;
        r.load_factor = new_load;
        for name in &names {
            ranked.insert(name, key, &r.agent_id, new_health, new_load);
        }
    }

    fn runtime_left_if_empty(&mut self, runtime_id: &str, now: Timestamp, cause: Cause) {
        if !runtime_id.is_empty() && self.index.get(Field::Runtime, runtime_id).is_empty() {
            self.push_runtime_event(EventKind::RuntimeLeft, runtime_id, now, cause);
        }
    }

    fn push_runtime_event(
        &mut self,
        kind: EventKind,
        runtime_id: &str,
        now: Timestamp,
        cause: Cause,
    ) {
        self.revision = self.next_revision();
        self.events.push(Event {
            revision: self.revision,
            kind,
            agent_id: None,
            at: now,
            cause,
            status: None,
            previous_status: None,
            runtime_id: runtime_id.to_string(),
            detail: String::new(),
            capabilities: Vec::new(),
            advisory: None,
            actor: self.actor_of(cause),
            card_etag: None,
        });
    }

    /// Appends an event about `record` at the next revision and returns it.
    fn push_event(
        &mut self,
        kind: EventKind,
        record: Option<&AgentRecord>,
        previous_status: Option<AgentStatus>,
        now: Timestamp,
        cause: Cause,
    ) -> Revision {
        self.revision = self.next_revision();
        self.events.push(Event {
            revision: self.revision,
            kind,
            agent_id: record.map(|r| r.agent_id.clone()),
            at: now,
            cause,
            status: record.map(|r| r.status),
            previous_status,
            runtime_id: record.map(|r| r.runtime_id.clone()).unwrap_or_default(),
            detail: String::new(),
            capabilities: record.map(capability_names).unwrap_or_default(),
            advisory: None,
            actor: self.actor_of(cause),
            card_etag: record
                .and_then(|r| r.agent_card.as_ref())
                .map(|c| c.etag().to_string()),
        });
        self.revision
    }

    /// Every `(field, normalized value)` a record is indexed under, without
    /// duplicates.
    pub(crate) fn index_keys(record: &AgentRecord) -> FxHashSet<(Field, String)> {
        let mut keys = FxHashSet::default();
        for c in &record.capabilities {
            keys.insert((Field::CapabilityName, normalize(&c.name)));
            keys.extend(words(&c.name).map(|w| (Field::Word, w)));
            keys.extend(words(&c.description).map(|w| (Field::Word, w)));
            for t in &c.tags {
                keys.insert((Field::CapabilityTag, normalize(t)));
                keys.extend(words(t).map(|w| (Field::Word, w)));
            }
        }
        for t in &record.tags {
            keys.insert((Field::AgentTag, normalize(t)));
            keys.extend(words(t).map(|w| (Field::Word, w)));
        }
        if !record.agent_type.is_empty() {
            keys.insert((Field::AgentType, normalize(&record.agent_type)));
        }
        if !record.runtime_id.is_empty() {
            keys.insert((Field::Runtime, record.runtime_id.clone()));
        }
        keys.insert((Field::Status, record.status.into_str().to_string()));
        if let Some(card) = &record.agent_card {
            Self::card_keys(card, &mut keys);
        }
        keys
    }

    /// What an agent's card adds to its index keys: its skill ids and
    /// skill tags, the words of its skills (names, descriptions, tags,
    /// examples) and of its provider's organization, the media types it
    /// accepts and produces (each under itself and under its type, and
    /// every one under `*` for the `*/*` query), its protocol bindings.
    fn card_keys(card: &AgentCard, keys: &mut FxHashSet<(Field, String)>) {
        let v = card.view();
        keys.insert((Field::HasCard, String::new()));
        for s in &v.skills {
            let id = s.id.trim();
            if !id.is_empty() {
                keys.insert((Field::SkillId, id.to_string()));
            }
            keys.extend(words(&s.name).map(|w| (Field::Word, w)));
            keys.extend(words(&s.description).map(|w| (Field::Word, w)));
            for t in &s.tags {
                let t = normalize(t);
                if !t.is_empty() {
                    keys.extend(words(&t).map(|w| (Field::Word, w)));
                    keys.insert((Field::SkillTag, t));
                }
            }
            for e in &s.examples {
                keys.extend(words(e).map(|w| (Field::Word, w)));
            }
        }
        if let Some(org) = &v.provider_organization {
            keys.extend(words(org).map(|w| (Field::Word, w)));
        }
        for (modes, exact, major) in [
            (v.input_modes(), Field::InputMode, Field::InputMajor),
            (v.output_modes(), Field::OutputMode, Field::OutputMajor),
        ] {
            for m in modes {
                keys.insert((major, media_major(&m).to_string()));
                keys.insert((major, "*".to_string()));
                keys.insert((exact, m));
            }
        }
        for b in v.bindings() {
            keys.insert((Field::Binding, b));
        }
    }

    /// Adds a record to the inverted index and to its capabilities'
    /// orderings.
    fn index_record(&mut self, key: AgentKey, record: &AgentRecord) {
        for (field, value) in Self::index_keys(record) {
            if field == Field::CapabilityName {
                self.ranked.insert(
                    &value,
                    key,
                    &record.agent_id,
                    record.health_score,
                    record.load_factor,
                );
            }
            self.index.insert(field, &value, key);
        }
    }

    /// Removes a record (as it was indexed) from the inverted index and
    /// from its capabilities' orderings.
    fn unindex(&mut self, key: AgentKey, record: &AgentRecord) {
        for (field, value) in Self::index_keys(record) {
            if field == Field::CapabilityName {
                self.ranked.remove(
                    &value,
                    &record.agent_id,
                    record.health_score,
                    record.load_factor,
                );
            }
            self.index.remove(field, &value, key);
        }
    }

    /// The portable form of the whole state, for a Raft snapshot.
    pub fn snapshot(&self) -> SnapshotData {
        let v = self.snapshot_view();
        SnapshotData {
            format_version: v.format_version,
            revision: v.revision,
            total_registrations: v.total_registrations,
            agents: v.agents.into_iter().cloned().collect(),
            events_compacted_through: v.events_compacted_through,
            events: v.events.into_iter().cloned().collect(),
            brake_engaged: v.brake_engaged,
            scaling_policies: v.scaling_policies.into_iter().cloned().collect(),
            advisories: v.advisories.into_iter().cloned().collect(),
            counters: v.counters,
            tokens: v.tokens.into_iter().cloned().collect(),
        }
    }

    /// The snapshot without copying the state, for encoding (see
    /// [`SnapshotView`]).
    pub fn snapshot_view(&self) -> SnapshotView<'_> {
        SnapshotView {
            format_version: SNAPSHOT_FORMAT_VERSION,
            revision: self.revision,
            total_registrations: self.total_registrations,
            agents: self.records().collect(),
            events_compacted_through: self.events.compacted_through(),
            events: self.events.iter().collect(),
            brake_engaged: self.brake_engaged,
            scaling_policies: self.scaling_policies.values().collect(),
            advisories: self.advisories.values().collect(),
            counters: self.counters,
            tokens: self.tokens.values().collect(),
        }
    }

    /// Rebuilds the state (tables and indexes) from a snapshot.
    ///
    /// Only data of [`SNAPSHOT_FORMAT_VERSION`] is accepted: older formats
    /// are converted to it when they are decoded (see [`SnapshotDataV2`]).
    pub fn restore(config: StateConfig, data: SnapshotData) -> Result<Self, RestoreError> {
        if data.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(RestoreError::UnsupportedFormat {
                found: data.format_version,
                supported: SNAPSHOT_FORMAT_VERSION,
            });
        }
        let mut state = RegistryState::new(config.clone());
        state.events = EventLog::restore(
            config.event_window,
            data.events_compacted_through,
            data.events,
        );
        state.revision = data.revision;
        state.total_registrations = data.total_registrations;
        state.brake_engaged = data.brake_engaged;
        state.counters = data.counters;
        state.scaling_policies = data
            .scaling_policies
            .into_iter()
            .map(|p| (p.capability.clone(), p))
            .collect();
        state.advisories = data
            .advisories
            .into_iter()
            .map(|a| ((a.capability.clone(), a.action), a))
            .collect();
        for t in data.tokens {
            state.token_hashes.insert(t.secret_sha256, t.id.clone());
            state.tokens.insert(t.id.clone(), t);
        }
        state.slots.reserve_exact(data.agents.len());
        for record in data.agents {
            let key = state.allocate_key();
            state.index_record(key, &record);
            state.total_capabilities = state
                .total_capabilities
                .saturating_add(record.capabilities.len() as u64);
            state.agents.insert(record.agent_id.clone(), key);
            if let Some(slot) = state.slots.get_mut(key as usize) {
                *slot = Some(record);
            }
        }
        Ok(state)
    }

    /// A token by id.
    pub fn token(&self, id: &TokenId) -> Option<&TokenRecord> {
        self.tokens.get(id)
    }

    /// The token whose secret has this SHA-256.
    pub fn token_by_hash(&self, sha256: &[u8; 32]) -> Option<&TokenRecord> {
        self.tokens.get(self.token_hashes.get(sha256)?)
    }

    /// Every token, by id.
    pub fn tokens(&self) -> impl Iterator<Item = &TokenRecord> {
        self.tokens.values()
    }

    /// Whether an admin token that has not expired at `now` exists.
    pub fn has_admin_token(&self, now: Timestamp) -> bool {
        self.tokens
            .values()
            .any(|t| t.role == registry_types::auth::Role::Admin && !t.expired_at(now))
    }

    /// What the access rules need of an agent as it is now.
    pub fn existing(&self, id: &AgentId) -> Option<Existing<'_>> {
        self.get(id).map(|r| Existing {
            runtime_id: &r.runtime_id,
            status: r.status,
        })
    }

    /// A client change made with `token`: refused on every replica alike
    /// when the token is gone (revoked), expired at the command's time, or
    /// does not allow the change on the state as it is here; otherwise
    /// applied with its events attributed to the token.
    fn apply_authorized(
        &mut self,
        log_index: u64,
        token: &TokenId,
        cmd: &Command,
        at: Placement,
    ) -> CommandResult {
        let now = cmd.now();
        let Some(t) = self.tokens.get(token) else {
            return CommandResult::Rejected(Rejection::Unauthenticated {
                message: format!("token {token} does not exist (it was revoked)"),
            });
        };
        if t.expired_at(now) {
            return CommandResult::Rejected(Rejection::Unauthenticated {
                message: format!(
                    "token {token} expired at {}",
                    t.expires_at.unwrap_or_default().to_rfc3339()
                ),
            });
        }
        let existing = cmd.agent_id().and_then(|id| self.existing(id));
        if let Err(message) = permits(Rights::of(t), cmd, existing) {
            return CommandResult::Rejected(Rejection::Forbidden { message });
        }
        let actor = Actor::token(t);
        let within = Placement {
            in_authorized: true,
            ..at
        };
        self.acting_as(Some(actor), |s| s.apply_at(log_index, cmd, within))
    }

    fn apply_create_token(&mut self, t: &TokenRecord) -> CommandResult {
        let refuse = |field: &str, message: String| {
            CommandResult::Rejected(Rejection::Invalid {
                field: field.into(),
                message,
            })
        };
        if self.tokens.len() >= MAX_TOKENS {
            return refuse(
                "name",
                format!(
                    "the registry holds the most tokens it can ({MAX_TOKENS}): revoke some first"
                ),
            );
        }
        if self.tokens.values().any(|other| other.name == t.name) {
            return CommandResult::Rejected(Rejection::TokenExists {
                name: t.name.clone(),
            });
        }
        if self.tokens.contains_key(&t.id) {
            return refuse("id", format!("token id {} is taken", t.id));
        }
        if self.token_hashes.contains_key(&t.secret_sha256) {
            return refuse("token", "another token has this secret".into());
        }
        let mut record = t.clone();
        // A token's creator is the token that authorized the command; an
        // unwrapped one comes from a node, which says whom it made it for.
        if let Some(actor) = self.acting.as_ref().filter(|a| a.token_id.is_some()) {
            record.created_by = Some(actor.clone());
        }
        let info = Box::new(record.info());
        self.token_hashes
            .insert(record.secret_sha256, record.id.clone());
        self.tokens.insert(record.id.clone(), record);
        CommandResult::Token {
            info,
            revoked: false,
        }
    }

    fn apply_revoke_token(&mut self, id: &TokenId) -> CommandResult {
        let Some(t) = self.tokens.get(id) else {
            return CommandResult::Rejected(Rejection::TokenNotFound { id: id.clone() });
        };
        let admins = self
            .tokens
            .values()
            .filter(|t| t.role == registry_types::auth::Role::Admin)
            .count();
        if t.role == registry_types::auth::Role::Admin && admins == 1 {
            return CommandResult::Rejected(Rejection::Invalid {
                field: "id".into(),
                message: format!(
                    "token {id} is the last admin token: create another admin token before revoking it"
                ),
            });
        }
        let Some(t) = self.tokens.remove(id) else {
            return CommandResult::Rejected(Rejection::TokenNotFound { id: id.clone() });
        };
        self.token_hashes.remove(&t.secret_sha256);
        CommandResult::Token {
            info: Box::new(t.info()),
            revoked: true,
        }
    }

    /// The configuration this state was built with.
    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    /// Index statistics: keys per shard and total postings.
    pub fn index_stats(&self) -> (Vec<usize>, usize) {
        (self.index.shard_sizes(), self.index.posting_count())
    }

    /// Entries in the per-capability orderings (three per agent and
    /// capability), for memory figures and tests.
    pub fn ranked_entries(&self) -> usize {
        self.ranked.entry_count()
    }
}
