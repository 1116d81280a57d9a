"""A FastAPI agent that registers itself, beats while it serves, and
deregisters on shutdown: one ``lifespan=`` line.

It offers the capability ``summarize`` (``POST /summarize`` with
``{"text": ...}``) and reports its load (requests in flight over capacity)
with every heartbeat.

Run it (the registry at REGISTRY_NODES, e.g. ``http://127.0.0.1:8009``)::

    AGENT_PORT=8000 uvicorn fastapi_agent:app --app-dir clients/python/examples --port 8000

Environment: ``REGISTRY_NODES`` (comma-separated node URLs), ``REGISTRY_TOKEN``
(an agent token, with ``--auth on``), ``AGENT_ID`` (default
``summarizer-<host>-<port>``), ``AGENT_HOST`` (the address others reach it
at, default 127.0.0.1) and ``AGENT_PORT`` (default 8000).
"""

from __future__ import annotations

import os
import socket

from fastapi import FastAPI
from pydantic import BaseModel

from agent_registry import AgentRegistration, CapabilityInput, HeartbeatReport
from agent_registry.fastapi import registry_lifespan

HOST = os.environ.get("AGENT_HOST", "127.0.0.1")
PORT = int(os.environ.get("AGENT_PORT", "8000"))
AGENT_ID = os.environ.get("AGENT_ID", f"summarizer-{socket.gethostname()}-{PORT}")
# Requests this agent serves at once before it calls itself fully loaded.
CAPACITY = 8

in_flight = 0


def report() -> HeartbeatReport:
    """What each heartbeat says: the load, from the requests in flight."""
    return HeartbeatReport(load_factor=min(1.0, in_flight / CAPACITY))


registration = AgentRegistration(
    agent_id=AGENT_ID,
    name="Summarizer",
    endpoint=f"http://{HOST}:{PORT}",
    agent_type="example",
    capabilities=[
        CapabilityInput(
            name="summarize",
            description="Shortens a text to its first sentence",
            tags=["text", "example"],
            cost_estimate="~10 tokens",
        )
    ],
    ttl_seconds=int(os.environ.get("AGENT_TTL_SECONDS", "30")),
)

app = FastAPI(lifespan=registry_lifespan(registration, reporter=report))


class SummarizeRequest(BaseModel):
    text: str


class Summary(BaseModel):
    agent_id: str
    summary: str


@app.post("/summarize")
async def summarize(request: SummarizeRequest) -> Summary:
    global in_flight
    in_flight += 1
    try:
        first = request.text.strip().split(". ")[0].rstrip(".")
        return Summary(agent_id=AGENT_ID, summary=first + ".")
    finally:
        in_flight -= 1


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="0.0.0.0" if HOST != "127.0.0.1" else HOST, port=PORT)
