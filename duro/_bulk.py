"""Bulk retention and instance trees: the ``Client`` operations that page through instances.

Each pages ``Provider.list_instances`` (a continuation is a position, so deleting what a page
listed never shifts the next page) and calls the per-instance operation, which is atomic on
its own; no store needs anything more. Safe while runtimes work: deletion only ever removes
finished instance trees (``delete_instance`` without force refuses a tree in which anything
runs, checked atomically with the delete).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Callable, Iterable

from ._errors import InstanceNotFoundError, InstanceStillRunningError
from ._status import State
from .providers import (
    DeleteRequest,
    DeleteResult,
    InstanceQuery,
    InstanceRecord,
    Provider,
    PruneRequest,
    PruneResult,
)

DeleteProgress = Callable[[str, DeleteResult | None], object]
"""Called after each instance a bulk delete looked at: its ``DeleteResult`` (sub-orchestrations
included), or None when it was left (something in its tree still runs) or already gone."""
PruneProgress = Callable[[str, PruneResult], object]
"""Called after each instance a bulk prune looked at, with what was pruned from it."""

FINISHED = frozenset({State.COMPLETED, State.FAILED})


async def _pages(
    store: Provider, query: InstanceQuery
) -> AsyncGenerator[list[InstanceRecord], None]:
    while True:
        page = await store.list_instances(query)
        if page.instances:
            yield page.instances
        if page.continuation is None:
            return
        query = dataclasses.replace(query, continuation=page.continuation)


def finished_states(states: Iterable[State] | None) -> frozenset[State]:
    """The states a bulk delete may select: finished ones only."""
    if states is None:
        return FINISHED
    chosen = frozenset(states)
    unfinished = sorted(s.value for s in chosen - FINISHED)
    if unfinished or not chosen:
        raise ValueError(
            "delete_instances removes finished instances only (completed, failed); "
            f"got {unfinished or 'no state'}: delete running ones one by one with force=True"
        )
    return chosen


async def delete_instances(
    store: Provider,
    query: InstanceQuery,
    *,
    limit: int | None,
    on_progress: DeleteProgress | None,
) -> int:
    """Delete the finished instances ``query`` selects, ``limit`` at most; the number of
    instances deleted, sub-orchestrations included."""
    deleted = selected = 0
    async with contextlib.aclosing(_pages(store, query)) as pages:
        async for page in pages:
            for record in page:
                if limit is not None and selected >= limit:
                    return deleted
                result = await _delete_one(store, record.instance_id)
                if result is not None:
                    deleted += result.instances_deleted
                    selected += 1
                if on_progress is not None:
                    on_progress(record.instance_id, result)
    return deleted


async def _delete_one(store: Provider, instance_id: str) -> DeleteResult | None:
    try:
        return await store.delete_instance(DeleteRequest(instance_id=instance_id))
    except (InstanceNotFoundError, InstanceStillRunningError):
        return None  # gone with its parent, or something in its tree still runs: left


async def prune_executions_all(
    store: Provider,
    query: InstanceQuery,
    *,
    keep: int,
    completed_before_ms: int | None,
    limit: int | None,
    on_progress: PruneProgress | None,
) -> PruneResult:
    """Prune old executions of every instance ``query`` selects (``limit`` instances at
    most); the totals."""
    executions = events = examined = 0
    async with contextlib.aclosing(_pages(store, query)) as pages:
        async for page in pages:
            for record in page:
                if limit is not None and examined >= limit:
                    return PruneResult(executions_deleted=executions, events_deleted=events)
                examined += 1
                request = PruneRequest(
                    instance_id=record.instance_id,
                    keep_last=keep,
                    completed_before_ms=completed_before_ms,
                )
                try:
                    result = await store.prune_executions(request)
                except InstanceNotFoundError:
                    continue  # deleted meanwhile
                executions += result.executions_deleted
                events += result.events_deleted
                if on_progress is not None:
                    on_progress(record.instance_id, result)
    return PruneResult(executions_deleted=executions, events_deleted=events)


async def children_of(store: Provider, instance_id: str) -> list[InstanceRecord]:
    """Direct sub-orchestrations, oldest first."""
    children: list[InstanceRecord] = []
    query = InstanceQuery(parent_instance_id=instance_id, limit=100)
    async with contextlib.aclosing(_pages(store, query)) as pages:
        async for page in pages:
            children.extend(page)
    children.reverse()
    return children


__all__ = [
    "DeleteProgress",
    "PruneProgress",
    "children_of",
    "delete_instances",
    "finished_states",
    "prune_executions_all",
]
