"""Small helpers shared by the legacy-client tests: bounded waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    what: str,
    timeout: float,
    interval: float = 0.1,
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
