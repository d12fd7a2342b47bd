"""The activity worker pool: fetch a work item, run it with lock renewal, report the result."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from .._engine import application_error, configuration_error, poison_error
from .._errors import LockLostError, PayloadError, ProviderError, UnregisteredError
from .._history import NULL
from .._messages import ActivityResultMessage
from .._registry import Registered, Registry
from .._serde import decode, encode
from .._status import ErrorInfo
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
from ._leases import ActivityLeases
from ._options import RuntimeOptions
from ._polling import FetchScopes, IdleBackoff, run_fetch_loop
from ._pool import WorkPool
from ._requests import sized
from ._telemetry import activity_attributes, span

if TYPE_CHECKING:
    from .._client import Client

log = logging.getLogger("duro.runtime.worker")


CompleteActivities = Callable[[Sequence[ActivityCommit]], Awaitable[list[ProviderError | None]]]


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
        complete_activities: CompleteActivities,
    ) -> None:
        """``request`` is the fetch template (its ``max_items`` is the batch limit);
        ``complete_activities`` applies a batch of reports (see ``HandOver``)."""
        self._provider = provider
        self._registry = registry
        self._options = options
        self._client = client
        self.pool = pool
        self._request = request
        self._leases = ActivityLeases(provider, options)
        self._reporter = BatchCommitter[ActivityCommit](
            complete_activities, options.commit_retries, "complete_activity"
        )
        self._fetch_scopes = FetchScopes()
        self._limiter = anyio.CapacityLimiter(max(1, options.activity_concurrency))
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
        self._leases.cancel_all(reason)

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
        key = (task.instance_id, task.execution_id, task.seq)
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
        )
        running = self._leases.add(key, item, ctx)
        try:
            if item.delivery_count > self._options.max_deliveries:
                poison = poison_error(
                    f"activity {task.name!r} was delivered {item.delivery_count} times "
                    f"(limit {self._options.max_deliveries}) without completing"
                )
                await self._report(item, None, poison)
                return
            result: msgspec.Raw | None = None
            error: ErrorInfo | None = None
            attributes = functools.partial(
                activity_attributes, task.instance_id, task.name, ctx.attempt
            )
            with running.scope, span("duro.activity", attributes):
                result, error = await self._run(item, ctx)
            if ctx.is_cancelled:
                # Withdrawn or lock lost: the orchestration no longer wants this result.
                await self._drop(item)
                return
            await self._report(item, result, error)
        finally:
            self._leases.remove(key)

    async def _run(
        self, item: ActivityWorkItem, ctx: ActivityContext
    ) -> tuple[msgspec.Raw | None, ErrorInfo | None]:
        task = item.task
        registered = self._registry.get_activity(task.name)
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
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    async def _report(
        self, item: ActivityWorkItem, result: msgspec.Raw | None, error: ErrorInfo | None
    ) -> None:
        task = item.task
        message = ActivityResultMessage(
            instance_id=task.instance_id,
            execution_id=task.execution_id,
            seq=task.seq,
            result=result if result is not None else NULL,
            error=error,
        )
        commit = ActivityCommit(
            lock_token=item.lock_token, result=ScheduledMessage(message=message)
        )
        failure = await self._reporter.submit(commit)
        if failure is None:
            self.activities_completed += 1
        elif isinstance(failure, LockLostError):
            log.info("result of %s for %s dropped: item withdrawn", task.name, task.instance_id)
        else:
            log.error("reporting %s for %s failed: %s", task.name, task.instance_id, failure)
            await self._abandon(item)

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
            log.warning("abandoning %s failed: %s", item.task.name, exc)
