"""What the sync and async clients share: configuration, the description of
one call, and the fail-over rules.

A call is a :class:`Call` (method, path, query, body and :class:`Kind`).
Both clients run the same loop over it: start at the node that answered
last, send, let :func:`classify_response` or :func:`classify_exception`
decide from the outcome whether to return, raise, or back off and try the
next node, and let a :class:`Failover` keep the books (which node next, how
long to wait, when to give up). Only the sending and the sleeping are
written twice, because one client awaits and the other blocks. The rules:

- not sent (connection refused, connect timeout): try the next node;
- 503 (``no_leader``, ``unavailable``, ``too_many_watchers``): nothing was
  applied, so even a write goes to the next node, after ``Retry-After``;
- 504 ``timeout`` or a connection broken after sending: reads and
  idempotent writes (heartbeats) are sent again; any other write raises
  :class:`~agent_registry.errors.OutcomeUnknown` and is never repeated;
- 304 (a conditional read whose ``If-None-Match`` still holds) is an
  answer like a 2xx, without a body;
- any other answer is final.

A call gives up after ``retry_budget`` seconds of failing, raising
:class:`~agent_registry.errors.Unavailable` with what each attempt met.
"""

from __future__ import annotations

import os
import random
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from .errors import OutcomeUnknown, RegistryError, Unavailable, from_answer

#: Default seconds one attempt (one HTTP request to one node) may take.
DEFAULT_TIMEOUT = 10.0
#: Default seconds a call may spend failing over before it gives up. Longer
#: than an election (about a second) plus the server's write timeout (5 s).
DEFAULT_RETRY_BUDGET = 30.0
#: First backoff between two rounds of attempts, doubled per round.
BACKOFF_INITIAL = 0.1
#: Ceiling of the backoff (a server's ``Retry-After`` may raise a delay to
#: at most this too, so a ``Retry-After: 5`` cannot stall a call longer).
BACKOFF_MAX = 2.0


class Kind(Enum):
    """Whether a call changes state; decides what may be sent again."""

    #: Safe to repeat on any node after any failure.
    READ = "read"
    #: Changes state, but twice is the same as once (a heartbeat).
    IDEMPOTENT = "idempotent"
    #: Repeated only when it provably was not applied (not sent, or 503).
    WRITE = "write"

    @property
    def repeatable(self) -> bool:
        return self is not Kind.WRITE


@dataclass(frozen=True)
class Call:
    """One HTTP call, independent of the node it goes to."""

    method: str
    #: Path with its segments already percent-encoded (see :func:`seg`).
    path: str
    kind: Kind
    params: Mapping[str, str] | None = None
    #: JSON body (already a plain structure), or None for no body.
    body: Any = None
    #: Seconds for each attempt; None: the client's default.
    timeout: float | None = None
    #: Extra request headers (``Last-Event-ID``).
    headers: Mapping[str, str] = field(default_factory=dict)


def seg(value: str) -> str:
    """A path segment, percent-encoded (an id never escapes its segment)."""
    return quote(value, safe="")


def query(**params: Any) -> dict[str, str]:
    """Query parameters without the ``None`` ones, as the server spells them
    (enums by value, booleans lower-case, lists comma-separated)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, Enum):
            value = value.value
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            out[key] = ",".join(str(v.value if isinstance(v, Enum) else v) for v in value)
        else:
            out[key] = str(value)
    return out


@dataclass(frozen=True)
class Config:
    """A client's resolved configuration."""

    #: Base URLs of the nodes, without a trailing ``/``.
    nodes: tuple[str, ...]
    #: Bearer token, or None (a cluster with ``--auth off``).
    token: str | None
    #: What httpx verifies TLS with: True (system CAs) or a context built
    #: from ``ca_file``.
    verify: ssl.SSLContext | bool
    #: Seconds one attempt may take.
    timeout: float
    #: Seconds a call may spend failing over.
    retry_budget: float

    def headers(self) -> dict[str, str]:
        """Headers of every request."""
        headers = {"accept": "application/json", "user-agent": "agent-registry-client-python"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        return headers


def resolve_config(
    nodes: Sequence[str] | str | None,
    *,
    token: str | None,
    ca_file: str | os.PathLike[str] | None,
    timeout: float | None,
    retry_budget: float | None,
) -> Config:
    """Fills what was not given from ``REGISTRY_NODES`` (comma-separated
    URLs), ``REGISTRY_TOKEN`` and ``REGISTRY_CACERT``, and checks the URLs."""
    if nodes is None:
        nodes = os.environ.get("REGISTRY_NODES", "")
    if isinstance(nodes, str):
        nodes = [n for n in (x.strip() for x in nodes.split(",")) if n]
    checked: list[str] = []
    for url in nodes:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"node URL {url!r} is not an absolute http(s) URL")
        checked.append(url.rstrip("/"))
    if not checked:
        raise ValueError("no registry node given: pass node URLs or set REGISTRY_NODES")
    if token is None:
        token = os.environ.get("REGISTRY_TOKEN") or None
    if ca_file is None:
        ca_file = os.environ.get("REGISTRY_CACERT") or None
    verify: ssl.SSLContext | bool = True
    if ca_file is not None:
        verify = ssl.create_default_context(cafile=os.fspath(ca_file))
    return Config(
        nodes=tuple(checked),
        token=token,
        verify=verify,
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
        retry_budget=DEFAULT_RETRY_BUDGET if retry_budget is None else retry_budget,
    )


# Exceptions after which the request certainly did not reach the server.
NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)


