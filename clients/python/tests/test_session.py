"""AgentSession: beats at the server's pace, reports load, registers again
after a 404, keeps its agent active through a kill -9 of the leader,
deregisters on exit, and leaves the agent to expire when cancelled."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent_registry import (
    AgentRegistration,
    AgentSession,
    AgentStatus,
    AsyncRegistryClient,
    EventKind,
    HeartbeatReport,
    NotFound,
)

from conftest import Cluster
from helpers import new_id, wait_until

log = logging.getLogger(__name__)

# Short enough that a silent agent is noticed within a test, long enough
# (>= 2 x the election timeout) that a leader change must not cost it.
TTL = 3


def registration(agent_id: str) -> AgentRegistration:
    return AgentRegistration(
        agent_id=agent_id,
        name="Session agent",
        endpoint="http://10.0.0.4:7000",
        capabilities=["sessions"],
        ttl_seconds=TTL,
        offline_after_seconds=TTL * 2,
    )


async def test_session_beats_reports_and_deregisters_on_exit(nodes: list[str]) -> None:
    aid = new_id("session")
    load = {"value": 0.25}

    def report() -> HeartbeatReport:
        return HeartbeatReport(load_factor=load["value"], metrics={"queue": 2})

    async with AsyncRegistryClient(nodes) as client:
        async with AgentSession(client, registration(aid), reporter=report) as session:
            await wait_until(
                lambda: asyncio.sleep(0, session.stats.beats >= 2),
                what="two beats",
                timeout=TTL * 3,
            )
            last = session.stats.last_beat
            assert last is not None and last.ttl_seconds == TTL
            # The server's pace: a third of the TTL, jittered.
            assert 900 <= last.next_heartbeat_ms <= 1100
            assert session.ready

            async def reported() -> bool:
                record = await client.get(aid)
                return record.load_factor == 0.25 and record.performance_metrics.get("queue") == 2

            await wait_until(reported, what="the reported load", timeout=TTL * 3)
        assert not session.running
        async with AsyncRegistryClient(nodes) as check:
            with pytest.raises(NotFound):
                await check.get(aid)


async def test_session_registers_again_after_a_404(nodes: list[str]) -> None:
    aid = new_id("session-404")
    async with AsyncRegistryClient(nodes) as client:
        session = AgentSession(client, registration(aid))
        await session.start()
        try:
            log.info("--- the registry forgets the agent (an operator removes it)")
            await client.deregister(aid)

            async def back() -> bool:
                return (
                    session.stats.reregistrations >= 1 and (await client.get(aid)).agent_id == aid
                )

            await wait_until(back, what="the session to register again", timeout=TTL * 3)
        finally:
            await session.stop()


async def test_cancelling_the_agent_task_is_a_crash_not_a_goodbye(nodes: list[str]) -> None:
    aid = new_id("session-crash")
    started = asyncio.Event()
    async with AsyncRegistryClient(nodes) as client:

        async def agent_main() -> None:
            async with AgentSession(client, registration(aid)):
                started.set()
                await asyncio.Event().wait()  # serve forever

        task = asyncio.create_task(agent_main())
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

        log.info("--- no deregistration: the agent is left to expire")
        assert (await client.get(aid)).agent_id == aid

        async def unhealthy() -> bool:
            return (await client.get(aid)).status is AgentStatus.UNHEALTHY

        await wait_until(unhealthy, what="the silent agent to turn unhealthy", timeout=TTL * 4)


async def test_session_keeps_its_agent_active_through_a_kill_of_the_leader(
    restore: Cluster,
) -> None:
    cluster = restore
    aid = new_id("session-failover")
    leader = cluster.leader()
    # The leader first: the session's calls meet the dead node first.
    nodes = [leader.url] + [n.url for n in cluster.nodes if n is not leader]
    async with AsyncRegistryClient(nodes) as client:
        session = AgentSession(client, registration(aid))
        start = (await session.start()).revision
        try:
            await wait_until(
                lambda: asyncio.sleep(0, session.stats.beats >= 1),
                what="the first beat",
                timeout=TTL * 3,
            )
            log.info("--- kill -9 the leader")
            cluster.kill(leader)
            beats = session.stats.beats

            log.info("--- the session goes on beating through the new leader")
            await wait_until(
                lambda: asyncio.sleep(0, session.stats.beats >= beats + 3),
                what="three beats after the kill",
                timeout=TTL * 6,
            )
            record = await client.get(aid)
            assert record.status is AgentStatus.ACTIVE
        finally:
            await session.stop()

        log.info("--- the agent never left active: no status change in the events")
        changes = await client.events(
            from_revision=start + 1, agent_id=aid, types=[EventKind.AGENT_STATUS_CHANGED]
        )
        assert changes.events == [], [(e.status, e.cause) for e in changes.events]
