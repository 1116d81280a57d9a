"""Fail-over: every call across a kill -9 of the leader, and the rules for
what may be sent again (a node that breaks the connection after reading a
request, one that answers 503 or 504).

The faulty nodes are tiny TCP servers placed before a real node in the
client's list: they stand for a node that died mid-request or one without
a leader; the registry behind them is the real cluster.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from agent_registry import (
    AgentRegistration,
    AgentStatus,
    AsyncRegistryClient,
    HeartbeatReport,
    NotFound,
    OutcomeUnknown,
    RegistryClient,
    Unavailable,
)

from conftest import Cluster
from helpers import new_id

log = logging.getLogger(__name__)


def registration(agent_id: str, cap: str) -> AgentRegistration:
    return AgentRegistration(
        agent_id=agent_id,
        name=agent_id,
        endpoint="http://10.0.0.2:7000",
        capabilities=[cap],
        runtime_id=f"rt-{cap}",
    )


async def test_every_call_fails_over_across_a_kill_of_the_leader(restore: Cluster) -> None:
    cluster = restore
    cap = new_id("failover")
    existing = new_id("fo-existing")
    async with AsyncRegistryClient(cluster.urls) as setup:
        await setup.register(registration(existing, cap))

    log.info("--- kill -9 the leader")
    leader = cluster.leader()
    cluster.kill(leader)
    followers = [n for n in cluster.nodes if n is not leader]

    log.info("--- every call through a client that tries the dead leader first")
    nodes = [leader.url] + [n.url for n in followers]
    fresh = new_id("fo-fresh")
    async with AsyncRegistryClient(nodes) as c:
        made = await c.register(registration(fresh, cap))
        assert made.created
        assert (await c.get(existing)).agent_id == existing
        listed = [a.agent_id async for a in c.list_agents(capability=cap, page_size=1)]
        assert sorted(listed) == sorted([existing, fresh])
        assert (await c.heartbeat(fresh, HeartbeatReport(load_factor=0.2))).agent_id == fresh
        assert (await c.heartbeats([(existing, None), (fresh, None)])).accepted == 2
        assert (await c.set_status(existing, AgentStatus.BUSY)).status is AgentStatus.BUSY
        assert (await c.set_health(existing, health_score=0.9)).health_score == 0.9
        assert (await c.health(fresh)).is_healthy
        assert {m.agent_id for m in (await c.search(cap)).matches} == {existing, fresh}
        assert [h.agent.agent_id for h in (await c.discover(capabilities=[cap])).agents] == [fresh]
        selected = await c.select(cap)
        assert selected is not None and selected.agent_id == fresh
        assert any(s.name == cap for s in await c.capabilities())
        assert any(r.runtime_id == f"rt-{cap}" for r in await c.runtimes())
        assert (await c.runtime(f"rt-{cap}")).runtime.agents == 2
        assert (await c.stats()).total_agents >= 2
        info = await c.cluster()
        assert info.leader_id is not None and info.leader_id != leader.node_id
        assert (await c.put_scaling_policy(cap, max_agents=3)).max_agents == 3
        assert (await c.scaling_policy(cap)).capability == cap
        assert any(p.capability == cap for p in (await c.scaling_policies()).policies)
        await c.scaling_advisories(cap)
        await c.delete_scaling_policy(cap)
        # From its registration on: earlier events may have left the window.
        batch = await c.events(from_revision=made.revision, agent_id=fresh)
        assert batch.events and batch.events[0].agent_id == fresh
        assert (await c.deregister(fresh)).success
        with pytest.raises(NotFound):
            await c.get(fresh)

    log.info("--- the blocking client too")
    with RegistryClient(nodes) as sync:
        sync_id = new_id("fo-sync")
        assert sync.register(registration(sync_id, cap)).created
        assert sync.get(sync_id).agent_id == sync_id
        assert sync_id in [a.agent_id for a in sync.list_agents(capability=cap)]
        assert sync.heartbeat(sync_id).agent_id == sync_id
        assert sync.deregister(sync_id).success


# -- faulty nodes ---------------------------------------------------------------


class _Handler(socketserver.BaseRequestHandler):
    """Reads one request, then does what the server's ``behaviour`` says."""

    def handle(self) -> None:
        server = self.server
        assert isinstance(server, FaultyNode)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = self.request.recv(65536)
            if not chunk:
                break
            body += chunk
        server.requests.append(head.split(b"\r\n")[0].decode())
        if server.answer is None:
            # Read the whole request, then die without a word.
            self.request.shutdown(socket.SHUT_RDWR)
            return
        self.request.sendall(server.answer)


