"""Drop-in replacements for the clients of two earlier registries, so agent
code written for them keeps working by changing one import:

- ``from agent_registry.compat import RegistryClient, AgentCapability``
  replaces the Dev-Tools ``shared.lib.registry_client`` (see
  :mod:`agent_registry.compat.devtools`);
- ``from agent_registry.compat import AgentRegistryClient`` replaces
  configurable-agents' ``configurable_agents.registry`` (see
  :mod:`agent_registry.compat.configurable_agents`).

Both speak the routes those clients called (``POST /register``,
``POST /agents/register``, ``POST /agents/{id}/heartbeat``, ...), which
every node of the cluster serves in the earlier registries' shapes
(docs/api.md, "Moving from an earlier registry"). Underneath is the SDK's
client, so ``registry_url`` may list several nodes (comma-separated) to fail
over between, ``REGISTRY_TOKEN`` is sent when set, and errors are the SDK's
typed errors (all :class:`~agent_registry.errors.RegistryError`, an
``Exception``, as the earlier clients' callers catch).
"""

from .configurable_agents import AgentRecord, AgentRegistryClient
from .devtools import AgentCapability, AgentInfo, CapabilityMatch, RegistrationAck, RegistryClient

__all__ = [
    "AgentCapability",
    "AgentInfo",
    "AgentRecord",
    "AgentRegistryClient",
    "CapabilityMatch",
    "RegistrationAck",
    "RegistryClient",
]
