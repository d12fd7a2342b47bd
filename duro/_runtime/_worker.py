"""The activity worker pool: fetch a work item, run it with lock renewal, report the result."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
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
    ActivityKey,
    ActivityWorkItem,
    FetchActivityRequest,
    FetchTurnRequest,
    OrchestrationWorkItem,
    Provider,
    ScheduledMessage,
)
from . import _delays as delays
from ._activity_context import ActivityContext
from ._batching import BatchCommitter
from ._leases import ActivityLeases
from ._options import RuntimeOptions
from ._polling import FetchScopes, IdleBackoff, run_fetch_loop
from ._pool import HandOver, WorkPool
from ._telemetry import activity_attributes, span

if TYPE_CHECKING:
    from .._client import Client

log = logging.getLogger("duro.runtime.worker")


class ActivityWorker:
    def __init__(
        self,
        *,
        provider: Provider,
        registry: Registry,
        options: RuntimeOptions,
        client: Client,
    ) -> None:
        self._provider = provider
        self._registry = registry
        self._options = options
        self._client = client
        self._leases = ActivityLeases(provider, options)
        self._reporter = BatchCommitter[ActivityCommit](
            self._complete_activities, options.commit_retries, "complete_activity"
        )
        self._fetch_scopes = FetchScopes()
        self.pool = WorkPool(options.activity_concurrency, self._execute)
        self._request = FetchActivityRequest(
            lock_timeout=options.activity_lock_timeout,
            poll_timeout=options.poll_timeout,
            tag_filter=options.tag_filter,
            session_owner=options.worker_id if options.max_sessions > 0 else None,
            session_lock_timeout=options.session_lock_timeout,
        )
        self.turns: HandOver[FetchTurnRequest, OrchestrationWorkItem] | None = None
        """Where the turns this worker's completions fetch go (set by the runtime)."""
        self._limiter = anyio.CapacityLimiter(max(1, options.activity_concurrency))
        self.activities_completed = 0

    @property
    def in_flight(self) -> int:
        return len(self._leases)

    def stop_fetching(self) -> None:
        self._fetch_scopes.cancel_all()

    def cancel_running(self, keys: list[ActivityKey], reason: str) -> None:
        """Signal in-process activities whose work items were withdrawn."""
        for key in keys:
            self._leases.cancel((key.instance_id, key.execution_id, key.seq), reason)

    def cancel_all(self, reason: str) -> None:
        self._leases.cancel_all(reason)

    def fetch_request(self, max_items: int, wait: bool = False) -> FetchActivityRequest:
        """The request for up to ``max_items``; long-polling only if ``wait``."""
        poll_timeout = self._request.poll_timeout if wait else 0.0
        return dataclasses.replace(self._request, max_items=max_items, poll_timeout=poll_timeout)

    async def _complete_activities(
        self, commits: Sequence[ActivityCommit]
    ) -> list[ProviderError | None]:
        if self.turns is None:
            return await self._provider.complete_activities(commits)
        return await self.turns.commit(
            commits,
            self._provider.complete_activities,
            self._provider.complete_activities_and_fetch_turns,
        )

    async def run(self, stopping: anyio.Event) -> None:
        """Run activities until ``stopping`` is set; returns when in-flight ones are done."""
        options = self._options
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._leases.maintain)
            tg.start_soon(self._reporter.run)
            await run_fetch_loop(
                fetch=lambda n, wait: self._provider.fetch_activities(self.fetch_request(n, wait)),
                pool=self.pool,
                release_unstarted=lambda item: self._abandon(
                    item, delays.UNSTARTED, undo_delivery_count=True
                ),
                batch_limit=options.activity_fetch_batch,
                stopping=stopping,
                backoff=IdleBackoff(options),
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
