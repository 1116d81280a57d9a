"""configurable-agents' AgentRegistryClient, used as its deployed agents use
it, against a real cluster (through the leader and through a follower):
register with AGENT_HOST/AGENT_PORT, heartbeat loop, list the live agents,
deregister."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from configurable_agents_client import AgentRecord, AgentRegistryClient
from legacy_helpers import wait_until

# The tests' agents beat this often (a deployed agent: every ttl/3 = 20 s).
HEARTBEAT_INTERVAL = 0.2
AGENT_HOST = "127.0.0.1"
AGENT_PORT = 18080


def new_id(prefix: str, via: str) -> str:
    return f"{prefix}-{via}-{uuid.uuid4().hex[:8]}"


def find(records: list[AgentRecord], agent_id: str) -> AgentRecord | None:
    return next((r for r in records if r.agent_id == agent_id), None)


@pytest.fixture
def agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The container's environment, as the deployment generator sets it."""
    monkeypatch.setenv("AGENT_HOST", AGENT_HOST)
    monkeypatch.setenv("AGENT_PORT", str(AGENT_PORT))


async def test_register_heartbeat_list_deregister(
    registry_url: str, via: str, agent_env: None, http: httpx.AsyncClient
) -> None:
    agent_id = new_id("research-agent", via)
    client = AgentRegistryClient(
        registry_url=registry_url, agent_id=agent_id, heartbeat_interval=HEARTBEAT_INTERVAL
    )
    try:
        record = await client.register(
            {"agent_name": "Research Agent", "metadata": {"workflow": "simple_workflow"}}
        )
        assert record.agent_id == agent_id
        assert record.agent_name == "Research Agent"
        assert (record.host, record.port) == (AGENT_HOST, AGENT_PORT)
        assert record.is_alive is True
        assert record.ttl_seconds == 60
        assert record.metadata == {"workflow": "simple_workflow"}

        # The endpoint it is reached at, in the Dev-Tools view of the same agent.
        r = await http.get(f"{registry_url}/agents/{agent_id}")
        assert r.status_code == 200, r.text
        assert r.json()["base_url"] == f"http://{AGENT_HOST}:{AGENT_PORT}"

        await client.start_heartbeat_loop()

        async def beats() -> bool:
            return client.heartbeats_ok >= 3

        await wait_until(beats, what="three heartbeats", timeout=15)
        assert client.heartbeat_errors == []
        ack = client.last_heartbeat_ack
        assert ack is not None and ack.status == "ok"
        assert client.heartbeat_running()

        live = await client.list_agents(include_dead=False)
        mine = find(live, agent_id)
        assert mine is not None
        assert mine.is_alive is True
        assert (mine.host, mine.port, mine.ttl_seconds) == (AGENT_HOST, AGENT_PORT, 60)
        assert all(a.is_alive for a in live)
        # The JSON types themselves (pydantic would coerce "18080" to 18080).
        r = await http.get(f"{registry_url}/agents", params={"include_dead": "false"})
        raw = next(a for a in r.json() if a["agent_id"] == agent_id)
        assert type(raw["port"]) is int and type(raw["ttl_seconds"]) is int
        assert raw["is_alive"] is True and isinstance(raw["host"], str)

        deleted = await client.deregister()
        assert deleted is not None
        assert (deleted.status, deleted.agent_id) == ("deleted", agent_id)
        assert not client.heartbeat_running()
        assert (await http.get(f"{registry_url}/agents/{agent_id}")).status_code == 404
        assert find(await client.list_agents(include_dead=True), agent_id) is None
    finally:
        await client.deregister()
        await client.close()


async def test_context_manager_deregisters_on_exit(
    registry_url: str, via: str, agent_env: None, http: httpx.AsyncClient
) -> None:
    agent_id = new_id("ctx-agent", via)
    async with AgentRegistryClient(
        registry_url, agent_id, ttl_seconds=30, heartbeat_interval=HEARTBEAT_INTERVAL
    ) as client:
        record = await client.register()
        assert (record.agent_name, record.ttl_seconds, record.is_alive) == (agent_id, 30, True)
        await client.start_heartbeat_loop()

        async def beat() -> bool:
            return client.heartbeats_ok >= 1

        await wait_until(beat, what="a heartbeat", timeout=10)
        assert (await http.get(f"{registry_url}/agents/{agent_id}")).status_code == 200
    assert (await http.get(f"{registry_url}/agents/{agent_id}")).status_code == 404


async def test_defaults_as_the_seed_verifies_them(
    registry_url: str, via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ttl 60 and heartbeat every 20 s by default; host and port from the
    metadata when the environment has none (the module's own example)."""
    monkeypatch.delenv("AGENT_HOST", raising=False)
    monkeypatch.delenv("AGENT_PORT", raising=False)
    with pytest.raises(ValueError, match="heartbeat_interval"):
        AgentRegistryClient(registry_url, "x", ttl_seconds=10, heartbeat_interval=10)
    client = AgentRegistryClient(registry_url, new_id("seed-agent", via))
    try:
        assert (client.ttl_seconds, client.heartbeat_interval) == (60, 20)
        record = await client.register({"host": "localhost", "port": 8000})
        assert (record.host, record.port, record.ttl_seconds) == ("localhost", 8000, 60)
        assert record.is_alive is True
        deleted = await client.deregister()
        assert deleted is not None and deleted.status == "deleted"
    finally:
        await client.close()


async def test_include_dead_false_leaves_out_an_agent_past_its_ttl(
    registry_url: str, via: str, agent_env: None
) -> None:
    agent_id = new_id("short-ttl-agent", via)
    client = AgentRegistryClient(registry_url, agent_id, ttl_seconds=2)
    try:
        record = await client.register()
        assert (record.ttl_seconds, record.is_alive) == (2, True)
        assert find(await client.list_agents(include_dead=False), agent_id) is not None

        async def dead() -> AgentRecord | None:
            if find(await client.list_agents(include_dead=False), agent_id) is not None:
                return None
            return find(await client.list_agents(include_dead=True), agent_id)

        gone = await wait_until(dead, what="the agent left out of the live list", timeout=15)
        assert gone.is_alive is False

        # Heartbeats bring it back.
        client.heartbeat_interval = HEARTBEAT_INTERVAL
        await client.start_heartbeat_loop()

        async def alive() -> AgentRecord | None:
            return find(await client.list_agents(include_dead=False), agent_id)

        back = await wait_until(alive, what="the agent live again", timeout=10)
        assert back.is_alive is True
    finally:
        await client.deregister()
        await client.close()


async def test_delete_unknown_agent_is_404(
    registry_url: str, via: str, http: httpx.AsyncClient
) -> None:
    agent_id = new_id("never-registered", via)
    r = await http.delete(f"{registry_url}/agents/{agent_id}")
    assert r.status_code == 404, r.text
    body: Any = r.json()
    assert isinstance(body, dict) and "error" in body, body
    # The client's deregistration is best effort: no exception.
    client = AgentRegistryClient(registry_url, agent_id)
    try:
        assert await client.deregister() is None
    finally:
        await client.close()
