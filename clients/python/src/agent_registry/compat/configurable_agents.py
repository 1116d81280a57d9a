"""configurable-agents' ``AgentRegistryClient`` (``configurable_agents.registry``),
on the routes it called:

- ``register(metadata)``: ``POST /agents/register`` with ``{agent_id,
  agent_name, host, port, ttl_seconds, metadata}``; the answer is the record;
- ``start_heartbeat_loop()``: ``POST /agents/{id}/heartbeat`` every
  ``ttl / 3`` seconds in a background task; after an error it waits 5 s and
  goes on;
- ``deregister()``: stops the loop and ``DELETE /agents/{id}``, best effort
  (errors are logged, as the agent is shutting down anyway);
- host and port from ``AGENT_HOST``/``AGENT_PORT``, then from the metadata
  given to ``register``, then the machine's host name and port 8000;
- an async context manager that deregisters on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from pydantic import TypeAdapter

from .._routes import raw
from .._transport import Kind, seg
from ..client import AsyncRegistryClient
from ..errors import RegistryError
from ._base import LegacyModel

__all__ = ["AgentRecord", "AgentRegistryClient"]

logger = logging.getLogger(__name__)


class AgentRecord(LegacyModel):
    """An agent as the configurable-agents registry answered it."""

    agent_id: str
    agent_name: str
    host: str
    port: int
    is_alive: bool
    last_heartbeat: datetime
    registered_at: datetime
    ttl_seconds: int
    metadata: dict[str, Any]


class HeartbeatAck(LegacyModel):
    """Answer to ``POST /agents/{id}/heartbeat``."""

    status: str
    last_heartbeat: datetime


_RECORDS = TypeAdapter(list[AgentRecord])


class AgentRegistryClient:
    """Self-registration and TTL heartbeats for one agent.

    ``registry_url``: a node's URL, or several comma-separated. ``ttl``: the
    registration's TTL in seconds (the loop beats every third of it).
    ``token`` (else ``REGISTRY_TOKEN``) for a cluster with access control.
    """

    #: Seconds the heartbeat loop waits after a failed heartbeat.
    retry_delay: float = 5.0

    def __init__(
        self,
        registry_url: str,
        agent_id: str,
        ttl: int = 60,
        heartbeat_interval: float | None = None,
        *,
        token: str | None = None,
    ) -> None:
        interval = ttl / 3 if heartbeat_interval is None else heartbeat_interval
        if interval >= ttl:
            raise ValueError(f"heartbeat_interval ({interval}) must be less than ttl ({ttl})")
        self.registry_url = registry_url.rstrip("/")
        self.agent_id = agent_id
        self.ttl = ttl
        self.heartbeat_interval = interval
        self._client = AsyncRegistryClient(self.registry_url, token=token)
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._host: str | None = None
        self._port: int | None = None
        # What the heartbeat loop did.
        self.heartbeats_ok = 0
        self.heartbeat_errors: list[str] = []
        self.last_heartbeat_ack: HeartbeatAck | None = None

    @property
    def ttl_seconds(self) -> int:
        """The TTL, by its name on the wire."""
        return self.ttl

    def _get_host_port(self, metadata: Mapping[str, Any] | None = None) -> tuple[str, int]:
        """Host and port: environment, then metadata, then defaults."""
        metadata = metadata or {}
        host: Any = os.getenv("AGENT_HOST") or metadata.get("host") or socket.gethostname()
        port_str: Any = os.getenv("AGENT_PORT") or metadata.get("port")
        port = 8000
        if port_str:
            try:
                port = int(port_str)
            except (ValueError, TypeError):
                port = 8000
        return str(host), port

    async def register(self, metadata: dict[str, Any] | None = None) -> AgentRecord:
        """Registers (idempotently): ``POST /agents/register``. ``metadata``
        may carry ``host``, ``port``, ``agent_name`` and the record's own
        ``metadata``."""
        metadata = metadata or {}
        host, port = self._get_host_port(metadata)
        self._host, self._port = host, port
        body = {
            "agent_id": self.agent_id,
            "agent_name": metadata.get("agent_name", self.agent_id),
            "host": host,
            "port": port,
            "ttl_seconds": self.ttl,
            "metadata": metadata.get("metadata"),
        }
        # An upsert of a fixed id: safe to send again after an unknown outcome.
        answer = await self._client._run(
            raw("POST", "/agents/register", Kind.IDEMPOTENT, body=body)
        )
        return AgentRecord.model_validate(answer)

    async def start_heartbeat_loop(self) -> None:
        """Starts the background heartbeat task (once)."""
        if self._heartbeat_task is None:
            self._heartbeat_task = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        """Beats every ``heartbeat_interval`` s until cancelled; after an
        error, waits ``retry_delay`` s and tries again."""
        while True:
            try:
                answer = await self._client._run(
                    raw("POST", f"/agents/{seg(self.agent_id)}/heartbeat", Kind.IDEMPOTENT)
                )
                self.last_heartbeat_ack = HeartbeatAck.model_validate(answer)
                self.heartbeats_ok += 1
                await asyncio.sleep(self.heartbeat_interval)
            except (RegistryError, ValueError) as e:
                self.heartbeat_errors.append(repr(e))
                logger.warning("heartbeat of %r failed: %s", self.agent_id, e)
                await asyncio.sleep(self.retry_delay)

    def heartbeat_running(self) -> bool:
        return self._heartbeat_task is not None and not self._heartbeat_task.done()

    async def deregister(self) -> dict[str, Any] | None:
        """Stops the heartbeat loop and deletes the agent; best effort: an
        error is logged and None returned."""
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            answer = await self._client._run(
                raw("DELETE", f"/agents/{seg(self.agent_id)}", Kind.WRITE)
            )
        except RegistryError as e:
            logger.warning("deregistering %r failed: %s", self.agent_id, e)
            return None
        return answer if isinstance(answer, dict) else None

    async def list_agents(self, include_dead: bool = False) -> list[AgentRecord]:
        """``GET /agents?include_dead=``."""
        answer = await self._client._run(
            raw(
                "GET",
                "/agents",
                Kind.READ,
                params={"include_dead": "true" if include_dead else "false"},
            )
        )
        return _RECORDS.validate_python(answer)

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> AgentRegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.deregister()
        await self.close()
