//! The replicated command log vocabulary.
//!
//! Every change to the registry is one [`Command`] in the Raft log. The leader
//! stamps wall-clock time (`now`) and assigned ids into the command before it
//! is proposed, so that applying it on any replica gives the same result.
//! Persisted inside Raft log entries and snapshots: the enum's variant order is
//! part of the on-disk format (see `FORMAT_VERSION` in the raft crate).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::agent::{AgentRecord, AgentStatus, Capability, Metadata};
use crate::auth::{Actor, TokenId, TokenRecord};
use crate::card::AgentCard;
use crate::error::ErrorBody;
use crate::ids::{AgentId, Revision, Timestamp};
use crate::limits::{
    check_capability_name, check_merged_metrics, check_metrics, check_unit, invalid, Limits,
};
use crate::names::UnknownName;
use crate::scaling::{ScalingAdvisory, ScalingPolicy, ScalingPolicyRequest};

/// A change to the registry, as proposed through Raft.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Create or update an agent (upsert).
    Register(Box<RegisterCommand>),
    /// Remove an agent.
    Deregister { agent_id: AgentId, now: Timestamp },
    /// Operator sets a status (e.g. `suspended`).
    SetStatus {
        agent_id: AgentId,
        status: AgentStatus,
        now: Timestamp,
    },
    /// Agent or operator reports health, load and metrics.
    SetHealth {
        agent_id: AgentId,
        health_score: Option<f64>,
        load_factor: Option<f64>,
        metrics: BTreeMap<String, f64>,
        now: Timestamp,
    },
    /// The leader's periodic, batched record of heartbeats received since
    /// the previous checkpoint (heartbeats themselves are not log entries).
    Checkpoint {
        entries: Vec<CheckpointEntry>,
        /// Heartbeats the leader received since its previous checkpoint
        /// (every one, not one per agent): the `health_checks_performed`
        /// counter.
        heartbeats: u64,
        now: Timestamp,
    },
    /// The leader's batched liveness transitions of silent agents, in agent
    /// id order. Each names the registration epoch it was decided for.
    Expire {
        entries: Vec<ExpireEntry>,
        now: Timestamp,
    },
    /// The mass-expiry brake engaged or released.
    Brake {
        engaged: bool,
        /// Agents whose offline/removal transitions were (or are no longer)
        /// held back, and the live fleet size, when decided.
        held: u64,
        fleet: u64,
        now: Timestamp,
    },
    /// Set (`Some`) or remove (`None`) the scaling policy of a normalized
    /// capability name.
    SetScalingPolicy {
        capability: String,
        policy: Option<ScalingPolicyRequest>,
        now: Timestamp,
    },
    /// Several client commands the leader grouped into one log entry
    /// (group commit). Applied in order, each exactly as if it were an entry
    /// of its own: its own revision, events and result. Never nested and
    /// never holding the leader's own liveness commands: decoding refuses a
    /// batch or a `Format1` inside one (see `nesting` in this module), and
    /// apply rejects any item that is not [`Command::groupable`].
    Batch(#[serde(deserialize_with = "nesting::batch")] Vec<Command>),
    /// Discovery requests one node served since it last reported: the
    /// replicated `service_discovery_requests` counter. Changes no record
    /// and has no event.
    CountDiscoveryRequests { count: u64, now: Timestamp },
    /// An entry a release of format 1 wrote, converted: applied as its
    /// inner command, except that it advances no counter. Format 1 counted
    /// nothing, and replicas that restored snapshots taken at different
    /// indexes replay different stretches of the old log: counting none of
    /// it keeps their counters equal. Only decoding old entries makes it,
    /// so it is outermost: decoding refuses one inside a batch or another
    /// `Format1` (see `nesting` in this module).
    Format1(#[serde(deserialize_with = "nesting::format1")] Box<Command>),
    /// Create a token (its secret's hash only). Unwrapped: a node's own,
    /// from `--bootstrap-token-file`, or made while auth is off; otherwise
    /// inside an [`Command::Authorized`] of an admin token.
    CreateToken(Box<TokenRecord>),
    /// Revoke a token: from this entry on, every command it authorizes is
    /// refused on every replica.
    RevokeToken { id: TokenId, now: Timestamp },
    /// A client change made with a token. Applying it checks first that
    /// the token exists, has not expired at the command's time and allows
    /// the change on the state as it is ([`crate::auth::permits`]); the
    /// change's events name the token as their actor. A client change
    /// without this wrapper was made anonymously (or with auth off). Holds
    /// a client change only ([`Command::is_client_change`]): never a batch,
    /// a `Format1` or another `Authorized` (decoding refuses those shapes).
    Authorized {
        token: TokenId,
        #[serde(deserialize_with = "nesting::authorized")]
        command: Box<Command>,
    },
    /// Register with an A2A Agent Card: the registration, with the card
    /// already mapped onto it where the request arrived (the request's own
    /// fields winning), and the card, kept verbatim. Applied as the
    /// registration, the record then holding the card. Appended after every
    /// earlier variant: the variant order is the encoding, so entries of
    /// earlier releases decode unchanged.
    RegisterCard {
        register: Box<RegisterCommand>,
        card: AgentCard,
    },
    /// Replace an existing agent's card, and the fields mapped from it.
    SetCard(Box<SetCardCommand>),
}

/// `POST /v1/agents/{id}/agent-card`: a new card for an agent that exists,
/// and what the edge mapped from it. The rest of the record (type,
/// runtime, tags, metadata, lease, status, health) stays; it is not a
/// registration (the epoch and last heartbeat stay too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetCardCommand {
    pub agent_id: AgentId,
    /// The card's `name`.
    pub name: String,
    /// The URL of the card's first interface.
    pub endpoint: String,
    /// The card's `version`.
    pub version: String,
    /// The card's `description`.
    pub description: String,
    /// The card's skills, one capability each.
    pub capabilities: Vec<Capability>,
    pub card: AgentCard,
    pub now: Timestamp,
}

/// One agent's liveness as the leader last heard it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointEntry {
    pub agent_id: AgentId,
    /// Leader wall-clock time of the agent's last heartbeat.
    pub last_heartbeat: Timestamp,
    /// Status the agent reported (active, busy or degraded), if any.
    pub status: Option<AgentStatus>,
    pub health_score: Option<f64>,
    pub load_factor: Option<f64>,
    pub metrics: BTreeMap<String, f64>,
}

