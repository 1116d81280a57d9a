"""Typed errors: one class per thing a caller does something different about.

Every error the registry answers has one JSON shape
(``{"error": {"code", "message", "field", "retryable"}}``); :func:`from_answer`
turns it into the matching subclass of :class:`RegistryError`, keeping the
server's code, message, HTTP status and the node that answered. Errors that
never reached a registry body (no node answered, the stream broke) are
:class:`Unavailable` or, for a write that may have been applied,
:class:`OutcomeUnknown`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Compacted",
    "Conflict",
    "Forbidden",
    "InvalidArgument",
    "InvalidSnapshot",
    "NotFound",
    "OutcomeUnknown",
    "RegistryError",
    "Unauthorized",
    "Unavailable",
    "from_answer",
]


class RegistryError(Exception):
    """Base of every error this package raises about the registry.

    ``code`` is the server's error code (``"agent_not_found"``, ...) or, for
    failures that produced no answer, a client-side code (``"transport"``).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "unknown",
        status: int | None = None,
        field: str | None = None,
        retryable: bool = False,
        node: str | None = None,
    ) -> None:
        super().__init__(message)
        #: The server's message (or the client's, when no server answered).
        self.message = message
        #: The server's error code, e.g. ``"revision_mismatch"``.
        self.code = code
        #: The HTTP status, when a node answered.
        self.status = status
        #: The request field at fault, by its path in the body (``name``,
        #: ``capabilities[0].cost_estimate``), when the server named one.
        self.field = field
        #: What the server said about retrying (true for no_leader,
        #: unavailable, too_many_watchers, timeout).
        self.retryable = retryable
        #: Base URL of the node that answered, when one did.
        self.node = node

    def __str__(self) -> str:
        where = f" from {self.node}" if self.node else ""
        status = f" {self.status}" if self.status is not None else ""
        field = f" (field {self.field})" if self.field else ""
        return f"{self.code}{status}{where}: {self.message}{field}"


class InvalidArgument(RegistryError):
    """400: the request was refused as written; ``field`` names what is wrong.

    Nothing changed; sending the same request again fails the same way.
    """


class NotFound(RegistryError):
    """404: no such agent (``agent_not_found``: register again), policy,
    token, cluster member (``member_not_found``), route, or no agent
    qualified for a selection."""


class Conflict(RegistryError):
    """409: ``already_exists`` (``if_absent``), ``revision_mismatch``
    (``expected_revision``), or ``membership_conflict`` (another membership
    change in flight, a node id or address a member's already, the last
    voter, too few voters reachable without ``force``: the message says
    which). Nothing changed."""


class Unauthorized(RegistryError):
    """401 ``unauthenticated``: no token, or an unknown, revoked or expired
    one (see ``token=`` / ``REGISTRY_TOKEN``)."""


class Forbidden(RegistryError):
    """403: the token's role or scope does not allow this call (membership,
    handover and backups need an admin token)."""


class Unavailable(RegistryError):
    """No node could serve the call: connections refused, or every answer was
    503 (``no_leader``, ``unavailable``, ``too_many_watchers``) within the
    call's retry budget. Nothing was applied; retrying later is safe."""


class OutcomeUnknown(RegistryError):
    """A write was sent but its outcome is unknown: 504 ``timeout``, or the
    connection broke after the request left.

    It may or may not have been applied: read before retrying. The client
    never retries such a write by itself.
    """


class Compacted(RegistryError):
    """410 ``revision_compacted``: the events a watch needs are no longer kept.

    List the agents again (note the listing's ``revision``) and watch from
    ``current_revision`` on.
    """

    def __init__(
        self,
        message: str,
        *,
        requested: int,
        current_revision: int,
        node: str | None = None,
    ) -> None:
        super().__init__(message, code="revision_compacted", status=410, retryable=False, node=node)
        #: The first revision the watcher still needed.
        self.requested = requested
        #: The registry's revision when the compaction was reported.
        self.current_revision = current_revision


class InvalidSnapshot(RegistryError):
    """A backup file, or a backup as it arrives, that is not whole and
    undamaged. ``code`` says what is wrong: ``not_a_backup`` (no
    ``AREGBKUP`` magic), ``header_checksum``, ``unsupported_version`` (a
    later release wrote it), ``truncated``, ``trailing_bytes`` or
    ``checksum`` (the body's CRC32C differs from the header's)."""


def revision_in_message(message: str) -> int | None:
    """The number after "current revision " in a compaction message, the only
    place a mid-stream compaction names it."""
    mark = "current revision "
    at = message.find(mark)
    if at < 0:
        return None
    digits = ""
    for ch in message[at + len(mark) :]:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else None


_BY_STATUS: dict[int, type[RegistryError]] = {
    400: InvalidArgument,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    503: Unavailable,
    504: OutcomeUnknown,
}


def error_detail(body: Any) -> dict[str, Any] | None:
    """The ``error`` object of a registry error body, or None."""
    if isinstance(body, dict):
        detail = body.get("error")
        if isinstance(detail, dict) and isinstance(detail.get("code"), str):
            return detail
    return None


def from_answer(status: int, body: Any, node: str | None, text: str = "") -> RegistryError:
    """The error for a non-2xx answer ``body`` (decoded JSON, or None)."""
    detail = error_detail(body)
    if detail is None:
        message = text.strip()[:200] or f"HTTP {status} without a registry error body"
        code = f"http_{status}"
        field = None
        retryable = status in (503, 504)
    else:
        message = str(detail.get("message", ""))
        code = str(detail["code"])
        raw_field = detail.get("field")
        field = raw_field if isinstance(raw_field, str) else None
        retryable = bool(detail.get("retryable", False))
    if status == 410 or code == "revision_compacted":
        current = revision_in_message(message)
        return Compacted(
            message,
            requested=0,
            current_revision=current if current is not None else 0,
            node=node,
        )
    cls = _BY_STATUS.get(status, RegistryError)
    if status == 400 and code == "invalid_json":
        cls = InvalidArgument
    return cls(message, code=code, status=status, field=field, retryable=retryable, node=node)
