"""Shared dispatcher plumbing: idle back-off, provider retries, interruptible fetches."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import anyio

from .._clock import SYSTEM_CLOCK
from .._errors import ProviderError, StoreLostError
from ._options import RuntimeOptions
from ._pool import WorkPool

T = TypeVar("T")

log = logging.getLogger("duro.runtime")


class IdleBackoff:
    """Exponential back-off between empty or failed polls, reset by work.

    It limits load on the store, so it runs on real time even when the runtime's clock is
    virtual (a virtual pause would never end unless a test advanced the clock).
    """

    def __init__(self, options: RuntimeOptions) -> None:
        self._min = options.idle_backoff_min
        self._max = options.idle_backoff_max
        self._delay = 0.0

    def reset(self) -> None:
        self._delay = 0.0

    async def idle(self, stopping: anyio.Event, fetch_seconds: float) -> None:
        """After an empty fetch: a store that long-polled already waited; others back off."""
        if fetch_seconds >= self._min:
            self._delay = 0.0
            return
        self._delay = min(self._max, max(self._min, self._delay * 2))
        await SYSTEM_CLOCK.wait(stopping, self._delay)

    async def failed(self, stopping: anyio.Event, retryable: bool) -> None:
        self._delay = min(self._max * 3, max(0.1, self._delay * 2))
        await SYSTEM_CLOCK.wait(stopping, self._delay if retryable else self._max)


async def retry_provider_call(call: Callable[[], Awaitable[T]], attempts: int) -> T:
    """Retry retryable provider errors with short exponential back-off (10 ms doubling)."""
    delay = 0.01
    attempt = 0
    while True:
        try:
            return await call()
        except ProviderError as exc:
            attempt += 1
            if not exc.retryable or attempt > attempts:
                raise
        await anyio.sleep(delay)
        delay *= 2


class FetchScopes:
    """Cancel scopes of fetches in progress, so shutdown can interrupt long polls."""

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()
        self._cancelled = False

    @contextlib.contextmanager
    def open(self) -> Iterator[anyio.CancelScope]:
        scope = anyio.CancelScope()
        if self._cancelled:
            scope.cancel()
        self._scopes.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._scopes.discard(scope)

    def cancel_all(self) -> None:
        self._cancelled = True
        for scope in list(self._scopes):
            scope.cancel()


async def run_fetch_loop(
    *,
    fetch: Callable[[int, bool], Awaitable[list[T]]],
    pool: WorkPool[T],
    handle: Callable[[T], Awaitable[None]],
    release_unstarted: Callable[[T], Awaitable[None]],
    stopping: anyio.Event,
    backoff: IdleBackoff,
    scopes: FetchScopes,
    what: str,
    batch_limit: int = 1,
) -> None:
    """Fetch items and ``handle`` each in ``pool`` until ``stopping`` is set, then return once
    every handled item is done. ``fetch(n, wait)`` locks up to ``n`` items, long-polling
    only if ``wait``.

    A single fetcher per dispatcher keeps a wake-up from sending every idle slot to the store
    at once. Free slots are reserved before fetching (at least one, up to ``batch_limit``) so
    nothing is locked without capacity to run it. Items a fetch returns once shutdown has
    begun (the fetch was past its last checkpoint) are given back, not started. When the pool
    also receives hand-overs,
    the loop waits for work holding a single slot: the others stay free for items handed
    over, and once work shows up the loop takes a full batch without waiting.
    """
    waiting = False
    async with pool.running(handle, stopping):
        while not stopping.is_set():
            items: list[T] = []
            reserved = 0
            started = time.monotonic()
            try:
                with scopes.open():
                    reserved = await pool.reserve(1 if waiting else batch_limit)
                    started = time.monotonic()
                    items = await fetch(reserved, waiting or not pool.receives_hand_overs)
            except StoreLostError:
                raise  # the store is gone: the runtime stops (see Runtime.run)
            except ProviderError as exc:
                log.warning("fetching %s failed: %s", what, exc)
                pool.release(reserved)
                await backoff.failed(stopping, exc.retryable)
                continue
            except Exception:  # a store bug must not stop the loop: log it, back off
                log.exception("fetching %s failed unexpectedly", what)
                pool.release(reserved)
                await backoff.failed(stopping, False)
                continue
            if items and stopping.is_set():
                pool.release(reserved)
                with anyio.CancelScope(shield=True):
                    for item in items:
                        await release_unstarted(item)
                break
            pool.release(reserved - len(items))
            if items:
                backoff.reset()
                for item in items:
                    pool.start(item)
                waiting = False
            elif waiting or not pool.receives_hand_overs:
                await backoff.idle(stopping, time.monotonic() - started)
            else:
                waiting = True
