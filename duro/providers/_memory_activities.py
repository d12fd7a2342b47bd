"""The worker side of ``InMemoryProvider``: activity work items, their locks, and sessions.

One ``*_nowait`` function per contract operation, like those of ``_memory_turns``.
"""

from __future__ import annotations

import uuid

import msgspec

from .._errors import LockLostError
from ._memory_state import MemoryTables, SessionRow, WorkRow, to_ms
from ._memory_turns import enqueue_nowait
from ._types import (
    AbandonRequest,
    ActivityCommit,
    ActivityWorkItem,
    FetchActivityRequest,
    RenewRequest,
    SessionRenewal,
)


def fetch_activity_nowait(
    tables: MemoryTables, request: FetchActivityRequest, now: int
) -> ActivityWorkItem | None:
    owner = request.session_owner
    skip = request.skip_activities
    for row in tables.work.rows():
        if row.visible_at_ms > now or row.is_locked(now):
            continue
        task = row.task
        if skip and (task.instance_id, task.execution_id, task.seq) in skip:
            continue
        if not request.tag_filter.accepts(row.task.tag):
            continue
        session_id = row.task.session
        if session_id is not None:
            if owner is None:
                continue
            session = tables.sessions.get(session_id)
            if session is not None and session.is_live(now) and session.owner_id != owner:
                continue
            locked_until = now + to_ms(request.session_lock_timeout)
            if session is not None and session.is_live(now):
                locked_until = max(locked_until, session.locked_until_ms)
            tables.sessions[session_id] = SessionRow(
                owner_id=owner, locked_until_ms=locked_until, last_activity_ms=now
            )
        token = uuid.uuid4().hex
        tables.work.lock(row, token, now + to_ms(request.lock_timeout))
        return ActivityWorkItem(lock_token=token, task=row.task, delivery_count=row.delivery_count)
    return None


def complete_activity_nowait(tables: MemoryTables, commit: ActivityCommit, now: int) -> None:
    row = _live_work_row(tables, "complete_activity", commit.lock_token)
    tables.work.remove(row)
    _touch_session(tables, row, now)
    if commit.result is not None:
        enqueue_nowait(tables, commit.result.message, commit.result.visible_at_ms, now)


def abandon_activity_nowait(tables: MemoryTables, request: AbandonRequest, now: int) -> None:
    row = _live_work_row(tables, "abandon_activity", request.lock_token)
    tables.work.unlock(row)
    row.visible_at_ms = now + to_ms(request.delay)
    if request.undo_delivery_count:
        row.delivery_count = max(0, row.delivery_count - 1)


def renew_activity_lock_nowait(tables: MemoryTables, request: RenewRequest, now: int) -> None:
    row = _live_work_row(tables, "renew_activity_lock", request.lock_token)
    row.locked_until_ms = now + to_ms(request.extend_for)
    if request.heartbeat_details is not None:
        details = msgspec.Raw(request.heartbeat_details)
        row.task = msgspec.structs.replace(row.task, heartbeat_details=details)
    _touch_session(tables, row, now)


def renew_sessions_nowait(tables: MemoryTables, request: SessionRenewal, now: int) -> int:
    owners = set(request.owner_ids)
    active_since = now - to_ms(request.idle_timeout)
    renewed = 0
    for session in tables.sessions.values():
        if (
            session.owner_id in owners
            and session.is_live(now)
            and session.last_activity_ms > active_since
        ):
            session.locked_until_ms = now + to_ms(request.extend_for)
            renewed += 1
    return renewed


def cleanup_orphaned_sessions_nowait(tables: MemoryTables, now: int) -> int:
    # An expired session is one its owner stopped renewing (idle, or the owner is gone), so
    # expiry alone decides here; ``idle_timeout`` serves stores that sweep by last activity.
    referenced = {row.task.session for row in tables.work.rows()}
    orphans = [
        session_id
        for session_id, session in tables.sessions.items()
        if not session.is_live(now) and session_id not in referenced
    ]
    for session_id in orphans:
        del tables.sessions[session_id]
    return len(orphans)


def activity_due(tables: MemoryTables, now: int) -> int | None:
    """The next time an activity fetch could find work without any write happening."""
    times: list[int] = []
    for row in tables.work.rows():
        times.append(row.visible_at_ms)
        if row.lock_token is not None:
            times.append(row.locked_until_ms)
    times.extend(session.locked_until_ms for session in tables.sessions.values())
    future = [t for t in times if t > now]
    return min(future) if future else None


def _live_work_row(tables: MemoryTables, op: str, token: str) -> WorkRow:
    row = tables.work.by_token(token)
    if row is None or row.lock_token != token:
        raise LockLostError(op, "work item was withdrawn, completed or taken over")
    return row


def _touch_session(tables: MemoryTables, row: WorkRow, now: int) -> None:
    if row.task.session is None:
        return
    session = tables.sessions.get(row.task.session)
    if session is not None and session.is_live(now):
        session.last_activity_ms = now
