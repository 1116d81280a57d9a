"""``AsyncRegistryClient.watch``: the change stream, followed across node
failures without a gap or a duplicate.

The server streams ``GET /v1/events`` as server-sent events whose ``id`` is
the event's revision, and every node serves the same events in the same
order. So resuming is bookkeeping: ``cursor`` is the last revision handed
to the consumer, every (re)connection asks for the events after it
(``Last-Event-ID``), and an event at or below it (a replay) is dropped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import EventSource

from ._transport import backoff, retry_after
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


async def _resolve_now(client: AsyncRegistryClient) -> int:
    """The revision "now" stands for: every event after it is wanted. Asked
    before the stream opens, so a reconnection before the first event
    cannot skip anything."""
    batch = await client.events(wait=0.0)
    return batch.next_from_revision - 1


async def watch(
    client: AsyncRegistryClient,
    *,
    after: int | None,
    filter_params: Mapping[str, str],
    idle_timeout: float,
    max_failures: int,
) -> AsyncIterator[Event]:
    """See :meth:`AsyncRegistryClient.watch`."""
    cursor = after if after is not None else await _resolve_now(client)
    nodes = client.nodes
    index = client.nodes.index(client.preferred_node)
    failures = 0
    last_error: RegistryError | None = None
    timeout = httpx.Timeout(client.config.timeout, read=idle_timeout)
    while True:
        node = nodes[index]
        delivered = False
        hint: float | None = None
        try:
            async with client._http.stream(
                "GET",
                node + "/v1/events",
                params=dict(filter_params),
                headers={
                    "accept": "text/event-stream",
                    "cache-control": "no-store",
                    "last-event-id": str(cursor),
                },
                timeout=timeout,
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    body: Any
                    try:
                        body = response.json()
                    except ValueError:
                        body = None
                    err = from_answer(response.status_code, body, node, response.text)
                    if isinstance(err, Compacted):
                        raise _compacted(err.message, cursor, node, _header_revision(response))
                    if response.status_code in (503, 504):
                        raise _Reconnect(err, retry_after(response))
                    raise err
                opened_revision = _header_revision(response)
                async for sse in EventSource(response).aiter_sse():
                    if sse.event == "error":
                        data: Any
                        try:
                            data = json.loads(sse.data)
                        except ValueError:
                            data = None
                        detail = error_detail(data)
                        if detail is not None and detail.get("code") == "revision_compacted":
                            raise _compacted(
                                str(detail.get("message", "")), cursor, node, opened_revision
                            )
                        err = from_answer(
                            503 if (detail or {}).get("retryable") else 500, data, node
                        )
                        if err.retryable:
                            raise _Reconnect(err)
                        raise err
                    if not sse.data.strip():
                        continue
                    event = Event.model_validate_json(sse.data)
                    if sse.id and sse.id.strip() != str(event.revision):
                        raise RegistryError(
                            f"event id {sse.id!r} is not the event's revision {event.revision}",
                            code="decode",
                            node=node,
                        )
                    if event.revision <= cursor:
                        continue  # a replay after a reconnection
                    cursor = event.revision
                    delivered = True
                    failures = 0
                    yield event
                # The server ended the stream (it is shutting down).
                raise _Reconnect(
                    Unavailable("the event stream ended", code="stream_ended", node=node)
                )
        except _Reconnect as r:
            last_error, hint = r.error, r.retry_after
        except httpx.TransportError as e:
            last_error = Unavailable(
                f"{type(e).__name__}: {e}", code="transport", node=node, retryable=True
            )
        if not delivered:
            failures += 1
        if failures >= max_failures:
            assert last_error is not None
            raise Unavailable(
                f"no node served the event stream in {failures} attempts (last: {last_error})",
                code=last_error.code,
                node=last_error.node,
                retryable=True,
            ) from last_error
        # A stream that delivered and then dropped is opened again on the
        # same node first; a node that failed outright is passed over.
        if not delivered:
            index = (index + 1) % len(nodes)
        first_round = failures <= len(nodes) and hint is None
        delay = 0.0 if (delivered or first_round) else backoff(failures // len(nodes), hint)
        if delay > 0:
            await asyncio.sleep(delay)
