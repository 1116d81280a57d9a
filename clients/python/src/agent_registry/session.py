"""The agent side of liveness: an :class:`AgentSession` registers an agent,
then keeps it alive with heartbeats from a background task until it ends.

Life cycle:

- :meth:`AgentSession.start` registers the agent (its error is raised: a
  refused or unreachable registry is the caller's to handle) and starts the
  task. A registration without ``agent_id`` gets a UUID here, so that every
  later (re-)registration is an upsert of the same agent and may be retried
  safely after an unknown outcome.
- The task beats when the registry asked it to: every answer carries
  ``next_heartbeat_ms`` (a third of the TTL, jittered ±10 % by the server so
  that a fleet does not beat in lockstep). Before the first answer it waits
  a third of the TTL, jittered ±10 % here. Every interval is clamped to
  ``min_interval``..``max_interval``.
- Each beat carries the reporter's :class:`~agent_registry.models.HeartbeatReport`
  (status, health, load, metrics). A report the registry refuses (400) is
  not allowed to cost the agent its lease: the beat is sent again at once
  without it.
- A failed beat (no leader, every node down) is retried after an
  exponential, jittered backoff capped by the beat interval, so an outage
  never makes the agent beat less often than it would when healthy.
  Fail-over between nodes happens inside each client call.
- 404 ``agent_not_found``: the registry expired or lost the agent, so it is
  registered again at once under the same id.

Ending:

- :meth:`AgentSession.stop` (and leaving ``async with`` normally or with an
  exception) ends the task and deregisters the agent.
- Cancelling the task that runs the session (``asyncio.CancelledError``
  through ``async with``), or :meth:`AgentSession.abort`, ends the task and
  sends nothing: the registry sees the heartbeats stop and marks the agent
  unhealthy, then offline, exactly as if the process had crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

from .client import AsyncRegistryClient
from .errors import InvalidArgument, NotFound, OutcomeUnknown, RegistryError
from .models import AgentRegistration, HeartbeatReport, HeartbeatResponse, RegisterResponse

__all__ = ["AgentSession", "Reporter", "SessionStats"]

logger = logging.getLogger(__name__)

#: Supplies what each heartbeat reports; called right before every beat.
#: May be a plain function or a coroutine function; None: a plain beat.
Reporter = Callable[[], "Awaitable[HeartbeatReport | None] | HeartbeatReport | None"]


@dataclass
class SessionStats:
    """What the session did so far (read by health endpoints and tests)."""

    #: Heartbeats the registry acknowledged.
    beats: int = 0
    #: Beats (and registrations) that failed, 404s included.
    failures: int = 0
    #: Failures in a row since the last success (0: the agent is fine).
    consecutive_failures: int = 0
    #: Registrations after a 404 ``agent_not_found``.
    reregistrations: int = 0
    #: Reports the registry refused (the beat went on without them).
    reports_rejected: int = 0
    #: The last heartbeat answer.
    last_beat: HeartbeatResponse | None = None
    #: The last error, as text.
    last_error: str | None = None


class AgentSession:
    """Registers ``registration`` with the registry and keeps it alive.

    Use as ``async with AgentSession(client, registration): ...`` or with
    :meth:`start` and :meth:`stop`. ``reporter`` supplies each beat's
    report. Intervals are in seconds.
    """

    def __init__(
        self,
        client: AsyncRegistryClient,
        registration: AgentRegistration,
        *,
        reporter: Reporter | None = None,
        min_interval: float = 0.1,
        max_interval: float = 300.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        if registration.agent_id is None:
            registration = registration.model_copy(update={"agent_id": str(uuid.uuid4())})
        if not 0 < min_interval <= max_interval:
            raise ValueError("need 0 < min_interval <= max_interval")
        if not 0 < retry_initial <= retry_max:
            raise ValueError("need 0 < retry_initial <= retry_max")
        self.client = client
        #: The registration sent at start and after every 404.
        self.registration = registration
        self.reporter = reporter
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.stats = SessionStats()
        self._task: asyncio.Task[None] | None = None
        self._ttl = registration.ttl_seconds or 30

    @property
    def agent_id(self) -> str:
        """The agent's id (made at construction when the registration had none)."""
        assert self.registration.agent_id is not None
        return self.registration.agent_id

    @property
    def running(self) -> bool:
        """Whether the heartbeat task runs."""
        return self._task is not None and not self._task.done()

    @property
    def ready(self) -> bool:
        """Running, and the last beat or registration succeeded."""
        return self.running and self.stats.consecutive_failures == 0

    # -- life cycle ----------------------------------------------------------

    async def start(self) -> RegisterResponse:
        """Registers the agent and starts beating. Raises what the
        registration met (after fail-over: see the client)."""
        if self.running:
            raise RuntimeError(f"the session of {self.agent_id!r} is already running")
        answer = await self._register()
        self._task = asyncio.create_task(
            self._run(self._unpaced()), name=f"agent-session-{self.agent_id}"
        )
        return answer

    async def stop(self) -> None:
        """Stops beating and deregisters the agent (an agent already gone is
        fine)."""
        await self._end_task()
        with contextlib.suppress(NotFound):  # already expired or removed
            await self.client.deregister(self.agent_id)
        logger.info("agent %r deregistered", self.agent_id)

    def abort(self) -> None:
        """Stops beating without a word to the registry, as a crash would."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def __aenter__(self) -> AgentSession:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            # The task running the agent was cancelled: behave like a crash.
            self.abort()
            return
        await self.stop()

    async def _end_task(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # -- the task ------------------------------------------------------------

    async def _register(self) -> RegisterResponse:
        # The id is fixed, so a registration is an upsert: an unknown outcome
        # is settled by sending it again.
        for _ in range(3):
            try:
                answer = await self.client.register(self.registration)
            except OutcomeUnknown as e:
                logger.warning("registration of %r: %s; sending it again", self.agent_id, e)
                continue
            self._ttl = answer.agent.ttl_seconds
            return answer
        return await self.client.register(self.registration)

    def _clamp(self, seconds: float) -> float:
        return min(self.max_interval, max(self.min_interval, seconds))

    def _unpaced(self) -> float:
        """A third of the TTL, jittered ±10 %: the pace before any answer."""
        return self._clamp(self._ttl / 3 * random.uniform(0.9, 1.1))

    def _retry_delay(self, interval: float) -> float:
        n = self.stats.consecutive_failures
        base = min(self.retry_max, interval, self.retry_initial * 2 ** min(n - 1, 20))
        return self._clamp(base / 2 + random.uniform(0, base / 2))

    async def _report(self) -> HeartbeatReport | None:
        if self.reporter is None:
            return None
        try:
            value = self.reporter()
            if inspect.isawaitable(value):
                value = await value
        except Exception:
            logger.exception("the reporter of %r failed; beating without a report", self.agent_id)
            return None
        return value

    async def _beat(self, interval: float) -> HeartbeatResponse:
        report = await self._report()
        timeout = max(1.0, min(interval, self.client.config.timeout))
        try:
            return await self.client.heartbeat(self.agent_id, report, timeout=timeout)
        except InvalidArgument as e:
            if report is None:
                raise
            self.stats.reports_rejected += 1
            logger.warning("the registry refused the report of %r: %s", self.agent_id, e)
            return await self.client.heartbeat(self.agent_id, None, timeout=timeout)

    def _failed(self, e: RegistryError) -> None:
        self.stats.failures += 1
        self.stats.consecutive_failures += 1
        self.stats.last_error = str(e)

    async def _run(self, interval: float) -> None:
        next_at = time.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            try:
                answer = await self._beat(interval)
            except NotFound as e:
                self._failed(e)
                logger.warning(
                    "agent %r is not registered (%s): registering again", self.agent_id, e
                )
                try:
                    await self._register()
                except RegistryError as again:
                    self._failed(again)
                    next_at = time.monotonic() + self._retry_delay(interval)
                    continue
                self.stats.reregistrations += 1
                self.stats.consecutive_failures = 0
                interval = self._unpaced()
                next_at = time.monotonic() + interval
                continue
            except RegistryError as e:
                self._failed(e)
                delay = self._retry_delay(interval)
                logger.warning(
                    "heartbeat of %r failed (%s); again in %.2fs", self.agent_id, e, delay
                )
                next_at = time.monotonic() + delay
                continue
            except Exception as e:  # a bug or a bad answer must not end the agent's lease
                logger.exception("heartbeat of %r failed unexpectedly", self.agent_id)
                self._failed(RegistryError(f"{type(e).__name__}: {e}", code="client"))
                next_at = time.monotonic() + self._retry_delay(interval)
                continue
            self.stats.beats += 1
            self.stats.consecutive_failures = 0
            self.stats.last_beat = answer
            self._ttl = answer.ttl_seconds
            interval = self._clamp(answer.next_heartbeat_ms / 1000)
            next_at = time.monotonic() + interval