/// A step down the liveness ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryStep {
    /// Silent for `ttl_seconds`.
    Unhealthy,
    /// Silent for `offline_after_seconds`.
    Offline,
    /// Silent for `deregister_after_seconds`: removed.
    Remove,
}

/// One liveness transition decided by the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireEntry {
    pub agent_id: AgentId,
    /// The registration epoch the decision was made for; a re-registration
    /// since then (new epoch) wins and the entry is ignored.
    pub epoch: Revision,
    pub step: ExpiryStep,
}

impl Command {
    /// The leader-stamped time carried by the command.
    pub fn now(&self) -> Timestamp {
        match self {
            Command::Register(c) => c.now,
            Command::RegisterCard { register, .. } => register.now,
            Command::SetCard(c) => c.now,
            Command::Deregister { now, .. }
            | Command::SetStatus { now, .. }
            | Command::SetHealth { now, .. }
            | Command::Checkpoint { now, .. }
            | Command::Expire { now, .. }
            | Command::Brake { now, .. }
            | Command::SetScalingPolicy { now, .. }
            | Command::CountDiscoveryRequests { now, .. } => *now,
            Command::Batch(cmds) => cmds.last().map_or(Timestamp(0), Command::now),
            Command::Format1(c) => c.now(),
            Command::CreateToken(t) => t.created_at,
            Command::RevokeToken { now, .. } => *now,
            Command::Authorized { command, .. } => command.now(),
        }
    }

    /// Sets the command's time. The leader calls this just before proposing,
    /// so that every entry carries the leader's clock, whichever node the
    /// request arrived at.
    pub fn stamp(&mut self, at: Timestamp) {
        match self {
            Command::Register(c) => c.now = at,
            Command::RegisterCard { register, .. } => register.now = at,
            Command::SetCard(c) => c.now = at,
            Command::Deregister { now, .. }
            | Command::SetStatus { now, .. }
            | Command::SetHealth { now, .. }
            | Command::Checkpoint { now, .. }
            | Command::Expire { now, .. }
            | Command::Brake { now, .. }
            | Command::SetScalingPolicy { now, .. }
            | Command::CountDiscoveryRequests { now, .. } => *now = at,
            Command::Batch(cmds) => cmds.iter_mut().for_each(|c| c.stamp(at)),
            Command::Format1(c) => c.stamp(at),
            Command::CreateToken(t) => t.created_at = at,
            Command::RevokeToken { now, .. } => *now = at,
            Command::Authorized { command, .. } => command.stamp(at),
        }
    }

    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Register(_) => "register",
            Command::Deregister { .. } => "deregister",
            Command::SetStatus { .. } => "set_status",
            Command::SetHealth { .. } => "set_health",
            Command::Checkpoint { .. } => "checkpoint",
            Command::Expire { .. } => "expire",
            Command::Brake { .. } => "brake",
            Command::SetScalingPolicy { .. } => "set_scaling_policy",
            Command::Batch(_) => "batch",
            Command::CountDiscoveryRequests { .. } => "count_discovery_requests",
            Command::Format1(_) => "format1",
            Command::CreateToken(_) => "create_token",
            Command::RevokeToken { .. } => "revoke_token",
            Command::Authorized { .. } => "authorized",
            Command::RegisterCard { .. } => "register_card",
            Command::SetCard(_) => "set_card",
        }
    }

    /// What the command does, for refusals: "register agents", ...
    pub fn action(&self) -> &'static str {
        match self {
            Command::Register(_) | Command::RegisterCard { .. } => "register agents",
            Command::SetCard(_) => "replace agent cards",
            Command::Deregister { .. } => "deregister agents",
            Command::SetStatus { .. } => "change an agent's status",
            Command::SetHealth { .. } => "report an agent's health",
            Command::SetScalingPolicy { .. } => "change scaling policies",
            Command::CreateToken(_) => "create tokens",
            Command::RevokeToken { .. } => "revoke tokens",
            Command::Authorized { command, .. } => command.action(),
            Command::Checkpoint { .. }
            | Command::Expire { .. }
            | Command::Brake { .. }
            | Command::Batch(_)
            | Command::CountDiscoveryRequests { .. }
            | Command::Format1(_) => "make the registry's own changes",
        }
    }

    /// Whether a caller of the API makes this command (so that a token may
    /// authorize it): agent changes, scaling policies and tokens. The
    /// leader's liveness commands, batches, converted entries and the
    /// nodes' request counts are the registry's own.
    pub fn is_client_change(&self) -> bool {
        matches!(
            self,
            Command::Register(_)
                | Command::RegisterCard { .. }
                | Command::SetCard(_)
                | Command::Deregister { .. }
                | Command::SetStatus { .. }
                | Command::SetHealth { .. }
                | Command::SetScalingPolicy { .. }
                | Command::CreateToken(_)
                | Command::RevokeToken { .. }
        )
    }

    /// The command a client change carries: itself, or what an
    /// [`Command::Authorized`] wraps.
    pub fn inner(&self) -> &Command {
        match self {
            Command::Authorized { command, .. } => command,
            c => c,
        }
    }

    /// The agent a client change is about (through an `Authorized`).
    pub fn agent_id(&self) -> Option<&AgentId> {
        match self.inner() {
            Command::Register(c) => Some(&c.agent_id),
            Command::RegisterCard { register, .. } => Some(&register.agent_id),
            Command::SetCard(c) => Some(&c.agent_id),
            Command::Deregister { agent_id, .. }
            | Command::SetStatus { agent_id, .. }
            | Command::SetHealth { agent_id, .. } => Some(agent_id),
            _ => None,
        }
    }

    /// The token that authorized the command, if one did.
    pub fn token(&self) -> Option<&TokenId> {
        match self {
            Command::Authorized { token, .. } => Some(token),
            _ => None,
        }
    }

    /// Whether the leader may group this command with others into one
    /// [`Command::Batch`] entry: client changes only. The leader's liveness
    /// commands are already batches and are proposed on their own.
    pub fn groupable(&self) -> bool {
        match self {
            Command::CountDiscoveryRequests { .. } => true,
            Command::Authorized { command, .. } => command.is_client_change(),
            c => c.is_client_change(),
        }
    }
}

/// Most discovery requests one node may report in one
/// [`Command::CountDiscoveryRequests`]. A node reports every 5 s and serves
/// far fewer than 2 million requests a second; a larger count is a bug or
/// an attack on the replicated counter.
pub const MAX_DISCOVERY_COUNT: u64 = 10_000_000;