@dataclass(frozen=True)
class Answer:
    """A node's successful answer: what the routes read. Most read only the
    body; a served card reads its headers (``ETag``) and status (304) too."""

    #: The decoded JSON body (None: no body, as in a 304).
    body: Any
    #: The HTTP status: a 2xx, or 304.
    status: int
    #: The answer's headers (case-insensitive).
    headers: Mapping[str, str]
    #: Base URL of the node that answered.
    node: str


@dataclass
class Step:
    """What to do after one attempt."""

    #: The answer when the call is done.
    answer: Answer | None = None
    #: The error to raise (done) or remember (retry).
    error: RegistryError | None = None
    #: Whether to try again on the next node.
    retry: bool = False
    #: Seconds the server asked to wait (``Retry-After``).
    retry_after: float | None = None
    #: Whether the failure was a refused connection (the next node is tried
    #: at once in the first round).
    not_sent: bool = False


def classify_exception(kind: Kind, node: str, exc: Exception) -> Step:
    """The step after an attempt that produced no answer."""
    message = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, NOT_SENT):
        err = Unavailable(message, code="transport", node=node, retryable=True)
        return Step(error=err, retry=True, not_sent=True)
    if kind.repeatable:
        err = Unavailable(message, code="transport", node=node, retryable=True)
        return Step(error=err, retry=True)
    return Step(
        error=OutcomeUnknown(
            f"the connection failed after the write was sent ({message}); it may or may "
            "not have been applied: read before retrying",
            code="transport",
            node=node,
        )
    )


def classify_response(kind: Kind, node: str, response: httpx.Response) -> Step:
    """The step after an answer."""
    status = response.status_code
    try:
        body: Any = response.json() if response.content else None
    except ValueError:
        body = None
    if 200 <= status < 300 or status == 304:
        if body is None and response.content:
            return classify_exception(
                kind, node, ValueError(f"HTTP {status} with a body that is not JSON")
            )
        return Step(answer=Answer(body, status, response.headers, node))
    err = from_answer(status, body, node, response.text if body is None else "")
    if status == 503 or (status == 504 and kind.repeatable):
        return Step(error=err, retry=True, retry_after=retry_after(response))
    return Step(error=err)


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is ignored)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def backoff(round_: int, hint: float | None) -> float:
    """Delay before round ``round_`` (1 = the first repeat of the node list):
    exponential with equal jitter, at least the server's hint, capped."""
    base: float = min(BACKOFF_MAX, BACKOFF_INITIAL * float(2 ** min(round_ - 1, 10)))
    delay = base / 2 + random.uniform(0, base / 2)
    if hint is not None:
        delay = max(delay, min(hint, BACKOFF_MAX))
    return delay


def give_up(what: str, errors: list[RegistryError], budget: float) -> Unavailable:
    """The error of a call (``what``: ``GET /v1/stats``) that ran out of
    time: :class:`Unavailable` with the last answer's code, naming every
    node's last failure. (A write's unknown outcome never gets here: it is
    final at once.)"""
    last = errors[-1]
    seen: dict[str | None, str] = {}
    for e in errors:
        seen[e.node] = f"{e.code}: {e.message}"
    summary = "; ".join(f"{node}: {what}" for node, what in seen.items())
    message = f"{what} failed on every node for {budget:.0f}s ({summary})"
    return Unavailable(
        message,
        code=last.code,
        status=last.status,
        retryable=True,
        node=last.node,
    )


class Failover:
    """The books of one call's fail-over loop, kept the same way by both
    clients: which node to try, whether an answer makes its node the
    preferred one, and, after a failure, how long to wait before the next
    attempt or the error to raise.

    ::

        tries = Failover(config, preferred, "GET /v1/stats")
        while True:
            index, node = tries.target()
            step = ...  # send to node, classify the outcome
            if tries.answered(step):
                preferred = index
            if step.answer is not None:
                return step.answer
            sleep(tries.next_delay(step))  # raises when the call is over
    """

    def __init__(self, config: Config, preferred: int, what: str) -> None:
        self.nodes = config.nodes
        self.budget = config.retry_budget
        self.deadline = time.monotonic() + config.retry_budget
        #: The node the first attempt goes to (the one that answered last).
        self.start = preferred
        #: ``METHOD /path``, for the final error's message.
        self.what = what
        #: Every failure met so far, in order.
        self.errors: list[RegistryError] = []
        self.attempt = 0

    def target(self) -> tuple[int, str]:
        """Index and base URL of the node the next attempt goes to."""
        index = (self.start + self.attempt) % len(self.nodes)
        return index, self.nodes[index]

    @staticmethod
    def answered(step: Step) -> bool:
        """Whether the node reached is the one to start the next call at:
        it answered for good (a result, or a final error a node gave)."""
        if step.error is None:
            return True
        return not step.retry and step.error.status is not None

    def next_delay(self, step: Step) -> float:
        """After a failed attempt: the seconds to wait before the next one.
        Raises the error when it is final, and :class:`Unavailable` (see
        :func:`give_up`) when the wait would pass the retry budget."""
        assert step.error is not None, "next_delay() after a success"
        if not step.retry:
            raise step.error
        self.errors.append(step.error)
        self.attempt += 1
        round_ = self.attempt // len(self.nodes)
        # Refused connections move on at once within the first round.
        delay = (
            0.0 if (step.not_sent and round_ == 0) else backoff(max(1, round_), step.retry_after)
        )
        if time.monotonic() + delay >= self.deadline:
            raise give_up(self.what, self.errors, self.budget) from step.error
        return delay
