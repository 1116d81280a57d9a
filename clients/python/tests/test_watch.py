"""watch() of both clients: resumes across a follower's death with no gap
and no duplicate, and raises Compacted once the events it needs fell out of
the window."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent_registry import (
    AgentRegistration,
    AsyncRegistryClient,
    Compacted,
    Event,
    RegistryClient,
)

from conftest import EVENT_WINDOW, Cluster
from helpers import new_id

log = logging.getLogger(__name__)


def registration(agent_id: str, cap: str) -> AgentRegistration:
    return AgentRegistration(
        agent_id=agent_id, name=agent_id, endpoint="http://10.0.0.3:7000", capabilities=[cap]
    )


async def test_watch_resumes_across_a_follower_kill_without_gap_or_duplicate(
    restore: Cluster,
) -> None:
    cluster = restore
    cap = new_id("watched")
    follower = cluster.followers()[0]
    others = [n.url for n in cluster.nodes if n is not follower]
    received: list[Event] = []
    got = asyncio.Event()
    wanted = 0

    async with (
        AsyncRegistryClient([follower.url, *others]) as watcher,
        AsyncRegistryClient(others) as writer,
    ):
        start = (await writer.stats()).revision

        async def consume() -> None:
            async for event in watcher.watch(after=start, capability=cap):
                received.append(event)
                if len(received) >= wanted:
                    got.set()

        task = asyncio.create_task(consume())
        try:
            log.info("--- five registrations through the follower's stream")
            wanted = 5
            for i in range(5):
                await writer.register(registration(f"{cap}-{i}", cap))
            await asyncio.wait_for(got.wait(), 30)

            log.info("--- kill -9 the follower serving the stream, write on")
            cluster.kill(follower)
            got.clear()
            wanted = 12
            for i in range(5, 12):
                await writer.register(registration(f"{cap}-{i}", cap))
            await asyncio.wait_for(got.wait(), 60)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        log.info("--- exactly the events the registry has, once each, in order")
        expected = await writer.events(from_revision=start + 1, capability=cap)
        assert [e.revision for e in received] == [e.revision for e in expected.events]
        assert [e.agent_id for e in received] == [f"{cap}-{i}" for i in range(12)]
        assert len({e.revision for e in received}) == 12


async def test_watch_raises_compacted_after_the_window_moved_on(nodes: list[str]) -> None:
    async with AsyncRegistryClient(nodes) as c:
        aid = new_id("compact")
        start = (await c.register(registration(aid, "c"))).revision
        log.info("--- %d more changes than the window keeps", EVENT_WINDOW)
        for _ in range(EVENT_WINDOW + 5):
            await c.register(registration(aid, "c"))
        current = (await c.stats()).revision

        async def drain() -> None:
            async for _ in c.watch(after=start - 1):
                pass

        with pytest.raises(Compacted) as e:
            await asyncio.wait_for(drain(), 30)
        assert e.value.requested == start
        assert e.value.current_revision >= current
        with pytest.raises(Compacted):
            await c.events(from_revision=start)
        log.info("--- resynchronize: list, then watch from the listing's revision")
        page = await c.list_agents_page(limit=1)
        await c.register(registration(aid, "c"))
        stream = c.watch(after=page.revision, agent_id=aid)
        event = await asyncio.wait_for(stream.__anext__(), 30)
        assert event.revision > page.revision


def test_the_blocking_watch_resumes_across_a_follower_kill(restore: Cluster) -> None:
    cluster = restore
    cap = new_id("watched-sync")
    follower = cluster.followers()[0]
    others = [n.url for n in cluster.nodes if n is not follower]
    with RegistryClient(others) as writer, RegistryClient([follower.url, *others]) as watcher:
        start = writer.stats().revision
        log.info("--- five registrations, read from the follower's stream")
        for i in range(5):
            writer.register(registration(f"{cap}-{i}", cap))
        # A short idle timeout and few failures bound how long next() may
        # block if the stream never delivered.
        stream = watcher.watch(after=start, capability=cap, idle_timeout=10, max_failures=6)
        try:
            received = [next(stream) for _ in range(5)]

            log.info("--- kill -9 the follower serving the stream, write on")
            cluster.kill(follower)
            for i in range(5, 12):
                writer.register(registration(f"{cap}-{i}", cap))
            received += [next(stream) for _ in range(7)]
        finally:
            stream.close()

        log.info("--- exactly the events the registry has, once each, in order")
        expected = writer.events(from_revision=start + 1, capability=cap)
    assert [e.revision for e in received] == [e.revision for e in expected.events]
    assert [e.agent_id for e in received] == [f"{cap}-{i}" for i in range(12)]
