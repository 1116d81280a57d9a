"""The Dev-Tools registry's client, used as its documentation uses it, against
a real cluster (through the leader and through a follower).

The agents are those of the documentation's examples: "feature-dev" with the
three capabilities of Example 1 (text cost estimates), a security scanner that
Example 3 delegates to, and an orchestrator that only searches (Example 2).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

from devtools_client import AgentCapability, AgentInfo, CapabilityMatch, RegistryClient
from legacy_helpers import wait_until

# The test agents beat this often (the documentation's agents: every 30 s).
HEARTBEAT_INTERVAL = 0.5

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

# The agent Example 3 delegates "security_scanning" to.
SECURITY_CAPABILITIES = [
    AgentCapability(
        name="security_scanning",
        description="Scans repositories and dependencies for known vulnerabilities",
        parameters={"target": "repository URL or path", "severity": "minimum severity"},
        cost_estimate="~100 tokens",
        tags=["security", "scanning", "vulnerabilities"],
    ),
]
SECURITY_METADATA = {"team": "appsec", "replicas": 2}


@dataclass
class Fleet:
    via: str
    url: str
    feature: RegistryClient
    security: RegistryClient
    orchestrator: RegistryClient


def new_id(prefix: str, via: str) -> str:
    return f"{prefix}-{via}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def fleet(registry_url: str, via: str, http: httpx.AsyncClient) -> AsyncIterator[Fleet]:
    feature = RegistryClient(
        registry_url=registry_url,
        agent_id=new_id("feature-dev", via),
        agent_name="Feature Development Agent",
        base_url="http://feature-dev:8002",
    )
    security = RegistryClient(
        registry_url=registry_url,
        agent_id=new_id("security-scanner", via),
        agent_name="Security Scanning Agent",
        base_url="http://security-scanner:8005",
    )
    orchestrator = RegistryClient(
        registry_url=registry_url,
        agent_id="orchestrator",
        agent_name="Orchestrator Agent",
        base_url="http://orchestrator:8001",
    )
    try:
        ack = await feature.register(FEATURE_DEV_CAPABILITIES)
        assert (ack.status, ack.agent_id) == ("registered", feature.agent_id)
        ack = await security.register(SECURITY_CAPABILITIES, metadata=SECURITY_METADATA)
        assert (ack.status, ack.agent_id) == ("registered", security.agent_id)
        await feature.start_heartbeat(interval=HEARTBEAT_INTERVAL)
        await security.start_heartbeat(interval=HEARTBEAT_INTERVAL)
        yield Fleet(via, registry_url, feature, security, orchestrator)
    finally:
        for c in (feature, security, orchestrator):
            await c.close()
        for c in (feature, security):
            # Best effort: a test may already have deleted it.
            await http.delete(f"{registry_url}/agents/{c.agent_id}")


def ours(matches: list[CapabilityMatch], agent: RegistryClient) -> list[CapabilityMatch]:
    return [m for m in matches if m.agent_id == agent.agent_id]


def expected_match(agent: RegistryClient, cap: AgentCapability) -> CapabilityMatch:
    return CapabilityMatch(
        agent_id=agent.agent_id,
        agent_name=agent.agent_name,
        capability=cap.name,
        description=cap.description,
        base_url=agent.base_url,
        tags=cap.tags,
        status="active",
        cost_estimate=cap.cost_estimate,
    )


def find(agents: list[AgentInfo], agent_id: str) -> AgentInfo | None:
    return next((a for a in agents if a.agent_id == agent_id), None)


async def raw_json(http: httpx.AsyncClient, url: str) -> Any:
    r = await http.get(url)
    r.raise_for_status()
    return r.json()


# --------------------------------------------------------------------------
# Registration and heartbeats
# --------------------------------------------------------------------------


async def test_register_and_heartbeat_loop(fleet: Fleet) -> None:
    feature = fleet.feature

    async def beats() -> bool:
        return feature.heartbeats_ok >= 3 and fleet.security.heartbeats_ok >= 3

    await wait_until(beats, what="three heartbeats of each agent", timeout=15)
    assert feature.heartbeat_errors == []
    assert feature.reregistrations == 0
    ack = feature.last_heartbeat_ack
    assert ack is not None
    assert (ack.status, ack.agent_id) == ("ok", feature.agent_id)
    assert feature.heartbeat_running()


async def test_heartbeat_for_a_forgotten_agent_registers_it_again(
    fleet: Fleet, http: httpx.AsyncClient
) -> None:
    """The registry lost the agent: the heartbeat answers 404 and the client
    registers again with the capabilities it registered with."""
    feature = fleet.feature
    await feature.stop_heartbeat()
    r = await http.delete(f"{fleet.url}/agents/{feature.agent_id}")
    assert r.status_code == 200, r.text

    assert await feature.send_heartbeat() is None  # 404, then registered again
    assert feature.reregistrations == 1
    agent = await feature.get_agent(feature.agent_id)
    assert agent.capabilities == FEATURE_DEV_CAPABILITIES
    assert agent.status == "active"

    ack = await feature.send_heartbeat()
    assert ack is not None and ack.status == "ok"


# --------------------------------------------------------------------------
# Discovery (Examples 2 and 3)
# --------------------------------------------------------------------------


async def test_search_python(fleet: Fleet) -> None:
    matches = await fleet.orchestrator.search_capabilities("python")
    # Only code_generation mentions python (its tags and description).
    assert ours(matches, fleet.feature) == [
        expected_match(fleet.feature, FEATURE_DEV_CAPABILITIES[0])
    ]
    assert ours(matches, fleet.security) == []
    # Case-insensitive.
    upper = await fleet.orchestrator.search_capabilities("PYTHON")
    assert ours(upper, fleet.feature) == ours(matches, fleet.feature)


async def test_search_matches_name_description_and_tags_as_substrings(fleet: Fleet) -> None:
    by_name = await fleet.orchestrator.search_capabilities("generation")
    assert [m.capability for m in ours(by_name, fleet.feature)] == ["code_generation"]
    by_description = await fleet.orchestrator.search_capabilities("maintainab")
    assert [m.capability for m in ours(by_description, fleet.feature)] == ["refactoring"]
    by_tag = await fleet.orchestrator.search_capabilities("best-pract")
    assert [m.capability for m in ours(by_tag, fleet.feature)] == ["refactoring"]
    every = await fleet.orchestrator.search_capabilities("coding")
    assert sorted(m.capability for m in ours(every, fleet.feature)) == sorted(
        c.name for c in FEATURE_DEV_CAPABILITIES
    )
    for m in ours(every, fleet.feature):
        cap = next(c for c in FEATURE_DEV_CAPABILITIES if c.name == m.capability)
        assert m == expected_match(fleet.feature, cap)


async def test_search_security_and_delegate_with_fallback(fleet: Fleet) -> None:
    """Example 3: search, then check each match's health."""
    orchestrator = fleet.orchestrator
    matches = await orchestrator.search_capabilities("security")
    assert ours(matches, fleet.security) == [
        expected_match(fleet.security, SECURITY_CAPABILITIES[0])
    ]
    assert ours(matches, fleet.feature) == []

    async def delegate_with_fallback(primary: str, fallback: str | None = None) -> str:
        for capability in [primary] + ([fallback] if fallback else []):
            for match in await orchestrator.search_capabilities(capability):
                if match.agent_id not in (fleet.security.agent_id, fleet.feature.agent_id):
                    continue  # another test's agent
                health = await orchestrator.check_health(match.agent_id)
                if health["status"] == "healthy":
                    return match.agent_id
        raise ValueError(f"No healthy agent found for {primary} or {fallback}")

    chosen = await delegate_with_fallback("security_scanning", fallback="code_review")
    assert chosen == fleet.security.agent_id


