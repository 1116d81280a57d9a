"""The wire types of the registry's ``/v1`` API, as pydantic v2 models.

They follow the server's OpenAPI document (``GET /openapi.json``). Answers
are parsed leniently about *new* fields (unknown fields are ignored, so a
newer server does not break an older client) and strictly about the fields
this package reads. Requests are serialized without ``None`` fields, so a
field left out means "the server's default".

Timestamps are :class:`datetime.datetime` (UTC, stamped by the leader).
Scores (``health_score``, ``load_factor``) are fractions in 0..1.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .cards import card_from_json, card_to_json

if TYPE_CHECKING:
    from a2a.types import AgentCard

__all__ = [
    "Actor",
    "AgentCardEntry",
    "AgentCardList",
    "AgentHealth",
    "AgentList",
    "AgentRecord",
    "AgentRegistration",
    "AgentStatus",
    "BatchHeartbeatResponse",
    "BatchHeartbeatResult",
    "Capability",
    "CapabilityInput",
    "CapabilityList",
    "CapabilityMatch",
    "CapabilitySummary",
    "ClusterInfo",
    "Consistency",
    "CreatedToken",
    "DeleteResponse",
    "DiscoverExplanation",
    "DiscoverFilterCounts",
    "DiscoverHit",
    "DiscoverResponse",
    "ErrorDetail",
    "Event",
    "EventBatch",
    "EventKind",
    "HeartbeatReport",
    "HeartbeatResponse",
    "LeaderHandover",
    "Member",
    "MemberList",
    "MembershipChange",
    "MembershipChangeResponse",
    "NodeHealth",
    "RegisterResponse",
    "Role",
    "RuntimeDetail",
    "RuntimeList",
    "RuntimeSummary",
    "ScalingAdvisory",
    "ScalingAdvisoryList",
    "ScalingFigures",
    "ScalingPolicy",
    "ScalingPolicyList",
    "SearchResponse",
    "SelectStrategy",
    "ServedCard",
    "SortBy",
    "Stats",
    "TokenInfo",
    "TokenList",
    "TokenScope",
]


class _Answer(BaseModel):
    """Base of the answers: unknown fields are ignored (forward compatible)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Request(BaseModel):
    """Base of request bodies: a misspelt field is an error here, not a
    field silently dropped on the way to the server."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        """The body as sent: ``None`` fields left out (server defaults)."""
        return self.model_dump(mode="json", exclude_none=True)


class AgentStatus(str, Enum):
    """Where an agent is in its life cycle (see docs/api.md, "Liveness")."""

    REGISTERING = "registering"
    ACTIVE = "active"
    BUSY = "busy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    SUSPENDED = "suspended"
    DEREGISTERING = "deregistering"
    OFFLINE = "offline"


class Consistency(str, Enum):
    """How fresh a read must be: ``linearizable`` (default) needs a leader;
    ``stale`` answers from the node's own state at once."""

    LINEARIZABLE = "linearizable"
    STALE = "stale"


class SelectStrategy(str, Enum):
    """How ``select`` picks one of the qualified agents."""

    LEAST_LOADED = "least_loaded"
    BEST_HEALTH = "best_health"
    RANDOM = "random"
    ROUND_ROBIN = "round_robin"


class SortBy(str, Enum):
    """Order of discovery results."""

    PERFORMANCE = "performance"
    HEALTH = "health"
    LOAD = "load"
    RANDOM = "random"
    RELEVANCE = "relevance"


class EventKind(str, Enum):
    """Kinds of change events (``GET /v1/events``)."""

    AGENT_REGISTERED = "AGENT_REGISTERED"
    AGENT_UPDATED = "AGENT_UPDATED"
    AGENT_DEREGISTERED = "AGENT_DEREGISTERED"
    AGENT_STATUS_CHANGED = "AGENT_STATUS_CHANGED"
    AGENT_EXPIRED = "AGENT_EXPIRED"
    RUNTIME_JOINED = "RUNTIME_JOINED"
    RUNTIME_LEFT = "RUNTIME_LEFT"
    LIVENESS_BRAKE_ENGAGED = "LIVENESS_BRAKE_ENGAGED"
    LIVENESS_BRAKE_RELEASED = "LIVENESS_BRAKE_RELEASED"
    SCALING_ADVISORY = "SCALING_ADVISORY"