/// Where a command sits inside a log entry, for
/// [`Command::check_placement`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// An item of a [`Command::Batch`].
    pub in_batch: bool,
    /// Inside a [`Command::Format1`].
    pub in_format1: bool,
    /// Inside a [`Command::Authorized`].
    pub in_authorized: bool,
}

impl Command {
    /// Checks a command that another node sent to be proposed (a
    /// follower's forwarded write), with the rules the public API applies
    /// before it proposes one of its own. A follower forwards only client
    /// commands, one at a time: the leader's own commands (checkpoint,
    /// expiry, brake), a batch (only the leader groups) and `Format1`
    /// (only decoding old entries makes it) are refused.
    ///
    /// What needs the registry state (merged metrics, the number of
    /// scaling policies) or the node's configuration (a TTL of at least
    /// twice the election timeout) is not checked here; apply checks the
    /// former ([`Command::check_fields`] plus its own state checks).
    pub fn check_forwarded(&self, limits: &Limits) -> Result<(), ErrorBody> {
        if !self.groupable() {
            return Err(invalid(
                "command",
                format!(
                    "a {} command is never forwarded: {}",
                    self.kind(),
                    match self {
                        Command::Batch(_) => "only the leader groups commands",
                        Command::Format1(_) => "only decoding an old log entry makes one",
                        _ => "only the leader proposes it",
                    }
                ),
            ));
        }
        self.check_content(limits)?;
        match self.inner() {
            Command::Register(c) => c.check_request_rules(),
            Command::RegisterCard { register, .. } => register.check_request_rules(),
            Command::SetHealth {
                health_score,
                load_factor,
                metrics,
                ..
            } if health_score.is_none() && load_factor.is_none() && metrics.is_empty() => {
                Err(invalid(
                    "health_score",
                    "give at least one of health_score, load_factor or metrics",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Checks that a command may sit where it is: a batch holds client
    /// commands only ([`Command::groupable`], so never a batch, a
    /// `Format1` or a liveness command), and `Format1` is outermost.
    pub fn check_placement(&self, at: Placement) -> Result<(), ErrorBody> {
        if at.in_batch && !self.groupable() {
            return Err(invalid(
                "command",
                format!("a {} command cannot be an item of a batch", self.kind()),
            ));
        }
        if at.in_format1 && matches!(self, Command::Format1(_) | Command::Authorized { .. }) {
            return Err(invalid(
                "command",
                format!("a {} command inside a format1 one", self.kind()),
            ));
        }
        if at.in_authorized && !self.is_client_change() {
            return Err(invalid(
                "command",
                format!(
                    "a {} command is not a change a token authorizes",
                    self.kind()
                ),
            ));
        }
        Ok(())
    }

    /// Checks the command's own fields with the public API's rules (the
    /// field named as the API names it). Pure and cheap, so the state
    /// machine runs it on every command it applies. It does not look into
    /// a batch's items or a `Format1`'s command (apply checks each where
    /// it applies it; [`Command::check_content`] checks the whole), nor
    /// into a checkpoint's entries (apply drops what [`CheckpointEntry::check`]
    /// would refuse from an entry's report but keeps its heartbeat, rather
    /// than losing the liveness of every agent in the checkpoint).
    pub fn check_fields(&self, limits: &Limits) -> Result<(), ErrorBody> {
        match self {
            Command::Register(c) => c.check(limits),
            Command::RegisterCard { register, card } => {
                register.check(limits)?;
                card.check_stored("agent_card")
            }
            Command::SetCard(c) => c.check(limits),
            Command::SetHealth {
                health_score,
                load_factor,
                metrics,
                ..
            } => {
                check_unit("health_score", *health_score)?;
                check_unit("load_factor", *load_factor)?;
                check_metrics("metrics", metrics, limits)
            }
            Command::SetScalingPolicy {
                capability, policy, ..
            } => {
                check_capability_name("capability", capability, limits)?;
                policy
                    .as_ref()
                    .map_or(Ok(()), ScalingPolicyRequest::validate)
            }
            Command::CreateToken(t) => t.check(),
            Command::CountDiscoveryRequests { count, .. }
                if *count == 0 || *count > MAX_DISCOVERY_COUNT =>
            {
                Err(invalid(
                    "count",
                    format!("count must be between 1 and {MAX_DISCOVERY_COUNT}, got {count}"),
                ))
            }
            Command::Deregister { .. }
            | Command::SetStatus { .. }
            | Command::Checkpoint { .. }
            | Command::Expire { .. }
            | Command::Brake { .. }
            | Command::CountDiscoveryRequests { .. }
            | Command::Batch(_)
            | Command::Format1(_)
            | Command::RevokeToken { .. }
            | Command::Authorized { .. } => Ok(()),
        }
    }

    /// Checks a whole log entry's command: placement and fields of it and
    /// of every command inside it, and every checkpoint entry. An error in
    /// a batch item names it `batch[i].<field>`.
    pub fn check_content(&self, limits: &Limits) -> Result<(), ErrorBody> {
        self.check_content_at(limits, Placement::default())
    }

    fn check_content_at(&self, limits: &Limits, at: Placement) -> Result<(), ErrorBody> {
        self.check_placement(at)?;
        self.check_fields(limits)?;
        match self {
            Command::Batch(items) => {
                let inner = Placement {
                    in_batch: true,
                    ..at
                };
                for (i, c) in items.iter().enumerate() {
                    // Bounded recursion: an item that is itself a batch or
                    // a `Format1` fails its placement check first.
                    c.check_content_at(limits, inner).map_err(|mut e| {
                        let field = e.error.field.take().unwrap_or_else(|| "command".into());
                        e.with_field(format!("batch[{i}].{field}"))
                    })?;
                }
                Ok(())
            }
            Command::Format1(c) => c.check_content_at(
                limits,
                Placement {
                    in_format1: true,
                    ..at
                },
            ),
            Command::Authorized { command, .. } => command.check_content_at(
                limits,
                Placement {
                    in_authorized: true,
                    ..at
                },
            ),
            Command::Checkpoint { entries, .. } => {
                for (i, e) in entries.iter().enumerate() {
                    e.check(limits).map_err(|mut e| {
                        let field = e.error.field.take().unwrap_or_default();
                        e.with_field(format!("entries[{i}].{field}"))
                    })?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl CheckpointEntry {
    /// Checks the report a checkpoint entry carries with the rules of a
    /// heartbeat: scores in 0..=1, at most `max_metrics` finite metrics.
    pub fn check(&self, limits: &Limits) -> Result<(), ErrorBody> {
        check_unit("health_score", self.health_score)?;
        check_unit("load_factor", self.load_factor)?;
        check_metrics("metrics", &self.metrics, limits)
    }

    /// Whether merging this entry's metrics into an agent's `existing`
    /// ones keeps the agent within `max_metrics`.
    pub fn check_merged_metrics(
        &self,
        existing: &BTreeMap<String, f64>,
        limits: &Limits,
    ) -> Result<(), ErrorBody> {
        check_merged_metrics("metrics", existing, None, &self.metrics, limits)
    }
}

impl RegisterCommand {
    /// The rules of the request path beyond the fields' limits: the status
    /// an agent may ask for (active, busy or degraded, or offline on the
    /// Dev-Tools route), and lease durations in order (`ttl_seconds > 0`,
    /// `offline_after_seconds >= ttl_seconds`, `deregister_after_seconds`
    /// 0 or `>= offline_after_seconds`).
    fn check_request_rules(&self) -> Result<(), ErrorBody> {
        if let Some(s) = self
            .status
            .filter(|s| !s.is_agent_reportable() && *s != AgentStatus::Offline)
        {
            return Err(invalid(
                "status",
                format!("an agent may register as active, busy, degraded or offline, not {s}"),
            ));
        }
        if self.ttl_seconds == 0 {
            return Err(invalid("ttl_seconds", "ttl_seconds must be above 0"));
        }
        if self.offline_after_seconds < self.ttl_seconds {
            return Err(invalid(
                "offline_after_seconds",
                "offline_after_seconds must not be less than ttl_seconds",
            ));
        }
        if self.deregister_after_seconds != 0
            && self.deregister_after_seconds < self.offline_after_seconds
        {
            return Err(invalid(
                "deregister_after_seconds",
                "deregister_after_seconds must be 0 (never) or not less than offline_after_seconds",
            ));
        }
        Ok(())
    }
}

/// Bounded nesting when decoding: a [`Command::Batch`] or
/// [`Command::Format1`] is decoded through these functions, which refuse
/// the shapes no node ever writes (a batch or `Format1` inside a batch, a
/// `Format1` inside a `Format1`) before decoding their content. Without
/// them, the derived decoder recurses once per level, and a peer's entry
/// of a batch nested some thousand deep overflows the stack (the process
/// aborts; a committed entry would abort every replica on every restart).
///
/// The state of the decode in progress is thread-local: serde gives a
/// `deserialize_with` function no other way to learn what encloses it. A
/// guard restores it however the inner decode ends. Only the decoder's
/// behaviour changes: the encoding is the derived one, byte for byte.
pub(crate) mod nesting {
    use std::cell::Cell;

    use serde::{Deserialize, Deserializer};

    use super::Command;

    const BATCH: u8 = 1;
    const FORMAT1: u8 = 2;
    const AUTHORIZED: u8 = 4;

    thread_local! {
        /// Which of `BATCH` and `FORMAT1` the value being decoded is inside.
        static OPEN: Cell<u8> = const { Cell::new(0) };
    }

    /// Marks `flag` open until dropped, then restores what was open before.
    struct Open(u8);

    impl Drop for Open {
        fn drop(&mut self) {
            OPEN.with(|o| o.set(self.0));
        }
    }

    /// Opens `flag` unless one of `refused` is already open.
    fn open<E: serde::de::Error>(flag: u8, refused: u8, what: &str) -> Result<Open, E> {
        let before = OPEN.with(Cell::get);
        if before & refused != 0 {
            return Err(E::custom(format!(
                "{what} inside a {}: commands are never nested that way",
                if before & AUTHORIZED != 0 {
                    "authorized command"
                } else if before & BATCH != 0 {
                    "batch"
                } else {
                    "format1 command"
                }
            )));
        }
        OPEN.with(|o| o.set(before | flag));
        Ok(Open(before))
    }

    /// A batch's items (also version 1's batch: generic over the item).
    pub(crate) fn batch<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        let _open = open::<D::Error>(BATCH, BATCH | AUTHORIZED, "a batch")?;
        Vec::<T>::deserialize(d)
    }

    /// A `Format1`'s command.
    pub(crate) fn format1<'de, D: Deserializer<'de>>(d: D) -> Result<Box<Command>, D::Error> {
        let _open = open::<D::Error>(FORMAT1, BATCH | FORMAT1 | AUTHORIZED, "a format1 command")?;
        Box::<Command>::deserialize(d)
    }

    /// An `Authorized`'s command.
    pub(crate) fn authorized<'de, D: Deserializer<'de>>(d: D) -> Result<Box<Command>, D::Error> {
        let _open = open::<D::Error>(AUTHORIZED, FORMAT1 | AUTHORIZED, "an authorized command")?;
        Box::<Command>::deserialize(d)
    }
}

/// The content of a registration; every default has already been filled in
/// by the server so that apply does not depend on node configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisterCommand {
    pub agent_id: AgentId,
    pub name: String,
    pub agent_type: String,
    pub runtime_id: String,
    pub endpoint: String,
    pub version: String,
    pub description: String,
    pub capabilities: Vec<Capability>,
    pub tags: Vec<String>,
    pub metadata: Metadata,
    /// Status the agent asks for; `None` keeps the current one on update and
    /// means `active` on create.
    pub status: Option<AgentStatus>,
    pub health_score: Option<f64>,
    pub load_factor: Option<f64>,
    pub performance_metrics: Option<BTreeMap<String, f64>>,
    pub ttl_seconds: u32,
    pub offline_after_seconds: u32,
    pub deregister_after_seconds: u32,
    /// Fail with `AlreadyExists` when the id is taken.
    pub if_absent: bool,
    /// Fail with `RevisionMismatch` unless the record is at this revision
    /// (0: the agent must not exist).
    pub expected_revision: Option<Revision>,
    /// What an update keeps from the existing record instead of taking it
    /// from this command (the legacy routes carry only part of a record).
    pub keep: Keep,
    pub now: Timestamp,
}

/// Parts of an existing record that a registration keeps when it updates
/// the agent, instead of replacing them with the command's values (which
/// then serve only when the agent is created). The `/v1` API replaces the
/// whole record; a legacy route keeps what its body cannot carry, so an
/// existing agent re-registering through it does not lose the type, tags or
/// TTL an operator set through `/v1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keep {
    /// `agent_type`, `runtime_id`, `version`, `description` and `tags`.
    pub profile: bool,
    /// `capabilities`.
    pub capabilities: bool,
    /// `metadata`.
    pub metadata: bool,
    /// `ttl_seconds`, `offline_after_seconds`, `deregister_after_seconds`.
    pub lease: bool,
}

/// What applying a command produced. Its variant order is the wire order of
/// forwarded answers (bincode): rename freely, never reorder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CommandResult {
    /// The agent as it is after the change.
    Agent {
        record: Box<AgentRecord>,
        created: bool,
    },
    /// The agent was removed at `revision`.
    Removed {
        agent_id: AgentId,
        revision: Revision,
    },
    /// The command was valid but the state did not allow it; nothing changed.
    Rejected(Rejection),
    /// A liveness command (checkpoint, expiry, brake) or a count: how many
    /// of its entries changed something.
    EntriesApplied { applied: u64, skipped: u64 },
    /// A scaling policy after the change (`None`: removed) and whether one
    /// existed before.
    ScalingPolicy {
        policy: Option<ScalingPolicy>,
        existed: bool,
    },
    /// A [`Command::Batch`] (commands the leader grouped into one entry):
    /// each command's result, in order.
    Grouped(Vec<ItemResult>),
    /// A token created or revoked (`revoked`), as listings show it.
    Token {
        info: Box<crate::auth::TokenInfo>,
        revoked: bool,
    },
}

/// One command's outcome inside a [`Command::Batch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    /// The registry revision right after this command was applied.
    pub revision: Revision,
    pub result: CommandResult,
}

/// A deterministic refusal decided by the state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    NotFound {
        agent_id: AgentId,
    },
    AlreadyExists {
        agent_id: AgentId,
        revision: Revision,
    },
    RevisionMismatch {
        agent_id: AgentId,
        expected: Revision,
        actual: Revision,
    },
    /// The command breaks a rule of the public API (a field out of its
    /// limits, a policy whose `min_agents` exceeds `max_agents`, a batch
    /// inside a batch, ...). Validation before proposing keeps such a
    /// command out of the log; a leader that skipped it (a bug, an older
    /// release, a hostile peer) gets this on every replica instead of a
    /// panic that would repeat on every restart. Appended last: the
    /// variant order is the encoding.
    Invalid {
        /// The field at fault, named as the public API names it
        /// (`min_agents`, `capabilities[3]`, `metrics`), or `command`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A token of that name exists already.
    TokenExists {
        name: String,
    },
    /// No token with that id.
    TokenNotFound {
        id: TokenId,
    },
    /// The token that authorized the command was revoked, or had expired
    /// by the command's time.
    Unauthenticated {
        message: String,
    },
    /// The token does not allow the command on the state as it is.
    Forbidden {
        message: String,
    },
}

impl Rejection {
    /// The rejection of a command that failed a check of [`Command`].
    pub fn invalid(e: ErrorBody) -> Rejection {
        Rejection::Invalid {
            field: e.error.field.unwrap_or_default(),
            message: e.error.message,
        }
    }
}

/// Kind of a registry event: an agent `AGENT_REGISTERED`, `AGENT_UPDATED`,
/// `AGENT_DEREGISTERED`, `AGENT_STATUS_CHANGED` or `AGENT_EXPIRED`
/// (removed after missed heartbeats); a runtime's first agent
/// (`RUNTIME_JOINED`) or last one (`RUNTIME_LEFT`); the mass-expiry brake
/// `LIVENESS_BRAKE_ENGAGED` or `LIVENESS_BRAKE_RELEASED`; a scaling
/// advisory that came into force or cleared (`SCALING_ADVISORY`).
///
/// The wire name is the SCREAMING_SNAKE_CASE variant name: exact in JSON
/// (the event's `type`) and the server-sent event name; parsing it from text
/// (`FromStr`: the `type` filter of `GET /v1/events`, the command line)
/// ignores ASCII case.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
    ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(
    serialize_all = "SCREAMING_SNAKE_CASE",
    ascii_case_insensitive,
    const_into_str,
    parse_err_ty = UnknownName,
    parse_err_fn = unknown_event_kind
)]
pub enum EventKind {
    AgentRegistered,
    AgentUpdated,
    AgentDeregistered,
    AgentStatusChanged,
    AgentExpired,
    RuntimeJoined,
    RuntimeLeft,
    /// The mass-expiry brake engaged: offline transitions and removals held.
    LivenessBrakeEngaged,
    /// The brake released.
    LivenessBrakeReleased,
    /// A scaling advisory came into force or cleared.
    ScalingAdvisory,
}

fn unknown_event_kind(given: &str) -> UnknownName {
    UnknownName::new::<EventKind>("event type", given)
}

/// Why a change happened: `registration`, `operator` (an API call),
/// `agent_report` (the agent's own status or health), `deregistration`,
/// `missed_heartbeats`, `heartbeat` (e.g. one that revived an unhealthy
/// agent), `brake` or `scaling_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The agent registered or re-registered.
    Registration,
    /// An operator called the API.
    Operator,
    /// The agent reported its own status or health.
    AgentReport,
    /// The agent deregistered itself.
    Deregistration,
    /// The agent was silent past a deadline.
    MissedHeartbeats,
    /// A heartbeat arrived (e.g. it revived an unhealthy agent).
    Heartbeat,
    /// The mass-expiry brake.
    Brake,
    /// A scaling policy's evaluation.
    ScalingPolicy,
}

impl Cause {
    /// Whether the registry itself made the change (liveness, the brake, a
    /// scaling policy's evaluation) rather than a caller: its events carry
    /// no `actor`, whatever command's apply produced them.
    pub fn by_registry(self) -> bool {
        matches!(
            self,
            Cause::MissedHeartbeats | Cause::Heartbeat | Cause::Brake | Cause::ScalingPolicy
        )
    }

    /// Whether an event with this cause names an anonymous actor when no
    /// token made the change: registrations, removals and status changes
    /// do; the registry's own changes and an agent's own reports do not.
    pub fn names_anonymous(self) -> bool {
        matches!(
            self,
            Cause::Registration | Cause::Deregistration | Cause::Operator
        )
    }
}

/// One entry of the event log. Every event has its own revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// The revision of this change (the SSE event id).
    #[schema(value_type = u64)]
    pub revision: Revision,
    /// What happened (the SSE event name).
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The agent concerned; null for brake events.
    #[schema(required = true)]
    pub agent_id: Option<AgentId>,
    /// Leader-stamped time of the command that produced the event.
    pub at: Timestamp,
    /// Why it happened.
    pub cause: Cause,
    /// The agent's status after the change, when it has one.
    #[serde(default)]
    #[schema(required = true)]
    pub status: Option<AgentStatus>,
    /// The agent's status before the change, when it had one.
    #[serde(default)]
    #[schema(required = true)]
    pub previous_status: Option<AgentStatus>,
    /// The agent's runtime (empty when none).
    #[serde(default)]
    #[schema(required = true)]
    pub runtime_id: String,
    /// Human-readable detail (brake events: how many agents were held).
    #[serde(default)]
    #[schema(required = true)]
    pub detail: String,
    /// Normalized capability names of the agent at the time of the event,
    /// so watchers can filter by capability even after the agent is gone.
    #[serde(default)]
    #[schema(required = true)]
    pub capabilities: Vec<String>,
    /// `SCALING_ADVISORY` events: the advisory that came into force or
    /// cleared (`in_force: false`). Null on every other event.
    #[serde(default)]
    #[schema(required = true)]
    pub advisory: Option<ScalingAdvisory>,
    /// Who made the change: a token (id and name) or `anonymous` (every
    /// caller while auth is off). Null for the registry's own changes:
    /// expiry, the brake, scaling advisories, heartbeats.
    #[serde(default)]
    #[schema(required = true)]
    pub actor: Option<Actor>,
    /// The ETag of the agent's A2A Agent Card after the change (the
    /// card itself is at `GET /v1/agents/{id}/agent-card.json`); null when
    /// the agent has none, and on events without an agent.
    #[serde(default)]
    #[schema(required = true)]
    pub card_etag: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One command of every variant.
    fn every_kind() -> Vec<Command> {
        let id = AgentId::parse("a").unwrap();
        let t = Timestamp(1);
        vec![
            Command::Deregister {
                agent_id: id.clone(),
                now: t,
            },
            Command::SetStatus {
                agent_id: id.clone(),
                status: AgentStatus::Busy,
                now: t,
            },
            Command::SetHealth {
                agent_id: id,
                health_score: None,
                load_factor: None,
                metrics: BTreeMap::new(),
                now: t,
            },
            Command::Checkpoint {
                entries: vec![],
                heartbeats: 1,
                now: t,
            },
            Command::Expire {
                entries: vec![],
                now: t,
            },
            Command::Brake {
                engaged: true,
                held: 1,
                fleet: 2,
                now: t,
            },
            Command::SetScalingPolicy {
                capability: "c".into(),
                policy: None,
                now: t,
            },
            Command::CountDiscoveryRequests { count: 1, now: t },
            Command::Batch(vec![Command::CountDiscoveryRequests { count: 1, now: t }]),
            Command::Format1(Box::new(Command::Expire {
                entries: vec![],
                now: t,
            })),
        ]
    }

    #[test]
    fn the_leader_stamps_every_kind_and_nested_commands() {
        for mut c in every_kind() {
            c.stamp(Timestamp(99));
            assert_eq!(c.now(), Timestamp(99), "{}", c.kind());
            match &c {
                Command::Batch(inner) => assert!(inner.iter().all(|c| c.now() == Timestamp(99))),
                Command::Format1(inner) => assert_eq!(inner.now(), Timestamp(99)),
                _ => {}
            }
        }
    }

    #[test]
    fn only_client_changes_and_counts_are_grouped() {
        let grouped: Vec<&str> = every_kind()
            .iter()
            .filter(|c| c.groupable())
            .map(Command::kind)
            .collect();
        assert_eq!(
            grouped,
            [
                "deregister",
                "set_status",
                "set_health",
                "set_scaling_policy",
                "count_discovery_requests"
            ]
        );
        let mut kinds: Vec<&str> = every_kind().iter().map(Command::kind).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), every_kind().len(), "one name per kind");
    }

    // ------------------------------------------------- forwarded commands

    fn valid_register() -> RegisterCommand {
        RegisterCommand {
            agent_id: AgentId::parse("a").unwrap(),
            name: "agent".into(),
            agent_type: "llm".into(),
            runtime_id: "rt".into(),
            endpoint: "http://a".into(),
            version: "1".into(),
            description: "d".into(),
            capabilities: vec![Capability {
                name: "code".into(),
                description: "writes code".into(),
                tags: vec!["t".into()],
                cost_estimate: Some(crate::CostEstimate::Number(0.5)),
                parameters: Metadata::default(),
            }],
            tags: vec!["x".into()],
            metadata: Metadata::default(),
            status: Some(AgentStatus::Busy),
            health_score: Some(1.0),
            load_factor: Some(0.0),
            performance_metrics: Some(BTreeMap::from([("lat".to_string(), 3.0)])),
            ttl_seconds: 30,
            offline_after_seconds: 30,
            deregister_after_seconds: 0,
            if_absent: false,
            expected_revision: None,
            keep: Keep::default(),
            now: Timestamp(1),
        }
    }

    fn valid_policy() -> ScalingPolicyRequest {
        ScalingPolicyRequest {
            min_agents: 1,
            max_agents: 10,
            high_load: 0.8,
            low_load: 0.2,
            min_health: 0.5,
        }
    }

    /// One valid command of every kind a follower forwards.
    fn forwardable() -> Vec<Command> {
        let id = AgentId::parse("a").unwrap();
        let t = Timestamp(1);
        vec![
            Command::Register(Box::new(valid_register())),
            Command::Deregister {
                agent_id: id.clone(),
                now: t,
            },
            Command::SetStatus {
                agent_id: id.clone(),
                status: AgentStatus::Suspended,
                now: t,
            },
            Command::SetHealth {
                agent_id: id,
                health_score: Some(0.0),
                load_factor: None,
                metrics: BTreeMap::new(),
                now: t,
            },
            Command::SetScalingPolicy {
                capability: "Code Review".into(),
                policy: Some(valid_policy()),
                now: t,
            },
            Command::SetScalingPolicy {
                capability: "code".into(),
                policy: None,
                now: t,
            },
            Command::CountDiscoveryRequests {
                count: MAX_DISCOVERY_COUNT,
                now: t,
            },
        ]
    }

    #[test]
    fn a_valid_command_of_every_forwarded_kind_passes() {
        let l = Limits::default();
        for c in forwardable() {
            assert_eq!(c.check_forwarded(&l), Ok(()), "{}", c.kind());
            assert_eq!(c.check_content(&l), Ok(()), "{}", c.kind());
        }
        // The edges are in: offline registrations (Dev-Tools), a lease
        // that never deregisters or deregisters with going offline.
        for (status, deregister) in [(Some(AgentStatus::Offline), 30), (None, 0)] {
            let mut r = valid_register();
            r.status = status;
            r.deregister_after_seconds = deregister;
            assert_eq!(Command::Register(Box::new(r)).check_forwarded(&l), Ok(()));
        }
    }

    /// The field `check_forwarded` names when it refuses `c`.
    fn refused(c: &Command) -> String {
        let e = c
            .check_forwarded(&Limits::default())
            .expect_err("must be refused");
        assert_eq!(e.error.code, crate::ErrorCode::InvalidArgument);
        e.error.field.expect("names a field")
    }

    fn register_with(f: impl FnOnce(&mut RegisterCommand)) -> Command {
        let mut r = valid_register();
        f(&mut r);
        Command::Register(Box::new(r))
    }

    #[test]
    fn leader_commands_batches_and_format1_are_never_forwarded() {
        for c in every_kind().into_iter().filter(|c| !c.groupable()) {
            assert_eq!(refused(&c), "command", "{}", c.kind());
            // Apply still takes the leader's own (fields only).
            assert_eq!(c.check_fields(&Limits::default()), Ok(()), "{}", c.kind());
        }
        // Even a batch of valid commands.
        assert_eq!(refused(&Command::Batch(forwardable())), "command");
    }

    #[test]
    fn every_registration_rule_names_its_field() {
        let l = Limits::default();
        let long = "x".repeat(l.max_short_string + 1);
        let cases: Vec<(&str, Command)> = vec![
            ("name", register_with(|r| r.name = " ".into())),
            ("name", register_with(|r| r.name = long.clone())),
            ("endpoint", register_with(|r| r.endpoint = String::new())),
            ("endpoint", register_with(|r| r.endpoint = long.clone())),
            ("agent_type", register_with(|r| r.agent_type = long.clone())),
            ("runtime_id", register_with(|r| r.runtime_id = long.clone())),
            ("version", register_with(|r| r.version = long.clone())),
            (
                "description",
                register_with(|r| r.description = "d".repeat(2 * 1024 * 1024)),
            ),
            (
                "capabilities",
                register_with(|r| r.capabilities = vec![r.capabilities[0].clone(); 2000]),
            ),
            (
                "capabilities[0]",
                register_with(|r| r.capabilities[0].name = "\t".into()),
            ),
            (
                "capabilities[0]",
                register_with(|r| r.capabilities[0].name = long.clone()),
            ),
            (
                "capabilities[0]",
                register_with(|r| {
                    r.capabilities[0].description = "d".repeat(l.max_description + 1)
                }),
            ),
            (
                "capabilities[0]",
                register_with(|r| r.capabilities[0].tags = vec!["t".into(); l.max_tags + 1]),
            ),
            (
                "capabilities[0]",
                register_with(|r| r.capabilities[0].tags = vec![" ".into()]),
            ),
            (
                "capabilities[0].cost_estimate",
                register_with(|r| {
                    r.capabilities[0].cost_estimate = Some(crate::CostEstimate::Number(f64::NAN))
                }),
            ),
            (
                "capabilities[0].cost_estimate",
                register_with(|r| {
                    r.capabilities[0].cost_estimate = Some(crate::CostEstimate::Number(-1.0))
                }),
            ),
            (
                "capabilities[0].parameters",
                register_with(|r| {
                    let mut m = serde_json::Map::new();
                    m.insert("k".into(), "p".repeat(l.max_metadata_bytes).into());
                    r.capabilities[0].parameters = Metadata(m);
                }),
            ),
            (
                "tags",
                register_with(|r| r.tags = vec!["t".into(); l.max_tags + 1]),
            ),
            ("tags", register_with(|r| r.tags = vec![String::new()])),
            ("tags", register_with(|r| r.tags = vec![long.clone()])),
            (
                "metadata",
                register_with(|r| {
                    let mut m = serde_json::Map::new();
                    m.insert("k".into(), "m".repeat(l.max_metadata_bytes).into());
                    r.metadata = Metadata(m);
                }),
            ),
            (
                "health_score",
                register_with(|r| r.health_score = Some(f64::NAN)),
            ),
            (
                "health_score",
                register_with(|r| r.health_score = Some(1.5)),
            ),
            ("load_factor", register_with(|r| r.load_factor = Some(-0.1))),
            (
                "load_factor",
                register_with(|r| r.load_factor = Some(f64::INFINITY)),
            ),
            (
                "performance_metrics",
                register_with(|r| {
                    r.performance_metrics = Some(BTreeMap::from([("x".to_string(), f64::NAN)]))
                }),
            ),
            (
                "performance_metrics",
                register_with(|r| {
                    r.performance_metrics = Some(
                        (0..=l.max_metrics)
                            .map(|i| (format!("m{i}"), 1.0))
                            .collect(),
                    )
                }),
            ),
            (
                "status",
                register_with(|r| r.status = Some(AgentStatus::Suspended)),
            ),
            (
                "status",
                register_with(|r| r.status = Some(AgentStatus::Unhealthy)),
            ),
            ("ttl_seconds", register_with(|r| r.ttl_seconds = 0)),
            (
                "offline_after_seconds",
                register_with(|r| r.offline_after_seconds = r.ttl_seconds - 1),
            ),
            (
                "deregister_after_seconds",
                register_with(|r| r.deregister_after_seconds = r.offline_after_seconds - 1),
            ),
        ];
        for (field, c) in &cases {
            assert_eq!(refused(c), *field, "{c:?}");
        }
    }

    #[test]
    fn every_health_policy_and_count_rule_names_its_field() {
        let id = AgentId::parse("a").unwrap();
        let t = Timestamp(1);
        let health = |h: Option<f64>, l: Option<f64>, m: &[(&str, f64)]| Command::SetHealth {
            agent_id: id.clone(),
            health_score: h,
            load_factor: l,
            metrics: m.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            now: t,
        };
        let many: Vec<(String, f64)> = (0..65).map(|i| (format!("m{i}"), 1.0)).collect();
        let many: Vec<(&str, f64)> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let policy = |f: fn(&mut ScalingPolicyRequest)| {
            let mut p = valid_policy();
            f(&mut p);
            Command::SetScalingPolicy {
                capability: "c".into(),
                policy: Some(p),
                now: t,
            }
        };
        let cases: Vec<(&str, Command)> = vec![
            ("health_score", health(None, None, &[])),
            ("health_score", health(Some(f64::NAN), None, &[])),
            ("health_score", health(Some(-0.5), None, &[])),
            ("load_factor", health(None, Some(f64::NEG_INFINITY), &[])),
            ("load_factor", health(None, Some(2.0), &[])),
            ("metrics", health(None, None, &[("x", f64::NAN)])),
            ("metrics", health(None, None, &many)),
            ("min_agents", policy(|p| p.min_agents = p.max_agents + 1)),
            ("max_agents", policy(|p| p.max_agents = 0)),
            ("max_agents", policy(|p| p.max_agents = u32::MAX)),
            ("high_load", policy(|p| p.high_load = f64::NAN)),
            ("low_load", policy(|p| p.low_load = -1.0)),
            ("low_load", policy(|p| p.low_load = p.high_load)),
            ("min_health", policy(|p| p.min_health = f64::INFINITY)),
            (
                "capability",
                Command::SetScalingPolicy {
                    capability: " \n ".into(),
                    policy: Some(valid_policy()),
                    now: t,
                },
            ),
            (
                "capability",
                Command::SetScalingPolicy {
                    capability: "c".repeat(513),
                    policy: None,
                    now: t,
                },
            ),
            (
                "count",
                Command::CountDiscoveryRequests { count: 0, now: t },
            ),
            (
                "count",
                Command::CountDiscoveryRequests {
                    count: MAX_DISCOVERY_COUNT + 1,
                    now: t,
                },
            ),
        ];
        for (field, c) in &cases {
            assert_eq!(refused(c), *field, "{c:?}");
            // Apply refuses them too, except the one rule of the request
            // path (a health report must say something).
            if !matches!(c, Command::SetHealth { health_score: None, load_factor: None, metrics, .. } if metrics.is_empty())
            {
                assert!(c.check_fields(&Limits::default()).is_err(), "{c:?}");
            }
        }
    }

    #[test]
    fn placement_keeps_batches_flat_and_format1_outermost() {
        let l = Limits::default();
        let leaf = Command::CountDiscoveryRequests {
            count: 1,
            now: Timestamp(1),
        };
        let batch = |items: Vec<Command>| Command::Batch(items);
        let f1 = |c: Command| Command::Format1(Box::new(c));
        // What nodes write.
        for ok in [
            batch(forwardable()),
            f1(leaf.clone()),
            f1(batch(vec![leaf.clone()])),
            f1(Command::Expire {
                entries: vec![],
                now: Timestamp(1),
            }),
        ] {
            assert_eq!(ok.check_content(&l), Ok(()), "{ok:?}");
        }
        for (bad, field) in [
            (batch(vec![leaf.clone(), batch(vec![])]), "batch[1].command"),
            (batch(vec![f1(leaf.clone())]), "batch[0].command"),
            (f1(f1(leaf.clone())), "command"),
            (f1(batch(vec![f1(leaf.clone())])), "batch[0].command"),
            (
                batch(vec![Command::Brake {
                    engaged: true,
                    held: 0,
                    fleet: 0,
                    now: Timestamp(1),
                }]),
                "batch[0].command",
            ),
            (
                batch(vec![
                    leaf.clone(),
                    Command::CountDiscoveryRequests {
                        count: 0,
                        now: Timestamp(1),
                    },
                ]),
                "batch[1].count",
            ),
        ] {
            let e = bad.check_content(&l).expect_err("refused");
            assert_eq!(e.error.field.as_deref(), Some(field), "{bad:?}");
        }
        let e = Command::Checkpoint {
            entries: vec![CheckpointEntry {
                agent_id: AgentId::parse("a").unwrap(),
                last_heartbeat: Timestamp(i64::MAX),
                status: None,
                health_score: Some(f64::NAN),
                load_factor: None,
                metrics: BTreeMap::new(),
            }],
            heartbeats: u64::MAX,
            now: Timestamp(1),
        }
        .check_content(&l)
        .expect_err("refused");
        assert_eq!(e.error.field.as_deref(), Some("entries[0].health_score"));
    }

    #[test]
    fn checkpoint_entries_are_checked_like_heartbeats() {
        let l = Limits::default();
        let entry = |health: Option<f64>, metrics: &[&str]| CheckpointEntry {
            agent_id: AgentId::parse("a").unwrap(),
            last_heartbeat: Timestamp(1),
            status: None,
            health_score: health,
            load_factor: Some(1.0),
            metrics: metrics.iter().map(|k| (k.to_string(), 1.0)).collect(),
        };
        assert_eq!(entry(Some(0.0), &["x"]).check(&l), Ok(()));
        for (bad, field) in [
            (entry(Some(f64::NAN), &[]), "health_score"),
            (
                CheckpointEntry {
                    load_factor: Some(-1.0),
                    ..entry(None, &[])
                },
                "load_factor",
            ),
            (
                CheckpointEntry {
                    metrics: BTreeMap::from([("x".to_string(), f64::INFINITY)]),
                    ..entry(None, &[])
                },
                "metrics",
            ),
        ] {
            let e = bad.check(&l).expect_err("refused");
            assert_eq!(e.error.field.as_deref(), Some(field));
        }
        // Merging: known names are free, new ones count.
        let existing: BTreeMap<String, f64> =
            (0..l.max_metrics).map(|i| (format!("m{i}"), 0.0)).collect();
        assert_eq!(
            entry(None, &["m0", "m1"]).check_merged_metrics(&existing, &l),
            Ok(())
        );
        let e = entry(None, &["m0", "new"])
            .check_merged_metrics(&existing, &l)
            .expect_err("one too many");
        assert_eq!(e.error.field.as_deref(), Some("metrics"));
    }

    #[test]
    fn rejection_invalid_carries_the_field_and_message() {
        let e = crate::limits::invalid("min_agents", "too many");
        assert_eq!(
            Rejection::invalid(e),
            Rejection::Invalid {
                field: "min_agents".into(),
                message: "too many".into()
            }
        );
    }
}
