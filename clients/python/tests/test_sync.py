"""The blocking client offers the async client's methods, with the same
parameters (it is written from it method for method), and works."""

from __future__ import annotations

import inspect

from agent_registry import AgentRegistration, AsyncRegistryClient, RegistryClient

from helpers import new_id

# Async-only: the async context manager.
ASYNC_ONLY = {"aclose"}
SYNC_ONLY = {"close"}


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_the_blocking_client_has_the_same_methods_and_parameters() -> None:
    sync, asyn = public_methods(RegistryClient), public_methods(AsyncRegistryClient)
    assert set(sync) - SYNC_ONLY == set(asyn) - ASYNC_ONLY
    for name in set(sync) - SYNC_ONLY:
        assert list(sync[name].parameters) == list(asyn[name].parameters), name


def test_the_blocking_client_registers_lists_and_deregisters(nodes: list[str]) -> None:
    aid = new_id("sync")
    with RegistryClient(nodes) as c:
        c.register(AgentRegistration(agent_id=aid, name="Sync", endpoint="http://10.0.0.6:1"))
        assert aid in [a.agent_id for a in c.list_agents(page_size=1)]
        assert c.events(from_revision=c.get(aid).revision, agent_id=aid).events
        assert c.deregister(aid).success
