"""The asyncio client: :class:`AsyncRegistryClient`, one method per route.

Every method runs its call through :meth:`AsyncRegistryClient._run`, the
fail-over loop whose rules and books live in
:mod:`agent_registry._transport`; what each call sends and how its answer
reads are in :mod:`agent_registry._routes`, shared with the blocking client
(:mod:`agent_registry.sync`). Reads take ``consistency`` and
``min_revision`` (docs/api.md, "Consistency") and every call a per-attempt
``timeout`` in seconds.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import _routes as routes

# Defined here before the paging moved to _routes; still importable from here.
from ._routes import MAX_PAGES as MAX_PAGES
from ._transport import (
    Answer,
    Call,
    Config,
    Failover,
    Kind,
    Step,
    classify_exception,
    classify_response,
    resolve_config,
)
from .cards import CardInput
from .errors import InvalidSnapshot, NotFound
from .models import (
    AgentCardEntry,
    AgentCardList,
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
    Event,
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
    RuntimeSummary,
    ScalingAdvisoryList,
    ScalingPolicy,
    ScalingPolicyList,
    SearchResponse,
    SelectStrategy,
    ServedCard,
    SortBy,
    Stats,
    TokenInfo,
)
from .snapshot import (
    BACKUP_CONTENT_TYPE,
    SNAPSHOT_WAIT,
    SavedSnapshot,
    SnapshotInfo,
    _SnapshotFile,
    inspect_snapshot,
)

T = TypeVar("T")


class AsyncRegistryClient:
    """A client for a registry cluster, for asyncio code.

    ``nodes`` are the base URLs of some or all nodes (any node serves any
    call); without them, ``REGISTRY_NODES`` (comma-separated). ``token``
    (else ``REGISTRY_TOKEN``) is sent as ``Authorization: Bearer``;
    ``ca_file`` (else ``REGISTRY_CACERT``) is the CA bundle that verifies
    ``https`` nodes. ``timeout`` bounds each attempt, ``retry_budget`` the
    time a call spends failing over between nodes (both in seconds).

    Use it as an async context manager, or call :meth:`aclose`.
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
        self._http = httpx.AsyncClient(
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

    async def aclose(self) -> None:
        """Closes the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the fail-over loop ------------------------------------------------

    async def _run(self, route: routes.Route[T]) -> T:
        return route.parse(await self._request(route.call))

    async def _request(self, call: Call) -> Answer:
        """Sends ``call`` to the nodes in turn until one answers for good."""
        tries = Failover(self.config, self._preferred, f"{call.method} {call.path}")
        while True:
            index, node = tries.target()
            try:
                response = await self._http.request(
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
            if tries.answered(step):
                self._preferred = index
            if step.answer is not None:
                return step.answer
            delay = tries.next_delay(step)
            if delay > 0:
                await asyncio.sleep(delay)

    async def request(
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
        return await self._run(
            routes.request(
                method, path, params=params, body=json, idempotent=idempotent, timeout=timeout
            )
        )

    # -- agents --------------------------------------------------------------

    async def register(
        self,
        registration: AgentRegistration | None = None,
        *,
        agent_card: CardInput | None = None,
        if_absent: bool = False,
        expected_revision: int | None = None,
        timeout: float | None = None,
    ) -> RegisterResponse:
        """Registers an agent, or replaces it (``POST /v1/agents``).

        ``agent_card``: the agent's A2A card (a mapping, or an ``a2a-sdk``
        ``AgentCard``), replacing ``registration.agent_card``; what the
        registration leaves out (``name``, ``endpoint``, ``version``,
        ``description``, capabilities) is mapped from it, so a card alone
        registers an agent (give ``agent_id`` too, or a retry can make a
        second one). A bad card is :class:`~agent_registry.errors.InvalidArgument`
        whose ``field`` is its JSON path (``agent_card.skills[2].id``).
        ``if_absent``: :class:`~agent_registry.errors.Conflict` when it
        exists. ``expected_revision``: only if the record's ``revision`` is
        that (0: must not exist). A write: never retried after an unknown
        outcome (:class:`~agent_registry.errors.OutcomeUnknown`).
        """
        return await self._run(
            routes.register(
                registration,
                agent_card=agent_card,
                if_absent=if_absent,
                expected_revision=expected_revision,
                timeout=timeout,
            )
        )

    async def get(
        self,
        agent_id: str,
        *,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> AgentRecord:
        """One agent (:class:`~agent_registry.errors.NotFound` if unknown)."""
        return await self._run(routes.get_agent(agent_id, consistency, min_revision, timeout))

    async def list_agents_page(
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
        return await self._run(
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

    async def list_agents(
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
    ) -> AsyncIterator[AgentRecord]:
        """Every matching agent, following the cursors page by page.

        Each page after the first is read at least at the first page's
        revision (``min_revision``), so a later page never comes from a node
        that lags the earlier ones.
        """
        pages = routes.Pager("agents")
        while pages.more():
            page = await self.list_agents_page(
                status=status,
                capability=capability,
                tag=tag,
                agent_type=agent_type,
                runtime_id=runtime_id,
                limit=page_size,
                cursor=pages.cursor,
                consistency=consistency,
                min_revision=pages.revision,
                timeout=timeout,
            )
            pages.turn(page.revision, page.next_cursor)
            for agent in page.agents:
                yield agent

    async def deregister(self, agent_id: str, *, timeout: float | None = None) -> DeleteResponse:
        """Removes an agent (``DELETE /v1/agents/{id}``)."""
        return await self._run(routes.deregister(agent_id, timeout))

    async def set_status(
        self, agent_id: str, status: AgentStatus | str, *, timeout: float | None = None
    ) -> AgentRecord:
        """An operator's status change (``PUT /v1/agents/{id}/status``)."""
        return await self._run(routes.set_status(agent_id, status, timeout))

    async def set_health(
        self,
        agent_id: str,
        *,
        health_score: float | None = None,
        load_factor: float | None = None,
        metrics: Mapping[str, float] | None = None,
        timeout: float | None = None,
    ) -> AgentRecord:
        """Reports health, load and metrics as a Raft write (not a heartbeat)."""
        return await self._run(
            routes.set_health(
                agent_id,
                health_score=health_score,
                load_factor=load_factor,
                metrics=metrics,
                timeout=timeout,
            )
        )

    async def health(
        self,
        agent_id: str,
        *,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> AgentHealth:
        """One agent's health (``GET /health/{id}``)."""
        return await self._run(routes.agent_health(agent_id, consistency, min_revision, timeout))

    # -- A2A agent cards -----------------------------------------------------

    async def set_agent_card(
        self, agent_id: str, card: CardInput, *, timeout: float | None = None
    ) -> AgentRecord:
        """Replaces an agent's A2A card (``POST /v1/agents/{id}/agent-card``):
        ``card`` is a mapping (A2A 1.0 or 0.2/0.3) or an ``a2a-sdk``
        ``AgentCard``. The fields mapped from a card (name, endpoint,
        version, description, capabilities) are replaced from it; the rest
        of the record stays, and it is not a heartbeat. A bad card is
        :class:`~agent_registry.errors.InvalidArgument` whose ``field`` is
        its JSON path (``skills[2].id``) and changes nothing;
        :class:`~agent_registry.errors.NotFound` for an unknown agent."""
        return await self._run(routes.set_agent_card(agent_id, card, timeout))

    async def get_agent_card(
        self,
        agent_id: str,
        *,
        include_inactive: bool = False,
        if_none_match: str | None = None,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> ServedCard:
        """An agent's A2A card as it registered it
        (``GET /v1/agents/{id}/agent-card.json``), with its ETag and the
        agent's status now; ``.as_a2a()`` reads it with ``a2a-sdk``.

        The card of an ``offline`` or ``suspended`` agent is
        :class:`~agent_registry.errors.NotFound` (code ``not_found``, as for
        an agent without a card) unless ``include_inactive``; an unknown
        agent is ``agent_not_found``. ``if_none_match``: the ETag of the
        card held; when it is still current the answer is
        ``not_modified`` without a card."""
        return await self._run(
            routes.get_agent_card(
                agent_id,
                include_inactive=include_inactive,
                if_none_match=if_none_match,
                consistency=consistency,
                min_revision=min_revision,
                timeout=timeout,
            )
        )

    async def list_agent_cards_page(
        self,
        *,
        skill: str | None = None,
        tag: str | None = None,
        input_mode: str | None = None,
        output_mode: str | None = None,
        binding: str | None = None,
        q: str | None = None,
        status: AgentStatus | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> AgentCardList:
        """One page of the A2A cards of matching agents, by agent id
        (``GET /v1/agent-cards``); continue with ``next_cursor``. Filters
        combine: ``skill`` (a skill id), ``tag``, ``input_mode`` and
        ``output_mode`` (media types; wildcards match both ways),
        ``binding`` (``JSONRPC``, ``GRPC``, ``HTTP+JSON``), ``q`` (every
        word must match), ``status`` (default: live agents, every status
        but ``offline`` and ``suspended``)."""
        return await self._run(
            routes.agent_cards_page(
                skill=skill,
                tag=tag,
                input_mode=input_mode,
                output_mode=output_mode,
                binding=binding,
                q=q,
                status=status,
                limit=limit,
                cursor=cursor,
                consistency=consistency,
                min_revision=min_revision,
                timeout=timeout,
            )
        )

    async def list_agent_cards(
        self,
        *,
        skill: str | None = None,
        tag: str | None = None,
        input_mode: str | None = None,
        output_mode: str | None = None,
        binding: str | None = None,
        q: str | None = None,
        status: AgentStatus | str | None = None,
        page_size: int | None = None,
        consistency: Consistency | str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[AgentCardEntry]:
        """Every matching agent's card (the filters of
        :meth:`list_agent_cards_page`), following the cursors; each page
        after the first is read at least at the first page's revision."""
        pages = routes.Pager("agent cards")
        while pages.more():
            page = await self.list_agent_cards_page(
                skill=skill,
                tag=tag,
                input_mode=input_mode,
                output_mode=output_mode,
                binding=binding,
                q=q,
                status=status,
                limit=page_size,
                cursor=pages.cursor,
                consistency=consistency,
                min_revision=pages.revision,
                timeout=timeout,
            )
            pages.turn(page.revision, page.next_cursor)
            for entry in page.cards:
                yield entry

    async def registry_agent_card(self, *, timeout: float | None = None) -> ServedCard:
        """The registry's own A2A card (``GET /.well-known/agent-card.json``):
        the directory as an A2A agent, with the skills ``find-agent`` and
        ``select-agent``."""
        return await self._run(routes.registry_agent_card(timeout))

    # -- liveness ------------------------------------------------------------

    async def heartbeat(
        self,
        agent_id: str,
        report: HeartbeatReport | None = None,
        *,
        timeout: float | None = None,
    ) -> HeartbeatResponse:
        """One heartbeat, with an optional report. Idempotent, so it is sent
        again on another node after any failure."""
        return await self._run(routes.heartbeat(agent_id, report, timeout))

    async def heartbeats(
        self,
        beats: Sequence[tuple[str, HeartbeatReport | None]],
        *,
        timeout: float | None = None,
    ) -> BatchHeartbeatResponse:
        """Heartbeats of many agents in one call (``POST /v1/heartbeats``);
        each item gets its own result."""
        return await self._run(routes.heartbeats(beats, timeout))

    # -- discovery -----------------------------------------------------------

    async def search(
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
        return await self._run(
            routes.search(
                q,
                status=status,
                limit=limit,
                consistency=consistency,
                min_revision=min_revision,
                timeout=timeout,
            )
        )

    async def discover(
        self,
        *,
        capabilities: Sequence[str] | None = None,
        any_capabilities: Sequence[str] | None = None,
        text: str | None = None,
        tags: Sequence[str] | None = None,
        agent_type: str | None = None,
        runtime_id: str | None = None,
        skills: Sequence[str] | None = None,
        input_modes: Sequence[str] | None = None,
        output_modes: Sequence[str] | None = None,
        bindings: Sequence[str] | None = None,
        status: Sequence[AgentStatus | str] | None = None,
        min_health_score: float | None = None,
        max_load_factor: float | None = None,
        sort_by: SortBy | str | None = None,
        limit: int | None = None,
        explain: bool = False,
        include_card: bool = False,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> DiscoverResponse:
        """Structured discovery (``POST /v1/discover``); fields left out take
        the server's defaults (active agents, health >= 0.5, load <= 0.8).

        From the agents' A2A cards: ``skills`` (skill ids, all required),
        ``input_modes`` / ``output_modes`` (media types the agent must all
        accept / produce; ``text/*`` and ``*/*`` match both ways),
        ``bindings`` (protocol bindings, one of which it must offer).

        A hit names its agent's card by ``card_etag``; ``include_card=True``
        returns the card itself in ``hit.agent.agent_card`` too (by default
        it is None: fetch it with ``get_agent_card``)."""
        return await self._run(
            routes.discover(
                capabilities=capabilities,
                any_capabilities=any_capabilities,
                text=text,
                tags=tags,
                agent_type=agent_type,
                runtime_id=runtime_id,
                skills=skills,
                input_modes=input_modes,
                output_modes=output_modes,
                bindings=bindings,
                status=status,
                min_health_score=min_health_score,
                max_load_factor=max_load_factor,
                sort_by=sort_by,
                limit=limit,
                explain=explain,
                include_card=include_card,
                consistency=consistency,
                min_revision=min_revision,
                timeout=timeout,
            )
        )

    async def select(
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
            return await self._run(
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

    async def capabilities_page(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> CapabilityList:
        """One page of capability names with their counts."""
        return await self._run(
            routes.capabilities_page(limit, cursor, consistency, min_revision, timeout)
        )

    async def capabilities(
        self, *, page_size: int | None = None, timeout: float | None = None
    ) -> list[CapabilitySummary]:
        """Every capability name with its counts (all pages)."""
        out: list[CapabilitySummary] = []
        pages = routes.Pager("capabilities")
        while pages.more():
            page = await self.capabilities_page(
                limit=page_size, cursor=pages.cursor, min_revision=pages.revision, timeout=timeout
            )
            pages.turn(page.revision, page.next_cursor)
            out.extend(page.capabilities)
        return out

    async def runtimes_page(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> RuntimeList:
        """One page of runtimes with their counts."""
        return await self._run(
            routes.runtimes_page(limit, cursor, consistency, min_revision, timeout)
        )

    async def runtimes(
        self, *, page_size: int | None = None, timeout: float | None = None
    ) -> list[RuntimeSummary]:
        """Every runtime with its counts (all pages)."""
        out: list[RuntimeSummary] = []
        pages = routes.Pager("runtimes")
        while pages.more():
            page = await self.runtimes_page(
                limit=page_size, cursor=pages.cursor, min_revision=pages.revision, timeout=timeout
            )
            pages.turn(page.revision, page.next_cursor)
            out.extend(page.runtimes)
        return out

    async def runtime(
        self,
        runtime_id: str,
        *,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> RuntimeDetail:
        """One runtime's counts and agents (NotFound when none runs there)."""
        return await self._run(routes.runtime(runtime_id, consistency, min_revision, timeout))

    async def stats(
        self,
        *,
        consistency: Consistency | str | None = None,
        min_revision: int | None = None,
        timeout: float | None = None,
    ) -> Stats:
        """Registry statistics (``GET /v1/stats``)."""
        return await self._run(routes.stats(consistency, min_revision, timeout))

    # -- cluster ---------------------------------------------------------------

    async def cluster(self, *, timeout: float | None = None) -> ClusterInfo:
        """The answering node's view of the cluster (``GET /v1/cluster``)."""
        return await self._run(routes.cluster(timeout))

    async def node_live(self, *, timeout: float | None = None) -> NodeHealth:
        """``GET /health/live`` of the first node that answers."""
        return await self._run(routes.node_health("live", timeout))

    async def node_ready(self, *, timeout: float | None = None) -> NodeHealth:
        """``GET /health/ready`` of the first node that is ready."""
        return await self._run(routes.node_health("ready", timeout))

    # -- operating the cluster (admin under --auth on) -------------------------

    async def members(self, *, timeout: float | None = None) -> MemberList:
        """The members (voters and learners) as the answering node sees
        them, and from the leader the membership change in flight or the
        last one (``GET /v1/cluster/members``)."""
        return await self._run(routes.members(timeout))

    async def add_member(
        self,
        node_id: int,
        address: str,
        voter: bool = True,
        *,
        force: bool = False,
        timeout: float | None = None,
    ) -> MembershipChangeResponse:
        """Adds a node (``POST /v1/cluster/members``): a learner, promoted to
        voter once it has caught up (``voter=False`` leaves it a learner).

        The node must be running, started with ``--join``, an empty data
        directory and the cluster's peer authentication; ``address`` is the
        HOST:PORT it names itself by. ``force``: even though fewer than a
        majority of the voters would be reachable. Answers once the change
        is over (``change.phase`` ``done``), or while it still runs after
        half the node's request timeout (follow it in :meth:`cluster` of
        the leader). :class:`~agent_registry.errors.Conflict`
        ``membership_conflict`` when another change is in flight, the id or
        address is a member's already, or the node holds data; a write, so
        never sent again after an unknown outcome. ``timeout`` defaults to
        70 s per attempt.
        """
        return await self._run(
            routes.add_member(node_id, address, voter=voter, force=force, timeout=timeout)
        )

    async def remove_member(
        self, node_id: int, force: bool = False, *, timeout: float | None = None
    ) -> MembershipChangeResponse:
        """Removes a voter or learner (``DELETE /v1/cluster/members/{id}``);
        stop its process afterwards. ``force``: even though fewer than a
        majority of the remaining voters are reachable.
        :class:`~agent_registry.errors.NotFound` ``member_not_found`` for an
        id that is not a member, :class:`~agent_registry.errors.Conflict`
        ``membership_conflict`` for the last voter or another change in
        flight. ``timeout`` defaults to 70 s per attempt."""
        return await self._run(routes.remove_member(node_id, force=force, timeout=timeout))

    async def hand_over_leadership(
        self, to: int | None = None, *, timeout: float | None = None
    ) -> LeaderHandover:
        """Hands leadership to voter ``to``, or (None) to the voter whose log
        is furthest along (``POST /v1/cluster/leader``): writes are held back
        a moment, then go to the new leader. Before restarting or removing
        the leader's node. :class:`~agent_registry.errors.InvalidArgument`
        when ``to`` is not another voter; a write, so never sent again after
        an unknown outcome (read :meth:`cluster` first). ``timeout``
        defaults to 30 s per attempt."""
        return await self._run(routes.hand_over_leadership(to, timeout))

    async def save_snapshot(
        self, path: str | os.PathLike[str], *, timeout: float | None = None
    ) -> SavedSnapshot:
        """Saves a backup of the whole registry to ``path``
        (``GET /v1/snapshot``): a consistent point-in-time snapshot holding
        every change acknowledged before the call, as ``registryctl
        snapshot save`` writes it.

        The answer streams into a temporary file beside ``path``, its
        header and CRC32C checked as it arrives; it is synced and renamed
        to ``path`` only once whole and matching. So ``path`` is never a
        partial or damaged backup, and an error leaves nothing behind (an
        older file at ``path`` stays as it was). A damaged or broken stream
        is fetched again from the next node, within the retry budget;
        refusals (:class:`~agent_registry.errors.Forbidden` without an
        admin token) are final, and so are errors of the file
        (:class:`OSError`). ``timeout``: seconds the node may take to start
        answering (it builds a snapshot first) and each piece to arrive
        (default 65).
        """
        target = Path(os.fspath(path))
        wait = httpx.Timeout(
            self.config.timeout, read=SNAPSHOT_WAIT if timeout is None else timeout
        )
        tries = Failover(self.config, self._preferred, "GET /v1/snapshot")
        while True:
            index, node = tries.target()
            try:
                async with self._http.stream(
                    "GET",
                    node + "/v1/snapshot",
                    headers={"accept": BACKUP_CONTENT_TYPE},
                    timeout=wait,
                ) as response:
                    if response.is_success:
                        out = _SnapshotFile(target, node)
                        try:
                            async for chunk in response.aiter_bytes():
                                out.write(chunk)
                            header = await asyncio.to_thread(out.commit)
                        except BaseException:
                            out.discard()
                            raise
                        self._preferred = index
                        return header.saved(target, node)
                    await response.aread()
                    step = classify_response(Kind.READ, node, response)
            except httpx.TransportError as e:
                step = classify_exception(Kind.READ, node, e)
            except InvalidSnapshot as e:
                # Damaged on the way: another node (or another try) may do.
                step = Step(error=e, retry=True)
            if tries.answered(step):
                self._preferred = index
            delay = tries.next_delay(step)
            if delay > 0:
                await asyncio.sleep(delay)

    async def inspect_snapshot(self, path: str | os.PathLike[str]) -> SnapshotInfo:
        """Reads a backup file through its checks (header, length, CRC32C of
        the body; as ``registryctl snapshot inspect``) and answers what its
        header says: :func:`agent_registry.snapshot.inspect_snapshot`.
        :class:`~agent_registry.errors.InvalidSnapshot` for a damaged,
        truncated, foreign or future file. Asks no node; the file is read in
        a thread."""
        return await asyncio.to_thread(inspect_snapshot, path)

    # -- scaling ---------------------------------------------------------------

    async def put_scaling_policy(
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
        return await self._run(
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

    async def scaling_policy(
        self, capability: str, *, timeout: float | None = None
    ) -> ScalingPolicy:
        """One policy (NotFound ``policy_not_found``)."""
        return await self._run(routes.get_policy(capability, timeout))

    async def delete_scaling_policy(
        self, capability: str, *, timeout: float | None = None
    ) -> ScalingPolicyList:
        """Removes a policy and its advisories; answers the remaining ones."""
        return await self._run(routes.delete_policy(capability, timeout))

    async def scaling_policies(self, *, timeout: float | None = None) -> ScalingPolicyList:
        """Every scaling policy."""
        return await self._run(routes.list_policies(timeout))

    async def scaling_advisories(
        self, capability: str | None = None, *, timeout: float | None = None
    ) -> ScalingAdvisoryList:
        """The advisories in force (for one capability, or all)."""
        return await self._run(routes.advisories(capability, timeout))

    # -- events ----------------------------------------------------------------

    async def events(
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
        return await self._run(
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

    def watch(
        self,
        *,
        after: int | None = None,
        types: Sequence[EventKind | str] | None = None,
        agent_id: str | None = None,
        capability: str | None = None,
        runtime_id: str | None = None,
        idle_timeout: float = 45.0,
        max_failures: int = 30,
    ) -> AsyncIterator[Event]:
        """Follows the changes as an async iterator of :class:`Event`.

        ``after``: the events after this revision (a listing's ``revision``,
        or the last event you processed); None: only changes from now on.
        After a dropped connection or a dead node the watch reconnects (the
        same node once, then the next) asking for the events after the last
        one it delivered, so every matching event arrives once, in order.
        It raises :class:`~agent_registry.errors.Compacted` when the events
        it needs are no longer kept, and
        :class:`~agent_registry.errors.Unavailable` after ``max_failures``
        failed attempts in a row. ``idle_timeout``: seconds of silence
        (the server sends a keep-alive every 15 s) before a stream is taken
        as dead.
        """
        from .watch import watch as _watch

        return _watch(
            self,
            after=after,
            filter_params=routes.event_filter(types, agent_id, capability, runtime_id),
            idle_timeout=idle_timeout,
            max_failures=max_failures,
        )

    # -- tokens ----------------------------------------------------------------

    async def create_token(
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
        return await self._run(
            routes.create_token(
                name,
                role,
                agents=agents,
                runtimes=runtimes,
                expires_at=expires_at,
                timeout=timeout,
            )
        )

    async def tokens(self, *, timeout: float | None = None) -> list[TokenInfo]:
        """Every token's metadata (admin)."""
        return (await self._run(routes.list_tokens(timeout))).tokens

    async def revoke_token(self, token_id: str, *, timeout: float | None = None) -> bool:
        """Revokes a token (admin); NotFound ``token_not_found`` if unknown."""
        return await self._run(routes.revoke_token(token_id, timeout))
