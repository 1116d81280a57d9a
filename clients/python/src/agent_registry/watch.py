"""``watch()`` of both clients: the change stream, followed across node
failures without a gap or a duplicate.

The server streams ``GET /v1/events`` as server-sent events whose ``id`` is
the event's revision, and every node serves the same events in the same
order. So resuming is bookkeeping: ``cursor`` is the last revision handed
to the consumer, every (re)connection asks for the events after it
(``Last-Event-ID``), and an event at or below it (a replay) is dropped.

:class:`_Follow` keeps those books and makes every decision (which node,
what an answer or an SSE message means, how long to wait after a failure);
:func:`watch` (asyncio) and :func:`watch_blocking` are the two loops around
it, which differ only in how they read and sleep.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Generator, Mapping
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import EventSource, ServerSentEvent

from ._transport import Config, backoff, retry_after
from .errors import (
    Compacted,
    RegistryError,
    Unavailable,
    error_detail,
    from_answer,
    revision_in_message,
)
from .models import Event

if TYPE_CHECKING:
    from .client import AsyncRegistryClient
    from .sync import RegistryClient


class _Reconnect(Exception):
    """The stream is unusable but the watch is not: open it again."""

    def __init__(self, error: RegistryError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _compacted(message: str, cursor: int, node: str, fallback: int | None) -> Compacted:
    current = revision_in_message(message)
    if current is None:
        current = fallback if fallback is not None else cursor
    return Compacted(message, requested=cursor + 1, current_revision=current, node=node)


def _header_revision(response: httpx.Response) -> int | None:
    try:
        return int(response.headers.get("x-registry-revision", ""))
    except ValueError:
        return None


class _Follow:
    """The books of one watch, the same for both loops. Each attempt:
    :meth:`connect` names the URL, query and headers; a non-200 answer goes
    to :meth:`refused` (which raises), an open stream to :meth:`opened`,
    each SSE message to :meth:`take` (the event to yield, or None), the end
    of the stream to :meth:`ended` (which raises). A :class:`_Reconnect` or
    a transport error goes to :meth:`failed`, which says how long to sleep
    before the next attempt, or raises once the watch gives up.
    """

    def __init__(
        self,
        config: Config,
        index: int,
        cursor: int,
        filter_params: Mapping[str, str],
        idle_timeout: float,
        max_failures: int,
    ) -> None:
        self.nodes = config.nodes
        #: The node the stream is (to be) opened on.
        self.index = index
        #: The revision of the last event handed to the consumer.
        self.cursor = cursor
        self.params = dict(filter_params)
        self.max_failures = max_failures
        #: Each attempt's timeouts: ``idle_timeout`` bounds the silence
        #: between two messages (the server sends a keep-alive every 15 s).
        self.timeout = httpx.Timeout(config.timeout, read=idle_timeout)
        #: Failed attempts in a row (a stream that delivered resets it).
        self.failures = 0
        self.last_error: RegistryError | None = None
        self._delivered = False
        self._opened_revision: int | None = None

    @property
    def node(self) -> str:
        return self.nodes[self.index]

    def connect(self) -> tuple[str, dict[str, str], dict[str, str]]:
        """URL, query and headers of the next attempt."""
        self._delivered = False
        self._opened_revision = None
        headers = {
            "accept": "text/event-stream",
            "cache-control": "no-store",
            "last-event-id": str(self.cursor),
        }
        return self.node + "/v1/events", self.params, headers

    def refused(self, response: httpx.Response) -> None:
        """A non-200 answer (its body read): raises :class:`_Reconnect` for
        503/504, else the error (:class:`Compacted` included)."""
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = None
        err = from_answer(response.status_code, body, self.node, response.text)
        if isinstance(err, Compacted):
            raise _compacted(err.message, self.cursor, self.node, _header_revision(response))
        if response.status_code in (503, 504):
            raise _Reconnect(err, retry_after(response))
        raise err

    def opened(self, response: httpx.Response) -> None:
        """The stream is open (200)."""
        self._opened_revision = _header_revision(response)

    def take(self, sse: ServerSentEvent) -> Event | None:
        """One SSE message: the event to hand over, or None (a keep-alive or
        a replay). Raises for an ``error`` message."""
        if sse.event == "error":
            data: Any
            try:
                data = json.loads(sse.data)
            except ValueError:
                data = None
            detail = error_detail(data)
            if detail is not None and detail.get("code") == "revision_compacted":
                raise _compacted(
                    str(detail.get("message", "")), self.cursor, self.node, self._opened_revision
                )
            err = from_answer(503 if (detail or {}).get("retryable") else 500, data, self.node)
            if err.retryable:
                raise _Reconnect(err)
            raise err
        if not sse.data.strip():
            return None
        event = Event.model_validate_json(sse.data)
        if sse.id and sse.id.strip() != str(event.revision):
            raise RegistryError(
                f"event id {sse.id!r} is not the event's revision {event.revision}",
                code="decode",
                node=self.node,
            )
        if event.revision <= self.cursor:
            return None  # a replay after a reconnection
        self.cursor = event.revision
        self._delivered = True
        self.failures = 0
        return event

    def ended(self) -> None:
        """The server ended the stream (it is shutting down)."""
        raise _Reconnect(Unavailable("the event stream ended", code="stream_ended", node=self.node))

    def failed(self, exc: _Reconnect | httpx.TransportError) -> float:
        """After a failed or dropped stream: seconds to wait before the next
        attempt, whose node :meth:`connect` then names. Raises
        :class:`Unavailable` after ``max_failures`` failures in a row."""
        hint: float | None = None
        if isinstance(exc, _Reconnect):
            self.last_error, hint = exc.error, exc.retry_after
        else:
            self.last_error = Unavailable(
                f"{type(exc).__name__}: {exc}", code="transport", node=self.node, retryable=True
            )
        if not self._delivered:
            self.failures += 1
        if self.failures >= self.max_failures:
            raise Unavailable(
                f"no node served the event stream in {self.failures} attempts "
                f"(last: {self.last_error})",
                code=self.last_error.code,
                node=self.last_error.node,
                retryable=True,
            ) from self.last_error
        # A stream that delivered and then dropped is opened again on the
        # same node first; a node that failed outright is passed over.
        if not self._delivered:
            self.index = (self.index + 1) % len(self.nodes)
        first_round = self.failures <= len(self.nodes) and hint is None
        if self._delivered or first_round:
            return 0.0
        return backoff(self.failures // len(self.nodes), hint)


async def watch(
    client: AsyncRegistryClient,
    *,
    after: int | None,
    filter_params: Mapping[str, str],
    idle_timeout: float,
    max_failures: int,
) -> AsyncIterator[Event]:
    """See :meth:`AsyncRegistryClient.watch`."""
    if after is None:
        # The revision "now" stands for, asked before the stream opens, so
        # a reconnection before the first event cannot skip anything.
        after = (await client.events(wait=0.0)).next_from_revision - 1
    follow = _Follow(
        client.config,
        client.nodes.index(client.preferred_node),
        after,
        filter_params,
        idle_timeout,
        max_failures,
    )
    while True:
        url, params, headers = follow.connect()
        try:
            async with client._http.stream(
                "GET", url, params=params, headers=headers, timeout=follow.timeout
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    follow.refused(response)
                follow.opened(response)
                async for sse in EventSource(response).aiter_sse():
                    event = follow.take(sse)
                    if event is not None:
                        yield event
                follow.ended()
        except (_Reconnect, httpx.TransportError) as e:
            delay = follow.failed(e)
            if delay > 0:
                await asyncio.sleep(delay)


def watch_blocking(
    client: RegistryClient,
    *,
    after: int | None,
    filter_params: Mapping[str, str],
    idle_timeout: float,
    max_failures: int,
) -> Generator[Event, None, None]:
    """See :meth:`RegistryClient.watch`."""
    if after is None:
        after = client.events(wait=0.0).next_from_revision - 1
    follow = _Follow(
        client.config,
        client.nodes.index(client.preferred_node),
        after,
        filter_params,
        idle_timeout,
        max_failures,
    )
    while True:
        url, params, headers = follow.connect()
        try:
            with client._http.stream(
                "GET", url, params=params, headers=headers, timeout=follow.timeout
            ) as response:
                if response.status_code != 200:
                    response.read()
                    follow.refused(response)
                follow.opened(response)
                for sse in EventSource(response).iter_sse():
                    event = follow.take(sse)
                    if event is not None:
                        yield event
                follow.ended()
        except (_Reconnect, httpx.TransportError) as e:
            delay = follow.failed(e)
            if delay > 0:
                time.sleep(delay)
