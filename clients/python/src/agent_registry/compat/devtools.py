"""The Dev-Tools registry's ``RegistryClient`` (``shared.lib.registry_client``),
on the routes it called:

- ``register(capabilities)``: ``POST /register`` with ``{agent_id,
  agent_name, base_url, capabilities, status, metadata}``; a capability's
  ``cost_estimate`` is text (``"50-200 tokens per function"``);
- the heartbeat loop: ``POST /agents/{id}/heartbeat`` every ``interval``
  seconds; on a 404 or a failure the agent registers again and the loop goes
  on (what that registry's documentation calls ``ResilientRegistryClient``);
- ``search_capabilities(q)``: ``GET /capabilities/search?q=``, one match per
  capability of an active agent;
- ``list_agents(status=)``, ``get_agent(id)``: ``GET /agents``,
  ``GET /agents/{id}``;
- ``check_health(id)``: ``GET /health/{id}``, a dict whose ``status`` is
  ``"healthy"`` for a live agent;
- ``update_status(status)``: registers again with that status;
- ``get_stats()``: ``GET /stats``, a dict with ``active_agents``,
  ``offline_agents``, ``total_capabilities``, ...

Errors raise (typed, see :mod:`agent_registry.errors`), as the retry and
fallback code in that registry's documentation expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from types import TracebackType
from typing import Any

from pydantic import Field, TypeAdapter

from .._routes import raw
from .._transport import Kind, seg
from ..client import AsyncRegistryClient
from ..errors import NotFound, RegistryError
from ._base import LegacyModel

__all__ = ["AgentCapability", "AgentInfo", "CapabilityMatch", "RegistrationAck", "RegistryClient"]

logger = logging.getLogger(__name__)


class AgentCapability(LegacyModel):
    """A capability, as that client declared it."""

    name: str = Field(..., description="Capability identifier")
    description: str = Field(..., description="Human-readable description")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Parameter schema")
    cost_estimate: str = Field(..., description="Estimated cost, as text")
    tags: list[str] = Field(default_factory=list, description="Capability tags")


class RegistrationAck(LegacyModel):
    """Answer to ``POST /register``."""

    status: str
    agent_id: str
    timestamp: datetime


class HeartbeatAck(LegacyModel):
    """Answer to ``POST /agents/{id}/heartbeat``."""

    status: str
    agent_id: str
    last_heartbeat: datetime


class CapabilityMatch(LegacyModel):
    """One match of ``search_capabilities``: ``capability`` is its name."""

    agent_id: str
    agent_name: str
    capability: str
    description: str
    base_url: str
    tags: list[str]
    status: str
    #: As the agent registered it (text for these agents; a number is kept).
    cost_estimate: str | float | None = None


class AgentInfo(LegacyModel):
    """One agent as ``GET /agents`` and ``GET /agents/{id}`` answer it."""

    agent_id: str
    agent_name: str
    base_url: str
    status: str
    capabilities: list[AgentCapability | dict[str, Any]]
    metadata: dict[str, Any] | None = None
    last_heartbeat: datetime
    created_at: datetime
    updated_at: datetime


_MATCHES = TypeAdapter(list[CapabilityMatch])
_AGENTS = TypeAdapter(list[AgentInfo])
_OBJECT = TypeAdapter(dict[str, Any])


class RegistryClient:
    """Auto-registration, heartbeats and capability discovery for one agent.

    ``registry_url``: a node's URL, or several comma-separated. ``token``
    (else ``REGISTRY_TOKEN``) for a cluster with access control.
    """

    def __init__(
        self,
        registry_url: str,
        agent_id: str,
        agent_name: str,
        base_url: str,
        heartbeat_interval: float = 30,
        *,
        token: str | None = None,
    ) -> None:
        self.registry_url = registry_url.rstrip("/")
        self.agent_id = agent_id
        self.agent_name = agent_name
        self.base_url = base_url
        self.heartbeat_interval = heartbeat_interval
        self.capabilities: list[AgentCapability] = []
        self.metadata: dict[str, Any] = {}
        self.status = "active"
        self._client = AsyncRegistryClient(self.registry_url, token=token)
        self._heartbeat_task: asyncio.Task[None] | None = None
        # What the heartbeat loop did.
        self.heartbeats_ok = 0
        self.reregistrations = 0
        self.heartbeat_errors: list[str] = []
        self.last_heartbeat_ack: HeartbeatAck | None = None

    async def close(self) -> None:
        """Stops the heartbeat loop and closes the connections."""
        await self.stop_heartbeat()
        await self._client.aclose()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return await self._client._run(raw("GET", path, Kind.READ, params=params))

    # -- registration and heartbeats -------------------------------------

    async def register(
        self,
        capabilities: list[AgentCapability],
        metadata: dict[str, Any] | None = None,
        status: str = "active",
    ) -> RegistrationAck:
        """Registers (or updates) this agent: ``POST /register``."""
        self.capabilities = list(capabilities)
        self.metadata = metadata or {}
        self.status = status
        body = {
            "agent_id": self.agent_id,
            "agent_name": self.agent_name,
            "base_url": self.base_url,
            "capabilities": [
                c.model_dump(include=set(AgentCapability.model_fields)) for c in capabilities
            ],
            "status": status,
            "metadata": self.metadata,
        }
        # An upsert of a fixed id: sending it again after an unknown outcome
        # is safe, so it is retried like a heartbeat.
        answer = await self._client._run(raw("POST", "/register", Kind.IDEMPOTENT, body=body))
        ack = RegistrationAck.model_validate(answer)
        logger.info("registered agent %r at %s", self.agent_id, ack.timestamp)
        return ack

    async def send_heartbeat(self) -> HeartbeatAck | None:
        """``POST /agents/{id}/heartbeat``. On 404 (the registry does not
        know the agent) registers again with what was last registered, and
        returns None."""
        try:
            answer = await self._client._run(
                raw("POST", f"/agents/{seg(self.agent_id)}/heartbeat", Kind.IDEMPOTENT, timeout=5.0)
            )
        except NotFound:
            logger.warning("agent %r is not registered: registering again", self.agent_id)
            await self.register(self.capabilities, self.metadata, status=self.status)
            self.reregistrations += 1
            return None
        ack = HeartbeatAck.model_validate(answer)
        self.last_heartbeat_ack = ack
        self.heartbeats_ok += 1
        return ack

    #: The name the original used too.
    heartbeat = send_heartbeat

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.send_heartbeat()
            except (RegistryError, ValueError) as e:
                self.heartbeat_errors.append(repr(e))
                logger.error("heartbeat failed for %r: %s", self.agent_id, e)
                try:
                    await self.register(self.capabilities, self.metadata, status=self.status)
                    self.reregistrations += 1
                except (RegistryError, ValueError) as again:
                    logger.error("registering again failed: %s", again)
            await asyncio.sleep(self.heartbeat_interval)

    async def start_heartbeat(self, interval: float | None = None) -> None:
        """Starts the background heartbeat task (every ``interval`` s)."""
        if interval is not None:
            self.heartbeat_interval = interval
        if self._heartbeat_task is None or self._heartbeat_task.done():
            self._heartbeat_task = asyncio.create_task(self._heartbeat_loop())

    async def stop_heartbeat(self) -> None:
        """Stops the background heartbeat task (the registry then sees the
        agent go silent: unhealthy, then offline)."""
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def heartbeat_running(self) -> bool:
        return self._heartbeat_task is not None and not self._heartbeat_task.done()

    async def update_status(self, status: str) -> RegistrationAck:
        """Sets this agent's status (active, busy, degraded, offline) by
        registering again."""
        return await self.register(self.capabilities, self.metadata, status=status)

    # -- discovery ----------------------------------------------------------

    async def search_capabilities(self, query: str) -> list[CapabilityMatch]:
        """``GET /capabilities/search?q=``: one match per capability."""
        return _MATCHES.validate_python(await self._get("/capabilities/search", {"q": query}))

    async def get_agent(self, agent_id: str) -> AgentInfo:
        """``GET /agents/{id}``."""
        return AgentInfo.model_validate(await self._get(f"/agents/{seg(agent_id)}"))

    async def list_agents(self, status: str | None = None) -> list[AgentInfo]:
        """``GET /agents`` (optionally ``?status=``)."""
        return _AGENTS.validate_python(
            await self._get("/agents", {"status": status} if status else None)
        )

    async def check_health(self, agent_id: str) -> dict[str, Any]:
        """``GET /health/{id}``: ``status`` is ``"healthy"`` for a live agent."""
        return _OBJECT.validate_python(await self._get(f"/health/{seg(agent_id)}"))

    async def get_stats(self) -> dict[str, Any]:
        """``GET /stats``."""
        return _OBJECT.validate_python(await self._get("/stats"))
