"""A2A Agent Cards through the SDK against the real cluster, with the real
``a2a-sdk`` package (1.x): cards built with its types are registered and
read back equal, its own card resolver reads the registry's card, and
discovery by skill, media type and binding finds the right agents among
many, through a follower."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)

from agent_registry import (
    AgentRegistration,
    AgentStatus,
    AsyncRegistryClient,
    InvalidArgument,
    NotFound,
    RegistryClient,
    ServedCard,
    card_from_json,
    card_to_json,
)

from conftest import CLUSTER_FLAGS, Cluster, make_cluster
from helpers import new_id, wait_until

log = logging.getLogger(__name__)

# Agents of the discovery test: enough that a scan would show, few enough
# to register in seconds.
FLEET = 300
# Concurrent registrations while the fleet is built.
PARALLEL = 16


@pytest.fixture
async def client(nodes: list[str]) -> AsyncIterator[AsyncRegistryClient]:
    async with AsyncRegistryClient(nodes) as c:
        yield c


@pytest.fixture
async def via_follower(cluster: Cluster) -> AsyncIterator[AsyncRegistryClient]:
    """A client that knows one follower only: every call goes through it."""
    async with AsyncRegistryClient([cluster.followers()[0].url]) as c:
        yield c


def skill(
    skill_id: str,
    *,
    tags: Sequence[str] = (),
    input_modes: Sequence[str] = (),
    output_modes: Sequence[str] = (),
    examples: Sequence[str] = (),
) -> AgentSkill:
    return AgentSkill(
        id=skill_id,
        name=skill_id.replace("-", " ").capitalize(),
        description=f"Does {skill_id}",
        tags=list(tags),
        examples=list(examples),
        input_modes=list(input_modes),
        output_modes=list(output_modes),
    )


def a2a_card(
    name: str,
    skills: Sequence[AgentSkill],
    *,
    url: str = "https://agents.example.com/a2a",
    binding: str = "JSONRPC",
    input_modes: Sequence[str] = ("text/plain",),
    output_modes: Sequence[str] = ("text/plain",),
    version: str = "1.0.0",
) -> AgentCard:
    """An A2A 1.0 card built with the SDK's types."""
    return AgentCard(
        name=name,
        description=f"{name}, built with a2a-sdk",
        version=version,
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding=binding, protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=list(input_modes),
        default_output_modes=list(output_modes),
        skills=list(skills),
    )


def full_card(name: str) -> AgentCard:
    """A card using most of what A2A 1.0 defines: two interfaces (one with
    a tenant), a provider, extensions, security, icons, per-skill media
    types, and a skill with neither tags nor examples."""
    return AgentCard(
        name=name,
        description="Translates and summarizes documents",
        version="2.3.1",
        supported_interfaces=[
            AgentInterface(
                url="https://docs.example.com/a2a/jsonrpc",
                protocol_binding="JSONRPC",
                protocol_version="1.0",
            ),
            AgentInterface(
                url="https://docs.example.com/a2a/rest",
                protocol_binding="HTTP+JSON",
                protocol_version="1.0",
                tenant="team-a",
            ),
        ],
        provider=AgentProvider(organization="Example Docs", url="https://example.com"),
        documentation_url="https://docs.example.com/help",
        icon_url="https://docs.example.com/icon.png",
        capabilities=AgentCapabilities(
            streaming=True,
            push_notifications=False,
            extensions=[AgentExtension(uri="https://example.com/ext/trace", required=False)],
        ),
        security_schemes={
            "bearer": SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(scheme="Bearer")
            )
        },
        security_requirements=[SecurityRequirement(schemes={"bearer": StringList(list=[])})],
        default_input_modes=["text/plain", "application/pdf"],
        default_output_modes=["text/plain"],
        skills=[
            skill(
                "translate",
                tags=["language", "translation"],
                examples=["translate this contract to German"],
            ),
            skill(
                "summarize-pdf",
                tags=["summary"],
                input_modes=["application/pdf"],
                output_modes=["text/markdown"],
            ),
            # proto3 JSON leaves out the empty tags; the SDK sends them.
            skill("ping"),
        ],
    )


