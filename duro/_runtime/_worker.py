"""The activity worker pool: fetch a work item, run it with lock renewal, report the result."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from .._clock import Clock
from .._engine import application_error, configuration_error, poison_error
from .._errors import LockLostError, PayloadError, ProviderError, UnregisteredError
from .._history import NULL
from .._messages import ActivityResultMessage, ActivityTask
from .._registry import Registered, Registry
from .._serde import decode, encode
from .._status import ErrorCategory, ErrorInfo
from ..providers import (
    AbandonRequest,
    ActivityCommit,
    ActivityWorkItem,
    FetchActivityRequest,
    Provider,
    ScheduledMessage,
)
from . import _delays as delays
from ._activity_context import ActivityContext
from ._batching import BatchCommitter
from ._handoff import HandOffs
from ._isolation import SuspectIsolation
from ._leases import ActivityLeases, Key, RunningActivity
from ._options import RuntimeOptions
from ._polling import FetchScopes, IdleBackoff, run_fetch_loop
from ._pool import WorkPool
from ._requests import sized
from ._system import SYSTEM_ACTIVITIES
from ._telemetry import ActivityOutcome, ObservedActivity, Telemetry
from ._unreported import UnreportedOutcomes

if TYPE_CHECKING:
    from .._client import Client

log = logging.getLogger("duro.runtime.worker")


CompleteActivities = Callable[[Sequence[ActivityCommit]], Awaitable[list[ProviderError | None]]]


def _key(task: ActivityTask) -> Key:
    """Names one scheduled activity across its deliveries (and its leases here)."""
    return (task.instance_id, task.execution_id, task.seq)


class ActivityWorker:
    """Fetches work items, runs each activity with lock renewal, reports the results."""

    def __init__(
        self,
        *,
        provider: Provider,
        registry: Registry,
        options: RuntimeOptions,
        client: Client,
        pool: WorkPool[ActivityWorkItem],
        request: FetchActivityRequest,
        handoffs: HandOffs[tuple[str, int, int]],
        complete_activities: CompleteActivities,
        clock: Clock,
        telemetry: Telemetry,
    ) -> None:
        """``request`` is the fetch template (its ``max_items`` is the batch limit; it skips
        the activities in ``handoffs``, whose code this worker lacks);
        ``complete_activities`` applies a batch of reports (see ``HandOver``); ``clock``
        measures how long items waited in the queue (for telemetry)."""
        self._provider = provider
        self._registry = registry
        self._options = options
        self._client = client
        self.pool = pool
        self._request = request
        self._handoffs = handoffs
        self._leases = ActivityLeases(provider, options)
        self._unreported = UnreportedOutcomes(options.activity_lock_timeout)
        self._isolation = SuspectIsolation(self.pool)
        self._reporter = BatchCommitter[ActivityCommit](
            complete_activities, options.commit_retries, "complete_activity"
        )
        self._fetch_scopes = FetchScopes()
        self._limiter = anyio.CapacityLimiter(max(1, options.activity_concurrency))
        self._clock = clock
        self._telemetry = telemetry
        self.activities_completed = 0

    @property
    def in_flight(self) -> int:
        return len(self._leases)

    @property
    def parked(self) -> int:
        """Activities in flight that only wait for cancellation."""
        return self._leases.parked()

    def stop_fetching(self) -> None:
        self._fetch_scopes.cancel_all()

    def cancel_withdrawn(self, instance_id: str, execution_id: int, seqs: Sequence[int]) -> None:
        """Signal in-process activities whose work items a turn withdrew."""
        for seq in seqs:
            self._leases.cancel(
                (instance_id, execution_id, seq), "the orchestration cancelled this activity"
            )

    def cancel_all(self, reason: str) -> None:
        """Shutdown's grace period is over: cancel running activities, and stop retrying
        reports the store keeps refusing."""
        self._leases.cancel_all(reason)
        self._reporter.stop_retrying()

    async def run(self, stopping: anyio.Event) -> None:
        """Run activities until ``stopping`` is set; returns when in-flight ones are done."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._leases.maintain)
            tg.start_soon(self._reporter.run)
            await run_fetch_loop(
                fetch=lambda n, wait: self._provider.fetch_activities(
                    sized(self._request, n, wait=wait)
                ),
                pool=self.pool,
                handle=self._execute,
                release_unstarted=lambda item: self._abandon(
                    item, delays.UNSTARTED, undo_delivery_count=True
                ),
                batch_limit=self._request.max_items,
                stopping=stopping,
                backoff=IdleBackoff(self._options),
                scopes=self._fetch_scopes,
                what="an activity",
            )
            tg.cancel_scope.cancel()

    async def _execute(self, item: ActivityWorkItem) -> None:
        task = item.task
        key = _key(task)
        if self._leases.adopt(key, item):
            return
        kept = self._unreported.take(key)
        if kept is not None:
            # Its run here ended and its report met this very fetch's new lock: report the
            # outcome under it rather than run the activity again.
            running = self._leases.add(key, item, kept.ctx)
            try:
                await self._report(running, kept.result, kept.error)
            finally:
                self._leases.remove(key)
            return
        details = bytes(task.heartbeat_details)  # b"null" when no heartbeat carried any
        ctx = ActivityContext(
            instance_id=task.instance_id,
            execution_id=task.execution_id,
            activity_name=task.name,
            attempt=max(task.attempt, 1) + max(item.delivery_count - 1, 0),
            orchestration_name=task.orchestration_name,
            orchestration_version=task.orchestration_version,
            session=task.session,
            tag=task.tag,
            worker_id=self._options.worker_id,
            client=self._client,
            heartbeat_details=None if details == b"null" else details,
        )
        running = self._leases.add(key, item, ctx)
        try:
            limit = self._options.max_deliveries
            if self._lookup(task.name) is None and await self._hand_off(item, key):
                return
            if item.delivery_count > limit:
                poison = poison_error(
                    f"activity {task.name!r} was delivered {item.delivery_count} times "
                    f"(limit {self._options.max_deliveries}) without completing"
                )
                meters = self._telemetry.metrics.instruments()
                if meters is not None:
                    meters.poison_messages.add(1, {"duro.queue": "worker"})
                await self._report(running, None, poison)
                return
            suspect = item.delivery_count > 1
            if not self._isolation.admit(suspect):
                # A suspect runs alone here: this one goes back, uncounted, for later.
                await self._abandon(item, delays.ISOLATED, undo_delivery_count=True)
                return
            try:
                if suspect:
                    await self._isolation.alone()
                result, error = await self._run_observed(running, ctx)
            finally:
                self._isolation.done(suspect)
            if running.heartbeat_missed:
                timeout = running.heartbeat_timeout
                missed = ErrorInfo(
                    category=ErrorCategory.APPLICATION,
                    error_type="ActivityHeartbeatTimeout",
                    message=f"no heartbeat within {timeout} s: the attempt is taken as hung",
                )
                await self._report(running, None, missed)
                return
            # Under the newest lock: this worker may have fetched the item again meanwhile.
            if running.fetched_again_since_lock_lost():
                # Stopped for nothing: give the new delivery back to run in full.
                await self._abandon(running.item, delays.REFETCHED_AFTER_LOCK_LOST)
                return
            if ctx.is_cancelled:
                # Withdrawn or lock lost: the orchestration no longer wants this result.
                await self._drop(running.item)
                return
            await self._report(running, result, error)
        except Exception:  # a bug below us must not stop the worker
            log.exception("running %s for %s failed unexpectedly", task.name, task.instance_id)
            await self._abandon(running.item)
        finally:
            self._leases.remove(key)

    async def _run_observed(
        self, running: RunningActivity, ctx: ActivityContext
    ) -> tuple[msgspec.Raw | None, ErrorInfo | None]:
        """``_run`` in the activity's cancel scope, traced and measured if telemetry is on;
        (None, None) when the scope was cancelled (withdrawn, lock lost, heartbeat missed)."""
        item = running.item
        result: msgspec.Raw | None = None
        error: ErrorInfo | None = None
        tracer = self._telemetry.tracing.tracer()
        meters = self._telemetry.metrics.instruments()
        if tracer is None and meters is None:
            with running.scope:
                result, error = await self._run(item, ctx)
            return result, error
        observed = ObservedActivity(item.task, ctx.attempt)
        if meters is not None:
            observed.record_start(meters, self._clock.now_ms())
        outcome = ActivityOutcome.CANCELLED  # unless it returns
        with running.scope, observed.traced(tracer):
            result, error = await self._run(item, ctx)
            outcome = observed.ended(error, ctx.is_cancelled)
        if meters is not None:
            observed.record(meters, outcome)
        return result, error

    def _lookup(self, name: str) -> Registered | None:
        return self._registry.get_activity(name) or SYSTEM_ACTIVITIES.get(name)

    async def _run(
        self, item: ActivityWorkItem, ctx: ActivityContext
    ) -> tuple[msgspec.Raw | None, ErrorInfo | None]:
        task = item.task
        registered = self._lookup(task.name)
        if registered is None:
            return None, configuration_error(UnregisteredError("activity", task.name))
        try:
            args: tuple[Any, ...] = (ctx,)
            if registered.takes_input:
                what = f"input of activity {task.name!r}"
                args += (decode(task.input, registered.input_type, what=what),)
        except PayloadError as exc:
            return None, application_error(exc, retryable=False)
        try:
            value = await self._invoke(registered, args, ctx)
        except anyio.get_cancelled_exc_class():
            raise
        except (KeyboardInterrupt, SystemExit) as exc:
            # User code's, not the host's: this attempt fails, the process carries on.
            return None, application_error(exc, retryable=False)
        except Exception as exc:
            return None, application_error(exc)
        try:
            return encode(value, what=f"result of activity {task.name!r}"), None
        except PayloadError as exc:
            return None, application_error(exc, retryable=False)

    async def _invoke(
        self, registered: Registered, args: tuple[Any, ...], ctx: ActivityContext
    ) -> Any:
        if registered.is_async:
            return await registered.fn(*args)
        fn = functools.partial(registered.fn, *args)
        # Abandoned on cancellation: a thread cannot be stopped, and a plain ``def`` activity
        # that ignores ``ctx.is_cancelled`` must not hold up shutdown. It runs on in a daemon
        # thread; its result is dropped.
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter, abandon_on_cancel=True)

    async def _report(
        self, running: RunningActivity, result: msgspec.Raw | None, error: ErrorInfo | None
    ) -> None:
        task = running.item.task
        details = running.ctx._latest_details if error is not None else None
        message = ActivityResultMessage(
            instance_id=task.instance_id,
            execution_id=task.execution_id,
            seq=task.seq,
            result=result if result is not None else NULL,
            error=error,
            heartbeat_details=NULL if details is None else msgspec.Raw(details),
        )
        used: list[str] = []

        def commit() -> ActivityCommit:
            # Under the newest lock: this worker may fetch the item again while it waits.
            used.append(running.item.lock_token)
            return ActivityCommit(lock_token=used[-1], result=ScheduledMessage(message=message))

        describe = f"reporting {task.name} for {task.instance_id}"
        failure = await self._reporter.submit_until_applied(commit, describe)
        while isinstance(failure, LockLostError) and running.item.lock_token != used[-1]:
            failure = await self._reporter.submit_until_applied(commit, describe)  # adopted
        if failure is None:
            self.activities_completed += 1
        elif isinstance(failure, LockLostError):
            # Withdrawn, taken over, or fetched again by this worker, its new run not yet
            # adopting this one: kept for that last case (see UnreportedOutcomes).
            self._unreported.keep(_key(task), running.ctx, result, error)
            log.info(
                "result of %s for %s not stored: its lock was lost", task.name, task.instance_id
            )
        else:
            log.error("reporting %s for %s failed: %s", task.name, task.instance_id, failure)
            await self._abandon(running.item)

    async def _hand_off(self, item: ActivityWorkItem, key: tuple[str, int, int]) -> bool:
        """Leave an activity this worker lacks to workers that may have it (a rolling
        deployment, see ``_handoff``). False on its last look: then it runs here and fails
        (in _run) instead of waiting forever."""
        task = item.task
        limit = self._options.max_deliveries
        looks = max(item.delivery_count, self._handoffs.look(key))
        if looks >= limit:
            return False
        put_back = self._handoffs.leave(key, looks, item.delivery_count)
        log.warning(
            "leaving activity %s of %s for another worker: not registered here "
            "(look %d of %d, here again in %.0f s)",
            task.name, task.instance_id, looks, limit, put_back.here_again_in,
        )  # fmt: skip
        await self._abandon(item, put_back.delay, undo_delivery_count=put_back.undo_delivery_count)
        return True

    async def _drop(self, item: ActivityWorkItem) -> None:
        # An error means the item is already withdrawn: nothing left to drop.
        await self._reporter.submit(ActivityCommit(lock_token=item.lock_token, result=None))

    async def _abandon(
        self,
        item: ActivityWorkItem,
        delay: float = delays.REPORT_FAILED,
        *,
        undo_delivery_count: bool = False,
    ) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self._provider.abandon_activity(
                    AbandonRequest(
                        lock_token=item.lock_token,
                        delay=delay,
                        undo_delivery_count=undo_delivery_count,
                    )
                )
        except ProviderError as exc:
            task = item.task
            log.warning("abandoning %s for %s failed: %s", task.name, task.instance_id, exc)
