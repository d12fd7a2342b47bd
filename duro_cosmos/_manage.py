"""Reads and management: records, history, KV, listings, deletion, pruning, queue depths.

Cross-partition queries here are plain filters (the gateway serves them without a query
plan); sorting, paging and counting happen in the client. ``list_instances`` continues from
the ``(createdAt, createdSeq)`` of the last row it returned, so instances created meanwhile
never shift a page.
"""

from __future__ import annotations

from typing import Any

import msgspec

from duro._errors import InstanceNotFoundError, InstanceStillRunningError, ProviderError
from duro._history import HistoryEvent
from duro._status import ExecutionStatus, State
from duro.providers._types import (
    LISTED_STATES,
    DeleteRequest,
    DeleteResult,
    ExecutionRecord,
    InstanceCountQuery,
    InstanceCounts,
    InstancePage,
    InstanceQuery,
    InstanceRecord,
    KvEntry,
    PruneRequest,
    PruneResult,
    QueueDepths,
)

from ._context import Context
from ._documents import INSTANCE_DOC_ID, InstanceDoc, KvDoc, dump, load
from ._known_work import KnownWork
from ._model import kv_merged, kv_snapshot, record_of
from ._rest import (
    MAX_BATCH_OPERATIONS,
    BatchOperation,
    CosmosBatchFailed,
    CosmosError,
    CosmosPreconditionFailed,
)
from ._turns import Turns


class _Changed(Exception):
    """An instance changed between its check and its delete."""


