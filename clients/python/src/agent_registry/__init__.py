"""Python SDK of the agent registry.

Layout (each module owns one thing):

- :mod:`agent_registry.client`: :class:`AsyncRegistryClient`, one method per
  route, over the fail-over loop of :mod:`agent_registry._transport`;
- :mod:`agent_registry.sync`: :class:`RegistryClient`, the same for
  blocking code;
- :mod:`agent_registry.watch`: the resumable event stream behind
  :meth:`AsyncRegistryClient.watch` and :meth:`RegistryClient.watch`;
- :mod:`agent_registry.snapshot`: backups (``save_snapshot``,
  :func:`inspect_snapshot`), checked as they arrive;
- :mod:`agent_registry.session`: :class:`AgentSession`, an agent's
  registration and heartbeats;
- :mod:`agent_registry.fastapi`: :func:`~agent_registry.fastapi.registry_lifespan`
  (needs the ``fastapi`` extra);
- :mod:`agent_registry.models` and :mod:`agent_registry.errors`: the wire
  types and the typed errors;
- :mod:`agent_registry.cards`: A2A Agent Cards as JSON and as ``a2a-sdk``
  ``AgentCard`` objects (the ``a2a`` extra);
- :mod:`agent_registry.compat`: drop-in replacements for the clients of the
  Dev-Tools and configurable-agents registries.

Quick start::

    from agent_registry import RegistryClient
    client = RegistryClient(["http://127.0.0.1:8009"])
    print(client.select("summarize"))
"""

from .cards import CardInput, card_from_json, card_to_json
from .client import AsyncRegistryClient
from .errors import (
    Compacted,
    Conflict,
    Forbidden,
    InvalidArgument,
    InvalidSnapshot,
    NotFound,
    OutcomeUnknown,
    RegistryError,
    Unauthorized,
    Unavailable,
)
from .models import (
    AgentCardEntry,
    AgentCardList,
    AgentRecord,
    AgentRegistration,
    AgentStatus,
    CapabilityInput,
    Consistency,
    Event,
    EventKind,
    HeartbeatReport,
    LeaderHandover,
    Member,
    MemberList,
    MembershipChange,
    MembershipChangeResponse,
    Role,
    SelectStrategy,
    ServedCard,
    SortBy,
)
from .session import AgentSession, SessionStats
from .snapshot import SavedSnapshot, SnapshotInfo, inspect_snapshot
from .sync import RegistryClient

__version__ = "0.1.0"

__all__ = [
    "AgentCardEntry",
    "AgentCardList",
    "AgentRecord",
    "AgentRegistration",
    "AgentSession",
    "AgentStatus",
    "AsyncRegistryClient",
    "CapabilityInput",
    "CardInput",
    "Compacted",
    "Conflict",
    "Consistency",
    "Event",
    "EventKind",
    "Forbidden",
    "HeartbeatReport",
    "InvalidArgument",
    "InvalidSnapshot",
    "LeaderHandover",
    "Member",
    "MemberList",
    "MembershipChange",
    "MembershipChangeResponse",
    "NotFound",
    "OutcomeUnknown",
    "RegistryClient",
    "RegistryError",
    "Role",
    "SavedSnapshot",
    "SelectStrategy",
    "ServedCard",
    "SessionStats",
    "SnapshotInfo",
    "SortBy",
    "Unauthorized",
    "Unavailable",
    "card_from_json",
    "card_to_json",
    "inspect_snapshot",
]
