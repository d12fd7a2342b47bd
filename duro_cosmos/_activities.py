"""Activity work items and sessions.

Work items live in their instance's partition (so a turn inserts and withdraws them in its
batch). A fetch finds candidates with one cross-partition filter query (no ORDER BY: the
oldest is picked client-side) and locks one with an If-Match replace. Completion is one batch
in the instance's partition: delete the item (If-Match on the lock's etag) and create the
result message. Sessions are ``session`` documents, one partition each (``~s:{hash}``), claimed
with create (409 = someone else was first) or If-Match replace.
"""

from __future__ import annotations

from typing import Any

import msgspec

from duro._errors import LockLostError, ProviderError
from duro._messages import decode_task, encode_message
from duro.providers._types import (
    AbandonRequest,
    ActivityCommit,
    ActivityWorkItem,
    FetchActivityRequest,
    RenewRequest,
    SessionRenewal,
)

from ._context import Context, WorkLock
from ._dispatch import Dispatch
from ._documents import (
    OutboxDoc,
    OutboxItem,
    SessionDoc,
    WorkDoc,
    dump,
    load,
    make_token,
    parse_token,
    session_partition,
)
from ._known_work import WorkRef
from ._model import queue_doc, to_ms
from ._outbox import Outbox, new_intent
from ._rest import (
    BatchOperation,
    CosmosAmbiguousWrite,
    CosmosBatchFailed,
    CosmosConflict,
    CosmosError,
    CosmosNotFound,
    CosmosPreconditionFailed,
)
from ._store import write_resolving_loss

_SESSION_DOC_ID = "session"


