"""configurable-agents' ``AgentRegistryClient``, re-created from its contract.

Agents deployed by configurable-agents (``src/configurable_agents/registry/
client.py``, described in ``../shared/seeds/000_ca682f0a184d59e5.txt``)
register themselves, keep a TTL alive with a background heartbeat loop and
deregister on shutdown:

- ``POST /agents/register`` with ``{agent_id, agent_name, host, port,
  ttl_seconds, metadata}``; the answer is the agent record;
- ``POST /agents/{id}/heartbeat`` every ``heartbeat_interval`` seconds
  (about a third of the TTL); after an HTTP error the loop sleeps 5 s and
  goes on;
- ``DELETE /agents/{id}`` on shutdown, best effort (errors are logged);
- ``GET /agents?include_dead=false`` lists the live agents.

As in the original, host and port come from ``AGENT_HOST``/``AGENT_PORT``,
then from the ``metadata`` given to ``register``, then the machine's host
name and port 8000. Stricter than the original (which discarded the
answers): the answers are parsed into pydantic models, so a change of shape
fails loudly.
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

import httpx
from pydantic import BaseModel, TypeAdapter

logger = logging.getLogger(__name__)


class AgentRecord(BaseModel):
    """An agent as the configurable-agents registry answers it."""

    agent_id: str
    agent_name: str
    host: str
    port: int
    is_alive: bool
    last_heartbeat: datetime
    registered_at: datetime
    ttl_seconds: int
    metadata: dict[str, Any]


class HeartbeatAck(BaseModel):
    """Answer to ``POST /agents/{id}/heartbeat``."""

    status: str
    last_heartbeat: datetime


class DeregisterAck(BaseModel):
    """Answer to ``DELETE /agents/{id}``."""

    status: str
    agent_id: str


_RECORDS = TypeAdapter(list[AgentRecord])


class AgentRegistryClient:
    """Client for agent self-registration and heartbeat."""

    # Seconds the heartbeat loop waits after a failed heartbeat.
    retry_delay: float = 5.0

    def __init__(
        self,
        registry_url: str,
        agent_id: str,
        ttl_seconds: int = 60,
        heartbeat_interval: float | None = None,
    ) -> None:
        interval = ttl_seconds / 3 if heartbeat_interval is None else heartbeat_interval
        if interval >= ttl_seconds:
            raise ValueError(
                f"heartbeat_interval ({interval}) must be less than ttl_seconds ({ttl_seconds})"
            )
        self.registry_url = registry_url.rstrip("/")
        self.agent_id = agent_id
        self.ttl_seconds = ttl_seconds
        self.heartbeat_interval = interval

        self._http_client = httpx.AsyncClient(timeout=10.0)
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._host: str | None = None
        self._port: int | None = None

        # What the heartbeat loop did (read by the tests).
        self.heartbeats_ok = 0
        self.heartbeat_errors: list[str] = []
        self.last_heartbeat_ack: HeartbeatAck | None = None

    def _get_host_port(self, metadata: Mapping[str, Any] | None = None) -> tuple[str, int]:
        """Host and port: environment, then metadata, then defaults."""
        metadata = metadata or {}
        host: Any = os.getenv("AGENT_HOST")
        port_str: Any = os.getenv("AGENT_PORT")
        if not host:
            host = metadata.get("host")
        if not port_str:
            port_str = metadata.get("port")
        if not host:
            host = socket.gethostname()
        port = 8000
        if port_str:
            try:
                port = int(port_str)
            except (ValueError, TypeError):
                port = 8000
        return str(host), port

    async def register(self, metadata: dict[str, Any] | None = None) -> AgentRecord:
        """Registers (idempotently) with ``POST /agents/register``.

        ``metadata`` may carry ``host``, ``port``, ``agent_name`` and the
        record's own ``metadata``.
        """
        metadata = metadata or {}
        host, port = self._get_host_port(metadata)
        self._host, self._port = host, port
        payload = {
            "agent_id": self.agent_id,
            "agent_name": metadata.get("agent_name", self.agent_id),
            "host": host,
            "port": port,
            "ttl_seconds": self.ttl_seconds,
            "metadata": metadata.get("metadata"),
        }
        response = await self._http_client.post(
            f"{self.registry_url}/agents/register", json=payload
        )
        response.raise_for_status()
        return AgentRecord.model_validate(response.json())

    async def start_heartbeat_loop(self) -> None:
        """Starts the background heartbeat task (once)."""
        if self._heartbeat_task is not None:
            return
        self._heartbeat_task = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        """Heartbeats every ``heartbeat_interval`` s until cancelled; after an
        error, waits ``retry_delay`` s and tries again."""
        try:
            while True:
                try:
                    response = await self._http_client.post(
                        f"{self.registry_url}/agents/{self.agent_id}/heartbeat"
                    )
                    response.raise_for_status()
                    self.last_heartbeat_ack = HeartbeatAck.model_validate(response.json())
                    self.heartbeats_ok += 1
                    await asyncio.sleep(self.heartbeat_interval)
                except (httpx.HTTPError, ValueError) as e:
                    self.heartbeat_errors.append(repr(e))
                    logger.warning("heartbeat of %r failed: %s", self.agent_id, e)
                    await asyncio.sleep(self.retry_delay)
        except asyncio.CancelledError:
            pass

    def heartbeat_running(self) -> bool:
        return self._heartbeat_task is not None and not self._heartbeat_task.done()

    async def deregister(self) -> DeregisterAck | None:
        """Stops the heartbeat loop and deletes the agent; best effort: an
        error is logged and None returned."""
        task = self._heartbeat_task
        self._heartbeat_task = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            response = await self._http_client.delete(f"{self.registry_url}/agents/{self.agent_id}")
            response.raise_for_status()
            return DeregisterAck.model_validate(response.json())
        except (httpx.HTTPError, ValueError) as e:
            logger.warning("deregistering %r failed: %s", self.agent_id, e)
            return None

    async def list_agents(self, include_dead: bool = False) -> list[AgentRecord]:
        """``GET /agents?include_dead=``."""
        response = await self._http_client.get(
            f"{self.registry_url}/agents",
            params={"include_dead": "true" if include_dead else "false"},
        )
        response.raise_for_status()
        return _RECORDS.validate_python(response.json())

    async def close(self) -> None:
        await self._http_client.aclose()

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
