"""Operating the cluster through the SDK (issue 18), on a 3-node cluster of
its own: the members, a fourth node added with ``--join`` and removed
again, the refusals (404 ``member_not_found``, 409
``membership_conflict``), leadership handed over, and backups saved,
checked against ``registryctl snapshot inspect``, refused when damaged, and
never left half-written.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_registry import (
    AgentRegistration,
    AsyncRegistryClient,
    Conflict,
    InvalidArgument,
    InvalidSnapshot,
    NotFound,
    RegistryClient,
    SnapshotInfo,
    Unavailable,
    inspect_snapshot,
)
from agent_registry.snapshot import BACKUP_HEADER_LEN

from conftest import CLUSTER_FLAGS, Cluster, Node, free_ports, make_cluster, registryctl_binary
from helpers import files_in, new_id, wait_until

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def ops_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = make_cluster(tmp_path_factory.mktemp("ops-cluster"), 3, CLUSTER_FLAGS)
    try:
        c.start()
        c.wait_ready()
        yield c
    finally:
        c.stop()


def registration(agent_id: str) -> AgentRegistration:
    return AgentRegistration(
        agent_id=agent_id, name=agent_id, endpoint="http://10.0.0.8:7000", capabilities=["ops"]
    )


def stop_node(node: Node) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if node.proc is not None and node.running():
        node.proc.terminate()
        try:
            node.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(timeout=10)


# -- membership ---------------------------------------------------------------


async def test_members_of_a_three_node_cluster(ops_cluster: Cluster) -> None:
    leader = ops_cluster.leader()
    async with AsyncRegistryClient(ops_cluster.urls) as c:
        listed = await c.members()
    assert sorted(m.node_id for m in listed.members) == [1, 2, 3]
    assert all(m.voter for m in listed.members)
    assert {m.addr for m in listed.members} == {n.addr for n in ops_cluster.nodes}
    assert listed.leader_id == leader.node_id
    with RegistryClient([leader.url]) as sync:
        from_leader = sync.members()
    roles = {m.node_id: m.role for m in from_leader.members}
    assert roles[leader.node_id] == "leader"
    assert sorted(roles) == [1, 2, 3]


async def test_a_fourth_node_joins_and_is_removed_again(ops_cluster: Cluster) -> None:
    base = ops_cluster.nodes[0].data_dir.parent
    (port,) = free_ports(1)
    fourth = Node(4, port, base / "node4", base / "node4.log")
    ops_cluster.nodes.append(fourth)  # its log is shown if the test fails
    try:
        log.info("--- start node 4 with --join and an empty data directory")
        ops_cluster.start_node(fourth, join=True)
        async with AsyncRegistryClient([n.url for n in ops_cluster.nodes[:3]]) as c:
            aid = new_id("before-join")
            await c.register(registration(aid))

            log.info("--- add it: a learner, caught up, promoted to voter")
            added = await c.add_member(4, fourth.addr)
            assert added.change.kind == "add" and added.change.node_id == 4
            assert added.change.phase == "done" and added.change.over, added.change
            assert 4 in [m.node_id for m in added.members if m.voter]
            await wait_until(
                lambda: _voters_are(c, [1, 2, 3, 4]), what="4 voters listed", timeout=30
            )

            log.info("--- node 4 serves the registry, agents registered before included")
            await wait_until(lambda: _ready(ops_cluster, fourth), what="node 4 ready", timeout=60)
            async with AsyncRegistryClient([fourth.url]) as on_four:
                assert (await on_four.get(aid)).agent_id == aid
                assert (await on_four.cluster()).node_id == 4

            log.info("--- remove it again")
            removed = await c.remove_member(4)
            assert removed.change.kind == "remove" and removed.change.phase == "done"
            assert sorted(m.node_id for m in removed.members) == [1, 2, 3]
            await wait_until(lambda: _voters_are(c, [1, 2, 3]), what="3 voters listed", timeout=30)
            with pytest.raises(NotFound) as gone:
                await c.remove_member(4)
            assert gone.value.code == "member_not_found"
    finally:
        stop_node(fourth)
        ops_cluster.nodes.remove(fourth)
    ops_cluster.wait_ready()


async def _ready(cluster: Cluster, node: Node) -> bool:
    return cluster.ready(node)


async def _voters_are(c: AsyncRegistryClient, ids: list[int]) -> bool:
    members = (await c.members()).members
    return sorted(m.node_id for m in members) == ids and all(m.voter for m in members)


async def test_membership_refusals_are_typed(ops_cluster: Cluster) -> None:
    async with AsyncRegistryClient(ops_cluster.urls) as c:
        with pytest.raises(NotFound) as unknown:
            await c.remove_member(99)
        assert (unknown.value.code, unknown.value.status) == ("member_not_found", 404)

        member = ops_cluster.nodes[1]
        with pytest.raises(Conflict) as same_id:
            await c.add_member(member.node_id, "127.0.0.1:9")
        assert (same_id.value.code, same_id.value.status) == ("membership_conflict", 409)
        assert same_id.value.field == "node_id"

        with pytest.raises(Conflict) as same_address:
            await c.add_member(7, member.addr, voter=False)
        assert same_address.value.code == "membership_conflict"
        assert same_address.value.field == "address"

        with pytest.raises(InvalidArgument) as bad:
            await c.add_member(8, "not an address")
        assert bad.value.field == "address"
        # Nothing changed.
        assert sorted(m.node_id for m in (await c.members()).members) == [1, 2, 3]


# -- leadership handover --------------------------------------------------------


async def test_handover_moves_leadership(ops_cluster: Cluster) -> None:
    old = ops_cluster.leader()
    target = next(n for n in ops_cluster.nodes if n is not old)
    async with AsyncRegistryClient(ops_cluster.urls) as c:
        log.info("--- hand over from node %d to node %d", old.node_id, target.node_id)
        moved = await c.hand_over_leadership(target.node_id)
        assert (moved.previous_leader, moved.leader_id) == (old.node_id, target.node_id)
        info = ops_cluster.info(target)
        assert info is not None and info["role"] == "leader" and info["term"] >= moved.term
        await wait_until(
            lambda: _leader_seen_by_all(ops_cluster, target.node_id),
            what=f"every node following node {target.node_id}",
            timeout=30,
        )

        with pytest.raises(InvalidArgument) as itself:
            await c.hand_over_leadership(target.node_id)
        assert itself.value.field == "node_id"

    log.info("--- the blocking client, no target: the voter furthest along")
    with RegistryClient(ops_cluster.urls) as sync:
        again = sync.hand_over_leadership()
    assert again.previous_leader == target.node_id and again.leader_id != target.node_id
    assert ops_cluster.leader().node_id == again.leader_id


async def _leader_seen_by_all(cluster: Cluster, leader_id: int) -> bool:
    infos = [cluster.info(n) for n in cluster.nodes]
    return all(i is not None and i.get("leader_id") == leader_id for i in infos)


# -- backups --------------------------------------------------------------------


def registryctl_inspect(path: Path) -> tuple[int, dict[str, Any]]:
    ctl = registryctl_binary()
    if not ctl.is_file():
        pytest.fail(f"{ctl} is missing: build it (cargo build --release --workspace)")
    done = subprocess.run(
        [str(ctl), "snapshot", "inspect", str(path)], capture_output=True, timeout=60
    )
    return done.returncode, json.loads(done.stdout)


async def test_a_saved_backup_is_what_registryctl_inspect_reads(
    ops_cluster: Cluster, tmp_path: Path
) -> None:
    async with AsyncRegistryClient(ops_cluster.urls) as c:
        for _ in range(5):
            written = await c.register(registration(new_id("backed-up")))
        target = tmp_path / "registry.areg"
        saved = await c.save_snapshot(target)

    log.info("--- the file: whole, and what its header says")
    assert files_in(tmp_path) == ["registry.areg"]
    assert saved.path == target and saved.size == target.stat().st_size
    assert saved.size > BACKUP_HEADER_LEN
    assert saved.revision >= written.revision and saved.agents >= 5
    assert saved.served_by in ops_cluster.urls
    assert saved.log_index > 0 and saved.log_term > 0
    info = ops_cluster.info(ops_cluster.nodes[0])
    assert info is not None and str(saved.cluster_id) == info["cluster_id"]
    inspected = inspect_snapshot(target)
    assert inspected == SnapshotInfo.model_validate(saved.model_dump(exclude={"served_by"}))

    log.info("--- registryctl snapshot inspect accepts it and reads the same header")
    rc, out = registryctl_inspect(target)
    assert rc == 0 and out["checksum_ok"] is True, out
    assert out["revision"] == saved.revision
    assert out["bytes"] == saved.size == out["file_bytes"]
    assert out["crc32c"] == saved.checksum
    assert out["log_id"] == {"term": saved.log_term, "index": saved.log_index}
    assert out["agents"] == saved.agents and out["node_id"] == saved.node_id
    assert out["snapshot_format"] == saved.snapshot_format

    log.info("--- the blocking client replaces the file with a newer backup")
    with RegistryClient(ops_cluster.urls) as sync:
        sync.register(registration(new_id("later")))
        again = sync.save_snapshot(target)
        assert sync.inspect_snapshot(target) == inspect_snapshot(target)
    assert again.revision > saved.revision
    assert files_in(tmp_path) == ["registry.areg"]


def damaged(data: bytes, how: str) -> bytes:
    if how == "body_flipped":
        return data[:-1] + bytes([data[-1] ^ 0x04])
    if how == "header_flipped":
        return data[:20] + bytes([data[20] ^ 0x01]) + data[21:]
    if how == "truncated":
        return data[:-1]
    if how == "trailing":
        return data + b"\0"
    if how == "foreign":
        return b"SQLite format 3\0" + data[16:]
    if how == "short":
        return data[:50]
    raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("body_flipped", "checksum"),
        ("header_flipped", "header_checksum"),
        ("truncated", "truncated"),
        ("trailing", "trailing_bytes"),
        ("foreign", "not_a_backup"),
        ("short", "truncated"),
    ],
)
async def test_a_damaged_backup_is_refused(
    ops_cluster: Cluster, tmp_path: Path, how: str, code: str
) -> None:
    good = tmp_path / "good.areg"
    async with AsyncRegistryClient(ops_cluster.urls) as c:
        await c.save_snapshot(good)
        bad = tmp_path / f"{how}.areg"
        bad.write_bytes(damaged(good.read_bytes(), how))
        with pytest.raises(InvalidSnapshot) as refused:
            await c.inspect_snapshot(bad)
    assert refused.value.code == code, refused.value
    with pytest.raises(InvalidSnapshot):
        inspect_snapshot(bad)
    rc, out = registryctl_inspect(bad)
    assert rc == 1 and out["checksum_ok"] is False, out


class DamagingProxy:
    """A fault on the wire between a real node and the client: answers
    ``GET /v1/snapshot`` with the real node's backup, damaged by
    ``damage`` (flipped, or cut short under its full ``Content-Length``).
    Nothing of the registry is imitated: the bytes are the node's."""

    def __init__(self, upstream: str, damage: Callable[[bytes], bytes], cut: bool = False) -> None:
        self.served = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path != "/v1/snapshot":
                    self.send_error(404)
                    return
                real = httpx.get(upstream + "/v1/snapshot", timeout=60)
                body = damage(real.content)
                proxy.served += 1
                self.send_response(200)
                self.send_header("content-type", real.headers["content-type"])
                self.send_header("content-length", str(len(real.content) if cut else len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flipping_proxy(ops_cluster: Cluster) -> Iterator[DamagingProxy]:
    p = DamagingProxy(ops_cluster.nodes[0].url, lambda b: damaged(b, "body_flipped"))
    yield p
    p.close()


@pytest.fixture
def cutting_proxy(ops_cluster: Cluster) -> Iterator[DamagingProxy]:
    p = DamagingProxy(ops_cluster.nodes[0].url, lambda b: b[: len(b) // 2], cut=True)
    yield p
    p.close()


async def test_a_backup_damaged_on_the_way_is_fetched_from_the_next_node(
    ops_cluster: Cluster, flipping_proxy: DamagingProxy, tmp_path: Path
) -> None:
    target = tmp_path / "b.areg"
    real = ops_cluster.nodes[1].url
    async with AsyncRegistryClient([flipping_proxy.url, real]) as c:
        saved = await c.save_snapshot(target)
    assert flipping_proxy.served == 1 and saved.served_by == real
    assert inspect_snapshot(target).crc32c == saved.crc32c
    assert files_in(tmp_path) == ["b.areg"]


async def test_a_failed_save_leaves_no_file(
    ops_cluster: Cluster,
    flipping_proxy: DamagingProxy,
    cutting_proxy: DamagingProxy,
    tmp_path: Path,
) -> None:
    target = tmp_path / "backup.areg"
    target.write_bytes(b"the previous backup")

    log.info("--- every answer damaged: refused, the previous file untouched")
    async with AsyncRegistryClient([flipping_proxy.url], retry_budget=2.0) as c:
        with pytest.raises(Unavailable) as flipped:
            await c.save_snapshot(target)
    assert flipped.value.code == "checksum" and flipping_proxy.served >= 1
    assert target.read_bytes() == b"the previous backup"
    assert files_in(tmp_path) == ["backup.areg"]

    log.info("--- every answer cut short (blocking client)")
    with (
        RegistryClient([cutting_proxy.url], retry_budget=2.0) as sync,
        pytest.raises(Unavailable) as cut,
    ):
        sync.save_snapshot(target)
    assert cut.value.code == "transport" and cutting_proxy.served >= 1
    assert target.read_bytes() == b"the previous backup"
    assert files_in(tmp_path) == ["backup.areg"]

    log.info("--- no node answers at all")
    (dead,) = free_ports(1)
    fresh = tmp_path / "new.areg"
    async with AsyncRegistryClient([f"http://127.0.0.1:{dead}"], retry_budget=1.0) as c:
        with pytest.raises(Unavailable):
            await c.save_snapshot(fresh)
    assert files_in(tmp_path) == ["backup.areg"]

    log.info("--- a directory that does not exist: the file error, not retried")
    async with AsyncRegistryClient(ops_cluster.urls) as c:
        with pytest.raises(FileNotFoundError):
            await c.save_snapshot(tmp_path / "missing" / "b.areg")
    assert files_in(tmp_path) == ["backup.areg"]
