"""Helpers of the contract suite (part 1): turn-side builders and virtual-time drivers.

Message, task and turn builders shared with part 2 live in ``_fixtures``; this module adds what
the turn, lock, queue and polling tests need on top.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import anyio
import anyio.abc
import msgspec
import pytest

from ..._history import EventRaised, HistoryEvent
from ..._messages import AnyOrchestratorMessage, RaiseEventMessage, TimerFiredMessage
from ...providers import Provider
from ...providers._types import OrchestrationWorkItem, ScheduledMessage, TurnCommit
from .._clock import VirtualClock
from ._fixtures import turn_request

T = TypeVar("T")

BOGUS_TOKEN: Final = "no-such-lock-token"
"""A lock token no store ever hands out."""

REAL_TIME_LIMIT: Final = 10.0
"""Real seconds a test may take before it counts as hung (time is virtual everywhere else)."""

IO_POLL_INTERVAL: Final = 0.001
"""Real seconds ``drive_until_done`` lets pass while the operation waits on I/O, not time."""


def raised(count: int, name: str = "e") -> list[HistoryEvent]:
    """``count`` filler events (``turn_commit`` renumbers them)."""
    return [EventRaised(event_id=0, ts=0, name=f"{name}{i}") for i in range(count)]


def with_event_ids(events: Sequence[HistoryEvent], *event_ids: int) -> list[HistoryEvent]:
    """``events`` renumbered to exactly ``event_ids`` (to build duplicates on purpose)."""
    return [msgspec.structs.replace(e, event_id=i) for e, i in zip(events, event_ids, strict=True)]


def with_changes(commit: TurnCommit, **changes: Any) -> TurnCommit:
    """``commit`` with some of its turn's changes replaced."""
    return TurnCommit(
        lock_token=commit.lock_token, changes=dataclasses.replace(commit.changes, **changes)
    )


def timer(
    instance_id: str, seq: int, fire_at_ms: int, *, execution_id: int = 1
) -> ScheduledMessage:
    """A timer as a turn schedules it: a ``TimerFired`` message visible at its fire time."""
    return ScheduledMessage(
        message=TimerFiredMessage(
            instance_id=instance_id, execution_id=execution_id, seq=seq, fire_at=fire_at_ms
        ),
        visible_at_ms=fire_at_ms,
    )


def kinds(messages: Sequence[AnyOrchestratorMessage]) -> list[str]:
    """Message class names, for asserting on a batch's composition and order."""
    return [type(message).__name__ for message in messages]


def event_names(messages: Sequence[AnyOrchestratorMessage]) -> list[str]:
    """Names of the external events among ``messages``, in batch order."""
    return [message.name for message in messages if isinstance(message, RaiseEventMessage)]


async def try_turn(provider: Provider, lock_timeout: float) -> OrchestrationWorkItem | None:
    return await provider.fetch_turn(turn_request(lock_timeout))


async def must_turn(
    provider: Provider, lock_timeout: float, instance_id: str | None = None
) -> OrchestrationWorkItem:
    item = await provider.fetch_turn(turn_request(lock_timeout))
    if item is None:
        pytest.fail("expected a turn, fetch_turn returned None")
    if instance_id is not None and item.instance_id != instance_id:
        pytest.fail(f"expected a turn for {instance_id!r}, got one for {item.instance_id!r}")
    return item


async def drive_until_done(
    clock: VirtualClock, operation: Callable[[], Awaitable[T]], *, step: float, limit: float
) -> tuple[T, float]:
    """Run ``operation`` while moving virtual time in ``step``s; returns (result, seconds).

    Time moves only while the operation waits on the clock: a task waiting for a remote
    store's reply also counts as blocked, and moving time then would spend the operation's
    virtual seconds on real round trips. Fails if the operation needs more than ``limit``
    virtual seconds (or hangs in real time).
    """
    started = clock.now_ms()
    results: list[T] = []

    async def run() -> None:
        results.append(await operation())

    with anyio.fail_after(REAL_TIME_LIMIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            while True:
                await anyio.wait_all_tasks_blocked()
                if results:
                    break
                if clock.now_ms() - started > limit * 1000:
                    tg.cancel_scope.cancel()
                    pytest.fail(f"operation still running after {limit} virtual seconds")
                if clock.next_deadline_ms() is None:
                    await anyio.sleep(IO_POLL_INTERVAL)
                else:
                    await clock.advance(step)
    return results[0], (clock.now_ms() - started) / 1000


class Background:
    """One operation started in a task group, whose result a test checks later."""

    def __init__(self) -> None:
        self.results: list[object] = []

    @property
    def done(self) -> bool:
        return bool(self.results)

    @property
    def result(self) -> object:
        if not self.results:
            pytest.fail("the background operation has not returned")
        return self.results[0]

    def start(self, tg: anyio.abc.TaskGroup, operation: Callable[[], Awaitable[object]]) -> None:
        async def run() -> None:
            self.results.append(await operation())

        tg.start_soon(run)
