"""The Dev-Tools agent registry's Python client, re-created from its contract.

Existing agents import ``RegistryClient`` and ``AgentCapability`` from
``shared.lib.registry_client`` and talk to the Dev-Tools registry (a FastAPI
service on port 8009). This module re-creates that client, as its
documentation uses it (``../shared/seeds/001_b96affc20c109169.txt``) and as
issue 13 states the wire contract, so that the tests can show that the same
code works unchanged against agent-registry:

- ``POST /register`` with ``{agent_id, agent_name, base_url, capabilities,
  status, metadata}``; capability ``cost_estimate`` is *text*
  (``"50-200 tokens per function"``);
- ``POST /agents/{id}/heartbeat`` with no body; on 404 the client registers
  again (the documentation's ``ResilientRegistryClient``);
- ``GET /capabilities/search?q=``, ``GET /agents``: JSON *lists*;
- ``GET /agents/{id}``, ``GET /health/{id}``, ``GET /stats``;
- ``update_status(status)`` registers again with that status.

Two deliberate differences from the original, both stricter, so that a
contract break fails a test instead of vanishing into a log line:

- every non-2xx answer raises (``response.raise_for_status()``); the original
  logged and returned ``False``/``[]``/``None``;
- answers are parsed into pydantic models (``AgentInfo`` for agents, where the
  original returned plain dicts). The models are pydantic's defaults, as the
  original's were: a field typed ``str`` refuses a number or an object, and
  unknown fields are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx
from pydantic import BaseModel, Field, TypeAdapter

logger = logging.getLogger(__name__)

# ============================================================================
# Models (as the original client declares them)
# ============================================================================


class AgentCapability(BaseModel):
    """Agent capability definition."""

    name: str = Field(..., description="Capability identifier")
    description: str = Field(..., description="Human-readable description")
    parameters: dict[str, str] = Field(default_factory=dict, description="Parameter schema")
    cost_estimate: str = Field(..., description="Estimated cost")
    tags: list[str] = Field(default_factory=list, description="Capability tags")


class AgentRegistration(BaseModel):
    """Body of ``POST /register``."""

    agent_id: str
    agent_name: str
    base_url: str
    capabilities: list[AgentCapability]
    status: str = "active"
    metadata: dict[str, Any] | None = None


class RegistrationAck(BaseModel):
    """Answer to ``POST /register``."""

    status: str
    agent_id: str
    timestamp: datetime


class HeartbeatAck(BaseModel):
    """Answer to ``POST /agents/{id}/heartbeat``."""

    status: str
    agent_id: str
    last_heartbeat: datetime


class CapabilityMatch(BaseModel):
    """One item of ``GET /capabilities/search``.

    ``status`` and ``cost_estimate`` are read by the registry's own
    documentation (``match.status == "active"``, ``match.cost_estimate``).
    """

    agent_id: str
    agent_name: str
    capability: str
    description: str
    base_url: str
    tags: list[str]
    status: str
    cost_estimate: str | None = None


class AgentInfo(BaseModel):
    """One agent as ``GET /agents`` and ``GET /agents/{id}`` answer it."""

    agent_id: str
    agent_name: str
    base_url: str
    status: str
    capabilities: list[AgentCapability]
    metadata: dict[str, Any] | None = None
    last_heartbeat: datetime
    created_at: datetime
    updated_at: datetime


_MATCHES = TypeAdapter(list[CapabilityMatch])
_AGENTS = TypeAdapter(list[AgentInfo])
_OBJECT = TypeAdapter(dict[str, Any])


# ============================================================================
# Registry client
# ============================================================================


class RegistryClient:
    """Client for the agent registry service.

    Auto-registration, heartbeat management and capability discovery.
    """

    def __init__(
        self,
        registry_url: str,
        agent_id: str,
        agent_name: str,
        base_url: str,
        heartbeat_interval: float = 30,
    ) -> None:
        self.registry_url = registry_url.rstrip("/")
        self.agent_id = agent_id
        self.agent_name = agent_name
        self.base_url = base_url
        self.heartbeat_interval = heartbeat_interval

        self.capabilities: list[AgentCapability] = []
        self.metadata: dict[str, Any] = {}
        self.status = "active"
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._http_client: httpx.AsyncClient | None = None

        # What the heartbeat loop did (read by the tests).
        self.heartbeats_ok = 0
        self.reregistrations = 0
        self.heartbeat_errors: list[str] = []
        self.last_heartbeat_ack: HeartbeatAck | None = None

    # -- plumbing -----------------------------------------------------------

    def _get_http_client(self) -> httpx.AsyncClient:
        """The HTTP client (created on first use)."""
        if self._http_client is None:
            self._http_client = httpx.AsyncClient(timeout=10.0)
        return self._http_client

    async def close(self) -> None:
        """Stops the heartbeat loop and closes the HTTP client."""
        await self.stop_heartbeat()
        if self._http_client is not None:
            await self._http_client.aclose()
            self._http_client = None

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
        response = await self._get_http_client().get(
            f"{self.registry_url}{path}", params=params, timeout=10.0
        )
        response.raise_for_status()
        return response.json()

    # -- registration and heartbeats -------------------------------------

    async def register(
        self,
        capabilities: list[AgentCapability],
        metadata: dict[str, Any] | None = None,
        status: str = "active",
    ) -> RegistrationAck:
        """Registers (or updates) this agent: ``POST /register``."""
        self.capabilities = capabilities
        self.metadata = metadata or {}
        self.status = status
        registration = AgentRegistration(
            agent_id=self.agent_id,
            agent_name=self.agent_name,
            base_url=self.base_url,
            capabilities=capabilities,
            status=status,
            metadata=self.metadata,
        )
        response = await self._get_http_client().post(
            f"{self.registry_url}/register",
            json=registration.model_dump(),
            timeout=10.0,
        )
        response.raise_for_status()
        ack = RegistrationAck.model_validate(response.json())
        logger.info("registered agent %r with the registry at %s", self.agent_id, ack.timestamp)
        return ack

    async def send_heartbeat(self) -> HeartbeatAck | None:
        """``POST /agents/{id}/heartbeat`` (no body).

        On 404 (the registry does not know the agent) registers again with the
        capabilities, metadata and status last registered, and returns None.
        """
        response = await self._get_http_client().post(
            f"{self.registry_url}/agents/{self.agent_id}/heartbeat", timeout=5.0
        )
        if response.status_code == 404:
            logger.warning("agent %r is not registered: registering again", self.agent_id)
            await self.register(self.capabilities, self.metadata, status=self.status)
            self.reregistrations += 1
            return None
        response.raise_for_status()
        ack = HeartbeatAck.model_validate(response.json())
        self.last_heartbeat_ack = ack
        self.heartbeats_ok += 1
        return ack

    # The original's name for it.
    heartbeat = send_heartbeat

    async def _heartbeat_loop(self) -> None:
        """Heartbeats until cancelled; a failure is logged, then the agent
        registers again and the loop goes on (``ResilientRegistryClient``)."""
        while True:
            try:
                await self.send_heartbeat()
            except (httpx.HTTPError, ValueError) as e:
                self.heartbeat_errors.append(repr(e))
                logger.error("heartbeat failed for %r: %s", self.agent_id, e)
                try:
                    await self.register(self.capabilities, self.metadata, status=self.status)
                    self.reregistrations += 1
                except (httpx.HTTPError, ValueError) as register_error:
                    logger.error("registering again failed: %s", register_error)
            await asyncio.sleep(self.heartbeat_interval)

    async def start_heartbeat(self, interval: float | None = None) -> None:
        """Starts the background heartbeat task (every ``interval`` seconds)."""
        if interval is not None:
            self.heartbeat_interval = interval
        if self._heartbeat_task is None or self._heartbeat_task.done():
            self._heartbeat_task = asyncio.create_task(self._heartbeat_loop())
            logger.info(
                "started the heartbeat loop of %r (interval %ss)",
                self.agent_id,
                self.heartbeat_interval,
            )

    async def stop_heartbeat(self) -> None:
        """Stops the background heartbeat task."""
        task = self._heartbeat_task
        self._heartbeat_task = None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            logger.info("stopped the heartbeat loop of %r", self.agent_id)

    def heartbeat_running(self) -> bool:
        return self._heartbeat_task is not None and not self._heartbeat_task.done()

    async def update_status(self, status: str) -> RegistrationAck:
        """Sets this agent's status (active, busy, offline) by registering again."""
        return await self.register(self.capabilities, self.metadata, status=status)

    # -- discovery ----------------------------------------------------------

    async def search_capabilities(self, query: str) -> list[CapabilityMatch]:
        """``GET /capabilities/search?q=``: one match per capability."""
        return _MATCHES.validate_python(await self._get("/capabilities/search", {"q": query}))

    async def get_agent(self, agent_id: str) -> AgentInfo:
        """``GET /agents/{id}``."""
        return AgentInfo.model_validate(await self._get(f"/agents/{agent_id}"))

    async def list_agents(self, status: str | None = None) -> list[AgentInfo]:
        """``GET /agents`` (optionally ``?status=``)."""
        params = {"status": status} if status else None
        return _AGENTS.validate_python(await self._get("/agents", params))

    async def check_health(self, agent_id: str) -> dict[str, Any]:
        """``GET /health/{id}``."""
        return _OBJECT.validate_python(await self._get(f"/health/{agent_id}"))

    async def get_stats(self) -> dict[str, Any]:
        """``GET /stats``."""
        return _OBJECT.validate_python(await self._get("/stats"))
