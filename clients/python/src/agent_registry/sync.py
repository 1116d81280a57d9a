"""The blocking client: :class:`RegistryClient`, the same routes and fail-over
as :class:`~agent_registry.client.AsyncRegistryClient` for code without an
event loop.

Written from the async client method for method (only ``await`` and the
HTTP client differ); ``tests/test_sync.py`` checks that both offer the same
methods with the same parameters.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import _routes as routes
from ._transport import (
    Call,
    Config,
    Kind,
    backoff,
    classify_exception,
    classify_response,
    give_up,
    resolve_config,
)
from .errors import NotFound, RegistryError
from .models import (
    AgentHealth,
    AgentList,
    AgentRecord,
    AgentRegistration,
    AgentStatus,
    BatchHeartbeatResponse,
    CapabilityList,
    CapabilitySummary,
    ClusterInfo,
    Consistency,
    CreatedToken,
    DeleteResponse,
    DiscoverResponse,
    EventBatch,
    EventKind,
    HeartbeatReport,
    HeartbeatResponse,
    NodeHealth,
    RegisterResponse,
    Role,
    RuntimeDetail,
    RuntimeList,
    RuntimeSummary,
    ScalingAdvisoryList,
    ScalingPolicy,
    ScalingPolicyList,
    SearchResponse,
    SelectStrategy,
    SortBy,
    Stats,
    TokenInfo,
)

T = TypeVar("T")

#: Most pages an auto-paging iterator follows.
MAX_PAGES = 10_000


class RegistryClient:
    """A client for a registry cluster, for blocking code (the same methods
    as :class:`~agent_registry.AsyncRegistryClient`, without ``watch``: use
    :meth:`events`, a long poll, to follow changes).

    ``nodes`` are the base URLs of some or all nodes (any node serves any
    call); without them, ``REGISTRY_NODES`` (comma-separated). ``token``
    (else ``REGISTRY_TOKEN``) is sent as ``Authorization: Bearer``;
    ``ca_file`` (else ``REGISTRY_CACERT``) is the CA bundle that verifies
    ``https`` nodes. ``timeout`` bounds each attempt, ``retry_budget`` the
    time a call spends failing over between nodes (both in seconds).

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        nodes: Sequence[str] | str | None = None,
        *,
        token: str | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        retry_budget: float | None = None,
    ) -> None:
        self.config: Config = resolve_config(
            nodes, token=token, ca_file=ca_file, timeout=timeout, retry_budget=retry_budget
        )
        self._http = httpx.Client(
            verify=self.config.verify,
            headers=self.config.headers(),
            timeout=self.config.timeout,
        )
        # Index of the node that answered last: calls start there.
        self._preferred = 0

    @property
    def nodes(self) -> tuple[str, ...]:
        """The configured node URLs."""
        return self.config.nodes

    @property
    def preferred_node(self) -> str:
        """The node the next call tries first (the last one that answered)."""
        return self.config.nodes[self._preferred]

    def close(self) -> None:
        """Closes the connection pool."""
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the fail-over loop ------------------------------------------------

    def _run(self, route: routes.Route[T]) -> T:
        return route.parse(self._request(route.call))

    def _request(self, call: Call) -> Any:
        """Sends ``call`` to the nodes in turn until one answers for good."""
        nodes = self.config.nodes
        deadline = time.monotonic() + self.config.retry_budget
        errors: list[RegistryError] = []
        attempt = 0
        while True:
            index = (self._preferred + attempt) % len(nodes)
            node = nodes[index]
            try:
                response = self._http.request(
                    call.method,
                    node + call.path,
                    params=call.params,
                    json=call.body,
                    headers=call.headers,
                    timeout=call.timeout if call.timeout is not None else self.config.timeout,
                )
            except httpx.TransportError as e:
                step = classify_exception(call.kind, node, e)
            else:
                step = classify_response(call.kind, node, response)
            if step.error is None:
                self._preferred = index
                return step.result
            if not step.retry:
                if step.error.status is not None:
                    # A node answered (with a final error): it is reachable.
                    self._preferred = index
                raise step.error
            errors.append(step.error)
            attempt += 1
            round_ = attempt // len(nodes)
            # Refused connections move on at once within the first round.
            delay = (
                0.0
                if (step.not_sent and round_ == 0)
                else backoff(max(1, round_), step.retry_after)
            )
            if time.monotonic() + delay >= deadline:
                raise give_up(call, errors, self.config.retry_budget) from step.error
            if delay > 0:
                time.sleep(delay)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Any route, with the client's fail-over and errors; answers the
        decoded JSON. ``GET`` is a read; other methods are writes, sent again
        after an unknown outcome only when ``idempotent``."""
        if method.upper() == "GET":
            kind = Kind.READ
        else:
            kind = Kind.IDEMPOTENT if idempotent else Kind.WRITE
        return self._run(
            routes.raw(method.upper(), path, kind, params=params, body=json, timeout=timeout)
        )

    # -- agents --------------------------------------------------------------

    def register(
        self,
        registration: AgentRegistration,
        *,
        if_absent: bool = False,
        expected_revision: int | None = None,
        timeout: float | None = None,
    ) -> RegisterResponse:
        """Registers an agent, or replaces it (``POST /v1/agents``).

        ``if_absent``: :class:`~agent_registry.errors.Conflict` when it
        exists. ``expected_revision``: only if the record's ``revision`` is
        that (0: must not exist). A write: never retried after an unknown
        outcome (:class:`~agent_registry.errors.OutcomeUnknown`).
        """
        return self._run(
            routes.register(
                registration,
                if_absent=if_absent,
                expected_revision=expected_revision,
                timeout=timeout,
            )
        )

    def get(
        self,
        agent_id: str,
        *,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> AgentRecord:
        """One agent (:class:`~agent_registry.errors.NotFound` if unknown)."""
        return self._run(routes.get_agent(agent_id, consistency, min_revision, timeout))

    def list_agents_page(
        self,
        *,
        status: AgentStatus | str | None = None,
        capability: str | None = None,
        tag: str | None = None,
        agent_type: str | None = None,
        runtime_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> AgentList:
        """One page of agents, in id order; continue with ``next_cursor``."""
        return self._run(
            routes.list_page(
                status=status,
                capability=capability,
                tag=tag,
                agent_type=agent_type,
                runtime_id=runtime_id,
                limit=limit,
                cursor=cursor,
                consistency=consistency,
                min_revision=min_revision,
                timeout=timeout,
            )
        )

    def list_agents(
        self,
        *,
        status: AgentStatus | str | None = None,
        capability: str | None = None,
        tag: str | None = None,
        agent_type: str | None = None,
        runtime_id: str | None = None,
        page_size: int | None = None,
        consistency: Consistency | str | None = None,
        timeout: float | None = None,
    ) -> Iterator[AgentRecord]:
        """Every matching agent, following the cursors page by page.

        Each page after the first is read at least at the first page's
        revision (``min_revision``), so a later page never comes from a node
        that lags the earlier ones.
        """
        cursor: str | None = None
        revision: int | None = None
        for _ in range(MAX_PAGES):
            page = self.list_agents_page(
                status=status,
                capability=capability,
                tag=tag,
                agent_type=agent_type,
                runtime_id=runtime_id,
                limit=page_size,
                cursor=cursor,
                consistency=consistency,
                min_revision=revision,
                timeout=timeout,
            )
            revision = page.revision if revision is None else revision
            yield from page.agents
            if not page.next_cursor:
                return
            cursor = page.next_cursor
        raise RegistryError(f"more than {MAX_PAGES} pages of agents", code="too_many_pages")

    def deregister(self, agent_id: str, *, timeout: float | None = None) -> DeleteResponse:
        """Removes an agent (``DELETE /v1/agents/{id}``)."""
        return self._run(routes.deregister(agent_id, timeout))

    def set_status(
        self, agent_id: str, status: AgentStatus | str, *, timeout: float | None = None
    ) -> AgentRecord:
        """An operator's status change (``PUT /v1/agents/{id}/status``)."""
        return self._run(routes.set_status(agent_id, status, timeout))

    def set_health(
        self,
        agent_id: str,
        *,
        health_score: float | None = None,
        load_factor: float | None = None,
        metrics: Mapping[str, float] | None = None,
        timeout: float | None = None,
    ) -> AgentRecord:
        """Reports health, load and metrics as a Raft write (not a heartbeat)."""
        return self._run(
            routes.set_health(
                agent_id,
                health_score=health_score,
                load_factor=load_factor,
                metrics=metrics,
                timeout=timeout,
            )
        )

    def health(
        self,
        agent_id: str,
        *,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> AgentHealth:
        """One agent's health (``GET /health/{id}``)."""
        return self._run(routes.agent_health(agent_id, consistency, min_revision, timeout))

    # -- liveness ------------------------------------------------------------

    def heartbeat(
        self,
        agent_id: str,
        report: HeartbeatReport | None = None,
        *,
        timeout: float | None = None,
    ) -> HeartbeatResponse:
        """One heartbeat, with an optional report. Idempotent, so it is sent
        again on another node after any failure."""
        return self._run(routes.heartbeat(agent_id, report, timeout))

    def heartbeats(
        self,
        beats: Sequence[tuple[str, HeartbeatReport | None]],
        *,
        timeout: float | None = None,
    ) -> BatchHeartbeatResponse:
        """Heartbeats of many agents in one call (``POST /v1/heartbeats``);
        each item gets its own result."""
        return self._run(routes.heartbeats(beats, timeout))

    # -- discovery -----------------------------------------------------------

    def search(
        self,
        q: str,
        *,
        status: AgentStatus | str | None = None,
        limit: int | None = None,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> SearchResponse:
        """Capability search: ``q`` against capability names, tags and
        descriptions (``GET /v1/capabilities/search``)."""
        return self._run(
            routes.search(
                q,
                status=status,
                limit=limit,
                consistency=consistency,
                min_revision=min_revision,
                timeout=timeout,
            )
        )

    def discover(
        self,
        *,
        capabilities: Sequence[str] | None = None,
        any_capabilities: Sequence[str] | None = None,
        text: str | None = None,
        tags: Sequence[str] | None = None,
        agent_type: str | None = None,
        runtime_id: str | None = None,
        status: Sequence[AgentStatus | str] | None = None,
        min_health_score: float | None = None,
        max_load_factor: float | None = None,
        sort_by: SortBy | str | None = None,
        limit: int | None = None,
        explain: bool = False,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> DiscoverResponse:
        """Structured discovery (``POST /v1/discover``); fields left out take
        the server's defaults (active agents, health >= 0.5, load <= 0.8)."""
        return self._run(
            routes.discover(
                capabilities=capabilities,
                any_capabilities=any_capabilities,
                text=text,
                tags=tags,
                agent_type=agent_type,
                runtime_id=runtime_id,
                status=status,
                min_health_score=min_health_score,
                max_load_factor=max_load_factor,
                sort_by=sort_by,
                limit=limit,
                explain=explain,
                consistency=consistency,
                min_revision=min_revision,
                timeout=timeout,
            )
        )

    def select(
        self,
        capability: str,
        *,
        strategy: SelectStrategy | str | None = None,
        min_health_score: float | None = None,
        max_load_factor: float | None = None,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> AgentRecord | None:
        """One qualified agent with ``capability``, or None when none
        qualifies (404 ``no_agent_available``)."""
        try:
            return self._run(
                routes.select(
                    capability,
                    strategy=strategy,
                    min_health_score=min_health_score,
                    max_load_factor=max_load_factor,
                    consistency=consistency,
                    min_revision=min_revision,
                    timeout=timeout,
                )
            )
        except NotFound as e:
            if e.code == "no_agent_available":
                return None
            raise

    def capabilities_page(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> CapabilityList:
        """One page of capability names with their counts."""
        return self._run(
            routes.capabilities_page(limit, cursor, consistency, min_revision, timeout)
        )

    def capabilities(
        self, *, page_size: int | None = None, timeout: float | None = None
    ) -> list[CapabilitySummary]:
        """Every capability name with its counts (all pages)."""
        out: list[CapabilitySummary] = []
        cursor: str | None = None
        revision: int | None = None
        for _ in range(MAX_PAGES):
            page = self.capabilities_page(
                limit=page_size, cursor=cursor, min_revision=revision, timeout=timeout
            )
            revision = page.revision if revision is None else revision
            out.extend(page.capabilities)
            if not page.next_cursor:
                return out
            cursor = page.next_cursor
        raise RegistryError(f"more than {MAX_PAGES} pages of capabilities", code="too_many_pages")

    def runtimes_page(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> RuntimeList:
        """One page of runtimes with their counts."""
        return self._run(routes.runtimes_page(limit, cursor, consistency, min_revision, timeout))

    def runtimes(
        self, *, page_size: int | None = None, timeout: float | None = None
    ) -> list[RuntimeSummary]:
        """Every runtime with its counts (all pages)."""
        out: list[RuntimeSummary] = []
        cursor: str | None = None
        revision: int | None = None
        for _ in range(MAX_PAGES):
            page = self.runtimes_page(
                limit=page_size, cursor=cursor, min_revision=revision, timeout=timeout
            )
            revision = page.revision if revision is None else revision
            out.extend(page.runtimes)
            if not page.next_cursor:
                return out
            cursor = page.next_cursor
        raise RegistryError(f"more than {MAX_PAGES} pages of runtimes", code="too_many_pages")

    def runtime(
        self,
        runtime_id: str,
        *,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> RuntimeDetail:
        """One runtime's counts and agents (NotFound when none runs there)."""
        return self._run(routes.runtime(runtime_id, consistency, min_revision, timeout))

    def stats(
        self,
        *,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> Stats:
        """Registry statistics (``GET /v1/stats``)."""
        return self._run(routes.stats(consistency, min_revision, timeout))

    # -- cluster ---------------------------------------------------------------

    def cluster(self, *, timeout: float | None = None) -> ClusterInfo:
        """The answering node's view of the cluster (``GET /v1/cluster``)."""
        return self._run(routes.cluster(timeout))

    def node_live(self, *, timeout: float | None = None) -> NodeHealth:
        """``GET /health/live`` of the first node that answers."""
        return self._run(routes.node_health("live", timeout))

    def node_ready(self, *, timeout: float | None = None) -> NodeHealth:
        """``GET /health/ready`` of the first node that is ready."""
        return self._run(routes.node_health("ready", timeout))

    # -- scaling ---------------------------------------------------------------

    def put_scaling_policy(
        self,
        capability: str,
        *,
        min_agents: int | None = None,
        max_agents: int | None = None,
        high_load: float | None = None,
        low_load: float | None = None,
        min_health: float | None = None,
        timeout: float | None = None,
    ) -> ScalingPolicy:
        """Sets a capability's scaling policy (fields left out: defaults)."""
        return self._run(
            routes.put_policy(
                capability,
                min_agents=min_agents,
                max_agents=max_agents,
                high_load=high_load,
                low_load=low_load,
                min_health=min_health,
                timeout=timeout,
            )
        )

    def scaling_policy(self, capability: str, *, timeout: float | None = None) -> ScalingPolicy:
        """One policy (NotFound ``policy_not_found``)."""
        return self._run(routes.get_policy(capability, timeout))

    def delete_scaling_policy(
        self, capability: str, *, timeout: float | None = None
    ) -> ScalingPolicyList:
        """Removes a policy and its advisories; answers the remaining ones."""
        return self._run(routes.delete_policy(capability, timeout))

    def scaling_policies(self, *, timeout: float | None = None) -> ScalingPolicyList:
        """Every scaling policy."""
        return self._run(routes.list_policies(timeout))

    def scaling_advisories(
        self, capability: str | None = None, *, timeout: float | None = None
    ) -> ScalingAdvisoryList:
        """The advisories in force (for one capability, or all)."""
        return self._run(routes.advisories(capability, timeout))

    # -- events ----------------------------------------------------------------

    def events(
        self,
        *,
        from_revision: int | None = None,
        wait: float = 0.0,
        types: Sequence[EventKind | str] | None = None,
        agent_id: str | None = None,
        capability: str | None = None,
        runtime_id: str | None = None,
        timeout: float | None = None,
    ) -> EventBatch:
        """One long poll of ``GET /v1/events``: the events from
        ``from_revision`` (inclusive), waiting up to ``wait`` seconds for the
        first; continue with ``next_from_revision``.
        :class:`~agent_registry.errors.Compacted` when the start is no
        longer kept."""
        return self._run(
            routes.events(
                from_revision=from_revision,
                wait=wait,
                types=types,
                agent_id=agent_id,
                capability=capability,
                runtime_id=runtime_id,
                timeout=timeout,
            )
        )

    # -- tokens ----------------------------------------------------------------

    def create_token(
        self,
        name: str,
        role: Role | str,
        *,
        agents: Sequence[str] | None = None,
        runtimes: Sequence[str] | None = None,
        expires_at: datetime | None = None,
        timeout: float | None = None,
    ) -> CreatedToken:
        """Creates a token (admin); ``token`` in the answer is its secret,
        shown this once. ``agents``/``runtimes``: an agent token's scope."""
        return self._run(
            routes.create_token(
                name,
                role,
                agents=agents,
                runtimes=runtimes,
                expires_at=expires_at,
                timeout=timeout,
            )
        )

    def tokens(self, *, timeout: float | None = None) -> list[TokenInfo]:
        """Every token's metadata (admin)."""
        return self._run(routes.list_tokens(timeout)).tokens

    def revoke_token(self, token_id: str, *, timeout: float | None = None) -> bool:
        """Revokes a token (admin); NotFound ``token_not_found`` if unknown."""
        return self._run(routes.revoke_token(token_id, timeout))
