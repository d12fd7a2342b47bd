"""Starting instances and orchestration turns: fetch (lock), commit, abandon, renew.

The instance document is the lock: a fetch replaces it with If-Match on the etag it read,
writing the lock (token, expiry, ids of the batch) and the batch's delivery counts in that one
write. ``commit_turn`` is one transactional batch in the instance's partition whose first
operation replaces the instance document with If-Match on the lock's etag: if the lock was
taken over, renewed elsewhere or the instance deleted, the whole batch fails (412/404) and
nothing is applied.
"""

from __future__ import annotations

import msgspec

from duro._errors import (
    DuplicateEventError,
    InstanceAlreadyExistsError,
    LockLostError,
    ProviderError,
)
from duro._history import HistoryEvent
from duro._messages import StartOrchestrationMessage, decode_message
from duro._status import ExecutionStatus
from duro.providers._types import (
    AbandonRequest,
    FetchTurnRequest,
    OrchestrationWorkItem,
    RenewRequest,
    ScheduledMessage,
    StartOutcome,
    StartRequest,
    TurnCommit,
)

from ._commit import turn_effects
from ._context import Context, TurnLock
from ._dispatch import Dispatch
from ._documents import (
    INSTANCE_DOC_ID,
    SEQUENCE,
    HistoryDoc,
    InstanceDoc,
    KvDoc,
    LockState,
    OutboxItem,
    QueueDoc,
    dump,
    load,
    make_token,
    new_id,
    parse_token,
    slot_of,
)
from ._fanout import each_concurrently
from ._model import (
    apply_commit,
    check_new_events,
    events_of,
    history_cached,
    history_doc,
    kv_apply,
    kv_snapshot,
    pending_instance,
    queue_doc,
    record_of,
    to_ms,
)
from ._outbox import Outbox, new_intent
from ._rest import (
    MAX_BATCH_OPERATIONS,
    BatchOperation,
    CosmosBatchFailed,
    CosmosError,
    CosmosNotFound,
    CosmosPreconditionFailed,
    CosmosRequestTooLarge,
)
from ._store import TurnTooLargeError, write_resolving_loss

_ENDINGS = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED})
"""Execution statuses that end the instance (continue-as-new goes on)."""
_FINISHED_STATES = frozenset(status.instance_state().value for status in _ENDINGS)
"""``InstanceDoc.status`` values of a finished instance."""

MAX_DROPPED_TIMERS = 16
"""Pending timers an ending turn deletes in its own batch (of 100 operations); any more are
deleted right after the commit."""
MAX_BATCH_MESSAGES = 64
"""Messages one turn takes at most (the rest wait for the next turn): keeps the commit's
fixed part (instance, history page, message deletes, KV buckets, intent) under 100 ops."""
_PARTITION_DOCS = (
    "SELECT * FROM c WHERE c.instanceId = @pk AND (c.type = 'instance' OR c.type = 'orch_queue'"
    " OR c.type = 'kv' OR c.type = 'outbox_intent')"
)