class FaultyNode(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: bytes | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        #: The raw HTTP answer to every request; None: close the connection.
        self.answer = answer
        #: Request lines received.
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def error_answer(status: str, code: str, retry_after: int | None = None) -> bytes:
    body = json.dumps(
        {"error": {"code": code, "message": "injected by the test", "retryable": True}}
    ).encode()
    extra = f"retry-after: {retry_after}\r\n" if retry_after is not None else ""
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


@pytest.fixture
def faulty() -> Iterator[list[FaultyNode]]:
    started: list[FaultyNode] = []
    yield started
    for s in started:
        s.shutdown()
        s.server_close()


def start(faulty: list[FaultyNode], answer: bytes | None) -> FaultyNode:
    node = FaultyNode(answer)
    threading.Thread(target=node.serve_forever, daemon=True).start()
    faulty.append(node)
    return node


async def test_a_write_whose_connection_broke_is_not_sent_again(
    faulty: list[FaultyNode], nodes: list[str]
) -> None:
    dying = start(faulty, None)
    aid = new_id("unknown")
    async with AsyncRegistryClient([dying.url, *nodes]) as c:
        with pytest.raises(OutcomeUnknown) as e:
            await c.register(registration(aid, "x"))
        assert e.value.node == dying.url
        # Never sent on to a real node: it does not exist there.
        async with AsyncRegistryClient(nodes) as direct:
            with pytest.raises(NotFound):
                await direct.get(aid)
        # A read, and a heartbeat (idempotent), move on to the next node.
        await direct_register(nodes, aid)
        assert (await c.get(aid)).agent_id == aid
        assert (await c.heartbeat(aid)).agent_id == aid
    # The register, and the read that then moved on; from there the client
    # starts at the node that answered.
    assert [r.split()[0] for r in dying.requests] == ["POST", "GET"], dying.requests


async def direct_register(nodes: list[str], aid: str) -> None:
    async with AsyncRegistryClient(nodes) as direct:
        await direct.register(registration(aid, "x"))


async def test_503_moves_on_after_retry_after_and_504_is_outcome_unknown(
    faulty: list[FaultyNode], nodes: list[str]
) -> None:
    no_leader = start(faulty, error_answer("503 Service Unavailable", "no_leader", retry_after=1))
    aid = new_id("after-503")
    async with AsyncRegistryClient([no_leader.url, *nodes]) as c:
        # 503 promises nothing was applied: even a write goes to the next node.
        assert (await c.register(registration(aid, "x"))).created

    timeout = start(faulty, error_answer("504 Gateway Timeout", "timeout"))
    async with AsyncRegistryClient([timeout.url, *nodes]) as c:
        with pytest.raises(OutcomeUnknown) as e:
            await c.deregister(aid)
        assert (e.value.code, e.value.status) == ("timeout", 504)
        assert (await c.get(aid)).agent_id == aid  # a read is sent on

    log.info("--- nothing but 503s: Unavailable once the retry budget is spent")
    async with AsyncRegistryClient([no_leader.url], retry_budget=1.5) as c:
        with pytest.raises(Unavailable) as gave_up:
            await c.get(aid)
        assert gave_up.value.code == "no_leader"
