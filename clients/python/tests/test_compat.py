"""The compatible clients, driven as the earlier registries' examples drive
theirs (../shared/seeds/: the Dev-Tools registry's Examples 1 to 3 and
"Monitor Registry Health"; configurable-agents' deployed agents), with only
the import changed."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent_registry import AgentRegistration, AsyncRegistryClient
from agent_registry.compat import AgentCapability, AgentRegistryClient, RegistryClient

from helpers import new_id, wait_until

log = logging.getLogger(__name__)

# Example 1: Agent Self-Registration on Startup.
FEATURE_DEV_CAPABILITIES = [
    AgentCapability(
        name="code_generation",
        description="Generates production-ready code in Python, JavaScript, TypeScript",
        cost_estimate="50-200 tokens per function",
        tags=["coding", "python", "javascript", "typescript"],
    ),
    AgentCapability(
        name="refactoring",
        description="Refactors existing code for better maintainability",
        cost_estimate="100-500 tokens per file",
        tags=["coding", "refactoring", "best-practices"],
    ),
    AgentCapability(
        name="feature_implementation",
        description="Implements new features from specifications",
        cost_estimate="500-2000 tokens per feature",
        tags=["coding", "feature", "implementation"],
    ),
]
SECURITY_CAPABILITIES = [
    AgentCapability(
        name="security_scanning",
        description="Scans repositories and dependencies for known vulnerabilities",
        cost_estimate="~100 tokens",
        tags=["security", "scanning"],
    )
]


async def test_devtools_client_as_its_examples_use_it(nodes: list[str]) -> None:
    url = ",".join(nodes)
    feature_id, security_id = new_id("feature-dev"), new_id("security-scanner")
    # Short liveness, set by an operator through /v1; the Dev-Tools
    # registration keeps it (docs/api.md, "What a re-registration keeps").
    async with AsyncRegistryClient(nodes) as v1:
        await v1.register(
            AgentRegistration(
                agent_id=feature_id,
                name="placeholder",
                endpoint="http://feature-dev:8002",
                ttl_seconds=2,
                offline_after_seconds=4,
            )
        )

    feature = RegistryClient(
        registry_url=url,
        agent_id=feature_id,
        agent_name="Feature Development Agent",
        base_url="http://feature-dev:8002",
    )
    security = RegistryClient(
        registry_url=url,
        agent_id=security_id,
        agent_name="Security Scanning Agent",
        base_url="http://security-scanner:8005",
    )
    orchestrator = RegistryClient(
        registry_url=url,
        agent_id="orchestrator",
        agent_name="Orchestrator Agent",
        base_url="http://orchestrator:8001",
    )
    try:
        log.info("--- Example 1: register on startup, heartbeat")
        ack = await feature.register(FEATURE_DEV_CAPABILITIES)
        assert (ack.status, ack.agent_id) == ("registered", feature_id)
        await security.register(SECURITY_CAPABILITIES)
        await feature.start_heartbeat(interval=0.5)
        await security.start_heartbeat(interval=0.5)
        await wait_until(
            lambda: asyncio.sleep(0, feature.heartbeats_ok >= 2), what="beats", timeout=10
        )

        log.info('--- search "python": code_generation only')
        matches = [
            m for m in await orchestrator.search_capabilities("python") if m.agent_id == feature_id
        ]
        assert [m.capability for m in matches] == ["code_generation"]
        assert matches[0].agent_name == "Feature Development Agent"
        assert matches[0]["base_url"] == "http://feature-dev:8002"

        log.info('--- Example 2: "code_generation", active matches, the cost estimate')
        matches = await orchestrator.search_capabilities("code_generation")
        active = [m for m in matches if m.status == "active" and m.agent_id == feature_id]
        assert len(active) == 1 and active[0].cost_estimate == "50-200 tokens per function"

        log.info('--- Example 3: "security", check health, delegate')
        chosen = None
        for match in await orchestrator.search_capabilities("security"):
            if match.agent_id != security_id:
                continue  # another test's agent
            health = await orchestrator.check_health(match.agent_id)
            if health["status"] == "healthy":
                chosen = match.agent_id
        assert chosen == security_id

        log.info("--- list the active agents, monitor the registry")
        active_agents = await orchestrator.list_agents(status="active")
        assert {feature_id, security_id} <= {a.agent_id for a in active_agents}
        stats = await orchestrator.get_stats()
        assert stats["active_agents"] >= 2
        assert stats["total_capabilities"] >= 4
        assert "offline_agents" in stats

        log.info("--- update_status, as the graceful shutdown does")
        await security.update_status("busy")
        assert (await orchestrator.get_agent(security_id)).status == "busy"

        log.info("--- stop the heartbeats: unhealthy, then offline")
        await feature.stop_heartbeat()

        async def status_is(wanted: str) -> bool:
            health = await orchestrator.check_health(feature_id)
            return bool(health["status"] == wanted)

        await wait_until(lambda: status_is("unhealthy"), what="unhealthy", timeout=15)
        await wait_until(lambda: status_is("offline"), what="offline", timeout=15)
        stats = await orchestrator.get_stats()
        assert stats["offline_agents"] >= 1

        log.info("--- a heartbeat revives it")
        await feature.send_heartbeat()
        await wait_until(lambda: status_is("healthy"), what="healthy again", timeout=10)
    finally:
        for c in (feature, security, orchestrator):
            await c.close()


async def test_configurable_agents_client_as_deployed_agents_use_it(
    nodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_HOST", "127.0.0.1")
    monkeypatch.setenv("AGENT_PORT", "18080")
    agent_id = new_id("research-agent")
    url = ",".join(nodes)
    async with AgentRegistryClient(url, agent_id, ttl=2) as client:
        assert client.heartbeat_interval == pytest.approx(2 / 3)
        record = await client.register(
            {"agent_name": "Research Agent", "metadata": {"workflow": "simple_workflow"}}
        )
        assert (record.agent_id, record.host, record.port) == (agent_id, "127.0.0.1", 18080)
        assert record.is_alive and record.ttl_seconds == 2
        assert record.metadata == {"workflow": "simple_workflow"}
        await client.start_heartbeat_loop()
        await wait_until(
            lambda: asyncio.sleep(0, client.heartbeats_ok >= 3), what="beats", timeout=10
        )
        live = await client.list_agents(include_dead=False)
        assert agent_id in [r.agent_id for r in live]
        assert client.heartbeat_errors == []

        log.info("--- the loop stops (a hung agent): it leaves the live list")
        task = client._heartbeat_task
        assert task is not None
        task.cancel()

        async def dead() -> bool:
            return agent_id not in [r.agent_id for r in await client.list_agents()]

        await wait_until(dead, what="the silent agent to leave the live list", timeout=15)
        everyone = await client.list_agents(include_dead=True)
        assert [r.is_alive for r in everyone if r.agent_id == agent_id] == [False]
    log.info("--- leaving the context deregistered it")
    async with AsyncRegistryClient(nodes) as v1:
        assert agent_id not in [a.agent_id async for a in v1.list_agents()]
    # Deregistering again is best effort: logged, not raised.
    again = AgentRegistryClient(url, agent_id)
    assert await again.deregister() is None
    await again.close()