class Management:
    def __init__(self, ctx: Context, turns: Turns, known: KnownWork) -> None:
        self._ctx = ctx
        self._turns = turns
        self._known = known

    async def _instance(self, instance_id: str) -> InstanceDoc | None:
        raw = await self._ctx.store.read(INSTANCE_DOC_ID, instance_id)
        return None if raw is None else load(raw, InstanceDoc)

    async def read_instance(self, instance_id: str) -> InstanceRecord | None:
        doc = await self._instance(instance_id)
        return None if doc is None else record_of(doc)

    async def read_history(self, instance_id: str, execution_id: int | None) -> list[HistoryEvent]:
        if execution_id is None:
            doc = await self._instance(instance_id)
            if doc is None or doc.state != "active":
                return []
            execution_id = doc.execution_id
        return await self._turns.load_history(instance_id, execution_id)

    async def read_executions(self, instance_id: str) -> list[ExecutionRecord]:
        """From the instance document: one point read."""
        doc = await self._instance(instance_id)
        if doc is None:
            return []
        return [
            ExecutionRecord(
                execution_id=info.execution_id,
                status=ExecutionStatus(info.status),
                started_at_ms=info.started_at,
                completed_at_ms=info.completed_at,
                event_count=info.event_count,
            )
            for info in sorted(doc.executions, key=lambda e: e.execution_id)
        ]

    async def _kv(self, instance_id: str, *, committed: bool = False) -> dict[str, KvEntry]:
        """The merged view, or with ``committed`` the committed entries alone."""
        rows = await self._ctx.store.query_partition(
            instance_id,
            "SELECT * FROM c WHERE c.instanceId = @pk AND (c.type = 'kv' OR c.type = 'instance')",
        )
        instance = next((r for r in rows if r.get("type") == "instance"), None)
        if instance is None or instance.get("restarting"):
            return {}  # a queued restart reads as new: its first turn drops the old KV
        buckets = (load(r, KvDoc) for r in rows if r.get("type") == "kv")
        return kv_snapshot(buckets) if committed else kv_merged(buckets)

    async def get_kv_value(self, instance_id: str, key: str) -> KvEntry | None:
        return (await self._kv(instance_id)).get(key)

    async def get_kv_items(self, instance_id: str) -> dict[str, KvEntry]:
        return await self._kv(instance_id)

    async def get_kv_snapshot(self, instance_id: str) -> dict[str, KvEntry]:
        return await self._kv(instance_id, committed=True)

    # -- listings -------------------------------------------------------------------------------

    async def list_instances(self, query: InstanceQuery) -> InstancePage:
        """Newest first: each physical partition returns its ``limit + 1`` newest matches
        (``TOP``/``ORDER BY`` on the composite index ``createdAt DESC, createdSeq DESC``), so
        a page reads at most ``(limit + 1) x partitions`` instance documents, whatever the
        container holds; the merge keeps the newest ``limit``."""
        if query.limit < 1:
            raise ProviderError("list_instances", "limit must be at least 1", retryable=False)
        after: tuple[int, int] | None = None
        if query.continuation:
            try:
                created, _, seq = query.continuation.partition(".")
                after = (int(created), int(seq))
            except ValueError:
                raise ProviderError(
                    "list_instances",
                    f"invalid continuation token {query.continuation!r}",
                    retryable=False,
                ) from None
        where = ["c.type = 'instance'"]
        params: dict[str, Any] = {}
        if query.name is not None:
            where.append("c.name = @name")
            params["name"] = query.name
        if query.parent_instance_id is not None:
            where.append("c.parentInstanceId = @parent")
            params["parent"] = query.parent_instance_id
        if query.states is not None:
            where.append("ARRAY_CONTAINS(@states, c.status)")
            params["states"] = sorted(state.value for state in query.states)
        if query.created_after_ms is not None:
            where.append("c.createdAt > @after")
            params["after"] = query.created_after_ms
        if query.created_before_ms is not None:
            where.append("c.createdAt < @before")
            params["before"] = query.created_before_ms
        if query.instance_id_prefix:
            where.append("STARTSWITH(c.instanceId, @prefix)")
            params["prefix"] = query.instance_id_prefix
        if query.completed_before_ms is not None:
            where.append("c.completedAt < @completed")
            params["completed"] = query.completed_before_ms
        if query.min_execution_id is not None:
            where.append("c.executionId >= @min_execution")
            params["min_execution"] = query.min_execution_id
        if after is not None:
            where.append(
                "(c.createdAt < @cursor OR (c.createdAt = @cursor AND c.createdSeq < @cseq))"
            )
            params["cursor"], params["cseq"] = after
        sql = (
            f"SELECT TOP {query.limit + 1} * FROM c WHERE {' AND '.join(where)} "
            "ORDER BY c.createdAt DESC, c.createdSeq DESC"
        )
        rows = []
        for page in await self._ctx.store.query_each_range(sql, params):
            for raw in page:
                doc = load(raw, InstanceDoc)
                rows.append(((doc.created_at, doc.created_seq), record_of(doc)))
        rows.sort(key=lambda pair: pair[0], reverse=True)
        page = rows[: query.limit]
        more = len(rows) > query.limit
        return InstancePage(
            instances=[record for _, record in page],
            continuation=f"{page[-1][0][0]}.{page[-1][0][1]}" if more and page else None,
        )

    async def count_instances(self, query: InstanceCountQuery) -> InstanceCounts:
        """``COUNT`` per state and physical partition, served from the index on ``status``
        (no document is read). Exact: ``at_most`` only caps what is reported, because a
        capped count needs a subquery the gateway does not serve across partitions; the
        charge grows with the instances counted, so views should poll it sparingly."""
        counts: dict[State, int] = {}
        for state in LISTED_STATES:
            pages = await self._ctx.store.query_each_range(
                "SELECT VALUE COUNT(1) FROM c WHERE c.type = 'instance' AND c.status = @status",
                {"status": state.value},
            )
            counts[state] = sum(int(value) for page in pages for value in page)
        return InstanceCounts(
            counts={state: min(n, query.at_most) for state, n in counts.items()},
            capped=frozenset(state for state, n in counts.items() if n > query.at_most),
        )

    async def list_children(self, instance_id: str) -> list[str]:
        rows = await self._ctx.store.query_cross(
            "SELECT c.instanceId FROM c WHERE c.type = 'instance' AND c.parentInstanceId = @p",
            {"p": instance_id},
        )
        return [row["instanceId"] for row in rows]

    # -- deletion and pruning -------------------------------------------------------------------

    async def delete_instance(self, request: DeleteRequest) -> DeleteResult:
        for _ in range(5):
            try:
                return await self._delete_tree(request)
            except _Changed:
                continue  # an instance of the tree changed after its check: check again
        raise ProviderError("delete_instance", "the instances kept changing", retryable=True)

    async def _delete_tree(self, request: DeleteRequest) -> DeleteResult:
        root = await self._instance(request.instance_id)
        if root is None:
            raise InstanceNotFoundError(request.instance_id)
        tree = [request.instance_id]
        for instance_id in tree:  # grows while iterating: breadth-first over descendants
            tree.extend(c for c in await self.list_children(instance_id) if c not in tree)
        # Without force every instance must be finished, and must still be when its document
        # goes: the delete is conditional on the etag the check read (a restart, a rewind or
        # a late turn in between fails it, and the tree is checked again).
        checked: dict[str, str | None] = {}
        if not request.force:
            for instance_id in tree:
                doc = root if instance_id == root.instance_id else await self._instance(instance_id)
                if doc is not None and not record_of(doc).state.is_terminal:
                    raise InstanceStillRunningError(instance_id)
                checked[instance_id] = None if doc is None else doc.etag
        total = DeleteResult()
        # Deepest first, the root last: an interrupted delete leaves a root to delete again.
        for instance_id in reversed(tree):
            self._known.forget_instance(instance_id)
            part = await self._delete_partition(instance_id, checked.get(instance_id))
            total = DeleteResult(
                instances_deleted=total.instances_deleted + 1,
                executions_deleted=total.executions_deleted + part.executions_deleted,
                events_deleted=total.events_deleted + part.events_deleted,
                messages_deleted=total.messages_deleted + part.messages_deleted,
            )
        return total

    async def _delete_partition(
        self, instance_id: str, if_match: str | None = None
    ) -> DeleteResult:
        """Delete every document of one partition; the instance document goes in the first
        batch (under ``if_match`` when given), so in-flight turns and completions fail from
        that moment on."""
        store = self._ctx.store
        rows = await store.query_partition(
            instance_id, "SELECT c.id, c.type, c.executions FROM c WHERE c.instanceId = @pk"
        )
        rows.sort(key=lambda r: r.get("type") != "instance")
        executions = events = messages = 0
        for row in rows:
            if row.get("type") == "instance":
                infos = row.get("executions") or []
                executions += len(infos)
                events += sum(int(info.get("eventCount", 0)) for info in infos)
            elif row.get("type") in ("orch_queue", "worker_queue"):
                messages += 1
        for start in range(0, len(rows), MAX_BATCH_OPERATIONS):
            chunk = rows[start : start + MAX_BATCH_OPERATIONS]
            ops = [
                BatchOperation.delete(
                    r["id"], if_match=if_match if r.get("type") == "instance" else None
                )
                for r in chunk
            ]
            try:
                await store.batch(instance_id, ops)
            except (CosmosBatchFailed, CosmosError):
                # Something moved meanwhile: one by one, absent is fine.
                for row in chunk:
                    guard = if_match if row.get("type") == "instance" else None
                    try:
                        await store.delete(row["id"], instance_id, if_match=guard)
                    except CosmosPreconditionFailed:
                        raise _Changed from None
        return DeleteResult(
            executions_deleted=executions, events_deleted=events, messages_deleted=messages
        )

    async def prune_executions(self, request: PruneRequest) -> PruneResult:
        store = self._ctx.store
        for _ in range(5):
            doc = await self._instance(request.instance_id)
            if doc is None:
                raise InstanceNotFoundError(request.instance_id)
            if doc.state != "active":
                return PruneResult()
            ordered = sorted(e.execution_id for e in doc.executions)
            keep = set(ordered[-max(1, request.keep_last) :]) | {doc.execution_id}
            doomed = []
            for info in doc.executions:
                if info.execution_id in keep or info.status == ExecutionStatus.RUNNING.value:
                    continue
                cutoff = request.completed_before_ms
                if cutoff is not None and (
                    info.completed_at is None or info.completed_at >= cutoff
                ):
                    continue
                doomed.append(info)
            if not doomed:
                return PruneResult()
            ids = [info.execution_id for info in doomed]
            pages = await store.query_partition(
                request.instance_id,
                "SELECT c.id, c.executionId FROM c WHERE c.instanceId = @pk "
                "AND c.type = 'history' AND ARRAY_CONTAINS(@ids, c.executionId)",
                {"ids": ids},
            )
            kept = msgspec.structs.replace(
                doc, executions=[e for e in doc.executions if e.execution_id not in ids], etag=None
            )
            ops = [
                BatchOperation.replace(INSTANCE_DOC_ID, dump(kept), if_match=doc.etag),
                *(BatchOperation.delete(p["id"]) for p in pages[: MAX_BATCH_OPERATIONS - 1]),
            ]
            try:
                await store.batch(request.instance_id, ops)
            except CosmosBatchFailed as exc:
                if exc.failed_index == 0:
                    continue  # the instance moved on meanwhile: read again
                raise
            for page in pages[MAX_BATCH_OPERATIONS - 1 :]:
                await store.delete(page["id"], request.instance_id)
            return PruneResult(
                executions_deleted=len(doomed),
                events_deleted=sum(info.event_count for info in doomed),
            )
        raise ProviderError("prune_executions", "the instance kept changing", retryable=True)

    async def queue_depths(self) -> QueueDepths:
        """Counted on the server, per physical partition (``COUNT`` is served on one range),
        never by reading the queues; locked messages are read from the instances that hold a
        live lock, which is only the turns in flight."""
        store = self._ctx.store
        ctx = self._ctx
        now = ctx.clock.now_ms()
        params = {"now": now}

        async def count(where: str) -> int:
            pages = await store.query_each_range(
                f"SELECT VALUE COUNT(1) FROM c WHERE {where}", params
            )
            return sum(int(value) for page in pages for value in page)

        visible = await count("c.type = 'orch_queue' AND c.visibleAt <= @now")
        timers = await count("c.type = 'orch_queue' AND c.visibleAt > @now")
        worker = await count(
            "c.type = 'worker_queue' AND c.visibleAt <= @now AND c.lockedUntil <= @now"
        )
        locked_work = await count("c.type = 'worker_queue' AND c.lockedUntil > @now")
        locks = await store.query_cross(
            "SELECT c.instanceId, c.lock FROM c WHERE c.type = 'instance' AND c.lock.until > @now",
            params,
        )
        locked_ids = {
            (row["instanceId"], doc_id) for row in locks for doc_id in row["lock"].get("batch", [])
        }
        # Locks held in this process only (fresh work of its own slots) are not in the store.
        locked_ids.update(
            (lock.instance_id, doc_id)
            for lock in ctx.turn_locks.values()
            if lock.until > now
            for doc_id in lock.batch
        )
        held_here = sum(
            1 for lock in ctx.work_locks.values() if lock.until > now and not lock.written
        )
        locked_messages = min(len(locked_ids), visible)
        return QueueDepths(
            orchestrator=visible - locked_messages,
            timers=timers,
            worker=max(0, worker - held_here),
            locked=locked_messages + locked_work + held_here,
        )


__all__ = ["Management"]