class Turns:
    def __init__(self, ctx: Context, outbox: Outbox, dispatch: Dispatch) -> None:
        self._ctx = ctx
        self._outbox = outbox
        self._dispatch = dispatch
        dispatch.protectors.append(self._protect)

    # -- client side ----------------------------------------------------------------------------

    async def start(self, request: StartRequest) -> StartOutcome:
        """One batch when the instance is new (pending instance document, start, messages);
        otherwise ``request.if_exists`` decides, and a restart is one batch that replaces the
        finished instance document under If-Match."""
        ctx = self._ctx
        start = request.start
        now = ctx.clock.now_ms()
        seq = SEQUENCE.next()
        pk = start.instance_id
        start_doc = queue_doc(start, "m:" + new_id(), now, now, seq)
        extra = [queue_doc(m, "m:" + new_id(), now, now) for m in request.messages]
        instance = pending_instance(start, now, seq)
        ops = [
            BatchOperation.create(dump(instance)),
            BatchOperation.create(dump(start_doc)),
            *(BatchOperation.create(dump(doc)) for doc in extra),
        ]

        async def landed() -> bool:
            existing = await ctx.store.read(INSTANCE_DOC_ID, pk)
            return existing is not None and load(existing, InstanceDoc).created_seq == seq

        try:
            await write_resolving_loss(lambda: ctx.store.batch(pk, ops), landed)
            outcome = StartOutcome.STARTED
        except CosmosBatchFailed as exc:
            if exc.failed_status != 409 or exc.failed_index != 0:
                raise
            # Ours if an attempt whose response was lost landed after the re-read.
            if await landed():
                outcome = StartOutcome.STARTED
            elif request.if_exists == "use_existing":
                if extra:
                    await ctx.store.batch(pk, [BatchOperation.create(dump(d)) for d in extra])
                outcome = StartOutcome.EXISTING
            elif request.if_exists == "restart_if_finished":
                await self._restart(start, start_doc, extra, now)
                outcome = StartOutcome.RESTARTED
            else:
                raise InstanceAlreadyExistsError(start.instance_id) from None
        await self._dispatch.wrote_message(pk, now)
        return outcome

    async def _restart(
        self, start: StartOrchestrationMessage, start_doc: QueueDoc, extra: list[QueueDoc], now: int
    ) -> None:
        """Queue the next execution of a finished instance: its document turns PENDING and
        the start lands in the same batch, under If-Match on the finished document."""
        store = self._ctx.store
        pk = start.instance_id
        for _ in range(5):
            rows = await store.query_partition(
                pk,
                "SELECT c.id, c.type, c.kind FROM c WHERE c.instanceId = @pk "
                "AND (c.type = 'instance' OR c.type = 'orch_queue')",
            )
            if any(r.get("kind") == StartOrchestrationMessage.__name__ for r in rows):
                raise InstanceAlreadyExistsError(pk)  # pending, or a restart already queued
            raw = await store.read(INSTANCE_DOC_ID, pk)
            if raw is None:
                raise InstanceAlreadyExistsError(pk)  # deleted meanwhile: start it again
            doc = load(raw, InstanceDoc)
            if doc.state != "active" or doc.restarting or doc.status not in _FINISHED_STATES:
                raise InstanceAlreadyExistsError(pk)
            restarting = msgspec.structs.replace(
                doc, restarting=True, status="pending", updated_at=now, completed_at=None,
                ttl=None, etag=None,
            )  # fmt: skip
            ops = [
                BatchOperation.replace(INSTANCE_DOC_ID, dump(restarting), if_match=doc.etag),
                BatchOperation.create(dump(start_doc)),
                *(BatchOperation.create(dump(d)) for d in extra),
            ]

            async def landed() -> bool:
                return await store.read(start_doc.id, pk) is not None

            async def send(ops: list[BatchOperation] = ops) -> object:
                return await store.batch(pk, ops)

            try:
                await write_resolving_loss(send, landed)
            except CosmosBatchFailed as exc:
                if exc.failed_index == 0 and exc.failed_status in (404, 412):
                    continue  # the instance changed meanwhile: look again
                raise
            return
        raise ProviderError("start_instance", "the instance kept changing", retryable=True)

    async def enqueue(self, message: ScheduledMessage) -> None:
        now = self._ctx.clock.now_ms()
        visible = now if message.visible_at_ms is None else message.visible_at_ms
        await self._outbox.put_message(queue_doc(message.message, "m:" + new_id(), visible, now))

    # -- fetch ----------------------------------------------------------------------------------

    async def fetch(self, request: FetchTurnRequest, limit: int = 1) -> list[OrchestrationWorkItem]:
        """Lock up to ``limit`` instances the index knows to have work (long-polls while none)."""
        ctx = self._ctx
        clock = ctx.clock
        deadline = clock.now_ms() + to_ms(request.poll_timeout)
        while True:
            event = ctx.turn_signal.current()
            await self._dispatch.keep_up()
            try:
                await self._outbox.reconcile()
            except ProviderError as exc:
                if not exc.retryable:
                    raise
            now = clock.now_ms()
            items = await self._take(request, now, max(1, limit))
            if items or now >= deadline:
                return items
            expiry = min(
                (lock.until for lock in ctx.turn_locks.values() if lock.until > now),
                default=deadline,
            )
            await self._dispatch.wait(clock, event, now, min(deadline, expiry))

    async def _take(
        self, request: FetchTurnRequest, now: int, limit: int
    ) -> list[OrchestrationWorkItem]:
        ctx = self._ctx
        for lock in ctx.turn_locks.values():
            if lock.until <= now:
                self._offer(lock)
        held = {lock.instance_id for lock in ctx.turn_locks.values() if lock.until > now}
        held.update(request.skip_instances)  # left to other workers: not taken, still known
        taken: list[OrchestrationWorkItem] = []

        async def lock_one(instance_id: str) -> OrchestrationWorkItem | None:
            try:
                return await self._try_lock(instance_id, request, now)
            finally:
                ctx.claiming.discard(instance_id)

        while len(taken) < limit:
            candidates = self._dispatch.known.take_turns(
                now, limit - len(taken), held | ctx.claiming, self._dispatch.mine
            )
            if not candidates:
                break
            ctx.claiming.update(candidates)  # before any request: other fetches skip them
            for instance_id, item in zip(
                candidates, await each_concurrently(lock_one, candidates), strict=True
            ):
                if item is not None:
                    taken.append(item)
                    held.add(instance_id)
        return taken

    async def _try_lock(
        self, instance_id: str, request: FetchTurnRequest, now: int
    ) -> OrchestrationWorkItem | None:
        ctx = self._ctx
        known = self._dispatch.known
        rows = await ctx.store.query_partition(instance_id, _PARTITION_DOCS)
        intents = [r for r in rows if r.get("type") == "outbox_intent"]
        if intents:
            # Overflow of an earlier turn (work items, own messages) must land before the
            # next turn runs: deliver it first, then look again.
            await self._outbox.deliver_pending(instance_id, intents)
            rows = await ctx.store.query_partition(instance_id, _PARTITION_DOCS)
        instance_raw = next((r for r in rows if r.get("type") == "instance"), None)
        queued = [load(r, QueueDoc) for r in rows if r.get("type") == "orch_queue"]
        visible = sorted(
            (q for q in queued if q.visible_at <= now), key=lambda q: (q.visible_at, q.seq)
        )
        later = [q.visible_at for q in queued if q.visible_at > now]
        if later:
            known.note_turn(instance_id, min(later))  # a timer: come back when it is due
        if not visible:
            return None
        if instance_raw is None:
            # Never started: drop what no start can want, keep the rest, move on.
            for doc in visible:
                if doc.kind in ("EnqueueEventMessage", "CancelOrchestrationMessage"):
                    await ctx.store.delete(doc.id, instance_id)
            return None
        instance = load(instance_raw, InstanceDoc)
        held = instance.lock
        membership = self._dispatch.membership
        if (
            held is not None
            and held.owner != ctx.owner_id
            and membership.lock_holds(held.owner, held.until, now)
        ):
            return None  # its owner is running this turn
        batch = visible[:MAX_BATCH_MESSAGES]
        if len(visible) > len(batch):
            known.note_turn(instance_id, visible[len(batch)].visible_at)
        present = {q.id for q in queued}
        counts = {
            k: max(v, ctx.delivered.get(k, 0))
            for k, v in instance.delivery_counts.items()
            if k in present
        }
        delivered_before = any(
            counts.get(doc.id, 0) or ctx.delivered.get(doc.id, 0) for doc in batch
        )
        for doc in batch:
            counts[doc.id] = max(counts.get(doc.id, 0), ctx.delivered.get(doc.id, 0)) + 1
        fresh = (
            held is None
            and not delivered_before
            and all(membership.fresh(doc.slot, doc.visible_at) for doc in batch)
        )
        token = make_token(instance_id)
        # From now, not the fetch's start (a slow multi-instance fetch).
        until = ctx.clock.now_ms() + to_ms(request.lock_timeout)
        if fresh:
            # Nobody else is offered this work: lock it here only (see TurnLock).
            locked, etag = instance, instance.etag or ""
            for doc in batch:
                ctx.delivered[doc.id] = counts[doc.id]
        else:
            locked = msgspec.structs.replace(
                instance,
                lock=LockState(token=token, owner=ctx.owner_id, until=until,
                               batch=[doc.id for doc in batch]),
                delivery_counts=counts,
                etag=None,
            )  # fmt: skip
            written = await self._replace_instance(instance_id, locked, instance.etag)
            if written is None:
                return None
            etag = locked.etag = written
        kv = {r["id"]: load(r, KvDoc) for r in rows if r.get("type") == "kv"}
        history: list[HistoryEvent] = []
        history_error: str | None = None
        omitted = history_cached(instance, request.cached_histories)
        if instance.state == "active" and not omitted:
            try:
                history = await self.load_history(instance_id, instance.execution_id)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                history_error = f"stored history cannot be decoded: {exc}"
            except CosmosError:
                if not fresh:
                    await self._release_quietly(instance_id, locked)
                known.note_turn(instance_id, batch[0].visible_at)
                raise
        for old in [t for t, lock in ctx.turn_locks.items() if lock.instance_id == instance_id]:
            del ctx.turn_locks[old]  # this process's expired lock, taken over
        ctx.turn_locks[token] = TurnLock(
            instance_id=instance_id, token=token, etag=etag, until=until, instance=locked,
            kv=kv, batch=[doc.id for doc in batch], written=not fresh,
            later_timers=[q.id for q in queued
                          if q.visible_at > now and q.kind == "TimerFiredMessage"],
        )  # fmt: skip
        active = instance.state == "active"
        return OrchestrationWorkItem(
            instance_id=instance_id,
            lock_token=token,
            execution_id=instance.execution_id if active else 0,
            instance=record_of(instance) if active else None,
            history=history,
            messages=[decode_message(doc.msg) for doc in batch],
            delivery_count=max(counts[doc.id] for doc in batch),
            kv_snapshot={} if omitted else kv_snapshot(kv.values()),
            history_error=history_error,
            history_omitted=omitted,
        )

    async def load_history(self, instance_id: str, execution_id: int) -> list[HistoryEvent]:
        rows = await self._ctx.store.query_partition(
            instance_id,
            "SELECT * FROM c WHERE c.instanceId = @pk AND c.type = 'history' "
            "AND c.executionId = @execution",
            {"execution": execution_id},
        )
        return events_of(load(r, HistoryDoc) for r in rows)

    async def _replace_instance(
        self, instance_id: str, doc: InstanceDoc, if_match: str | None
    ) -> str | None:
        """If-Match replace of the instance document; None if someone else changed it first.

        A 412 that follows a lost response may be our own write: re-read and compare locks.
        """
        store = self._ctx.store
        try:
            return await store.replace(INSTANCE_DOC_ID, dump(doc), instance_id, if_match=if_match)
        except CosmosNotFound:
            return None
        except CosmosPreconditionFailed as exc:
            if not exc.after_ambiguous_failure:
                return None
        current = await store.read(INSTANCE_DOC_ID, instance_id)
        if current is None:
            return None
        now_doc = load(current, InstanceDoc)
        if now_doc.lock == doc.lock and now_doc.last_commit_id == doc.last_commit_id:
            return now_doc.etag
        return None

    async def _release_quietly(self, instance_id: str, locked: InstanceDoc) -> None:
        released = msgspec.structs.replace(locked, lock=None, etag=None)
        try:
            await self._ctx.store.replace(
                INSTANCE_DOC_ID, dump(released), instance_id, if_match=locked.etag
            )
        except CosmosError:
            pass  # the lock expires by itself

    # -- lock bookkeeping -----------------------------------------------------------------------

    async def held_lock(self, op: str, token: str) -> TurnLock:
        lock = self._ctx.turn_locks.get(token)
        if lock is None:
            parts = parse_token(token, 2)
            if parts is None:
                raise LockLostError(op, "lock token is unknown, released or taken over")
            lock = await self._load_lock(op, parts[1], token)
        # Expired or not, the lock is ours until a fetch takes the instance over: that drops
        # it here, or (another member) changes the instance, which the If-Match sees.
        return lock

    async def _protect(self, slots: frozenset[int]) -> None:
        """Write the locks of turns still running in slots that moved to another member."""
        now = self._ctx.clock.now_ms()
        for lock in list(self._ctx.turn_locks.values()):
            if not lock.written and lock.until > now and slot_of(lock.instance_id) in slots:
                await self.renew(
                    RenewRequest(lock_token=lock.token, extend_for=(lock.until - now) / 1000)
                )

    def _offer(self, lock: TurnLock) -> None:
        """An expired lock: the batch is anyone's again (its token works until taken over)."""
        if not lock.offered:
            lock.offered = True
            self._dispatch.known.note_turn(lock.instance_id, lock.until)

    async def _load_lock(self, op: str, instance_id: str, token: str) -> TurnLock:
        rows = await self._ctx.store.query_partition(
            instance_id,
            "SELECT * FROM c WHERE c.instanceId = @pk AND (c.type = 'instance' OR c.type = 'kv')",
        )
        raw = next((r for r in rows if r.get("type") == "instance"), None)
        instance = load(raw, InstanceDoc) if raw is not None else None
        if instance is None or instance.lock is None or instance.lock.token != token:
            raise LockLostError(op, "lock token is unknown, released or taken over")
        lock = TurnLock(
            instance_id=instance_id,
            token=token,
            etag=instance.etag or "",
            until=instance.lock.until,
            instance=instance,
            batch=list(instance.lock.batch),
            written=True,
            kv={r["id"]: load(r, KvDoc) for r in rows if r.get("type") == "kv"},
        )
        self._ctx.turn_locks[token] = lock
        return lock

    def _lost(self, op: str, token: str, why: str) -> LockLostError:
        self._ctx.turn_locks.pop(token, None)
        return LockLostError(op, why)

    # -- commit ---------------------------------------------------------------------------------

    async def commit(self, commit: TurnCommit) -> None:
        op = "commit_turn"
        now = self._ctx.clock.now_ms()
        lock = await self.held_lock(op, commit.lock_token)
        if lock.instance_id != commit.changes.instance_id:
            raise LockLostError(op, "lock token belongs to another instance")
        check_new_events(op, commit, lock.instance)
        for _ in range(3):
            if await self._commit_once(op, commit, lock, now):
                return
        raise ProviderError(op, "work items changed during the commit; try again", retryable=True)

    async def _commit_once(self, op: str, commit: TurnCommit, lock: TurnLock, now: int) -> bool:
        ctx = self._ctx
        instance_id = commit.changes.instance_id
        commit_id = new_id()
        new_instance = apply_commit(lock.instance, commit, now, commit_id, lock.batch)
        retention = ctx.retention_s
        ends = commit.changes.execution_status in _ENDINGS
        if retention is not None and ends:
            new_instance.ttl = retention
        conditioned_on = lock.etag
        ops = [BatchOperation.replace(INSTANCE_DOC_ID, dump(new_instance), if_match=lock.etag)]
        history = history_doc(commit)
        if history is not None:
            ops.append(BatchOperation.create(dump(history)))
        history_index = 1 if history is not None else -1
        ops.extend(BatchOperation.delete(doc_id) for doc_id in lock.batch)
        before = lock.instance
        upserts, deletes = kv_apply(
            instance_id, lock.kv, commit.changes.kv_clear_all, commit.changes.kv_changes.values(),
            merge=commit.changes.execution_status.commits_kv,
            restarted=before.restarting and commit.changes.execution_id > before.execution_id,
        )  # fmt: skip
        ops.extend(BatchOperation.upsert(dump(doc)) for doc in upserts)
        ops.extend(BatchOperation.delete(doc_id) for doc_id in deletes)
        # Timers an ended instance will never want (a select's losing timeout, say) go in the
        # same batch, as SQLite deletes them in the commit's transaction: deleted afterwards,
        # a process that died in between (or a failed delete) left them queued until due.
        dropped = lock.later_timers[:MAX_DROPPED_TIMERS] if ends else []
        timer_indexes = {len(ops) + i: doc_id for i, doc_id in enumerate(dropped)}
        ops.extend(BatchOperation.delete(doc_id) for doc_id in dropped)
        local, remote = await turn_effects(self._ctx.store, commit, commit_id, now)
        if retention is not None and ends:
            # The rest of the partition starts its retention right after the commit.
            remote.append(
                OutboxItem(target=instance_id, doc_id="", kind="expire", body=str(retention))
            )
        room = MAX_BATCH_OPERATIONS - len(ops)
        if len(local) > room or (remote and len(local) == room):
            # Too many for one batch: the overflow rides in the (atomically written) intent
            # and is delivered right after, idempotently.
            keep = max(room - 1, 0)
            remote = [item for _, item in local[keep:]] + remote
            local = local[:keep]
        first_local = len(ops)
        ops.extend(operation for operation, _ in local)
        withdraw_indexes = {
            len(ops) - len(local) + i
            for i, (_, item) in enumerate(local)
            if item.kind == "withdraw"
        }
        intent = None
        if remote:
            intent = new_intent(f"o:{commit_id}", instance_id, now, remote)
            ops.append(BatchOperation.create(dump(intent)))
        if len(ops) > MAX_BATCH_OPERATIONS:
            raise TurnTooLargeError(
                op, f"the turn needs {len(ops)} batch operations; the limit is 100"
            )
        try:
            results = await write_resolving_loss(
                lambda: ctx.store.batch(instance_id, ops),
                lambda: self._applied(op, lock, commit_id),
            )
        except CosmosRequestTooLarge as exc:
            raise TurnTooLargeError(
                op,
                "the turn's documents exceed the 2 MB transactional batch limit "
                f"({exc.message}); move large payloads out of the orchestration",
            ) from exc
        except CosmosBatchFailed as exc:
            if exc.failed_index == 0 and exc.failed_status == 412 and lock.etag != conditioned_on:
                # This process renewed the lock while the commit was on its way (a long turn's
                # lease renewal, or a slot hand-over writing it): not lost, commit on that.
                return False
            if exc.failed_index == 0 and exc.failed_status in (404, 412):
                raise self._lost(op, lock.token, "the instance lock was lost") from None
            if exc.failed_index == history_index and exc.failed_status == 409:
                raise DuplicateEventError(
                    op, f"an event id of this commit already exists in {instance_id!r}"
                ) from None
            if exc.failed_index in withdraw_indexes and exc.failed_status == 404:
                return False  # a withdrawn item completed meanwhile: recompute
            if exc.failed_index in timer_indexes and exc.failed_status == 404:
                lock.later_timers.remove(timer_indexes[exc.failed_index])
                return False  # that timer is gone already: recompute without it
            raise
        ctx.turn_locks.pop(lock.token, None)
        for doc_id in lock.batch:
            ctx.delivered.pop(doc_id, None)
        for i, (_, item) in enumerate(local):
            etag = results[first_local + i].etag if results is not None else None
            await self._outbox.announce(item, etag)
        if intent is not None:
            try:
                await self._outbox.deliver(intent)
            except ProviderError:
                pass  # the reconciler delivers it later
        ctx.turn_signal.notify()
        if commit.changes.activity_tasks:
            ctx.activity_signal.notify()
        if ends:
            await self._drop_timers(instance_id, lock.later_timers[len(dropped) :])
        return True

    async def _drop_timers(self, instance_id: str, doc_ids: list[str]) -> None:
        """Best effort, for the pending timers beyond :data:`MAX_DROPPED_TIMERS` that did not
        go in the commit's batch. One that stays fires into the finished instance, which drops
        it."""
        for doc_id in doc_ids:
            try:
                await self._ctx.store.delete(doc_id, instance_id)
            except CosmosError:
                return

    async def _applied(self, op: str, lock: TurnLock, commit_id: str) -> bool:
        """Resolve a lost batch response by re-reading the instance document."""
        current = await self._ctx.store.read(INSTANCE_DOC_ID, lock.instance_id)
        if current is None:
            raise self._lost(op, lock.token, "the instance was deleted")
        doc = load(current, InstanceDoc)
        if doc.last_commit_id == commit_id:
            return True
        if doc.etag == lock.etag:
            return False
        raise self._lost(op, lock.token, "the instance lock was lost")

    # -- abandon and renew ----------------------------------------------------------------------

    async def abandon(self, request: AbandonRequest) -> None:
        op = "abandon_turn"
        ctx = self._ctx
        now = ctx.clock.now_ms()
        lock = await self.held_lock(op, request.lock_token)
        visible = now + to_ms(request.delay)
        if request.undo_delivery_count:
            for doc_id in lock.batch:
                ctx.delivered[doc_id] = max(0, ctx.delivered.get(doc_id, 0) - 1)
        if not lock.written and not request.delay:
            # Locked here only and back at once: nothing in the store to undo.
            ctx.turn_locks.pop(lock.token, None)
            self._dispatch.known.note_turn(lock.instance_id, now)
            ctx.turn_signal.notify()
            return
        instance = lock.instance
        counts = {k: max(v, ctx.delivered.get(k, 0)) for k, v in instance.delivery_counts.items()}
        for doc_id in lock.batch:
            count = max(counts.get(doc_id, 0), ctx.delivered.pop(doc_id, 0))
            if request.undo_delivery_count and lock.written:
                count = max(0, count - 1)
            counts[doc_id] = count
        released = msgspec.structs.replace(instance, lock=None, delivery_counts=counts, etag=None)
        ops = [BatchOperation.replace(INSTANCE_DOC_ID, dump(released), if_match=lock.etag)]
        if request.delay:
            rows = await ctx.store.query_partition(
                lock.instance_id,
                "SELECT * FROM c WHERE c.instanceId = @pk AND c.type = 'orch_queue' "
                "AND c.visibleAt < @visible",
                {"visible": visible},
            )
            for raw in rows[: MAX_BATCH_OPERATIONS - 1]:
                doc = msgspec.structs.replace(load(raw, QueueDoc), visible_at=visible, etag=None)
                ops.append(BatchOperation.replace(doc.id, dump(doc)))

        async def landed() -> bool:
            # Unchanged etag: provably not applied. Changed or gone: ours, or moot.
            current = await ctx.store.read(INSTANCE_DOC_ID, lock.instance_id)
            return current is None or load(current, InstanceDoc).etag != lock.etag

        try:
            await write_resolving_loss(lambda: ctx.store.batch(lock.instance_id, ops), landed)
        except CosmosBatchFailed as exc:
            if exc.failed_index == 0 and exc.failed_status in (404, 412):
                raise self._lost(op, lock.token, "the instance lock was lost") from None
            raise
        ctx.turn_locks.pop(lock.token, None)
        self._dispatch.known.note_turn(lock.instance_id, visible)
        ctx.turn_signal.notify()

    async def renew(self, request: RenewRequest) -> None:
        """Extend the lock, writing it into the instance document if it was held here only:
        a turn that runs this long is worth protecting from a member that takes the slot."""
        op = "renew_turn_lock"
        ctx = self._ctx
        now = ctx.clock.now_ms()
        lock = await self.held_lock(op, request.lock_token)
        until = now + to_ms(request.extend_for)
        held = lock.instance.lock
        if held is None:
            if lock.written:
                raise self._lost(op, lock.token, "the instance lock was released")
            held = LockState(token=lock.token, owner=ctx.owner_id, until=until, batch=lock.batch)
        counts = {
            k: max(v, ctx.delivered.get(k, 0)) for k, v in lock.instance.delivery_counts.items()
        }
        if not lock.written:
            counts.update({doc_id: ctx.delivered.get(doc_id, 1) for doc_id in lock.batch})
        renewed = msgspec.structs.replace(
            lock.instance,
            lock=msgspec.structs.replace(held, until=until),
            delivery_counts=counts,
            etag=None,
        )
        etag = await self._replace_instance(lock.instance_id, renewed, lock.etag)
        if etag is None:
            raise self._lost(op, lock.token, "the instance lock was lost")
        renewed.etag = etag
        lock.etag, lock.until, lock.instance, lock.written = etag, until, renewed, True
        lock.offered = False


__all__ = ["Turns"]
