"""Lock renewal and forced cancellation for every running activity, from one task.

One maintenance task per worker replaces a renewal task and a cancellation watcher per
activity: with thousands of short activities, per-activity tasks cost more than the work.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import anyio

from .._errors import LockLostError, ProviderError
from ..providers import ActivityWorkItem, Provider, RenewRequest
from ._activity_context import ActivityContext
from ._options import RuntimeOptions

log = logging.getLogger("duro.runtime.worker")

Key = tuple[str, int, int]


@dataclass(slots=True)
class RunningActivity:
    item: ActivityWorkItem
    ctx: ActivityContext
    scope: anyio.CancelScope
    renew_at: float
    """Monotonic time of the next lock renewal."""
    force_cancel_at: float | None = None
    """Monotonic time after which an ignored cancellation becomes a hard cancel."""
    heartbeat_timeout: float | None = None
    """Seconds the activity may go without ``ctx.heartbeat()`` (None: no limit)."""
    heartbeat_missed: bool = False
    """It went longer than that: the attempt fails, whatever it returns."""
    lost_lock_token: str | None = None
    """The lock whose loss a renewal found and cancelled the run for."""

    def fetched_again_since_lock_lost(self) -> bool:
        """Cancelled for a lost lock, then adopted by this worker's new delivery: the work
        is still wanted (the lock went to this worker), only this run of it is not."""
        lost = self.lost_lock_token
        return lost is not None and lost != self.item.lock_token

    def heartbeat_due(self) -> float | None:
        """Monotonic time by which the next heartbeat must come, or None."""
        if self.heartbeat_timeout is None or self.heartbeat_missed:
            return None
        return self.ctx._last_beat + self.heartbeat_timeout


class ActivityLeases:
    def __init__(self, provider: Provider, options: RuntimeOptions) -> None:
        self._provider = provider
        self._renew_every = max(0.01, options.activity_lock_timeout / 3)
        self._lock_timeout = options.activity_lock_timeout
        self._grace = options.activity_cancellation_grace
        self._running: dict[Key, RunningActivity] = {}
        self._changed = anyio.Event()

    def __len__(self) -> int:
        return len(self._running)

    def parked(self) -> int:
        """Running activities that only wait for cancellation (``ActivityContext.parked``)."""
        return sum(1 for running in self._running.values() if running.ctx.parked)

    def add(self, key: Key, item: ActivityWorkItem, ctx: ActivityContext) -> RunningActivity:
        timeout_ms = item.task.heartbeat_timeout_ms
        running = RunningActivity(
            item=item,
            ctx=ctx,
            scope=anyio.CancelScope(),
            renew_at=time.monotonic() + self._renew_every,
            heartbeat_timeout=None if timeout_ms is None else timeout_ms / 1000,
        )
        if timeout_ms is not None:
            self._changed.set()  # the maintenance loop may sleep past its deadline
        self._running[key] = running
        return running

    def adopt(self, key: Key, item: ActivityWorkItem) -> bool:
        """True if ``key`` runs here already: ``item`` is this worker fetching it again (its
        lock expired while the event loop or the store stalled). The run in progress goes on
        under the new lock instead of a second run starting."""
        running = self._running.get(key)
        if running is None:
            return False
        log.warning(
            "activity %s of %s was fetched again while still running here (its lock expired: "
            "was the event loop blocked?); the run in progress continues under the new lock",
            item.task.name, item.task.instance_id,
        )  # fmt: skip
        running.item = item
        return True

    def remove(self, key: Key) -> None:
        self._running.pop(key, None)

    def cancel(self, key: Key, reason: str) -> None:
        running = self._running.get(key)
        if running is not None:
            self._request_cancel(running, reason)

    def cancel_all(self, reason: str) -> None:
        for running in list(self._running.values()):
            self._request_cancel(running, reason)

    def _request_cancel(self, running: RunningActivity, reason: str) -> None:
        if running.ctx.is_cancelled:
            return
        running.ctx.cancel(reason)
        running.force_cancel_at = time.monotonic() + self._grace
        self._changed.set()

    async def maintain(self) -> None:
        """Renew due locks and hard-cancel activities that ignored cancellation; forever."""
        while True:
            now = time.monotonic()
            for running in list(self._running.values()):
                if running.force_cancel_at is not None and now >= running.force_cancel_at:
                    running.force_cancel_at = None
                    running.scope.cancel()
                beat_due = running.heartbeat_due()
                if beat_due is not None and now >= beat_due and not running.ctx.is_cancelled:
                    # Hung (or too slow to say otherwise): the attempt fails now, and its code
                    # is stopped without grace (a thread is abandoned, its result dropped).
                    running.heartbeat_missed = True
                    self._request_cancel(
                        running, f"no heartbeat within {running.heartbeat_timeout} s"
                    )
                    running.scope.cancel()
                    continue
                if now >= running.renew_at and not running.ctx.is_cancelled:
                    running.renew_at = now + self._renew_every
                    await self._renew(running)
            await self._sleep_until_due()

    async def _renew(self, running: RunningActivity) -> None:
        details = running.ctx._take_unstored_details()
        request = RenewRequest(
            lock_token=running.item.lock_token,
            extend_for=self._lock_timeout,
            heartbeat_details=details,
            instance_id=running.item.task.instance_id,
        )
        try:
            await self._provider.renew_activity_lock(request)
            if details is not None:
                running.ctx._confirm_stored(details)
        except LockLostError:
            if running.item.lock_token != request.lock_token:
                return  # fetched again here meanwhile (see adopt): the new lock holds
            running.lost_lock_token = request.lock_token
            self._request_cancel(running, "the work item was withdrawn or its lock was lost")
        except ProviderError as exc:
            task = running.item.task
            log.warning(
                "renewing the lock of %s for %s failed: %s", task.name, task.instance_id, exc
            )

    async def _sleep_until_due(self) -> None:
        deadlines = [r.renew_at for r in self._running.values() if not r.ctx.is_cancelled]
        deadlines += [
            r.force_cancel_at for r in self._running.values() if r.force_cancel_at is not None
        ]
        deadlines += [
            due
            for r in self._running.values()
            if not r.ctx.is_cancelled and (due := r.heartbeat_due()) is not None
        ]
        delay = (min(deadlines) - time.monotonic()) if deadlines else self._renew_every
        if self._changed.is_set():
            self._changed = anyio.Event()
        with anyio.move_on_after(max(0.0, min(delay, self._renew_every))):
            await self._changed.wait()


class TurnLeases:
    """Renews the instance locks of turns that run long (a slow store, a long commit queue).

    Most turns take milliseconds and are never renewed; one task serves all of them."""

    def __init__(self, provider: Provider, options: RuntimeOptions) -> None:
        self._provider = provider
        self._renew_every = max(0.01, options.orchestration_lock_timeout / 3)
        self._lock_timeout = options.orchestration_lock_timeout
        self._renew_at: dict[str, float] = {}
        """Lock token -> monotonic time of its next renewal."""

    def add(self, lock_token: str) -> None:
        self._renew_at[lock_token] = time.monotonic() + self._renew_every

    def remove(self, lock_token: str) -> None:
        self._renew_at.pop(lock_token, None)

    async def maintain(self) -> None:
        while True:
            now = time.monotonic()
            for token, due in list(self._renew_at.items()):
                if now >= due and token in self._renew_at:
                    self._renew_at[token] = now + self._renew_every
                    await self._renew(token)
            due = min(self._renew_at.values(), default=now + self._renew_every)
            await anyio.sleep(max(0.0, min(due - time.monotonic(), self._renew_every)))

    async def _renew(self, token: str) -> None:
        try:
            await self._provider.renew_turn_lock(
                RenewRequest(lock_token=token, extend_for=self._lock_timeout)
            )
        except LockLostError:
            self.remove(token)  # the commit will learn it too, and void the turn
        except ProviderError as exc:
            log.warning("renewing a turn lock failed: %s", exc)
