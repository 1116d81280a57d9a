"""A2A Agent Cards on the client side: the bridge between the registry's
card JSON and the ``a2a-sdk`` package's :class:`a2a.types.AgentCard`.

The registry takes and serves cards as JSON (docs/api.md, "A2A Agent
Cards"). Callers may hold them as plain mappings (A2A 1.0, or 0.2/0.3 with
a top-level ``url``) or as ``a2a-sdk`` 1.x ``AgentCard`` objects, which are
protobuf messages:

- :func:`card_to_json` turns either into the JSON sent;
- :func:`card_from_json` parses a served card with ``a2a-sdk``.

``a2a-sdk`` is optional (``pip install 'agent-registry-client[a2a]'``): it
is imported only when a card object is converted or a card is parsed with
it, and the rest of this package works without it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, Union

if TYPE_CHECKING:
    from a2a.types import AgentCard
    from google.protobuf.message import Message

__all__ = ["A2A_EXTRA_HINT", "CardInput", "card_from_json", "card_to_json"]

#: A card as the clients take it: its JSON as a mapping, or an ``a2a-sdk``
#: ``AgentCard``.
CardInput: TypeAlias = Union[Mapping[str, Any], "AgentCard"]

#: How to get what reading cards with ``a2a-sdk`` needs.
A2A_EXTRA_HINT = "install it with: pip install 'agent-registry-client[a2a]'"


def card_to_json(card: CardInput) -> dict[str, Any]:
    """The JSON object of a card, as the registry takes it.

    A mapping is sent as given (a 0.3 card stays a 0.3 card: the registry
    reads both shapes). An ``a2a-sdk`` ``AgentCard`` (any protobuf message)
    is converted with ``MessageToDict``: A2A's camelCase JSON names. proto3
    JSON leaves out a field holding its empty value, while an A2A card
    carries the fields A2A requires even when empty (``skills[0].tags``):
    those are added with their empty value (``[]``, ``""``, ``{}``), which
    reads back as the same message.

    Raises :class:`TypeError` for anything else.
    """
    if isinstance(card, Mapping):
        return {str(k): _plain(v) for k, v in card.items()}
    message = _as_message(card)
    from google.protobuf.json_format import MessageToDict

    out = MessageToDict(message)
    _fill_required(out)
    return out


def card_from_json(card: Mapping[str, Any]) -> AgentCard:
    """A card's JSON as an ``a2a-sdk`` ``AgentCard``, parsed the way the
    SDK's own card resolver parses a fetched card (cards of A2A 0.2/0.3
    are read into the 1.0 message; unknown fields are ignored).

    Raises :class:`ImportError` naming the ``a2a`` extra when ``a2a-sdk``
    is not installed, and ``google.protobuf.json_format.ParseError`` for a
    card the SDK cannot read.
    """
    try:
        from a2a.client.card_resolver import parse_agent_card
    except ImportError as e:
        raise ImportError(
            f"reading an A2A card as an AgentCard needs a2a-sdk: {A2A_EXTRA_HINT}"
        ) from e
    # The SDK's parser rewrites the dict it is given (0.3 fields to 1.0).
    return parse_agent_card(copy.deepcopy(dict(card)))


def _plain(value: Any) -> Any:
    """Mappings made dicts and sequences lists, all the way down, so that
    the body encodes as JSON whatever containers the caller used."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value


def _as_message(card: object) -> Message:
    try:
        from google.protobuf.message import Message
    except ImportError as e:
        raise TypeError(
            f"an agent card must be a mapping or an a2a-sdk AgentCard, not "
            f"{type(card).__name__} (a2a-sdk is not installed: {A2A_EXTRA_HINT})"
        ) from e
    if not isinstance(card, Message):
        raise TypeError(
            f"an agent card must be a mapping or an a2a-sdk AgentCard, not {type(card).__name__}"
        )
    return card


#: The keys A2A requires of a card that proto3 JSON leaves out when they
#: hold their empty value, with that value (a skill without tags still has
#: ``"tags": []``). The ones that must not be empty (``name``, ``url``,
#: ``id``, ...) are left out when empty, so the registry names them as
#: missing.
_CARD_EMPTY: dict[str, Any] = {
    "description": "",
    "version": "",
    "supportedInterfaces": [],
    "capabilities": {},
    "defaultInputModes": [],
    "defaultOutputModes": [],
    "skills": [],
}
_SKILL_EMPTY: dict[str, Any] = {"description": "", "tags": []}


def _fill_required(card: dict[str, Any]) -> None:
    """Adds to ``card`` (an ``AgentCard`` as ``MessageToDict`` wrote it)
    the required keys it left out because they were empty."""
    for key, empty in _CARD_EMPTY.items():
        card.setdefault(key, copy.copy(empty))
    for skill in card["skills"]:
        if isinstance(skill, dict):
            for key, empty in _SKILL_EMPTY.items():
                skill.setdefault(key, copy.copy(empty))