class Role(str, Enum):
    """What a token may do (docs/api.md, "Access control")."""

    ADMIN = "admin"
    OPERATOR = "operator"
    AGENT = "agent"
    READER = "reader"


# Numbers or text, echoed back exactly as given; never interpreted.
CostEstimate = float | int | str


class CapabilityInput(_Request):
    """A capability as an agent declares it when registering."""

    name: str
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    #: A number >= 0 or text of at most 256 bytes ("50-200 tokens per call").
    cost_estimate: CostEstimate | None = None
    #: A JSON object kept verbatim (a JSON schema, parameter names, ...).
    parameters: dict[str, Any] | None = None


class AgentRegistration(_Request):
    """The body of ``POST /v1/agents``: what an agent says about itself.

    ``capabilities`` may be given as plain names. Durations are in whole
    seconds; see docs/api.md, "Liveness", for what the three of them do.
    ``name`` and ``endpoint`` are required unless ``agent_card`` is given
    (the registry then maps them, ``version``, ``description`` and the
    capabilities from the card; fields given here win).
    """

    #: Stable id (``[A-Za-z0-9._:-]{1,128}``); a UUID is made when absent,
    #: but then a retried registration can create a second agent.
    agent_id: str | None = None
    name: str | None = None
    #: Where the agent serves (absolute http(s)/grpc(s)/ws(s) URL).
    endpoint: str | None = None
    agent_type: str | None = None
    runtime_id: str | None = None
    version: str | None = None
    description: str | None = None
    #: Capabilities, or plain names (made into ``CapabilityInput(name=...)``).
    capabilities: list[CapabilityInput | str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    #: ``active`` (default), ``busy`` or ``degraded``.
    status: AgentStatus | None = None
    health_score: float | None = None
    load_factor: float | None = None
    performance_metrics: dict[str, float] | None = None
    ttl_seconds: int | None = None
    offline_after_seconds: int | None = None
    deregister_after_seconds: int | None = None
    #: The agent's A2A Agent Card, kept verbatim by the registry: its JSON
    #: (A2A 1.0, or 0.2/0.3 with a top-level ``url``). An ``a2a-sdk``
    #: ``AgentCard`` is converted (:func:`agent_registry.cards.card_to_json`);
    #: typed code passes one as ``register(..., agent_card=card)``.
    agent_card: dict[str, Any] | None = None

    @field_validator("capabilities", mode="before")
    @classmethod
    def _names_are_capabilities(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("agent_card", mode="before")
    @classmethod
    def _card_as_json(cls, value: Any) -> Any:
        return None if value is None else card_to_json(value)


class HeartbeatReport(_Request):
    """What a heartbeat may report besides "alive"; every field optional
    (omitted ones keep their values)."""

    #: ``active``, ``busy`` or ``degraded`` only.
    status: AgentStatus | None = None
    health_score: float | None = None
    load_factor: float | None = None
    #: Merged into ``performance_metrics`` (at most 64 names, finite).
    metrics: dict[str, float] | None = None


class Actor(_Answer):
    """Who made a change: a token, or ``anonymous`` with auth off."""

    token_id: str | None = None
    name: str


class Capability(_Answer):
    """A capability as the registry stores it."""

    name: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    cost_estimate: CostEstimate | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class AgentRecord(_Answer):
    """One agent as the registry holds it."""

    agent_id: str
    name: str
    agent_type: str = ""
    runtime_id: str = ""
    endpoint: str
    version: str = ""
    description: str = ""
    capabilities: list[Capability] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: AgentStatus
    health_score: float
    load_factor: float
    performance_metrics: dict[str, float] = Field(default_factory=dict)
    ttl_seconds: int
    offline_after_seconds: int
    deregister_after_seconds: int
    registered_at: datetime
    updated_at: datetime
    last_heartbeat: datetime
    #: Revision at which the agent was (last) created.
    create_revision: int
    #: Revision of the record's last change (``expected_revision`` compares it).
    revision: int
    epoch: int = 0
    registered_by: Actor | None = None
    #: The agent's A2A card as it registered it (None without one, and
    #: where an answer leaves cards out); served with its ETag and liveness
    #: by ``get_agent_card``.
    agent_card: dict[str, Any] | None = None


class RegisterResponse(_Answer):
    """Answer to a registration (``created`` false: an existing agent replaced)."""

    success: bool
    agent_id: str
    created: bool
    revision: int
    agent: AgentRecord


class AgentResponse(_Answer):
    """One agent and the registry revision the answer reflects."""

    agent: AgentRecord
    revision: int


class AgentList(_Answer):
    """One page of ``GET /v1/agents``."""

    agents: list[AgentRecord]
    next_cursor: str | None = None
    revision: int


class DeleteResponse(_Answer):
    """Answer to a deregistration."""

    success: bool
    agent_id: str
    revision: int


class AgentHealth(_Answer):
    """``GET /health/{id}``: ``status`` is ``healthy`` or the agent's status."""

    agent_id: str
    agent_name: str
    status: str
    is_healthy: bool
    agent_status: AgentStatus
    last_heartbeat: datetime
    seconds_since_heartbeat: int
    health_score: float
    load_factor: float


class HeartbeatResponse(_Answer):
    """Answer to a heartbeat: when to beat next, in milliseconds."""

    agent_id: str
    status: AgentStatus
    ttl_seconds: int
    #: A third of the TTL, jittered by the server: beat again after this.
    next_heartbeat_ms: int
    last_heartbeat: datetime


class ErrorDetail(_Answer):
    """The ``error`` object of a registry error."""

    code: str
    message: str
    field: str | None = None
    retryable: bool = False


class BatchHeartbeatResult(_Answer):
    """One item's outcome in ``POST /v1/heartbeats``."""

    agent_id: str
    ok: bool
    heartbeat: HeartbeatResponse | None = None
    error: ErrorDetail | None = None


class BatchHeartbeatResponse(_Answer):
    """Answer to ``POST /v1/heartbeats``: one result per item, in order."""

    results: list[BatchHeartbeatResult]
    accepted: int
    rejected: int


class CapabilityMatch(_Answer):
    """One (agent, capability) pair found by capability search."""

    agent_id: str
    agent_name: str
    status: AgentStatus
    endpoint: str
    capability: Capability
    cost_estimate: CostEstimate | None = None
    #: ``exact``, ``tag``, ``name`` or ``description``.
    match_kind: str


class SearchResponse(_Answer):
    """Answer to ``GET /v1/capabilities/search``."""

    query: str
    matches: list[CapabilityMatch]
    revision: int


class DiscoverExplanation(_Answer):
    """Why an agent matched a discovery query (with ``explain``)."""

    matched_capabilities: list[str]
    matched_words: list[str]
    relevance: float
    performance: float


class DiscoverFilterCounts(_Answer):
    """How many candidates each discovery filter dropped (with ``explain``)."""

    candidates: int
    dropped_by_status: int
    dropped_by_health: int
    dropped_by_load: int
    qualified: int


class DiscoverHit(_Answer):
    """One discovered agent."""

    agent: AgentRecord
    explanation: DiscoverExplanation | None = None
    #: The ETag of the agent's A2A card (None without a card); the card
    #: itself is in ``agent.agent_card`` only with ``include_card=True``
    #: (else fetch it with ``get_agent_card``, cached by this ETag).
    card_etag: str | None = None


class DiscoverResponse(_Answer):
    """Answer to ``POST /v1/discover``."""

    agents: list[DiscoverHit]
    sort_by: SortBy
    filters: DiscoverFilterCounts | None = None
    revision: int


class CapabilitySummary(_Answer):
    """A capability name with its agent count and counts by status."""

    name: str
    agents: int
    by_status: dict[AgentStatus, int] = Field(default_factory=dict)


class CapabilityList(_Answer):
    """One page of ``GET /v1/capabilities``."""

    capabilities: list[CapabilitySummary]
    next_cursor: str | None = None
    revision: int


class RuntimeSummary(_Answer):
    """A runtime with its agent count and counts by status."""

    runtime_id: str
    agents: int
    by_status: dict[AgentStatus, int] = Field(default_factory=dict)


class RuntimeList(_Answer):
    """One page of ``GET /v1/runtimes``."""

    runtimes: list[RuntimeSummary]
    next_cursor: str | None = None
    revision: int


class RuntimeDetail(_Answer):
    """``GET /v1/runtimes/{id}``: the runtime's counts and its agents."""

    runtime: RuntimeSummary
    agents: list[AgentRecord]
    revision: int


class Stats(_Answer):
    """``GET /v1/stats`` (the fields of docs/api.md, "Statistics")."""

    total_agents: int
    agents_by_status: dict[AgentStatus, int]
    total_registrations: int
    total_capabilities: int
    capability_distribution: dict[str, int]
    discovery_requests: int
    active_agents: int
    offline_agents: int
    degraded_agents: int
    registered_agents: int
    health_checks_performed: int
    failed_health_checks: int
    auto_scaling_events: int
    service_discovery_requests: int
    health_distribution: dict[str, int]
    revision: int


class Member(_Answer):
    """A voter or learner of the cluster."""

    node_id: int
    #: Where the members reach it (HOST:PORT; its peer address).
    addr: str
    #: Its role as the answering node sees it (``leader``, ``follower``,
    #: ``learner``, ...).
    role: str
    #: Whether it votes (false: a learner).
    voter: bool
    #: On the leader: ms since it last answered the leader's Raft messages;
    #: None elsewhere, for the leader itself, and before a first answer.
    last_answer_ms: int | None = None


class MembershipChange(_Answer):
    """A membership change as the leader runs it: the one in flight, or the
    last one, over (docs/operations.md, "Membership")."""

    #: ``add`` or ``remove``.
    kind: str
    #: The node added or removed, and its address.
    node_id: int
    address: str
    #: Whether it is to be a voter (an addition) or was one (a removal).
    voter: bool
    #: ``catching_up``, ``promoting``, ``removing``, then ``done`` or
    #: ``failed`` (``error`` says why).
    phase: str
    #: The highest log index the leader knows the node holds (None before
    #: its first answer), against the index it must reach to be promoted.
    matched_index: int | None = None
    target_index: int
    since: datetime
    #: Milliseconds since it started (until it ended, once over).
    elapsed_ms: int
    error: str | None = None

    @property
    def over(self) -> bool:
        """Whether it has ended (``done`` or ``failed``)."""
        return self.phase in ("done", "failed")


class MembershipChangeResponse(_Answer):
    """Answer to ``add_member`` / ``remove_member``: the change (``phase``
    ``done``; or still running when the node answered before it ended:
    follow it in :attr:`ClusterInfo.membership_change` of the leader) and
    the members as the leader then saw them."""

    change: MembershipChange
    members: list[Member]


class MemberList(_Answer):
    """``GET /v1/cluster/members``: the members as the answering node sees
    them; from the leader also the change in flight or the last one."""

    leader_id: int | None = None
    members: list[Member]
    membership_change: MembershipChange | None = None


class LeaderHandover(_Answer):
    """``POST /v1/cluster/leader``: leadership moved."""

    previous_leader: int
    #: The node that leads now, and its term.
    leader_id: int
    term: int
    #: Milliseconds the previous leader held writes back (they waited,
    #: then went to the new leader).
    paused_ms: int


class ClusterInfo(_Answer):
    """``GET /v1/cluster``: the answering node's view, answered locally."""

    node_id: int
    role: str
    leader_id: int | None = None
    leader_addr: str | None = None
    term: int
    last_log_index: int
    commit_index: int
    applied_index: int
    snapshot_index: int | None = None
    revision: int
    members: list[Member]
    last_contact_ms: int | None = None
    cluster_id: str | None = None
    #: How the node authenticates its peers (``hmac_sha256``, ``mutual_tls``,
    #: ...; docs/api.md).
    peer_auth: str | None = None
    #: On the leader: the membership change in flight, or the last one.
    membership_change: MembershipChange | None = None


class NodeHealth(_Answer):
    """``GET /health/live`` / ``/health/ready`` of one node."""

    status: str
    node_id: int
    leader_id: int | None = None
    reason: str | None = None


class ScalingPolicy(_Answer):
    """A capability's scaling policy as stored."""

    capability: str
    min_agents: int
    max_agents: int
    high_load: float
    low_load: float
    min_health: float
    updated_at: datetime
    revision: int


class ScalingPolicyList(_Answer):
    """Every scaling policy."""

    policies: list[ScalingPolicy]
    revision: int


class ScalingFigures(_Answer):
    """The figures behind an advisory."""

    agents: int
    serving: int
    unhealthy: int
    average_load: float
    desired_agents: int


class ScalingAdvisory(_Answer):
    """Advice for one capability: ``scale_up``, ``scale_down`` or
    ``replace_unhealthy``; ``in_force`` false when it cleared."""

    capability: str
    action: str
    in_force: bool
    reason: str
    figures: ScalingFigures
    since: datetime
    revision: int


class ScalingAdvisoryList(_Answer):
    """The advisories in force."""

    advisories: list[ScalingAdvisory]
    revision: int


class Event(_Answer):
    """One change; ``revision`` is its id (also the SSE ``id``)."""

    revision: int
    type: EventKind
    agent_id: str | None = None
    at: datetime
    cause: str
    status: AgentStatus | None = None
    previous_status: AgentStatus | None = None
    runtime_id: str = ""
    detail: str = ""
    capabilities: list[str] = Field(default_factory=list)
    advisory: ScalingAdvisory | None = None
    actor: Actor | None = None
    #: The ETag of the agent's A2A card after the change (None: no card).
    card_etag: str | None = None


class EventBatch(_Answer):
    """A long poll's answer: continue with ``next_from_revision``."""

    events: list[Event]
    revision: int
    next_from_revision: int


class TokenScope(_Answer):
    """An agent token's reach: agent ids or prefixes (``team-a-*``) and
    runtime ids."""

    agents: list[str] = Field(default_factory=list)
    runtimes: list[str] = Field(default_factory=list)


class TokenInfo(_Answer):
    """A token's metadata (never its secret)."""

    id: str
    name: str
    role: Role
    scope: TokenScope = Field(default_factory=TokenScope)
    expires_at: datetime | None = None
    created_at: datetime
    created_by: Actor | None = None


class CreatedToken(TokenInfo):
    """A new token: ``token`` is the secret, shown this once."""

    token: str


class TokenList(_Answer):
    """Every token."""

    tokens: list[TokenInfo]


class ServedCard(_Answer):
    """An A2A card as a node served it (``get_agent_card``,
    ``registry_agent_card``): the card, its ETag, and the agent's status
    when it was served. With ``if_none_match`` naming the current ETag the
    node answers 304: ``not_modified``, and no ``card`` (the one held is
    current)."""

    #: The card's JSON, verbatim as stored (None when ``not_modified``).
    card: dict[str, Any] | None = None
    #: The card's strong ETag (``"..."``, quotes included), the same on
    #: every node for the same card; pass it as ``if_none_match``.
    etag: str | None = None
    #: The agent's status now (``x-registry-agent-status``; None for the
    #: registry's own card or a status this client does not know).
    agent_status: AgentStatus | None = None
    #: True when the node answered 304 Not Modified.
    not_modified: bool = False

    def as_a2a(self) -> AgentCard:
        """The card as an ``a2a-sdk`` ``AgentCard``
        (:func:`agent_registry.cards.card_from_json`; :class:`ImportError`
        without ``a2a-sdk``). :class:`ValueError` when not modified."""
        if self.card is None:
            raise ValueError("the node answered 304 Not Modified: the card held is current")
        return card_from_json(self.card)


class AgentCardEntry(_Answer):
    """One agent's card in ``GET /v1/agent-cards``."""

    agent_id: str
    #: The agent's status now.
    status: AgentStatus
    #: The card's ETag, as ``get_agent_card`` gives it.
    etag: str
    #: The card's JSON, verbatim.
    card: dict[str, Any]

    def as_a2a(self) -> AgentCard:
        """The card as an ``a2a-sdk`` ``AgentCard`` (:class:`ImportError`
        without ``a2a-sdk``)."""
        return card_from_json(self.card)


class AgentCardList(_Answer):
    """One page of ``GET /v1/agent-cards``."""

    cards: list[AgentCardEntry]
    next_cursor: str | None = None
    revision: int