async def test_search_code_generation_finds_the_best_agent(fleet: Fleet) -> None:
    """Example 2: keep the active matches, read the cost estimate."""
    matches = await fleet.orchestrator.search_capabilities("code_generation")
    active = [m for m in ours(matches, fleet.feature) if m.status == "active"]
    assert len(active) == 1
    best = active[0]
    assert best.capability == "code_generation"
    assert best.cost_estimate == "50-200 tokens per function"
    assert best == expected_match(fleet.feature, FEATURE_DEV_CAPABILITIES[0])


async def test_search_answers_a_json_list_with_the_documented_fields(
    fleet: Fleet, http: httpx.AsyncClient
) -> None:
    body = await raw_json(http, f"{fleet.url}/capabilities/search?q=security_scanning")
    assert isinstance(body, list)
    item = next(i for i in body if i.get("agent_id") == fleet.security.agent_id)
    assert item["capability"] == "security_scanning"
    assert item["cost_estimate"] == "~100 tokens"
    for key in ("agent_name", "description", "base_url", "status"):
        assert isinstance(item[key], str), key
    assert item["tags"] == SECURITY_CAPABILITIES[0].tags


# --------------------------------------------------------------------------
# Health, listing, details, statistics
# --------------------------------------------------------------------------


async def test_check_health(fleet: Fleet) -> None:
    await wait_until(lambda: _beaten(fleet.feature), what="a heartbeat of feature-dev", timeout=10)
    health = await fleet.orchestrator.check_health(fleet.feature.agent_id)
    assert health["status"] == "healthy"
    assert health["agent_id"] == fleet.feature.agent_id
    assert health["agent_name"] == "Feature Development Agent"
    assert health["is_healthy"] is True
    since = health["seconds_since_heartbeat"]
    assert isinstance(since, (int, float)) and not isinstance(since, bool)
    assert 0 <= since < 30
    assert isinstance(health["last_heartbeat"], str)
    datetime.fromisoformat(health["last_heartbeat"].replace("Z", "+00:00"))


