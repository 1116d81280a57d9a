"""The examples as a user runs them: the FastAPI agent under uvicorn, found
through discovery; the orchestrator delegating to it; the watcher seeing it
come and go."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from agent_registry import AsyncRegistryClient, NotFound

from conftest import free_ports
from helpers import new_id, wait_until

log = logging.getLogger(__name__)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example_env(nodes: list[str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "AGENT_"))}
    env["REGISTRY_NODES"] = ",".join(nodes)
    env.update(extra)
    return env


async def read_line(proc: asyncio.subprocess.Process, timeout: float = 30) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        raise AssertionError(f"the process ended (code {proc.returncode}) without a line")
    return line.decode().rstrip("\n")


async def stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), 30)
    except asyncio.TimeoutError:
        proc.kill()
        return await proc.wait()


@pytest.fixture
async def watcher(nodes: list[str]) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "watcher.py"),
        "--capability",
        "summarize",
        "--count",
        "2",
        stdout=asyncio.subprocess.PIPE,
        env=example_env(nodes),
    )
    try:
        yield proc
    finally:
        await stop(proc)


async def test_fastapi_agent_found_through_discovery_and_delegated_to(
    nodes: list[str], watcher: asyncio.subprocess.Process
) -> None:
    first = await read_line(watcher)
    assert first.startswith("# watching after revision"), first

    log.info("--- start the FastAPI example under uvicorn")
    agent_id = new_id("summarizer")
    (port,) = free_ports(1)
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "fastapi_agent:app",
        "--app-dir",
        str(EXAMPLES),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env=example_env(nodes, AGENT_ID=agent_id, AGENT_PORT=str(port), AGENT_TTL_SECONDS="6"),
    )
    try:
        async with AsyncRegistryClient(nodes) as registry, httpx.AsyncClient() as http:

            async def discovered() -> bool:
                found = await registry.discover(capabilities=["summarize"])
                return agent_id in [h.agent.agent_id for h in found.agents]

            await wait_until(discovered, what="the agent in discovery", timeout=60)
            record = await registry.get(agent_id)
            assert record.endpoint == f"http://127.0.0.1:{port}"

            log.info("--- its own probes")
            assert (await http.get(f"{record.endpoint}/health/live")).status_code == 200

            async def ready() -> bool:
                r = await http.get(f"{record.endpoint}/health/ready")
                return r.status_code == 200 and r.json()["beats"] >= 1

            await wait_until(ready, what="the agent ready after a beat", timeout=30)

            log.info("--- the orchestrator example discovers it and delegates")
            orchestrator = await asyncio.create_subprocess_exec(
                sys.executable,
                str(EXAMPLES / "orchestrator.py"),
                "Registries find agents. Agents do the work.",
                stdout=asyncio.subprocess.PIPE,
                env=example_env(nodes),
            )
            out, _ = await asyncio.wait_for(orchestrator.communicate(), 60)
            assert orchestrator.returncode == 0
            assert json.loads(out) == {"agent_id": agent_id, "summary": "Registries find agents."}

            log.info("--- SIGTERM: uvicorn shuts down and the lifespan deregisters")
            # uvicorn shuts down gracefully, then re-raises the signal.
            assert await stop(agent) in (0, -signal.SIGTERM)
            with pytest.raises(NotFound):
                await registry.get(agent_id)
    finally:
        await stop(agent)

    log.info("--- the watcher saw it come and go")
    registered = await read_line(watcher)
    deregistered = await read_line(watcher)
    assert registered.split()[1:3] == ["AGENT_REGISTERED", agent_id], registered
    assert deregistered.split()[1:3] == ["AGENT_DEREGISTERED", agent_id], deregistered
    assert int(deregistered.split()[0]) > int(registered.split()[0]) > int(first.split()[-1])
    assert await asyncio.wait_for(watcher.wait(), 30) == 0
