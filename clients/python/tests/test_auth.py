"""A cluster with access control (``--auth on --bootstrap-token-file``): the
client with a token works, without one it gets Unauthorized, and a token's
role and scope surface as Forbidden (operating the cluster included: only
an admin changes members, hands leadership over or saves a backup)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_registry import (
    AgentRegistration,
    AgentSession,
    AsyncRegistryClient,
    Forbidden,
    NotFound,
    RegistryClient,
    Role,
    Unauthorized,
    inspect_snapshot,
)

from conftest import Cluster, make_cluster
from helpers import files_in, new_id


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("auth-cluster")
    admin = "areg_" + secrets.token_hex(32)
    token_file = base / "bootstrap-token"
    token_file.write_text(admin + "\n")
    c = make_cluster(
        base, 3, ["--auth", "on", "--bootstrap-token-file", str(token_file)], token=admin
    )
    try:
        c.start()
        c.wait_ready()
        yield c
    finally:
        c.stop()


def registration(agent_id: str) -> AgentRegistration:
    return AgentRegistration(agent_id=agent_id, name=agent_id, endpoint="http://10.0.0.5:7000")


async def test_with_the_token_it_works_without_it_unauthorized(auth_cluster: Cluster) -> None:
    nodes = auth_cluster.urls
    assert auth_cluster.token is not None
    async with AsyncRegistryClient(nodes, token=auth_cluster.token) as admin:
        aid = new_id("secured")
        created = await admin.register(registration(aid))
        assert created.agent.registered_by is not None
        assert created.agent.registered_by.token_id is not None
        assert (await admin.get(aid)).agent_id == aid

    async with AsyncRegistryClient(nodes) as anonymous:
        with pytest.raises(Unauthorized) as e:
            await anonymous.get(aid)
        assert (e.value.code, e.value.status) == ("unauthenticated", 401)
        with pytest.raises(Unauthorized):
            await anonymous.register(registration(new_id("nope")))
        # The node's own probes stay open.
        assert (await anonymous.node_ready()).status == "ready"

    async with AsyncRegistryClient(nodes, token="areg_" + "0" * 64) as wrong:
        with pytest.raises(Unauthorized):
            await wrong.stats()

    with RegistryClient(nodes, token=auth_cluster.token) as sync:
        assert sync.get(aid).agent_id == aid


async def test_tokens_roles_and_scopes(
    auth_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = auth_cluster.urls
    assert auth_cluster.token is not None
    team = new_id("team")
    async with AsyncRegistryClient(nodes, token=auth_cluster.token) as admin:
        agent_token = await admin.create_token(new_id("runtime"), Role.AGENT, agents=[f"{team}-*"])
        reader_token = await admin.create_token(new_id("dashboard"), Role.READER)
        assert agent_token.token.startswith("areg_") and agent_token.scope.agents == [f"{team}-*"]
        listed = {t.id: t for t in await admin.tokens()}
        assert listed[agent_token.id].role is Role.AGENT
        assert listed[reader_token.id].role is Role.READER

        log_in_scope = f"{team}-1"
        # REGISTRY_TOKEN is what a deployed agent is given.
        monkeypatch.setenv("REGISTRY_TOKEN", agent_token.token)
        async with AsyncRegistryClient(nodes) as agent:
            async with AgentSession(agent, registration(log_in_scope)) as session:
                assert session.running
                assert (await agent.get(log_in_scope)).agent_id == log_in_scope
            with pytest.raises(Forbidden) as out_of_scope:
                await agent.register(registration(new_id("other-team")))
            assert out_of_scope.value.code == "forbidden" and out_of_scope.value.message
            with pytest.raises(NotFound):  # the session deregistered it on exit
                await agent.get(log_in_scope)

            async with AsyncRegistryClient(nodes, token=reader_token.token) as reader:
                assert (await reader.stats()).revision > 0
                with pytest.raises(Forbidden):
                    await reader.register(registration(f"{team}-2"))
                with pytest.raises(Forbidden):
                    await reader.tokens()

            assert await admin.revoke_token(agent_token.id)
            with pytest.raises(Unauthorized):
                await agent.get(f"{team}-1")
        with pytest.raises(NotFound) as gone:
            await admin.revoke_token(agent_token.id)
        assert gone.value.code == "token_not_found"


async def test_operating_the_cluster_needs_an_admin_token(
    auth_cluster: Cluster, tmp_path: Path
) -> None:
    nodes = auth_cluster.urls
    assert auth_cluster.token is not None
    async with AsyncRegistryClient(nodes, token=auth_cluster.token) as admin:
        operator = await admin.create_token(new_id("operator"), Role.OPERATOR)
        saved = await admin.save_snapshot(tmp_path / "admin.areg")
        assert inspect_snapshot(tmp_path / "admin.areg").revision == saved.revision

    target = tmp_path / "operator.areg"
    async with AsyncRegistryClient(nodes, token=operator.token) as c:
        # Listing the members is a read; changing them is not.
        assert sorted(m.node_id for m in (await c.members()).members) == [1, 2, 3]
        with pytest.raises(Forbidden) as add:
            await c.add_member(4, "127.0.0.1:9")
        assert (add.value.code, add.value.status) == ("forbidden", 403)
        with pytest.raises(Forbidden):
            await c.remove_member(3)
        with pytest.raises(Forbidden):
            await c.hand_over_leadership()
        with pytest.raises(Forbidden):
            await c.save_snapshot(target)
    with RegistryClient(nodes, token=operator.token) as sync, pytest.raises(Forbidden):
        sync.save_snapshot(target)
    # A refused save leaves nothing behind, not even its temporary file.
    assert files_in(tmp_path) == ["admin.areg"]