async def _beaten(client: RegistryClient) -> bool:
    return client.heartbeats_ok >= 1


async def test_list_agents_get_agent_and_stats(fleet: Fleet, http: httpx.AsyncClient) -> None:
    orchestrator = fleet.orchestrator
    active = await orchestrator.list_agents(status="active")
    feature = find(active, fleet.feature.agent_id)
    security = find(active, fleet.security.agent_id)
    assert feature is not None and security is not None
    assert all(a.status == "active" for a in active)
    assert feature.agent_name == "Feature Development Agent"
    assert feature.base_url == "http://feature-dev:8002"
    assert feature.capabilities == FEATURE_DEV_CAPABILITIES
    assert feature.metadata in (None, {})
    assert security.capabilities == SECURITY_CAPABILITIES
    assert security.metadata == SECURITY_METADATA

    everyone = await orchestrator.list_agents()
    assert find(everyone, fleet.feature.agent_id) is not None
    assert isinstance(await raw_json(http, f"{fleet.url}/agents"), list)

    one = await orchestrator.get_agent(fleet.feature.agent_id)
    assert one.agent_id == fleet.feature.agent_id
    assert one.status == "active"
    assert one.capabilities == FEATURE_DEV_CAPABILITIES
    assert one.created_at <= one.updated_at

    stats = await orchestrator.get_stats()
    for key in ("active_agents", "offline_agents", "total_capabilities"):
        assert type(stats[key]) is int, (key, stats[key])
    assert stats["active_agents"] >= 2
    assert stats["total_capabilities"] >= len(FEATURE_DEV_CAPABILITIES) + 1
    # The documentation's alert rule evaluates.
    assert isinstance(stats["offline_agents"] > stats["active_agents"] * 0.3, bool)


# --------------------------------------------------------------------------
# update_status: offline (graceful shutdown), busy, and back
# --------------------------------------------------------------------------


