"""Small helpers shared by the SDK's tests: bounded waits, fresh ids, a
directory's contents."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def new_id(prefix: str) -> str:
    """A fresh agent id: tests share one cluster, so ids never repeat."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def files_in(directory: Path) -> list[str]:
    """The names in ``directory``, sorted (a save must leave no temporary
    file behind)."""
    return sorted(p.name for p in directory.iterdir())


async def wait_until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    timeout: float,
    interval: float = 0.05,
) -> T:
    """Calls ``probe`` until it returns something truthy, and returns that.

    Fails (AssertionError) after ``timeout`` seconds, naming ``what`` and the
    last value or error seen. Errors raised by ``probe`` count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = await probe()
            if value:
                return value
            last = value
        except Exception as e:  # a transient error is "not yet"
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)
