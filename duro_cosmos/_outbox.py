"""Delivering messages into a partition, and the transactional outbox.

A commit cannot write to other partitions in its batch, so it records an ``outbox_intent``
document (in its own partition, in the same batch) listing what must reach other partitions.
Right after the batch the committer delivers it; if the process dies first, the reconciler
(:meth:`Outbox.reconcile`, run from the fetch loops) finds it later. Delivery is idempotent:
every target document has an id derived from the intent (``m:{commit id}:{n}``), so a repeat
gets 409 and counts as delivered; the intent is deleted last.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from duro._errors import ProviderError
from duro._messages import StartOrchestrationMessage, decode_message

from ._context import Context
from ._dispatch import Dispatch
from ._documents import OutboxDoc, OutboxItem, QueueDoc, WorkDoc, dump, load, slot_of
from ._known_work import WorkRef
from ._model import pending_instance
from ._rest import MAX_BATCH_OPERATIONS, BatchOperation, CosmosBatchFailed
from ._store import write_resolving_loss

log = logging.getLogger("duro_cosmos.outbox")

RECONCILE_GRACE_MS = 5_000
"""Intents younger than this belong to a committer that is probably still delivering them."""
RECONCILE_INTERVAL_MS = 300_000
"""A safety net only: sweeps find an intent left behind in a member's slots (it becomes
visible :data:`RECONCILE_GRACE_MS` after its commit), and the turn fetch of its instance
delivers it. The reconciler also catches intents of every slot, each run a cross-partition
query paid once per physical partition."""


class Outbox:
    def __init__(self, ctx: Context, dispatch: Dispatch) -> None:
        self._ctx = ctx
        self._dispatch = dispatch
        self._next_reconcile = 0

    async def put_message(self, doc: QueueDoc) -> None:
        """Create ``doc`` in its partition; an existing id means it was delivered already.

        A ``StartOrchestrationMessage`` also creates the pending instance document (in one batch),
        unless the instance exists, in which case the start is queued for the runtime to judge.
        """
        store = self._ctx.store
        pk = doc.instance_id
        if doc.kind == StartOrchestrationMessage.__name__:
            start = decode_message(doc.msg)
            if isinstance(start, StartOrchestrationMessage):
                instance = pending_instance(start, doc.enqueued_at, doc.seq)
                ops = [BatchOperation.create(dump(instance)), BatchOperation.create(dump(doc))]

                async def landed() -> bool:  # the batch is atomic: the message tells
                    return await store.read(doc.id, pk) is not None

                try:
                    await write_resolving_loss(lambda: store.batch(pk, ops), landed)
                    await self._dispatch.wrote_message(pk, doc.visible_at)
                    return
                except CosmosBatchFailed as exc:
                    if exc.failed_status != 409:
                        raise
                    if exc.failed_index == 1:
                        return
        await store.create_once(dump(doc), pk)
        await self._dispatch.wrote_message(pk, doc.visible_at)

    async def announce(self, item: OutboxItem, etag: str | None) -> None:
        """Tell the dispatchers about a message or work item a commit wrote in its own
        partition (``etag``: the new document's, if the batch reported it)."""
        if item.kind == "message":
            doc = load_queue(item.body)
            await self._dispatch.wrote_message(doc.instance_id, doc.visible_at)
        elif item.kind == "work":
            await self._dispatch.wrote_item(work_ref(load(_json(item.body), WorkDoc), etag))
        elif item.kind == "withdraw":
            self._dispatch.known.forget_item(item.doc_id)

    async def deliver(self, intent: OutboxDoc) -> None:
        """Carry out every item of ``intent``, then delete it (all steps idempotent)."""
        store = self._ctx.store
        for item in intent.items:
            await self._deliver_item(intent, item)
        await store.delete(intent.id, intent.instance_id)
        self._ctx.turn_signal.notify()
        self._ctx.activity_signal.notify()

    async def _deliver_item(self, intent: OutboxDoc, item: OutboxItem) -> None:
        store = self._ctx.store
        if item.kind == "message":
            await self.put_message(load_queue(item.body))
        elif item.kind == "work":
            await store.create_once(_json(item.body), item.target)
            await self._dispatch.wrote_item(work_ref(load(_json(item.body), WorkDoc), None))
        elif item.kind == "withdraw":
            await store.delete(item.doc_id, item.target)
            self._dispatch.known.forget_item(item.doc_id)
        elif item.kind == "expire":
            await self._expire_partition(item.target, int(item.body), keep=intent.id)

    async def _expire_partition(self, pk: str, ttl: int, *, keep: str) -> None:
        """Give every document of a finished instance's partition its time to live (the
        instance document got it in the commit). Idempotent: documents that have one keep it."""
        store = self._ctx.store
        rows = await store.query_partition(
            pk, "SELECT c.id, c.ttl FROM c WHERE c.instanceId = @pk AND c.type != 'instance'"
        )
        ids = [row["id"] for row in rows if row.get("ttl") is None and row["id"] != keep]
        set_ttl = [{"op": "set", "path": "/ttl", "value": ttl}]
        for start in range(0, len(ids), MAX_BATCH_OPERATIONS):
            chunk = ids[start : start + MAX_BATCH_OPERATIONS]
            while chunk:
                try:
                    await store.batch(pk, [BatchOperation.patch(d, set_ttl) for d in chunk])
                    break
                except CosmosBatchFailed as exc:
                    if exc.failed_status != 404 or exc.failed_index is None:
                        raise
                    del chunk[exc.failed_index]  # gone meanwhile (consumed, deleted): fine

    async def deliver_pending(self, instance_id: str, docs: list[dict[str, Any]]) -> None:
        for raw in docs:
            await self.deliver(load(raw, OutboxDoc))

    async def reconcile(self, *, force: bool = False) -> int:
        """Deliver intents a crashed committer left behind; returns how many were delivered."""
        now = self._ctx.clock.now_ms()
        if not force and now < self._next_reconcile:
            return 0
        self._next_reconcile = now + RECONCILE_INTERVAL_MS
        cutoff = now if force else now - RECONCILE_GRACE_MS
        rows = await self._ctx.store.query_cross(
            "SELECT * FROM c WHERE c.type = 'outbox_intent' AND c.createdAt <= @cutoff",
            {"cutoff": cutoff},
        )
        delivered = 0
        for raw in rows:
            try:
                await self.deliver(load(raw, OutboxDoc))
            except ProviderError as exc:
                # One intent that keeps failing must not hold back the others.
                log.warning("re-delivering outbox intent %s failed: %s", raw.get("id"), exc)
                continue
            delivered += 1
        return delivered


def new_intent(doc_id: str, instance_id: str, now: int, items: list[OutboxItem]) -> OutboxDoc:
    return OutboxDoc(
        id=doc_id, instance_id=instance_id, slot=slot_of(instance_id), created_at=now,
        visible_at=now + RECONCILE_GRACE_MS, items=items,
    )  # fmt: skip


def load_queue(body: str) -> QueueDoc:
    return load(_json(body), QueueDoc)


def work_ref(doc: WorkDoc, etag: str | None) -> WorkRef:
    """What the dispatchers need to know of a work item; the task only with its etag (a
    task without the etag it belongs to would be run without a way to check the item)."""
    return WorkRef(
        doc_id=doc.id, instance_id=doc.instance_id, visible_at=doc.visible_at, seq=doc.seq,
        slot=doc.slot, tag=doc.tag, session=doc.session, etag=etag,
        task=doc.task if etag is not None else None,
    )  # fmt: skip


def _json(body: str) -> Any:
    return msgspec.json.decode(body)


__all__ = ["Outbox", "load_queue", "new_intent", "work_ref"]