async def test_update_status_offline_then_back(fleet: Fleet) -> None:
    feature, orchestrator = fleet.feature, fleet.orchestrator
    # Graceful shutdown, as documented: stop heartbeats, then mark offline.
    await feature.stop_heartbeat()
    ack = await feature.update_status("offline")
    assert (ack.status, ack.agent_id) == ("registered", feature.agent_id)

    offline = await orchestrator.list_agents(status="offline")
    mine = find(offline, feature.agent_id)
    assert mine is not None and mine.status == "offline"
    assert mine.capabilities == FEATURE_DEV_CAPABILITIES
    assert find(await orchestrator.list_agents(status="active"), feature.agent_id) is None
    listed = find(await orchestrator.list_agents(), feature.agent_id)
    assert listed is not None and listed.status == "offline"
    # Search answers active agents only.
    assert ours(await orchestrator.search_capabilities("code_generation"), feature) == []
    health = await orchestrator.check_health(feature.agent_id)
    assert health["status"] != "healthy"
    assert health["is_healthy"] is False

    await feature.update_status("busy")
    busy = find(await orchestrator.list_agents(status="busy"), feature.agent_id)
    assert busy is not None and busy.status == "busy"
    assert ours(await orchestrator.search_capabilities("code_generation"), feature) == []

    await feature.update_status("active")
    await feature.start_heartbeat(interval=HEARTBEAT_INTERVAL)
    back = await orchestrator.get_agent(feature.agent_id)
    assert back.status == "active"
    assert ours(await orchestrator.search_capabilities("code_generation"), feature) == [
        expected_match(feature, FEATURE_DEV_CAPABILITIES[0])
    ]
    active = await orchestrator.list_agents(status="active")
    assert find(active, feature.agent_id) is not None


# --------------------------------------------------------------------------
# Missed heartbeats: unhealthy, then offline; a heartbeat revives; delete
# --------------------------------------------------------------------------


async def test_missed_heartbeats_unhealthy_then_offline_then_revived_then_deleted(
    fleet: Fleet, http: httpx.AsyncClient
) -> None:
    feature, orchestrator = fleet.feature, fleet.orchestrator
    # A short TTL, set through /v1 (cost estimates as text there too).
    r = await http.post(
        f"{fleet.url}/v1/agents",
        json={
            "agent_id": feature.agent_id,
            "name": feature.agent_name,
            "endpoint": feature.base_url,
            "capabilities": [c.model_dump() for c in FEATURE_DEV_CAPABILITIES],
            "ttl_seconds": 2,
            "offline_after_seconds": 4,
        },
    )
    assert r.status_code in (200, 201), r.text
    # The agent registers again with its own client: the TTL set through /v1
    # stays, as the legacy registration does not carry one.
    await feature.register(FEATURE_DEV_CAPABILITIES)
    v1 = (await raw_json(http, f"{fleet.url}/v1/agents/{feature.agent_id}"))["agent"]
    assert (v1["ttl_seconds"], v1["offline_after_seconds"]) == (2, 4), v1
    assert [c["cost_estimate"] for c in v1["capabilities"]] == [
        c.cost_estimate for c in FEATURE_DEV_CAPABILITIES
    ]

    await feature.stop_heartbeat()
    seen: list[str] = []

    def status_is(wanted: str) -> Callable[[], Awaitable[dict[str, Any] | None]]:
        async def probe() -> dict[str, Any] | None:
            health = await orchestrator.check_health(feature.agent_id)
            seen.append(str(health.get("status")))
            return health if health.get("status") == wanted else None

        return probe

    unhealthy = await wait_until(status_is("unhealthy"), what="status unhealthy", timeout=15)
    assert unhealthy["is_healthy"] is False
    assert unhealthy["seconds_since_heartbeat"] >= 1.5
    offline = await wait_until(status_is("offline"), what="status offline", timeout=20)
    assert offline["is_healthy"] is False
    assert offline["seconds_since_heartbeat"] >= 3.5
    assert "offline" not in seen[: seen.index("unhealthy")], seen
    listed = find(await orchestrator.list_agents(status="offline"), feature.agent_id)
    assert listed is not None and listed.status == "offline"
    assert ours(await orchestrator.search_capabilities("code_generation"), feature) == []

    # One heartbeat on the legacy route makes it active again.
    ack = await feature.send_heartbeat()
    assert ack is not None and ack.status == "ok"

    async def revived() -> bool:
        health = await orchestrator.check_health(feature.agent_id)
        agent = await orchestrator.get_agent(feature.agent_id)
        return health["status"] == "healthy" and agent.status == "active"

    await wait_until(revived, what="active again after a heartbeat", timeout=10)
    assert ours(await orchestrator.search_capabilities("code_generation"), feature) != []

    # The Dev-Tools client cannot deregister; DELETE /agents/{id} does.
    r = await http.delete(f"{fleet.url}/agents/{feature.agent_id}")
    assert r.status_code == 200, r.text
    deleted = r.json()
    assert (deleted["status"], deleted["agent_id"]) == ("deleted", feature.agent_id), deleted
    with pytest.raises(httpx.HTTPStatusError) as gone:
        await orchestrator.get_agent(feature.agent_id)
    assert gone.value.response.status_code == 404
    with pytest.raises(httpx.HTTPStatusError) as no_health:
        await orchestrator.check_health(feature.agent_id)
    assert no_health.value.response.status_code == 404
    assert find(await orchestrator.list_agents(), feature.agent_id) is None


