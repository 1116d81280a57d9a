"""FastAPI integration (the ``fastapi`` extra): register the service as an
agent for as long as it runs.

::

    from fastapi import FastAPI
    from agent_registry import AgentRegistration
    from agent_registry.fastapi import registry_lifespan

    app = FastAPI(lifespan=registry_lifespan(AgentRegistration(
        agent_id="summarizer-1", name="Summarizer",
        endpoint="http://10.0.0.7:8000", capabilities=["summarize"])))

At startup the lifespan opens an :class:`~agent_registry.AsyncRegistryClient`
(``nodes`` or ``REGISTRY_NODES``, ``token`` or ``REGISTRY_TOKEN``), starts an
:class:`~agent_registry.AgentSession` (registration, then heartbeats), and
adds the agent's own probes unless the app has them:

- ``GET /health/live``: 200 while the process serves;
- ``GET /health/ready``: 200 while the session is registered and its last
  beat succeeded, else 503 (so an orchestrator's probe and the registry
  agree about the agent).

The session and client are on ``app.state.registry_session`` and
``app.state.registry_client`` (handlers reach them through ``request.app``).
At shutdown the session deregisters the agent; a crash (or a cancelled
lifespan) leaves it to expire.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from .client import AsyncRegistryClient
from .models import AgentRegistration
from .session import AgentSession, Reporter

__all__ = ["health_routes", "registry_lifespan"]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def health_routes(app: FastAPI, session: AgentSession) -> None:
    """Adds ``/health/live`` and ``/health/ready`` for ``session``, each only
    if the app does not serve that path already."""
    paths = {getattr(route, "path", None) for route in app.router.routes}

    async def live() -> dict[str, str]:
        return {"status": "live", "agent_id": session.agent_id}

    async def ready() -> JSONResponse:
        stats = session.stats
        body: dict[str, Any] = {
            "agent_id": session.agent_id,
            "registered": session.running,
            "beats": stats.beats,
            "consecutive_failures": stats.consecutive_failures,
        }
        if session.ready:
            return JSONResponse({"status": "ready", **body})
        return JSONResponse(
            {"status": "not_ready", "reason": stats.last_error or "not registered", **body},
            status_code=503,
        )

    if "/health/live" not in paths:
        app.add_api_route("/health/live", live, methods=["GET"], include_in_schema=False)
    if "/health/ready" not in paths:
        app.add_api_route("/health/ready", ready, methods=["GET"], include_in_schema=False)


def registry_lifespan(
    registration: AgentRegistration,
    *,
    nodes: Sequence[str] | str | None = None,
    token: str | None = None,
    ca_file: str | os.PathLike[str] | None = None,
    reporter: Reporter | None = None,
    lifespan: Lifespan | None = None,
    add_health_routes: bool = True,
) -> Lifespan:
    """A ``lifespan`` for ``FastAPI(lifespan=...)`` that keeps the service
    registered as an agent while it runs. ``lifespan``: the app's own, run
    inside (after registration, before deregistration)."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[Any]:
        async with AsyncExitStack() as stack:
            client = AsyncRegistryClient(nodes, token=token, ca_file=ca_file)
            stack.push_async_callback(client.aclose)
            session = AgentSession(client, registration, reporter=reporter)
            await stack.enter_async_context(session)
            app.state.registry_client = client
            app.state.registry_session = session
            if add_health_routes:
                health_routes(app, session)
            if lifespan is None:
                yield None
            else:
                state = await stack.enter_async_context(lifespan(app))
                yield state

    return run