async def bounded(jobs: Sequence[Callable[[], Awaitable[object]]], parallel: int) -> None:
    """Runs the jobs, at most ``parallel`` at a time."""
    gate = asyncio.Semaphore(parallel)

    async def one(job: Callable[[], Awaitable[object]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(one(j) for j in jobs))


# -- (a) cards built with a2a-sdk types ----------------------------------------


async def test_an_a2a_sdk_card_is_registered_and_served_back_equal(
    cluster: Cluster, via_follower: AsyncRegistryClient
) -> None:
    aid = new_id("a2a")
    card = full_card("Doc Agent")

    log.info("--- register with the AgentCard object, through a follower")
    created = await via_follower.register(
        AgentRegistration(agent_id=aid, runtime_id="rt-a2a", tags=["a2a-test"]),
        agent_card=card,
    )
    record = created.agent
    assert created.created and record.agent_id == aid
    # What the registry mapped from the card.
    assert (record.name, record.endpoint, record.version, record.description) == (
        "Doc Agent",
        "https://docs.example.com/a2a/jsonrpc",
        "2.3.1",
        "Translates and summarizes documents",
    )
    assert [c.name for c in record.capabilities] == ["Translate", "Summarize pdf", "Ping"]
    assert record.capabilities[0].tags == ["language", "translation"]
    assert (record.runtime_id, record.tags) == ("rt-a2a", ["a2a-test"])

    log.info("--- every node serves it with the same ETag, and it parses back equal")
    etags: set[str | None] = set()
    for node in cluster.nodes:
        async with AsyncRegistryClient([node.url]) as one:
            served = await one.get_agent_card(aid, min_revision=created.revision)
        assert served.card is not None and not served.not_modified
        assert served.agent_status is AgentStatus.ACTIVE
        assert served.as_a2a() == card
        assert served.card == card_to_json(card)
        etags.add(served.etag)
    (etag,) = etags
    assert etag is not None and etag.startswith('"')

    log.info("--- the plain JSON form registers the same card (same ETag)")
    again = await via_follower.register(
        AgentRegistration(agent_id=aid, runtime_id="rt-a2a", agent_card=card_to_json(card))
    )
    assert not again.created
    assert (await via_follower.get_agent_card(aid)).etag == etag
    # A registration model takes the object too (converted as it is made).
    model = AgentRegistration.model_validate({"agent_id": aid, "agent_card": card})
    assert model.agent_card == card_to_json(card)


async def test_a_card_alone_registers_an_agent(client: AsyncRegistryClient) -> None:
    card = a2a_card("Solo", [skill("solo-skill", tags=["solo"])], url="http://10.9.0.1:9000/a2a")
    created = await client.register(agent_card=card)
    try:
        assert created.agent.name == "Solo"
        assert created.agent.endpoint == "http://10.9.0.1:9000/a2a"
        served = await client.get_agent_card(created.agent_id)
        assert served.as_a2a() == card
    finally:
        await client.deregister(created.agent_id)
    with pytest.raises(ValueError, match="registration, an agent card"):
        await client.register()


async def test_a_card_of_a2a_0_3_is_accepted_and_served_as_given(
    client: AsyncRegistryClient,
) -> None:
    aid = new_id("a2a03")
    card: dict[str, Any] = {
        "name": "Legacy Agent",
        "description": "An agent of the A2A 0.3 era",
        "version": "0.9.0",
        "url": "https://legacy.example.com/rpc",
        "preferredTransport": "JSONRPC",
        "protocolVersion": "0.3.0",
        "additionalInterfaces": [
            {"url": "https://legacy.example.com/rest", "transport": "HTTP+JSON"}
        ],
        "capabilities": {"streaming": False},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["application/json"],
        "skills": [
            {"id": "legacy-lookup", "name": "Lookup", "description": "Looks up", "tags": ["old"]}
        ],
    }
    created = await client.register(AgentRegistration(agent_id=aid), agent_card=card)
    assert created.agent.endpoint == "https://legacy.example.com/rpc"
    served = await client.get_agent_card(aid)
    # Verbatim: the registry reads 0.3 as 1.0 but does not rewrite the card.
    assert served.card == card
    # a2a-sdk reads it into its 1.0 message.
    parsed = served.as_a2a()
    assert [(i.url, i.protocol_binding) for i in parsed.supported_interfaces] == [
        ("https://legacy.example.com/rpc", "JSONRPC"),
        ("https://legacy.example.com/rest", "HTTP+JSON"),
    ]
    found = await client.discover(skills=["legacy-lookup"], bindings=["http+json"])
    assert [h.agent.agent_id for h in found.agents] == [aid]
    # A hit names the card by its ETag; the card itself only when asked for.
    assert found.agents[0].card_etag == served.etag
    assert found.agents[0].agent.agent_card is None
    with_card = await client.discover(skills=["legacy-lookup"], include_card=True)
    assert with_card.agents[0].agent.agent_card == card
    assert with_card.agents[0].card_etag == served.etag


# -- (b) the SDK's resolver reads the registry's own card --------------------


async def test_the_a2a_card_resolver_reads_the_registrys_card_on_every_node(
    cluster: Cluster,
) -> None:
    async with httpx.AsyncClient(timeout=5.0) as http:
        for node in cluster.nodes:
            resolved = await A2ACardResolver(http, node.url).get_agent_card()
            assert [s.id for s in resolved.skills] == ["find-agent", "select-agent"]
            assert [(i.url, i.protocol_binding) for i in resolved.supported_interfaces] == [
                (node.url, "HTTP+JSON")
            ]
            async with AsyncRegistryClient([node.url]) as one:
                served = await one.registry_agent_card()
            assert served.as_a2a() == resolved
            assert served.etag and served.agent_status is None


# -- (c) discovery by what the cards say, among many -------------------------


def fleet_card(i: int, run: str) -> tuple[AgentCard, dict[str, object]]:
    """Agent ``i`` of the fleet and the facts a brute-force check reads.

    Every agent has the skill ``{run}-common`` (the card's default media
    types); one in 20 also ``{run}-summarize``, whose own input types are
    the wildcard ``text/*``, or ``image/png``, or none (the defaults). The
    default input type rotates over five; bindings alternate.
    """
    defaults = ["text/plain", "application/pdf", "image/png", "audio/wav", "application/json"]
    default_in = defaults[(i + i // 20) % len(defaults)]
    skills = [skill(f"{run}-common", tags=["fleet"])]
    if i % 20 == 0:
        own = [["text/*"], ["image/png"], []][(i // 20) % 3]
        skills.append(skill(f"{run}-summarize", input_modes=own))
    binding = "GRPC" if i % 2 else "JSONRPC"
    produces_json = i % 3 == 0
    card = a2a_card(
        f"Fleet {i}",
        skills,
        url=f"http://10.8.{i // 250}.{i % 250}:7000/a2a",
        binding=binding,
        input_modes=[default_in],
        output_modes=["application/json" if produces_json else "text/plain"],
    )
    # What the agent accepts: each skill's own types, else the defaults.
    accepts: set[str] = set()
    for s in skills:
        accepts.update(s.input_modes or [default_in])
    facts: dict[str, object] = {
        "summarize": i % 20 == 0,
        "accepts": accepts,
        "binding": binding,
        "produces_json": produces_json,
    }
    return card, facts


def takes_text(accepts: object) -> bool:
    """Whether media types ``accepts`` take some ``text/...`` type."""
    assert isinstance(accepts, set)
    return any(m.startswith("text/") for m in accepts)


@pytest.fixture(scope="module")
def fleet_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three nodes of their own for the fleet: its hundreds of writes would
    push the shared cluster's small event window past what other tests
    read."""
    c = make_cluster(tmp_path_factory.mktemp("fleet-cluster"), 3, CLUSTER_FLAGS)
    try:
        c.start()
        c.wait_ready()
        yield c
    finally:
        c.stop()


async def test_discover_by_skill_and_media_type_finds_the_right_agents_among_many(
    fleet_cluster: Cluster,
) -> None:
    leader = fleet_cluster.leader()
    async with (
        AsyncRegistryClient([n.url for n in fleet_cluster.nodes]) as client,
        AsyncRegistryClient([fleet_cluster.followers()[0].url]) as via_follower,
    ):
        assert via_follower.nodes[0] != leader.url
        await find_among_many(client, via_follower)


async def find_among_many(client: AsyncRegistryClient, via_follower: AsyncRegistryClient) -> None:
    run = new_id("fleet")
    ids = [f"{run}-{i:03d}" for i in range(FLEET)]
    facts: dict[str, dict[str, object]] = {}

    log.info("--- register %d agents with cards (%d at a time)", FLEET, PARALLEL)

    def register(i: int) -> Callable[[], Awaitable[object]]:
        card, f = fleet_card(i, run)
        facts[ids[i]] = f
        return lambda: client.register(
            AgentRegistration(agent_id=ids[i], tags=[run], ttl_seconds=600), agent_card=card
        )

    await bounded([register(i) for i in range(FLEET)], PARALLEL)
    last = (await client.get(ids[-1])).revision
    log.info("--- skills + input_modes with a wildcard, limit 10, through a follower")
    # Summarizers that take text: by their skill's own text/* or the
    # card's default text/plain (its common skill takes it).
    want = {a for a, f in facts.items() if f["summarize"] and takes_text(f["accepts"])}
    assert 0 < len(want) <= 10
    found = await via_follower.discover(
        skills=[f"{run}-summarize"],
        input_modes=["text/plain"],
        tags=[run],
        limit=10,
        min_revision=last,
    )
    assert {h.agent.agent_id for h in found.agents} == want

    asked_wild = await via_follower.discover(
        skills=[f"{run}-summarize"], input_modes=["text/*"], tags=[run], limit=10
    )
    assert {h.agent.agent_id for h in asked_wild.agents} == want

    log.info("--- more matches than the limit: 10 of them, all right")
    text_takers = {a for a, f in facts.items() if takes_text(f["accepts"])}
    assert len(text_takers) > 10
    page = await via_follower.discover(
        skills=[f"{run}-common"], input_modes=["text/*"], tags=[run], limit=10
    )
    got = {h.agent.agent_id for h in page.agents}
    assert len(got) == 10 and got <= text_takers

    log.info("--- output modes and bindings")
    json_grpc = {a for a, f in facts.items() if f["produces_json"] and f["binding"] == "GRPC"}
    out = await via_follower.discover(
        output_modes=["application/json"], bindings=["grpc"], tags=[run], limit=1000
    )
    assert {h.agent.agent_id for h in out.agents} == json_grpc

    log.info("--- the same question as a paged listing of cards")
    listed = [
        e
        async for e in via_follower.list_agent_cards(
            skill=f"{run}-summarize", input_mode="text/plain", tag=run, page_size=3
        )
    ]
    assert {e.agent_id for e in listed} == want
    for e in listed:
        assert e.status is AgentStatus.ACTIVE and e.etag.startswith('"')
        assert f"{run}-summarize" in [s.id for s in e.as_a2a().skills]


# -- (d) liveness, ETags, bad cards ------------------------------------------


async def test_a_card_is_served_only_while_the_agent_is_live(
    client: AsyncRegistryClient,
) -> None:
    aid = new_id("live")
    card = a2a_card("Live", [skill(f"{aid}-s")])
    await client.register(
        AgentRegistration(agent_id=aid, ttl_seconds=2, offline_after_seconds=3), agent_card=card
    )
    assert (await client.get_agent_card(aid)).agent_status is AgentStatus.ACTIVE

    log.info("--- suspended: 404 unless include_inactive; gone from the listing")
    await client.set_status(aid, AgentStatus.SUSPENDED)
    with pytest.raises(NotFound) as hidden:
        await client.get_agent_card(aid)
    assert hidden.value.code == "not_found"
    kept = await client.get_agent_card(aid, include_inactive=True)
    assert kept.agent_status is AgentStatus.SUSPENDED and kept.as_a2a() == card
    assert [e.agent_id async for e in client.list_agent_cards(skill=f"{aid}-s")] == []
    assert [
        e.agent_id async for e in client.list_agent_cards(skill=f"{aid}-s", status="suspended")
    ] == [aid]

    log.info("--- active again, then silent until offline: 404 again")
    await client.set_status(aid, AgentStatus.ACTIVE)
    etag = (await client.get_agent_card(aid)).etag

    async def offline() -> bool:
        try:
            await client.get_agent_card(aid)
        except NotFound:
            return True
        return False

    await wait_until(offline, what="the card of a silent agent to be withheld", timeout=30)
    assert (await client.get(aid)).status is AgentStatus.OFFLINE
    assert (await client.get_agent_card(aid, include_inactive=True)).etag == etag

    log.info("--- heartbeats bring it back (at the next checkpoint), same card")

    async def revived() -> ServedCard:
        await client.heartbeat(aid)
        return await client.get_agent_card(aid)

    back = await wait_until(revived, what="the card of a revived agent", timeout=30)
    assert back.etag == etag and back.agent_status is AgentStatus.ACTIVE
    await client.deregister(aid)
    with pytest.raises(NotFound) as gone:
        await client.get_agent_card(aid, include_inactive=True)
    assert gone.value.code == "agent_not_found"


async def test_etags_and_not_modified(client: AsyncRegistryClient) -> None:
    aid = new_id("etag")
    first = a2a_card("Etag", [skill(f"{aid}-s")], version="1.0.0")
    await client.register(AgentRegistration(agent_id=aid), agent_card=first)
    served = await client.get_agent_card(aid)
    assert served.etag is not None

    same = await client.get_agent_card(aid, if_none_match=served.etag)
    assert same.not_modified and same.card is None
    assert same.etag == served.etag and same.agent_status is AgentStatus.ACTIVE
    with pytest.raises(ValueError, match="304"):
        same.as_a2a()

    log.info("--- a new card: a new ETag, and the old one no longer matches")
    second = a2a_card("Etag", [skill(f"{aid}-s"), skill(f"{aid}-t")], version="1.1.0")
    record = await client.set_agent_card(aid, second)
    assert record.version == "1.1.0" and len(record.capabilities) == 2
    changed = await client.get_agent_card(aid, if_none_match=served.etag)
    assert not changed.not_modified and changed.etag != served.etag
    assert changed.as_a2a() == second

    reg = await client.registry_agent_card()
    assert reg.etag is not None
    await client.deregister(aid)


async def test_a_bad_card_is_refused_naming_its_json_path_and_changes_nothing(
    client: AsyncRegistryClient,
) -> None:
    aid = new_id("bad")
    good = card_to_json(a2a_card("Good", [skill("one"), skill("two")]))

    log.info("--- a registration with a bad card registers nothing")
    missing_id = copy.deepcopy(good)
    del missing_id["skills"][1]["id"]
    with pytest.raises(InvalidArgument) as refused:
        await client.register(AgentRegistration(agent_id=aid), agent_card=missing_id)
    assert refused.value.field == "agent_card.skills[1].id"
    assert "skills[1].id is required" in refused.value.message
    with pytest.raises(NotFound):
        await client.get(aid)

    log.info("--- a bad replacement leaves the card as it was")
    await client.register(AgentRegistration(agent_id=aid), agent_card=good)
    before = await client.get_agent_card(aid)
    relative = copy.deepcopy(good)
    relative["supportedInterfaces"][0]["url"] = "/a2a"
    with pytest.raises(InvalidArgument) as bad_url:
        await client.set_agent_card(aid, relative)
    assert bad_url.value.field == "supportedInterfaces[0].url"
    twice = copy.deepcopy(good)
    twice["skills"].append(copy.deepcopy(twice["skills"][0]))
    with pytest.raises(InvalidArgument) as repeated:
        await client.set_agent_card(aid, twice)
    assert repeated.value.field == "skills[2].id"
    assert "repeats skills[0].id" in repeated.value.message
    after = await client.get_agent_card(aid)
    assert (after.etag, after.card) == (before.etag, before.card)
    await client.deregister(aid)


def test_card_json_of_mappings_and_of_other_things() -> None:
    nested = {"skills": ({"id": "x", "tags": ("a",)},), "capabilities": {}}
    assert card_to_json(nested) == {"skills": [{"id": "x", "tags": ["a"]}], "capabilities": {}}
    with pytest.raises(TypeError, match="mapping or an a2a-sdk AgentCard"):
        card_to_json(42)  # type: ignore[arg-type]


def test_reading_a_card_with_a2a_sdk_missing_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes the import fail, as without the package.
    monkeypatch.setitem(sys.modules, "a2a.client.card_resolver", None)
    with pytest.raises(ImportError, match=r"agent-registry-client\[a2a\]"):
        card_from_json({"name": "x"})


# -- (e) the blocking client ---------------------------------------------------


def test_the_blocking_client_registers_and_reads_cards(nodes: list[str]) -> None:
    aid = new_id("sync-card")
    card = a2a_card("Sync", [skill(f"{aid}-s", tags=["sync"])], binding="HTTP+JSON")
    with RegistryClient(nodes) as c:
        created = c.register(AgentRegistration(agent_id=aid), agent_card=card)
        assert created.agent.name == "Sync"
        served = c.get_agent_card(aid)
        assert served.as_a2a() == card
        assert c.get_agent_card(aid, if_none_match=served.etag).not_modified
        assert [e.agent_id for e in c.list_agent_cards(skill=f"{aid}-s")] == [aid]
        hits = c.discover(skills=[f"{aid}-s"], bindings=["HTTP+JSON"])
        assert [h.agent.agent_id for h in hits.agents] == [aid]
        assert hits.agents[0].card_etag == served.etag
        hits = c.discover(skills=[f"{aid}-s"], include_card=True)
        assert hits.agents[0].agent.agent_card == served.card
        renamed = a2a_card("Sync 2", [skill(f"{aid}-s")], binding="HTTP+JSON")
        assert c.set_agent_card(aid, renamed).name == "Sync 2"
        assert [s.id for s in c.registry_agent_card().as_a2a().skills] == [
            "find-agent",
            "select-agent",
        ]
        c.deregister(aid)


# -- the README's example ------------------------------------------------------


def readme_example() -> str:
    """The Python block of the README's "A2A Agent Cards" section."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## A2A Agent Cards", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "no python block in the README's A2A Agent Cards section"
    return found.group(1)


def test_the_readme_example_runs(nodes: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["REGISTRY_NODES"] = ",".join(nodes)
    done = subprocess.run(
        [sys.executable, "-c", readme_example()],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith('"') and lines[0].endswith("AgentStatus.ACTIVE"), lines
    assert lines[1:3] == ["True", "['recipes-1']"], lines
    assert lines[3] == "recipes-1 AgentStatus.ACTIVE Recipe Agent", lines
    assert lines[4] == "['find-agent', 'select-agent']", lines