# --------------------------------------------------------------------------
# Bad input on POST /register: a JSON error naming the field; nothing changes
# --------------------------------------------------------------------------


def good_body(agent_id: str) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "agent_name": "Feature Development Agent",
        "base_url": "http://feature-dev:8002",
        "capabilities": [c.model_dump() for c in FEATURE_DEV_CAPABILITIES],
        "status": "active",
        "metadata": {},
    }


def cost_as_object(body: dict[str, Any]) -> None:
    body["capabilities"][0]["cost_estimate"] = {"min": 50, "max": 200, "unit": "tokens"}


def cost_too_long(body: dict[str, Any]) -> None:
    body["capabilities"][0]["cost_estimate"] = "x" * 300


def name_as_number(body: dict[str, Any]) -> None:
    body["agent_name"] = 42


def tags_as_string(body: dict[str, Any]) -> None:
    body["capabilities"][1]["tags"] = "coding"


BAD_INPUTS = [
    pytest.param(cost_as_object, "capabilities[0].cost_estimate", id="cost-object"),
    pytest.param(cost_too_long, "capabilities[0].cost_estimate", id="cost-300-bytes"),
    pytest.param(name_as_number, "agent_name", id="agent-name-number"),
    pytest.param(tags_as_string, "capabilities[1].tags", id="tags-string"),
]


def check_error(r: httpx.Response, field: str) -> None:
    assert r.status_code == 400, (r.status_code, r.text)
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"], error
    assert isinstance(error.get("message"), str) and error["message"], error
    assert error.get("field") == field, error


@pytest.mark.parametrize(("spoil", "field"), BAD_INPUTS)
async def test_bad_registration_names_the_field_and_changes_nothing(
    registry_url: str, via: str, http: httpx.AsyncClient, spoil: Any, field: str
) -> None:
    # A new agent: refused, not created.
    agent_id = new_id("bad-input", via)
    body = good_body(agent_id)
    spoil(body)
    check_error(await http.post(f"{registry_url}/register", json=body), field)
    assert (await http.get(f"{registry_url}/agents/{agent_id}")).status_code == 404
    assert (await http.get(f"{registry_url}/v1/agents/{agent_id}")).status_code == 404

    # An existing agent: refused, unchanged.
    agent_id = new_id("bad-update", via)
    r = await http.post(f"{registry_url}/register", json=good_body(agent_id))
    assert r.status_code in (200, 201), r.text
    try:
        before = await raw_json(http, f"{registry_url}/agents/{agent_id}")
        body = good_body(agent_id)
        spoil(body)
        check_error(await http.post(f"{registry_url}/register", json=body), field)
        after = await raw_json(http, f"{registry_url}/agents/{agent_id}")
        assert after == before
    finally:
        await http.delete(f"{registry_url}/agents/{agent_id}")
