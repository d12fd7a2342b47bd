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

from duro._errors import LockLostError
from duro._messages import decode_task
from duro.providers._types import (
    AbandonRequest,
    ActivityCommit,
    ActivityWorkItem,
    FetchActivityRequest,
    RenewRequest,
    SessionRenewal,
)

from ._context import Context, WorkLock, wait_for_work
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
from ._model import queue_doc, to_ms
from ._outbox import Outbox
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
    def __init__(self, ctx: Context, outbox: Outbox) -> None:
        self._ctx = ctx
        self._outbox = outbox

    # -- fetch ----------------------------------------------------------------------------------

    async def fetch(self, request: FetchActivityRequest, limit: int = 1) -> list[ActivityWorkItem]:
        """Lock up to ``limit`` items from one candidate query (long-polls while none)."""
        clock = self._ctx.clock
        deadline = clock.now_ms() + to_ms(request.poll_timeout)
        while True:
            event = self._ctx.activity_signal.current()
            now = clock.now_ms()
            items = await self._fetch_once(request, now, max(1, limit))
            if items or now >= deadline:
                return items
            await wait_for_work(clock, event, now, deadline)

    async def _fetch_once(
        self, request: FetchActivityRequest, now: int, limit: int
    ) -> list[ActivityWorkItem]:
        tags = request.tag_filter
        taken: list[ActivityWorkItem] = []
        if not tags.any_tag and not tags.tags and not tags.include_untagged:
            return taken
        ctx = self._ctx
        rows = await ctx.store.query_cross(
            "SELECT * FROM c WHERE c.type = 'worker_queue' AND c.visibleAt <= @now "
            "AND c.lockedUntil <= @now",
            {"now": now},
        )
        candidates = sorted((load(r, WorkDoc) for r in rows), key=lambda d: (d.visible_at, d.seq))
        sessions: dict[str, SessionDoc | None] = {}
        for doc in candidates:
            if not tags.accepts(doc.tag) or doc.id in ctx.claiming:
                continue
            if doc.session is not None:
                if request.session_owner is None:
                    continue
                if doc.session not in sessions:
                    sessions[doc.session] = await self._read_session(doc.session)
                session = sessions[doc.session]
                if (
                    session is not None
                    and session.locked_until > now
                    and session.owner_id != request.session_owner
                ):
                    continue
                claimed = await self._claim_session(doc.session, session, request, now)
                sessions[doc.session] = claimed
                if claimed is None:
                    continue
            ctx.claiming.add(doc.id)
            try:
                item = await self._lock(doc, request, now)
            finally:
                ctx.claiming.discard(doc.id)
            if item is not None:
                taken.append(item)
                if len(taken) >= limit:
                    break
        return taken

    async def _lock(
        self, doc: WorkDoc, request: FetchActivityRequest, now: int
    ) -> ActivityWorkItem | None:
        ctx = self._ctx
        token = make_token(doc.instance_id, doc.id)
        # Timed from now, not from the fetch's start: a slow multi-item fetch must not hand
        # over items whose locks already ran out.
        until = ctx.clock.now_ms() + to_ms(request.lock_timeout)
        locked = msgspec.structs.replace(
            doc,
            lock_token=token,
            locked_until=until,
            delivery_count=doc.delivery_count + 1,
            etag=None,
        )
        try:
            etag = await ctx.store.replace(doc.id, dump(locked), doc.instance_id, if_match=doc.etag)
        except CosmosNotFound:
            return None
        except CosmosPreconditionFailed as exc:
            if not exc.after_ambiguous_failure:
                return None
            current = await ctx.store.read(doc.id, doc.instance_id)
            if current is None or current.get("lockToken") != token:
                return None
            etag = current.get("_etag")
        ctx.work_locks[token] = WorkLock(
            instance_id=doc.instance_id, doc_id=doc.id, token=token, etag=etag or "",
            until=until, session=doc.session,
        )  # fmt: skip
        return ActivityWorkItem(
            lock_token=token, task=decode_task(doc.task), delivery_count=locked.delivery_count
        )

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

    async def _live(self, op: str, token: str, now: int) -> WorkLock:
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
        if lock.until <= now:
            self._ctx.work_locks.pop(token, None)
            raise LockLostError(op, "work item lock expired")
        return lock

    def _lost(self, op: str, token: str) -> LockLostError:
        self._ctx.work_locks.pop(token, None)
        return LockLostError(op, "work item was withdrawn, completed or taken over")

    async def complete(self, commit: ActivityCommit) -> None:
        op = "complete_activity"
        ctx = self._ctx
        now = ctx.clock.now_ms()
        lock = await self._live(op, commit.lock_token, now)
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
                intent = OutboxDoc(
                    id="o:" + result_id[2:], instance_id=lock.instance_id, created_at=now,
                    items=[OutboxItem(target=message.instance_id, doc_id=qdoc.id,
                                      kind="message", body=body)],
                )  # fmt: skip
                ops.append(BatchOperation.create(dump(intent)))
        try:
            await write_resolving_loss(
                lambda: ctx.store.batch(lock.instance_id, ops),
                lambda: self._completed(op, lock, result_id if len(ops) > 1 else None),
            )
        except CosmosBatchFailed as exc:
            if exc.failed_index == 0 and exc.failed_status in (404, 412):
                raise self._lost(op, lock.token) from None
            raise
        ctx.work_locks.pop(lock.token, None)
        if intent is not None:
            try:
                await self._outbox.deliver(intent)
            except CosmosError:
                pass  # the reconciler delivers it
        await self._touch_session(lock.session, now)
        if lock.session is not None:
            # Only a session's state changed; a plain completion makes no new activity work,
            # and every wake-up of a waiting fetch costs a cross-partition query.
            ctx.activity_signal.notify()
        if commit.result is not None:
            ctx.turn_signal.notify()

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
        now = self._ctx.clock.now_ms()
        lock = await self._live(op, request.lock_token, now)
        await self._rewrite(op, lock, now, request)
        self._ctx.work_locks.pop(lock.token, None)
        self._ctx.activity_signal.notify()

    async def renew(self, request: RenewRequest) -> None:
        op = "renew_activity_lock"
        now = self._ctx.clock.now_ms()
        lock = await self._live(op, request.lock_token, now)
        await self._rewrite(op, lock, now, request)
        await self._touch_session(lock.session, now)

    async def _rewrite(
        self, op: str, lock: WorkLock, now: int, request: AbandonRequest | RenewRequest
    ) -> None:
        store = self._ctx.store
        raw = await store.read(lock.doc_id, lock.instance_id)
        if raw is None or raw.get("lockToken") != lock.token or raw.get("_etag") != lock.etag:
            raise self._lost(op, lock.token)
        doc = load(raw, WorkDoc)
        if isinstance(request, RenewRequest):
            until = now + to_ms(request.extend_for)
            new = msgspec.structs.replace(doc, locked_until=until, etag=None)
        else:
            count = doc.delivery_count
            delivery_count = max(0, count - 1) if request.undo_delivery_count else count
            new = msgspec.structs.replace(
                doc, lock_token=None, locked_until=0, delivery_count=delivery_count,
                visible_at=now + to_ms(request.delay), etag=None,
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


def _lock_state(doc: WorkDoc) -> tuple[str | None, int, int, int]:
    return doc.lock_token, doc.locked_until, doc.visible_at, doc.delivery_count
