"""Every route of the API as a :class:`Route`: the call to make and how to
read its answer. The sync and async clients are thin layers over these, so
each route is described once; :class:`Pager` is how both follow a
listing's cursors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from ._transport import Answer, Call, Kind, query, seg
from .cards import CardInput, card_to_json
from .errors import RegistryError
from .models import (
    AgentCardList,
    AgentHealth,
    AgentList,
    AgentRecord,
    AgentRegistration,
    AgentResponse,
    AgentStatus,
    BatchHeartbeatResponse,
    CapabilityList,
    ClusterInfo,
    Consistency,
    CreatedToken,
    DeleteResponse,
    DiscoverResponse,
    EventBatch,
    EventKind,
    HeartbeatReport,
    HeartbeatResponse,
    LeaderHandover,
    MemberList,
    MembershipChangeResponse,
    NodeHealth,
    RegisterResponse,
    Role,
    RuntimeDetail,
    RuntimeList,
    ScalingAdvisoryList,
    ScalingPolicy,
    ScalingPolicyList,
    SearchResponse,
    SelectStrategy,
    ServedCard,
    SortBy,
    Stats,
    TokenList,
    TokenScope,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: Most pages an auto-paging iterator follows, so that a server handing out
#: cursors in a cycle cannot keep a caller busy forever.
MAX_PAGES = 10_000

#: Seconds each attempt of a membership change may take: the node answers
#: once the change is over, or after half its ``--request-timeout-ms``
#: (30 s by default) with 202 while it still runs.
MEMBERSHIP_TIMEOUT = 70.0

#: Seconds each attempt of a leadership handover may take: a follower
#: forwards it to the leader, whose steps are bounded by a few leader
#: leases and the write timeout (about 10 s with the defaults).
HANDOVER_TIMEOUT = 30.0


@dataclass(frozen=True)
class Route(Generic[T]):
    """A call and the function that turns its answer into ``T`` (most read
    only the decoded JSON body: see :func:`_model`)."""

    call: Call
    parse: Callable[[Answer], T]


def _model(cls: type[M]) -> Callable[[Answer], M]:
    return lambda answer: cls.model_validate(answer.body)


def _agent(answer: Answer) -> AgentRecord:
    return AgentResponse.model_validate(answer.body).agent


def _raw(answer: Answer) -> Any:
    return answer.body


class Pager:
    """Follows a listing's cursors, page by page (both clients' auto-paging
    methods): every page after the first is read at least at the first
    page's revision (``min_revision``), so a later page never comes from a
    node that lags the earlier ones; more than :data:`MAX_PAGES` pages is an
    error.

    ::

        pages = Pager("agents")
        while pages.more():
            page = fetch(cursor=pages.cursor, min_revision=pages.revision)
            pages.turn(page.revision, page.next_cursor)
    """

    def __init__(self, what: str) -> None:
        #: What is listed, for the error.
        self.what = what
        #: The cursor of the next page (None: the first).
        self.cursor: str | None = None
        #: The first page's revision, once it arrived.
        self.revision: int | None = None
        self._pages = 0
        self._done = False

    def more(self) -> bool:
        """Whether there is another page to fetch."""
        if self._done:
            return False
        if self._pages >= MAX_PAGES:
            raise RegistryError(
                f"more than {MAX_PAGES} pages of {self.what}", code="too_many_pages"
            )
        return True

    def turn(self, revision: int, next_cursor: str | None) -> None:
        """Takes note of a page that arrived."""
        self._pages += 1
        if self.revision is None:
            self.revision = revision
        self.cursor = next_cursor
        self._done = not next_cursor


def _reads(consistency: Consistency | str | None, min_revision: int | None) -> dict[str, str]:
    return query(consistency=consistency, min_revision=min_revision)


# -- agents ------------------------------------------------------------------


def register(
    registration: AgentRegistration | None,
    *,
    agent_card: CardInput | None,
    if_absent: bool,
    expected_revision: int | None,
    timeout: float | None,
) -> Route[RegisterResponse]:
    if registration is None and agent_card is None:
        raise ValueError("register() needs a registration, an agent card, or both")
    body = registration.to_json() if registration is not None else {}
    body["capabilities"] = [
        {"name": c} if isinstance(c, str) else c for c in body.get("capabilities", [])
    ]
    if agent_card is not None:
        body["agent_card"] = card_to_json(agent_card)
    if if_absent:
        body["if_absent"] = True
    if expected_revision is not None:
        body["expected_revision"] = expected_revision
    return Route(
        Call("POST", "/v1/agents", Kind.WRITE, body=body, timeout=timeout),
        _model(RegisterResponse),
    )


def get_agent(
    agent_id: str,
    consistency: Consistency | str | None,
    min_revision: int | None,
    timeout: float | None,
) -> Route[AgentRecord]:
    return Route(
        Call(
            "GET",
            f"/v1/agents/{seg(agent_id)}",
            Kind.READ,
            params=_reads(consistency, min_revision),
            timeout=timeout,
        ),
        _agent,
    )


def list_page(
    *,
    status: AgentStatus | str | None,
    capability: str | None,
    tag: str | None,
    agent_type: str | None,
    runtime_id: str | None,
    limit: int | None,
    cursor: str | None,
    consistency: Consistency | str | None,
    min_revision: int | None,
    timeout: float | None,
) -> Route[AgentList]:
    params = query(
        status=status,
        capability=capability,
        tag=tag,
        agent_type=agent_type,
        runtime_id=runtime_id,
        limit=limit,
        cursor=cursor,
    )
    params.update(_reads(consistency, min_revision))
    return Route(
        Call("GET", "/v1/agents", Kind.READ, params=params, timeout=timeout),
        _model(AgentList),
    )


def deregister(agent_id: str, timeout: float | None) -> Route[DeleteResponse]:
    return Route(
        Call("DELETE", f"/v1/agents/{seg(agent_id)}", Kind.WRITE, timeout=timeout),
        _model(DeleteResponse),
    )


def set_status(
    agent_id: str, status: AgentStatus | str, timeout: float | None
) -> Route[AgentRecord]:
    value = status.value if isinstance(status, AgentStatus) else status
    return Route(
        Call(
            "PUT",
            f"/v1/agents/{seg(agent_id)}/status",
            Kind.WRITE,
            body={"status": value},
            timeout=timeout,
        ),
        _agent,
    )


def set_health(
    agent_id: str,
    *,
    health_score: float | None,
    load_factor: float | None,
    metrics: Mapping[str, float] | None,
    timeout: float | None,
) -> Route[AgentRecord]:
    body: dict[str, Any] = {}
    if health_score is not None:
        body["health_score"] = health_score
    if load_factor is not None:
        body["load_factor"] = load_factor
    if metrics:
        body["metrics"] = dict(metrics)
    return Route(
        Call("PUT", f"/v1/agents/{seg(agent_id)}/health", Kind.WRITE, body=body, timeout=timeout),
        _agent,
    )


def agent_health(
    agent_id: str,
    consistency: Consistency | str | None,
    min_revision: int | None,
    timeout: float | None,
) -> Route[AgentHealth]:
    return Route(
        Call(
            "GET",
            f"/health/{seg(agent_id)}",
            Kind.READ,
            params=_reads(consistency, min_revision),
            timeout=timeout,
        ),
        _model(AgentHealth),
    )


# -- A2A agent cards ---------------------------------------------------------


def set_agent_card(agent_id: str, card: CardInput, timeout: float | None) -> Route[AgentRecord]:
    return Route(
        Call(
            "POST",
            f"/v1/agents/{seg(agent_id)}/agent-card",
            Kind.WRITE,
            body=card_to_json(card),
            timeout=timeout,
        ),
        _agent,
    )


def _agent_status(value: str | None) -> AgentStatus | None:
    """The ``x-registry-agent-status`` header; None when absent or a status
    this client does not know (a newer server's)."""
    try:
        return AgentStatus(value.strip().lower()) if value else None
    except ValueError:
        return None


def _served_card(answer: Answer) -> ServedCard:
    not_modified = answer.status == 304
    card = answer.body if isinstance(answer.body, dict) and not not_modified else None
    if card is None and not not_modified:
        raise RegistryError(
            f"HTTP {answer.status} with a card that is not a JSON object",
            code="invalid_card",
            status=answer.status,
            node=answer.node,
        )
    return ServedCard(
        card=card,
        etag=answer.headers.get("etag"),
        agent_status=_agent_status(answer.headers.get("x-registry-agent-status")),
        not_modified=not_modified,
    )


def get_agent_card(
    agent_id: str,
    *,
    include_inactive: bool,
    if_none_match: str | None,
    consistency: Consistency | str | None,
    min_revision: int | None,
    timeout: float | None,
) -> Route[ServedCard]:
    params = query(include_inactive=True if include_inactive else None)
    params.update(_reads(consistency, min_revision))
    return Route(
        Call(
            "GET",
            f"/v1/agents/{seg(agent_id)}/agent-card.json",
            Kind.READ,
            params=params,
            timeout=timeout,
            headers={"if-none-match": if_none_match} if if_none_match else {},
        ),
        _served_card,
    )


def agent_cards_page(
    *,
    skill: str | None,
    tag: str | None,
    input_mode: str | None,
    output_mode: str | None,
    binding: str | None,
    q: str | None,
    status: AgentStatus | str | None,
    limit: int | None,
    cursor: str | None,
    consistency: Consistency | str | None,
    min_revision: int | None,
    timeout: float | None,
) -> Route[AgentCardList]:
    params = query(
        skill=skill,
        tag=tag,
        input_mode=input_mode,
        output_mode=output_mode,
        binding=binding,
        q=q,
        status=status,
        limit=limit,
        cursor=cursor,
    )
    params.update(_reads(consistency, min_revision))
    return Route(
        Call("GET", "/v1/agent-cards", Kind.READ, params=params, timeout=timeout),
        _model(AgentCardList),
    )


def registry_agent_card(timeout: float | None) -> Route[ServedCard]:
    return Route(
        Call("GET", "/.well-known/agent-card.json", Kind.READ, timeout=timeout),
        _served_card,
    )


# -- liveness ----------------------------------------------------------------


def heartbeat(
    agent_id: str, report: HeartbeatReport | None, timeout: float | None
) -> Route[HeartbeatResponse]:
    # A heartbeat is idempotent ("alive at about now"): retried like a read.
    body = report.to_json() if report is not None else {}
    return Route(
        Call(
            "POST",
            f"/v1/agents/{seg(agent_id)}/heartbeat",
            Kind.IDEMPOTENT,
            body=body,
            timeout=timeout,
        ),
        _model(HeartbeatResponse),
    )


def heartbeats(
    beats: Sequence[tuple[str, HeartbeatReport | None]], timeout: float | None
) -> Route[BatchHeartbeatResponse]:
    items = []
    for agent_id, report in beats:
        item = report.to_json() if report is not None else {}
        item["agent_id"] = agent_id
        items.append(item)
    return Route(
        Call(
            "POST", "/v1/heartbeats", Kind.IDEMPOTENT, body={"heartbeats": items}, timeout=timeout
        ),
        _model(BatchHeartbeatResponse),
    )


# -- discovery ---------------------------------------------------------------


def search(
    q: str,
    *,
    status: AgentStatus | str | None,
    limit: int | None,
    consistency: Consistency | str | None,
    min_revision: int | None,
    timeout: float | None,
) -> Route[SearchResponse]:
    params = query(q=q, status=status, limit=limit)
    params.update(_reads(consistency, min_revision))
    return Route(
        Call("GET", "/v1/capabilities/search", Kind.READ, params=params, timeout=timeout),
        _model(SearchResponse),
    )


def discover(
    *,
    capabilities: Sequence[str] | None,
    any_capabilities: Sequence[str] | None,
    text: str | None,
    tags: Sequence[str] | None,
    agent_type: str | None,
    runtime_id: str | None,
    skills: Sequence[str] | None,
    input_modes: Sequence[str] | None,
    output_modes: Sequence[str] | None,
    bindings: Sequence[str] | None,
    status: Sequence[AgentStatus | str] | None,
    min_health_score: float | None,
    max_load_factor: float | None,
    sort_by: SortBy | str | None,
    limit: int | None,
    explain: bool,
    include_card: bool,
    consistency: Consistency | str | None,
    min_revision: int | None,
    timeout: float | None,
) -> Route[DiscoverResponse]:
    body: dict[str, Any] = {}
    for key, value in (
        ("capabilities", capabilities),
        ("any_capabilities", any_capabilities),
        ("tags", tags),
        ("skills", skills),
        ("input_modes", input_modes),
        ("output_modes", output_modes),
        ("bindings", bindings),
    ):
        if value is not None:
            body[key] = list(value)
    for key, scalar in (
        ("text", text),
        ("agent_type", agent_type),
        ("runtime_id", runtime_id),
        ("min_health_score", min_health_score),
        ("max_load_factor", max_load_factor),
        ("limit", limit),
    ):
        if scalar is not None:
            body[key] = scalar
    if status is not None:
        body["status"] = [s.value if isinstance(s, AgentStatus) else s for s in status]
    if sort_by is not None:
        body["sort_by"] = sort_by.value if isinstance(sort_by, SortBy) else sort_by
    if explain:
        body["explain"] = True
    if include_card:
        body["include_card"] = True
    return Route(
        Call(
            "POST",
            "/v1/discover",
            Kind.READ,
            params=_reads(consistency, min_revision),
            body=body,
            timeout=timeout,
        ),
        _model(DiscoverResponse),
    )


def select(
    capability: str,
    *,
    strategy: SelectStrategy | str | None,
    min_health_score: float | None,
    max_load_factor: float | None,
    consistency: Consistency | str | None,
    min_revision: int | None,
    timeout: float | None,
) -> Route[AgentRecord]:
    params = query(
        capability=capability,
        strategy=strategy,
        min_health_score=min_health_score,
        max_load_factor=max_load_factor,
    )
    params.update(_reads(consistency, min_revision))
    return Route(
        Call("GET", "/v1/select", Kind.READ, params=params, timeout=timeout),
        _model(AgentRecord),
    )


def capabilities_page(
    limit: int | None,
    cursor: str | None,
    consistency: Consistency | str | None,
    min_revision: int | None,
    timeout: float | None,
) -> Route[CapabilityList]:
    params = query(limit=limit, cursor=cursor)
    params.update(_reads(consistency, min_revision))
    return Route(
        Call("GET", "/v1/capabilities", Kind.READ, params=params, timeout=timeout),
        _model(CapabilityList),
    )


def runtimes_page(
    limit: int | None,
    cursor: str | None,
    consistency: Consistency | str | None,
    min_revision: int | None,
    timeout: float | None,
) -> Route[RuntimeList]:
    params = query(limit=limit, cursor=cursor)
    params.update(_reads(consistency, min_revision))
    return Route(
        Call("GET", "/v1/runtimes", Kind.READ, params=params, timeout=timeout),
        _model(RuntimeList),
    )


def runtime(
    runtime_id: str,
    consistency: Consistency | str | None,
    min_revision: int | None,
    timeout: float | None,
) -> Route[RuntimeDetail]:
    return Route(
        Call(
            "GET",
            f"/v1/runtimes/{seg(runtime_id)}",
            Kind.READ,
            params=_reads(consistency, min_revision),
            timeout=timeout,
        ),
        _model(RuntimeDetail),
    )


def stats(
    consistency: Consistency | str | None, min_revision: int | None, timeout: float | None
) -> Route[Stats]:
    return Route(
        Call(
            "GET", "/v1/stats", Kind.READ, params=_reads(consistency, min_revision), timeout=timeout
        ),
        _model(Stats),
    )


# -- cluster -----------------------------------------------------------------


def cluster(timeout: float | None) -> Route[ClusterInfo]:
    return Route(Call("GET", "/v1/cluster", Kind.READ, timeout=timeout), _model(ClusterInfo))


def node_health(which: str, timeout: float | None) -> Route[NodeHealth]:
    return Route(Call("GET", f"/health/{which}", Kind.READ, timeout=timeout), _model(NodeHealth))


def members(timeout: float | None) -> Route[MemberList]:
    return Route(Call("GET", "/v1/cluster/members", Kind.READ, timeout=timeout), _model(MemberList))


def add_member(
    node_id: int, address: str, *, voter: bool, force: bool, timeout: float | None
) -> Route[MembershipChangeResponse]:
    body: dict[str, Any] = {"node_id": node_id, "address": address, "voter": voter}
    if force:
        body["force"] = True
    return Route(
        Call(
            "POST",
            "/v1/cluster/members",
            Kind.WRITE,
            body=body,
            timeout=MEMBERSHIP_TIMEOUT if timeout is None else timeout,
        ),
        _model(MembershipChangeResponse),
    )


def remove_member(
    node_id: int, *, force: bool, timeout: float | None
) -> Route[MembershipChangeResponse]:
    return Route(
        Call(
            "DELETE",
            f"/v1/cluster/members/{node_id:d}",
            Kind.WRITE,
            params=query(force=True) if force else None,
            timeout=MEMBERSHIP_TIMEOUT if timeout is None else timeout,
        ),
        _model(MembershipChangeResponse),
    )


def hand_over_leadership(to: int | None, timeout: float | None) -> Route[LeaderHandover]:
    return Route(
        Call(
            "POST",
            "/v1/cluster/leader",
            Kind.WRITE,
            body={} if to is None else {"node_id": to},
            timeout=HANDOVER_TIMEOUT if timeout is None else timeout,
        ),
        _model(LeaderHandover),
    )


# -- scaling -----------------------------------------------------------------


def put_policy(
    capability: str,
    *,
    min_agents: int | None,
    max_agents: int | None,
    high_load: float | None,
    low_load: float | None,
    min_health: float | None,
    timeout: float | None,
) -> Route[ScalingPolicy]:
    body = {
        k: v
        for k, v in (
            ("min_agents", min_agents),
            ("max_agents", max_agents),
            ("high_load", high_load),
            ("low_load", low_load),
            ("min_health", min_health),
        )
        if v is not None
    }
    return Route(
        Call(
            "PUT",
            f"/v1/scaling/policies/{seg(capability)}",
            Kind.WRITE,
            body=body,
            timeout=timeout,
        ),
        _model(ScalingPolicy),
    )


def get_policy(capability: str, timeout: float | None) -> Route[ScalingPolicy]:
    return Route(
        Call("GET", f"/v1/scaling/policies/{seg(capability)}", Kind.READ, timeout=timeout),
        _model(ScalingPolicy),
    )


def delete_policy(capability: str, timeout: float | None) -> Route[ScalingPolicyList]:
    return Route(
        Call("DELETE", f"/v1/scaling/policies/{seg(capability)}", Kind.WRITE, timeout=timeout),
        _model(ScalingPolicyList),
    )


def list_policies(timeout: float | None) -> Route[ScalingPolicyList]:
    return Route(
        Call("GET", "/v1/scaling/policies", Kind.READ, timeout=timeout),
        _model(ScalingPolicyList),
    )


def advisories(capability: str | None, timeout: float | None) -> Route[ScalingAdvisoryList]:
    return Route(
        Call(
            "GET",
            "/v1/scaling/advisories",
            Kind.READ,
            params=query(capability=capability),
            timeout=timeout,
        ),
        _model(ScalingAdvisoryList),
    )


# -- events ------------------------------------------------------------------


def event_filter(
    types: Sequence[EventKind | str] | None,
    agent_id: str | None,
    capability: str | None,
    runtime_id: str | None,
) -> dict[str, str]:
    """The query parameters of an event filter."""
    return query(
        type=list(types) if types else None,
        agent_id=agent_id,
        capability=capability,
        runtime_id=runtime_id,
    )


def events(
    *,
    from_revision: int | None,
    wait: float,
    types: Sequence[EventKind | str] | None,
    agent_id: str | None,
    capability: str | None,
    runtime_id: str | None,
    timeout: float | None,
) -> Route[EventBatch]:
    params = event_filter(types, agent_id, capability, runtime_id)
    params.update(query(from_revision=from_revision))
    params["wait"] = f"{max(0, round(wait * 1000))}ms"
    # The long poll itself may last `wait`: the attempt gets that much more.
    per_attempt = (timeout or 10.0) + wait
    return Route(
        Call("GET", "/v1/events", Kind.READ, params=params, timeout=per_attempt),
        _model(EventBatch),
    )


# -- tokens ------------------------------------------------------------------


def create_token(
    name: str,
    role: Role | str,
    *,
    agents: Sequence[str] | None,
    runtimes: Sequence[str] | None,
    expires_at: datetime | None,
    timeout: float | None,
) -> Route[CreatedToken]:
    body: dict[str, Any] = {"name": name, "role": role.value if isinstance(role, Role) else role}
    if agents is not None or runtimes is not None:
        body["scope"] = TokenScope(
            agents=list(agents or []), runtimes=list(runtimes or [])
        ).model_dump()
    if expires_at is not None:
        body["expires_at"] = expires_at.isoformat().replace("+00:00", "Z")
    return Route(
        Call("POST", "/v1/auth/tokens", Kind.WRITE, body=body, timeout=timeout),
        _model(CreatedToken),
    )


def list_tokens(timeout: float | None) -> Route[TokenList]:
    return Route(Call("GET", "/v1/auth/tokens", Kind.READ, timeout=timeout), _model(TokenList))


def revoke_token(token_id: str, timeout: float | None) -> Route[bool]:
    return Route(
        Call("DELETE", f"/v1/auth/tokens/{seg(token_id)}", Kind.WRITE, timeout=timeout),
        lambda answer: isinstance(answer.body, dict) and bool(answer.body.get("revoked")),
    )


# -- anything else (the legacy routes of the compat clients) ------------------


def request(
    method: str,
    path: str,
    *,
    params: Mapping[str, str] | None,
    body: Any,
    idempotent: bool,
    timeout: float | None,
) -> Route[Any]:
    """The clients' ``request()``: ``GET`` is a read; other methods are
    writes, sent again after an unknown outcome only when ``idempotent``."""
    method = method.upper()
    kind = Kind.IDEMPOTENT if idempotent else Kind.WRITE
    if method == "GET":
        kind = Kind.READ
    return raw(method, path, kind, params=params, body=body, timeout=timeout)


def raw(
    method: str,
    path: str,
    kind: Kind,
    *,
    params: Mapping[str, str] | None = None,
    body: Any = None,
    timeout: float | None = None,
) -> Route[Any]:
    return Route(Call(method, path, kind, params=params, body=body, timeout=timeout), _raw)