class Activities:
    def __init__(self, ctx: Context, outbox: Outbox, dispatch: Dispatch) -> None:
        self._ctx = ctx
        self._outbox = outbox
        self._dispatch = dispatch
        dispatch.protectors.append(self._protect)

    # -- fetch ----------------------------------------------------------------------------------

    async def fetch(self, request: FetchActivityRequest, limit: int = 1) -> list[ActivityWorkItem]:
        """Lock up to ``limit`` items the index knows of (long-polls while none)."""
        ctx = self._ctx
        clock = ctx.clock
        sweeper = self._dispatch.sweeper
        sweeper.tag_filter = request.tag_filter
        sweeper.sessions = request.session_owner is not None
        deadline = clock.now_ms() + to_ms(request.poll_timeout)
        while True:
            event = ctx.activity_signal.current()
            await self._dispatch.keep_up()
            now = clock.now_ms()
            items = await self._take(request, now, max(1, limit))
            if items or now >= deadline:
                return items
            expiry = min((lock.until for lock in _unexpired(ctx.work_locks, now)), default=deadline)
            await self._dispatch.wait(clock, event, now, min(deadline, expiry))

    async def _take(
        self, request: FetchActivityRequest, now: int, limit: int
    ) -> list[ActivityWorkItem]:
        tags = request.tag_filter
        taken: list[ActivityWorkItem] = []
        if not tags.any_tag and not tags.tags and not tags.include_untagged:
            return taken
        ctx = self._ctx
        known = self._dispatch.known
        for lock in list(ctx.work_locks.values()):
            if lock.until <= now:
                self._offer(lock)
        held = {lock.doc_id for lock in _unexpired(ctx.work_locks, now)}
        # Untagged items of slots that moved to another member are theirs now.
        known.drop_items(lambda ref: self._dispatch.anyones(ref) or self._dispatch.owns(ref.slot))

        def accept(ref: WorkRef) -> bool:
            if ref.doc_id in held or ref.doc_id in ctx.claiming or not tags.accepts(ref.tag):
                return False
            return ref.session is None or request.session_owner is not None

        sessions: dict[str, SessionDoc | None] = {}
        for ref in known.due_items(now, accept):
            if ref.session is not None:
                claimed = await self._session_for(ref.session, sessions, request, now)
                if claimed is None:
                    continue
            if not known.take_item(ref.doc_id):
                continue  # another fetch of this process took it meanwhile
            ctx.claiming.add(ref.doc_id)
            try:
                item = await self._lock(ref, request, now)
            finally:
                ctx.claiming.discard(ref.doc_id)
            if item is not None:
                taken.append(item)
                if len(taken) >= limit:
                    break
        return taken

    async def _session_for(
        self,
        session_id: str,
        sessions: dict[str, SessionDoc | None],
        request: FetchActivityRequest,
        now: int,
    ) -> SessionDoc | None:
        """The session, claimed (or renewed) for ``request.session_owner``; None if another
        live owner holds it."""
        if session_id not in sessions:
            sessions[session_id] = await self._read_session(session_id)
        session = sessions[session_id]
        if (
            session is not None
            and session.locked_until > now
            and session.owner_id != request.session_owner
        ):
            return None
        claimed = await self._claim_session(session_id, session, request, now)
        sessions[session_id] = claimed
        return claimed

    async def _lock(
        self, ref: WorkRef, request: FetchActivityRequest, now: int
    ) -> ActivityWorkItem | None:
        ctx = self._ctx
        doc = await self._current(ref, now)
        if doc is None:
            return None
        if request.skip_activities and _activity_key(doc) in request.skip_activities:
            self._dispatch.known.note_item(ref)  # left to other members; still known here
            return None
        token = make_token(doc.instance_id, doc.id)
        # Timed from now, not from the fetch's start: a slow multi-item fetch must not hand
        # over items whose locks already ran out.
        until = ctx.clock.now_ms() + to_ms(request.lock_timeout)
        delivered = max(doc.delivery_count, ctx.delivered.get(doc.id, 0))
        fresh = (
            delivered == 0
            and doc.lock_token is None
            and doc.tag is None
            and doc.session is None
            and self._dispatch.membership.owns(doc.slot)
            and self._dispatch.membership.fresh(doc.slot, doc.visible_at)
        )
        if fresh:
            # Nobody else is offered this item: lock it here only (see WorkLock.written).
            ctx.delivered[doc.id] = 1
            etag: str | None = doc.etag
        else:
            locked = msgspec.structs.replace(
                doc, lock_token=token, locked_until=until, lock_owner=ctx.owner_id,
                delivery_count=delivered + 1, etag=None,
            )  # fmt: skip
            etag = await self._write_lock(doc, locked, token)
            if etag is None:
                return None
        _drop_taken_over(ctx.work_locks, doc.id)
        ctx.work_locks[token] = WorkLock(
            instance_id=doc.instance_id, doc_id=doc.id, token=token, etag=etag or "",
            until=until, session=doc.session, written=not fresh, slot=doc.slot,
            visible_at=doc.visible_at, seq=doc.seq, tag=doc.tag,
        )  # fmt: skip
        return ActivityWorkItem(
            lock_token=token, task=decode_task(doc.task), delivery_count=delivered + 1
        )

    async def _current(self, ref: WorkRef, now: int) -> WorkDoc | None:
        """The item to lock. Fresh work this process wrote itself is taken as the index knows
        it; anything else is read first. None when it is gone, not yet visible, or a live
        member holds its lock."""
        membership = self._dispatch.membership
        if (
            ref.task is not None
            and ref.etag is not None
            and ref.tag is None
            and ref.session is None
            and not self._ctx.delivered.get(ref.doc_id)
            and membership.owns(ref.slot)
            and membership.fresh(ref.slot, ref.visible_at)
        ):
            # Only the fields a fresh lock reads; such an item is never rewritten from it.
            return WorkDoc(
                id=ref.doc_id, instance_id=ref.instance_id, slot=ref.slot,
                execution_id=0, seq_no=0, visible_at=ref.visible_at, seq=ref.seq,
                task=ref.task, etag=ref.etag,
            )  # fmt: skip
        raw = await self._ctx.store.read(ref.doc_id, ref.instance_id)
        if raw is None:
            return None
        doc = load(raw, WorkDoc)
        if doc.visible_at > now:
            self._dispatch.known.note_item(_ref_of(doc))
            return None
        if doc.lock_token is not None and membership.lock_holds(
            doc.lock_owner,
            doc.locked_until,
            now,
            taken_here=doc.lock_token in self._ctx.work_locks,
        ):
            return None
        return doc

    async def _write_lock(self, doc: WorkDoc, locked: WorkDoc, token: str) -> str | None:
        """If-Match replace that writes the lock; None if someone changed the item first."""
        ctx = self._ctx
        try:
            return await ctx.store.replace(doc.id, dump(locked), doc.instance_id, if_match=doc.etag)
        except CosmosNotFound:
            return None
        except CosmosPreconditionFailed as exc:
            if not exc.after_ambiguous_failure:
                return None
            current = await ctx.store.read(doc.id, doc.instance_id)
            if current is None or current.get("lockToken") != token:
                return None
            etag = current.get("_etag")
            return etag if isinstance(etag, str) else ""

    # -- sessions -------------------------------------------------------------------------------

    async def _read_session(self, session_id: str) -> SessionDoc | None:
        raw = await self._ctx.store.read(_SESSION_DOC_ID, session_partition(session_id))
        return None if raw is None else load(raw, SessionDoc)

    async def _claim_session(
        self,
        session_id: str,
        current: SessionDoc | None,
        request: FetchActivityRequest,
        now: int,
    ) -> SessionDoc | None:
        owner = request.session_owner or ""
        until = now + to_ms(request.session_lock_timeout)
        if current is not None and current.locked_until > now:
            until = max(until, current.locked_until)
        pk = session_partition(session_id)
        claimed = SessionDoc(
            id=_SESSION_DOC_ID, instance_id=pk, session_id=session_id, owner_id=owner,
            locked_until=until, last_activity=now,
        )  # fmt: skip
        store = self._ctx.store
        try:
            if current is None:
                etag = await store.create(dump(claimed), pk)
            else:
                etag = await store.replace(
                    _SESSION_DOC_ID, dump(claimed), pk, if_match=current.etag
                )
        except (CosmosConflict, CosmosPreconditionFailed, CosmosNotFound, CosmosAmbiguousWrite):
            fresh = await self._read_session(session_id)
            if fresh is not None and fresh.owner_id == owner and fresh.locked_until > now:
                return fresh
            return None
        claimed.etag = etag
        return claimed

    async def _touch_session(self, session_id: str | None, now: int) -> None:
        """Best effort: record activity on a live session (ignored if it changed meanwhile)."""
        if session_id is None:
            return
        session = await self._read_session(session_id)
        if session is None or session.locked_until <= now:
            return
        touched = msgspec.structs.replace(session, last_activity=now, etag=None)
        try:
            await self._ctx.store.replace(
                _SESSION_DOC_ID, dump(touched), session.instance_id, if_match=session.etag
            )
        except CosmosError:
            pass

    async def renew_sessions(self, request: SessionRenewal) -> int:
        ctx = self._ctx
        now = ctx.clock.now_ms()
        if not request.owner_ids:
            return 0
        rows = await ctx.store.query_cross(
            "SELECT * FROM c WHERE c.type = 'session' AND ARRAY_CONTAINS(@owners, c.ownerId) "
            "AND c.lockedUntil > @now AND c.lastActivity > @since",
            {
                "owners": list(request.owner_ids),
                "now": now,
                "since": now - to_ms(request.idle_timeout),
            },
        )
        renewed = 0
        for raw in rows:
            session = load(raw, SessionDoc)
            extended = msgspec.structs.replace(
                session, locked_until=now + to_ms(request.extend_for), etag=None
            )
            try:
                await ctx.store.replace(
                    _SESSION_DOC_ID, dump(extended), session.instance_id, if_match=session.etag
                )
            except (CosmosPreconditionFailed, CosmosNotFound):
                continue
            renewed += 1
        return renewed

    async def cleanup_sessions(self) -> int:
        ctx = self._ctx
        now = ctx.clock.now_ms()
        expired = await ctx.store.query_cross(
            "SELECT * FROM c WHERE c.type = 'session' AND c.lockedUntil <= @now", {"now": now}
        )
        if not expired:
            return 0
        referenced = {
            row.get("session")
            for row in await ctx.store.query_cross(
                "SELECT c.session FROM c WHERE c.type = 'worker_queue' AND c.session != null"
            )
        }
        removed = 0
        for raw in expired:
            session = load(raw, SessionDoc)
            if session.session_id in referenced:
                continue
            try:
                if await ctx.store.delete(
                    _SESSION_DOC_ID, session.instance_id, if_match=session.etag
                ):
                    removed += 1
            except CosmosPreconditionFailed:
                continue
        return removed

    # -- complete, abandon, renew ---------------------------------------------------------------

    async def _held(self, op: str, token: str) -> WorkLock:
        lock = self._ctx.work_locks.get(token)
        if lock is None:
            parts = parse_token(token, 3)
            if parts is None:
                raise LockLostError(op, "work item was withdrawn, completed or taken over")
            raw = await self._ctx.store.read(parts[2], parts[1])
            if raw is None or raw.get("lockToken") != token:
                raise LockLostError(op, "work item was withdrawn, completed or taken over")
            doc = load(raw, WorkDoc)
            lock = WorkLock(
                instance_id=doc.instance_id, doc_id=doc.id, token=token, etag=doc.etag or "",
                until=doc.locked_until, session=doc.session,
            )  # fmt: skip
        # Expired or not, the lock is ours until a fetch takes the item over: that drops it
        # here, or (another member) changes the item, which the If-Match of every write sees.
        return lock

    async def _protect(self, slots: frozenset[int]) -> None:
        """Write the locks of activities still running in slots that moved to another member,
        so the new owner does not run them a second time."""
        now = self._ctx.clock.now_ms()
        for lock in list(self._ctx.work_locks.values()):
            if not lock.written and lock.until > now and lock.slot in slots:
                request = RenewRequest(lock_token=lock.token, extend_for=(lock.until - now) / 1000)
                await self._rewrite("renew_activity_lock", lock, now, request)

    def _offer(self, lock: WorkLock) -> None:
        """An expired lock: the item is anyone's again (its token works until taken over)."""
        if lock.offered:
            return
        lock.offered = True
        self._dispatch.known.note_item(
            WorkRef(
                doc_id=lock.doc_id, instance_id=lock.instance_id, visible_at=lock.until,
                seq=lock.seq, slot=lock.slot, tag=lock.tag, session=lock.session,
            )
        )  # fmt: skip

    def _lost(self, op: str, token: str) -> LockLostError:
        self._ctx.work_locks.pop(token, None)
        return LockLostError(op, "work item was withdrawn, completed or taken over")

    async def complete(self, commit: ActivityCommit) -> None:
        op = "complete_activity"
        ctx = self._ctx
        now = ctx.clock.now_ms()
        lock = await self._held(op, commit.lock_token)
        ops = [BatchOperation.delete(lock.doc_id, if_match=lock.etag)]
        result_id = f"m:r:{lock.doc_id}:{commit.lock_token.split('~', 1)[0]}"
        intent: OutboxDoc | None = None
        if commit.result is not None:
            message = commit.result.message
            visible = now if commit.result.visible_at_ms is None else commit.result.visible_at_ms
            qdoc = queue_doc(message, result_id, visible, now)
            if message.instance_id == lock.instance_id:
                ops.append(BatchOperation.create(dump(qdoc)))
            else:
                body = msgspec.json.encode(dump(qdoc)).decode()
                item = OutboxItem(
                    target=message.instance_id, doc_id=qdoc.id, kind="message", body=body
                )
                intent = new_intent("o:" + result_id[2:], lock.instance_id, now, [item])
                ops.append(BatchOperation.create(dump(intent)))
        for _ in range(3):
            conditioned_on = lock.etag
            ops[0] = BatchOperation.delete(lock.doc_id, if_match=conditioned_on)
            try:
                await write_resolving_loss(
                    lambda: ctx.store.batch(lock.instance_id, ops),
                    lambda: self._completed(op, lock, result_id if len(ops) > 1 else None),
                )
                break
            except CosmosBatchFailed as exc:
                renewed_here = lock.etag != conditioned_on
                if exc.failed_index == 0 and exc.failed_status == 412 and renewed_here:
                    # This process renewed the lock while the completion was on its way (the
                    # runtime renews every third of the lock timeout): complete on that.
                    continue
                if exc.failed_index == 0 and exc.failed_status in (404, 412):
                    raise self._lost(op, lock.token) from None
                raise
        else:
            raise ProviderError(op, "the lock kept changing during the completion", retryable=True)
        ctx.work_locks.pop(lock.token, None)
        ctx.delivered.pop(lock.doc_id, None)
        if intent is not None:
            try:
                await self._outbox.deliver(intent)
            except CosmosError:
                pass  # the reconciler delivers it
        elif commit.result is not None:
            await self._dispatch.wrote_message(lock.instance_id, visible)
        await self._touch_session(lock.session, now)
        if lock.session is not None:
            # Only a session's state changed: the session's next item may be ours now.
            ctx.activity_signal.notify()

    async def _completed(self, op: str, lock: WorkLock, result_id: str | None) -> bool:
        """Whether a completion whose response was lost was applied (False: provably not)."""
        store = self._ctx.store
        current: dict[str, Any] | None = await store.read(lock.doc_id, lock.instance_id)
        if current is not None:
            if current.get("_etag") != lock.etag:
                raise self._lost(op, lock.token)
            return False
        if result_id is None:
            return True
        if await store.read(result_id, lock.instance_id) is None and not await store.read(
            "o:" + result_id[2:], lock.instance_id
        ):
            raise self._lost(op, lock.token)  # withdrawn, not completed by us
        return True

    async def abandon(self, request: AbandonRequest) -> None:
        op = "abandon_activity"
        ctx = self._ctx
        now = ctx.clock.now_ms()
        lock = await self._held(op, request.lock_token)
        if request.undo_delivery_count and not lock.written:
            ctx.delivered[lock.doc_id] = max(0, ctx.delivered.get(lock.doc_id, 0) - 1)
        visible_at = now + to_ms(request.delay)
        if lock.written or request.delay:
            await self._rewrite(op, lock, now, request)
        ctx.work_locks.pop(lock.token, None)
        self._dispatch.known.note_item(
            WorkRef(
                doc_id=lock.doc_id, instance_id=lock.instance_id, visible_at=visible_at,
                seq=lock.seq, slot=lock.slot, tag=lock.tag, session=lock.session,
            )
        )  # fmt: skip
        ctx.activity_signal.notify()

    async def renew(self, request: RenewRequest) -> None:
        op = "renew_activity_lock"
        now = self._ctx.clock.now_ms()
        lock = await self._held(op, request.lock_token)
        await self._rewrite(op, lock, now, request)
        await self._touch_session(lock.session, now)

    async def _rewrite(
        self, op: str, lock: WorkLock, now: int, request: AbandonRequest | RenewRequest
    ) -> None:
        """Write the lock's new state: renewed (which writes a lock held here only into the
        item, so a long activity keeps it against every member) or given back."""
        ctx = self._ctx
        store = ctx.store
        raw = await store.read(lock.doc_id, lock.instance_id)
        token = lock.token if lock.written else None
        if raw is None or raw.get("lockToken") != token or raw.get("_etag") != lock.etag:
            raise self._lost(op, lock.token)
        doc = load(raw, WorkDoc)
        count = max(doc.delivery_count, ctx.delivered.pop(lock.doc_id, 0))
        if isinstance(request, RenewRequest):
            until = now + to_ms(request.extend_for)
            task = doc.task
            if request.heartbeat_details is not None:
                details = msgspec.Raw(request.heartbeat_details)
                task = encode_message(
                    msgspec.structs.replace(decode_task(task), heartbeat_details=details)
                ).decode()
            new = msgspec.structs.replace(
                doc, lock_token=lock.token, locked_until=until, lock_owner=ctx.owner_id,
                delivery_count=count, task=task, etag=None,
            )  # fmt: skip
        else:
            delivery_count = max(0, count - 1) if request.undo_delivery_count else count
            new = msgspec.structs.replace(
                doc, lock_token=None, locked_until=0, lock_owner=None,
                delivery_count=delivery_count, visible_at=now + to_ms(request.delay), etag=None,
            )  # fmt: skip
        try:
            etag = await store.replace(lock.doc_id, dump(new), lock.instance_id, if_match=lock.etag)
        except CosmosNotFound:
            raise self._lost(op, lock.token) from None
        except CosmosPreconditionFailed as exc:
            # After a lost response the 412 may answer our own write: read it back.
            if not exc.after_ambiguous_failure:
                raise self._lost(op, lock.token) from None
            current = await store.read(lock.doc_id, lock.instance_id)
            if current is None or _lock_state(load(current, WorkDoc)) != _lock_state(new):
                raise self._lost(op, lock.token) from None
            etag = current.get("_etag")
        lock.etag = etag or ""
        lock.until = new.locked_until
        lock.written = True
        lock.offered = False


def _activity_key(doc: WorkDoc) -> tuple[str, int, int]:
    task = decode_task(doc.task)  # a fresh item's document has only its task filled in
    return task.instance_id, task.execution_id, task.seq


def _lock_state(doc: WorkDoc) -> tuple[str | None, int, int, int]:
    return doc.lock_token, doc.locked_until, doc.visible_at, doc.delivery_count


def _ref_of(doc: WorkDoc) -> WorkRef:
    return WorkRef(
        doc_id=doc.id, instance_id=doc.instance_id, visible_at=doc.visible_at, seq=doc.seq,
        slot=doc.slot, tag=doc.tag, session=doc.session, etag=doc.etag, task=doc.task,
        locked_until=doc.locked_until, lock_owner=doc.lock_owner,
    )  # fmt: skip


def _unexpired(locks: dict[str, WorkLock], now: int) -> list[WorkLock]:
    return [lock for lock in locks.values() if lock.until > now]


def _drop_taken_over(locks: dict[str, WorkLock], doc_id: str) -> None:
    """A new lock on ``doc_id`` takes it over from this process's expired one."""
    for token in [t for t, lock in locks.items() if lock.doc_id == doc_id]:
        del locks[token]
