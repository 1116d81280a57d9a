"""Every route through AsyncRegistryClient against the real cluster: what it
answers, and the typed errors for what it refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent_registry import (
    AgentRegistration,
    AgentStatus,
    AsyncRegistryClient,
    CapabilityInput,
    Conflict,
    EventKind,
    HeartbeatReport,
    InvalidArgument,
    NotFound,
    SelectStrategy,
    SortBy,
)

from helpers import new_id


@pytest.fixture
async def client(nodes: list[str]) -> AsyncIterator[AsyncRegistryClient]:
    async with AsyncRegistryClient(nodes) as c:
        yield c


def agent(agent_id: str, *caps: str, **extra: object) -> AgentRegistration:
    return AgentRegistration.model_validate(
        {
            "agent_id": agent_id,
            "name": f"Agent {agent_id}",
            "endpoint": f"http://10.0.0.1:7000/{agent_id}",
            "capabilities": list(caps),
            **extra,
        }
    )


async def test_register_get_update_and_deregister(client: AsyncRegistryClient) -> None:
    aid = new_id("crud")
    created = await client.register(
        agent(
            aid,
            runtime_id="rt-crud",
            capabilities=[
                CapabilityInput(
                    name="Python code generation",
                    tags=["python"],
                    cost_estimate="50-200 tokens per function",
                    parameters={"language": "str"},
                )
            ],
            tags=["prod"],
            metadata={"region": "eu"},
        )
    )
    assert created.created and created.agent_id == aid
    record = await client.get(aid)
    assert record.capabilities[0].cost_estimate == "50-200 tokens per function"
    assert record.capabilities[0].parameters == {"language": "str"}
    assert (record.status, record.metadata, record.tags) == (
        AgentStatus.ACTIVE,
        {"region": "eu"},
        ["prod"],
    )

    # --- conditional registration
    with pytest.raises(Conflict) as exists:
        await client.register(agent(aid), if_absent=True)
    assert exists.value.code == "already_exists"
    with pytest.raises(Conflict) as mismatch:
        await client.register(agent(aid), expected_revision=record.revision + 100)
    assert mismatch.value.code == "revision_mismatch"
    replaced = await client.register(agent(aid, "trading"), expected_revision=record.revision)
    assert not replaced.created and [c.name for c in replaced.agent.capabilities] == ["trading"]

    # --- status, health and the health probe
    busy = await client.set_status(aid, AgentStatus.BUSY)
    assert busy.status is AgentStatus.BUSY
    healthier = await client.set_health(aid, health_score=0.9, load_factor=0.4, metrics={"q": 3})
    assert (healthier.health_score, healthier.load_factor) == (0.9, 0.4)
    assert healthier.performance_metrics["q"] == 3.0
    health = await client.health(aid)
    assert (
        health.status == "healthy" and health.is_healthy and health.agent_status is AgentStatus.BUSY
    )

    # --- deregister, then everything about it is NotFound
    gone = await client.deregister(aid)
    assert gone.success and gone.agent_id == aid
    with pytest.raises(NotFound) as nf:
        await client.get(aid)
    assert nf.value.code == "agent_not_found" and nf.value.status == 404
    with pytest.raises(NotFound):
        await client.deregister(aid)


async def test_heartbeats_single_and_batched(client: AsyncRegistryClient) -> None:
    a, b = new_id("hb"), new_id("hb")
    await client.register(agent(a, ttl_seconds=6))
    await client.register(agent(b))
    beat = await client.heartbeat(a, HeartbeatReport(status=AgentStatus.BUSY, load_factor=0.7))
    assert beat.agent_id == a and beat.status is AgentStatus.BUSY and beat.ttl_seconds == 6
    # A third of the TTL, jittered by the server by at most 10 %.
    assert 1800 <= beat.next_heartbeat_ms <= 2200
    ghost = new_id("ghost")
    batch = await client.heartbeats(
        [
            (a, None),
            (b, HeartbeatReport(status=AgentStatus.DEGRADED)),
            (ghost, None),
            (b, HeartbeatReport.model_validate({"status": "offline"})),
        ]
    )
    assert (batch.accepted, batch.rejected) == (2, 2)
    assert [r.ok for r in batch.results] == [True, True, False, False]
    assert batch.results[2].error is not None and batch.results[2].error.code == "agent_not_found"
    assert batch.results[3].error is not None and batch.results[3].error.field == "status"
    with pytest.raises(NotFound):
        await client.heartbeat(ghost)


async def test_list_pages_through_every_agent(client: AsyncRegistryClient) -> None:
    runtime = new_id("rt-list")
    ids = sorted(new_id("list") for _ in range(7))
    for aid in ids:
        await client.register(agent(aid, runtime_id=runtime))
    listed = [a.agent_id async for a in client.list_agents(runtime_id=runtime, page_size=2)]
    assert listed == ids
    page = await client.list_agents_page(runtime_id=runtime, limit=3)
    assert len(page.agents) == 3 and page.next_cursor
    rt = await client.runtime(runtime)
    assert rt.runtime.agents == 7 and sorted(a.agent_id for a in rt.agents) == ids
    runtimes = await client.runtimes(page_size=1)
    assert any(r.runtime_id == runtime and r.agents == 7 for r in runtimes)


async def test_discovery_search_select_capabilities(client: AsyncRegistryClient) -> None:
    cap = new_id("risk")
    low, high = new_id("disc-low"), new_id("disc-high")
    await client.register(agent(low, cap, tags=["crypto"], agent_type="llm", load_factor=0.1))
    await client.register(agent(high, cap, tags=["crypto"], agent_type="llm", load_factor=0.6))

    found = await client.discover(
        capabilities=[cap],
        tags=["crypto"],
        agent_type="llm",
        status=[AgentStatus.ACTIVE],
        min_health_score=0.5,
        max_load_factor=0.8,
        sort_by=SortBy.LOAD,
        limit=5,
        explain=True,
    )
    assert [h.agent.agent_id for h in found.agents] == [low, high]
    assert found.sort_by is SortBy.LOAD and found.filters is not None
    assert found.filters.qualified == 2
    explanation = found.agents[0].explanation
    assert explanation is not None and explanation.matched_capabilities == [cap]
    lightly = await client.discover(any_capabilities=[cap, "nothing"], max_load_factor=0.5)
    assert [h.agent.agent_id for h in lightly.agents] == [low]
    by_text = await client.discover(text=cap, runtime_id="")
    assert {h.agent.agent_id for h in by_text.agents} >= {low, high}

    chosen = await client.select(cap, strategy=SelectStrategy.LEAST_LOADED)
    assert chosen is not None and chosen.agent_id == low
    assert await client.select(cap, max_load_factor=0.05) is None

    search = await client.search(cap, limit=10)
    assert {m.agent_id for m in search.matches} == {low, high}
    assert all(m.match_kind == "exact" for m in search.matches)

    caps = await client.capabilities(page_size=50)
    summary = next(c for c in caps if c.name == cap)
    assert summary.agents == 2 and summary.by_status[AgentStatus.ACTIVE] == 2


async def test_stats_cluster_and_node_probes(client: AsyncRegistryClient, nodes: list[str]) -> None:
    stats = await client.stats()
    assert stats.total_agents == stats.registered_agents >= 0
    info = await client.cluster()
    assert info.leader_id is not None and len(info.members) == 3
    assert (await client.node_live()).status == "live"
    assert (await client.node_ready()).status == "ready"


async def test_scaling_policies_and_advisories(client: AsyncRegistryClient) -> None:
    cap = new_id("scale")
    await client.register(agent(new_id("scale-a"), cap, load_factor=0.95))
    policy = await client.put_scaling_policy(
        cap, min_agents=1, max_agents=5, high_load=0.8, low_load=0.1
    )
    assert (policy.capability, policy.max_agents, policy.low_load) == (cap, 5, 0.1)
    assert (await client.scaling_policy(cap)).revision == policy.revision
    assert any(p.capability == cap for p in (await client.scaling_policies()).policies)
    advisories = await client.scaling_advisories(cap)
    assert [a.action for a in advisories.advisories] == ["scale_up"]
    assert advisories.advisories[0].figures.desired_agents > 1
    remaining = await client.delete_scaling_policy(cap)
    assert all(p.capability != cap for p in remaining.policies)
    with pytest.raises(NotFound) as nf:
        await client.scaling_policy(cap)
    assert nf.value.code == "policy_not_found"
    with pytest.raises(InvalidArgument) as bad:
        await client.put_scaling_policy(cap, high_load=0.2, low_load=0.5)
    assert bad.value.field == "low_load"


async def test_events_long_poll(client: AsyncRegistryClient) -> None:
    aid = new_id("ev")
    first = await client.register(agent(aid))
    await client.set_status(aid, AgentStatus.BUSY)
    batch = await client.events(from_revision=first.revision, agent_id=aid, wait=1.0)
    assert [(e.type, e.agent_id) for e in batch.events] == [
        (EventKind.AGENT_REGISTERED, aid),
        (EventKind.AGENT_STATUS_CHANGED, aid),
    ]
    assert batch.events[1].previous_status is AgentStatus.ACTIVE
    assert batch.events[0].actor is not None and batch.events[0].actor.name == "anonymous"
    only = await client.events(
        from_revision=first.revision, types=[EventKind.AGENT_STATUS_CHANGED], agent_id=aid
    )
    assert [e.revision for e in only.events] == [batch.events[1].revision]


@pytest.mark.parametrize(
    ("registration", "field"),
    [
        ({"name": "", "endpoint": "http://x:1"}, "name"),
        ({"name": "n", "endpoint": "file:///etc/passwd"}, "endpoint"),
        ({"name": "n", "endpoint": "http://x:1", "ttl_seconds": 1}, "ttl_seconds"),
        (
            {
                "name": "n",
                "endpoint": "http://x:1",
                "capabilities": [{"name": "c", "cost_estimate": -1}],
            },
            "capabilities[0].cost_estimate",
        ),
        ({"name": "n", "endpoint": "http://x:1", "health_score": 1.5}, "health_score"),
    ],
)
async def test_bad_registrations_are_invalid_argument_naming_the_field(
    client: AsyncRegistryClient, registration: dict[str, object], field: str
) -> None:
    body = AgentRegistration.model_validate({"agent_id": new_id("bad"), **registration})
    with pytest.raises(InvalidArgument) as e:
        await client.register(body)
    assert e.value.field == field, str(e.value)
    assert e.value.code == "invalid_argument" and e.value.status == 400 and e.value.message
    with pytest.raises(NotFound):
        await client.get(body.agent_id or "")


async def test_other_bad_input_names_the_field(client: AsyncRegistryClient) -> None:
    aid = new_id("bad-hb")
    await client.register(agent(aid))
    with pytest.raises(InvalidArgument) as status:
        await client.heartbeat(aid, HeartbeatReport(status=AgentStatus.SUSPENDED))
    assert status.value.field == "status"
    with pytest.raises(InvalidArgument) as limit:
        await client.list_agents_page(limit=0)
    assert limit.value.field == "limit"
    with pytest.raises(InvalidArgument) as query:
        await client.discover()
    assert query.value.field == "query"
    with pytest.raises(InvalidArgument) as sort:
        await client.discover(capabilities=["x"], sort_by="cheapest")
    assert sort.value.field == "sort_by"
    with pytest.raises(InvalidArgument) as ident:
        await client.get("bad id")
    assert ident.value.status == 400
