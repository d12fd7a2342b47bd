"""Worker-queue and session transactions of the SQLite provider.

Every ``*_txn`` function runs inside the caller's ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from .._errors import LockLostError, ProviderError
from .._messages import decode_task, encode_message
from ._sqlite_rows import json_array
from ._sqlite_turns import (
    NoWork,
    dead_letter_txn,
    each_in_savepoint_txn,
    insert_message_txn,
    ms,
)
from ._types import (
    AbandonRequest,
    ActivityCommit,
    ActivityWorkItem,
    FetchActivityRequest,
    RenewRequest,
    SessionRenewal,
)


def _filter_sql(request: FetchActivityRequest, params: dict[str, Any]) -> str | None:
    """The WHERE fragment for the tag filter, session routing and skipped activities; None if
    nothing qualifies."""
    tag_filter = request.tag_filter
    clauses: list[str] = []
    if not tag_filter.any_tag:
        accepted: list[str] = []
        if tag_filter.tags:
            names = []
            for i, tag in enumerate(sorted(tag_filter.tags)):
                params[f"tag{i}"] = tag
                names.append(f":tag{i}")
            accepted.append(f"w.tag IN ({', '.join(names)})")
        if tag_filter.include_untagged:
            accepted.append("w.tag IS NULL")
        if not accepted:
            return None
        clauses.append(f"({' OR '.join(accepted)})")
    if request.session_owner is None:
        clauses.append("w.session_id IS NULL")
    else:
        params["owner"] = request.session_owner
        clauses.append(
            "(w.session_id IS NULL OR s.session_id IS NULL OR s.owner_id = :owner"
            " OR s.locked_until_ms <= :now)"
        )
    if request.skip_activities:
        params["skip"] = json_array(request.skip_activities)
        clauses.append(
            "(w.instance_id, w.execution_id, w.seq) NOT IN (SELECT json_extract(value, '$[0]'),"
            " json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(:skip))"
        )
    return " AND ".join(clauses)


def _lock_activity_txn(
    conn: sqlite3.Connection, request: FetchActivityRequest, *, now: int, token: str
) -> ActivityWorkItem | NoWork:
    """Lock the oldest qualifying item."""
    params: dict[str, Any] = {"now": now}
    where = _filter_sql(request, params)
    if where is None:
        return NoWork(None)
    # ``+w.visible_at_ms``: walk rowid (FIFO) order and stop at the first match rather than
    # sorting every visible item (see the orchestrator queue's candidate query).
    sql = (
        "SELECT w.id, w.session_id, w.data FROM worker_queue w"
        " LEFT JOIN sessions s ON s.session_id = w.session_id"
        " WHERE +w.visible_at_ms <= :now"
        " AND (w.lock_token IS NULL OR w.locked_until_ms <= :now)"
        f" AND {where} ORDER BY w.id LIMIT 1"
    )
    while True:
        row = conn.execute(sql, params).fetchone()
        if row is None:
            return NoWork(_activity_due_txn(conn, now))
        item_id, session_id, data = row
        try:
            task = decode_task(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            dead_letter_txn(conn, "worker_queue", None, data, str(exc), now)
            conn.execute("DELETE FROM worker_queue WHERE id = ?", (item_id,))
            continue
        token = _item_token(token, item_id)
        [(delivery_count,)] = conn.execute(
            "UPDATE worker_queue SET lock_token = ?, locked_until_ms = ?, lock_owner = ?,"
            " delivery_count = delivery_count + 1 WHERE id = ? RETURNING delivery_count",
            (token, now + ms(request.lock_timeout), request.owner_id, item_id),
        ).fetchall()
        if session_id is not None and request.session_owner is not None:
            # Claim or renew; a live lease of ours is never shortened.
            conn.execute(
                "INSERT INTO sessions (session_id, owner_id, locked_until_ms, last_activity_ms)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET"
                " owner_id = excluded.owner_id,"
                " locked_until_ms = CASE WHEN sessions.locked_until_ms > ?"
                " THEN max(sessions.locked_until_ms, excluded.locked_until_ms)"
                " ELSE excluded.locked_until_ms END,"
                " last_activity_ms = excluded.last_activity_ms",
                (
                    session_id,
                    request.session_owner,
                    now + ms(request.session_lock_timeout),
                    now,
                    now,
                ),
            )
        return ActivityWorkItem(lock_token=token, task=task, delivery_count=delivery_count)


def _activity_due_txn(conn: sqlite3.Connection, now: int) -> int | None:
    due: int | None = conn.execute(
        "SELECT min(t) FROM ("
        " SELECT min(visible_at_ms) AS t FROM worker_queue WHERE visible_at_ms > :now"
        " UNION ALL"
        " SELECT min(locked_until_ms) FROM worker_queue WHERE locked_until_ms > :now"
        " UNION ALL"
        " SELECT min(locked_until_ms) FROM sessions WHERE locked_until_ms > :now)",
        {"now": now},
    ).fetchone()[0]
    return due


def _item_token(base: str, item_id: int) -> str:
    """A work item's lock token names its row, so a completion finds it by primary key (no
    index on tokens; schema version 6)."""
    return f"{base}|{item_id}"


def _token_item(token: str) -> int | None:
    item_id = token.rpartition("|")[2]
    return int(item_id) if item_id.isdecimal() else None


_ITEM_LOST = "work item was withdrawn, completed or taken over"


def _live_item_txn(conn: sqlite3.Connection, op: str, token: str) -> tuple[int, str | None]:
    row = conn.execute(
        "SELECT id, session_id FROM worker_queue WHERE id = ? AND lock_token = ?",
        (_token_item(token), token),
    ).fetchone()
    if row is None:
        raise LockLostError(op, _ITEM_LOST)
    return row[0], row[1]


def expire_activity_locks_txn(conn: sqlite3.Connection, owner_id: str, now: int) -> int:
    """End ``owner_id``'s live work item locks now (the next fetch takes them over)."""
    cursor = conn.execute(
        "UPDATE worker_queue SET locked_until_ms = ?"
        " WHERE lock_owner = ? AND lock_token IS NOT NULL AND locked_until_ms > ?",
        (now, owner_id, now),
    )
    return cursor.rowcount


def expire_sessions_txn(conn: sqlite3.Connection, owner_id: str, now: int) -> int:
    """End ``owner_id``'s sessions now (the next fetch of their work claims them anew)."""
    cursor = conn.execute(
        "UPDATE sessions SET locked_until_ms = ? WHERE owner_id = ? AND locked_until_ms > ?",
        (now, owner_id, now),
    )
    return cursor.rowcount


def _touch_session_txn(conn: sqlite3.Connection, session_id: str | None, now: int) -> None:
    if session_id is not None:
        conn.execute(
            "UPDATE sessions SET last_activity_ms = ? WHERE session_id = ? AND locked_until_ms > ?",
            (now, session_id, now),
        )


def fetch_activities_txn(
    conn: sqlite3.Connection,
    request: FetchActivityRequest,
    *,
    now: int,
    new_token: Callable[[], str],
) -> list[ActivityWorkItem] | NoWork:
    """Lock up to ``request.max_items`` items."""
    items: list[ActivityWorkItem] = []
    for _ in range(max(1, request.max_items)):
        result = _lock_activity_txn(conn, request, now=now, token=new_token())
        if isinstance(result, NoWork):
            return items or result
        items.append(result)
    return items


def activity_work_remains_txn(conn: sqlite3.Connection, now: int) -> bool:
    """Whether some work item could be locked right now (by any worker's filter)."""
    remains: int = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM worker_queue WHERE visible_at_ms <= :now"
        " AND (lock_token IS NULL OR locked_until_ms <= :now))",
        {"now": now},
    ).fetchone()[0]
    return bool(remains)


def complete_activities_txn(
    conn: sqlite3.Connection, commits: Sequence[ActivityCommit], now: int
) -> list[ProviderError | None]:
    return each_in_savepoint_txn(conn, commits, lambda c: complete_activity_txn(conn, c, now))


def complete_activity_txn(conn: sqlite3.Connection, commit: ActivityCommit, now: int) -> None:
    # The lock check and the removal in one statement.
    row = conn.execute(
        "DELETE FROM worker_queue WHERE id = ? AND lock_token = ? RETURNING session_id",
        (_token_item(commit.lock_token), commit.lock_token),
    ).fetchone()
    if row is None:
        raise LockLostError("complete_activity", _ITEM_LOST)
    _touch_session_txn(conn, row[0], now)
    if commit.result is not None:
        insert_message_txn(conn, commit.result.message, commit.result.visible_at_ms, now)


def abandon_activity_txn(conn: sqlite3.Connection, request: AbandonRequest, now: int) -> None:
    item_id, _ = _live_item_txn(conn, "abandon_activity", request.lock_token)
    delivery_count = (
        "max(delivery_count - 1, 0)" if request.undo_delivery_count else "delivery_count"
    )
    conn.execute(
        "UPDATE worker_queue SET lock_token = NULL, locked_until_ms = NULL,"
        f" visible_at_ms = ?, delivery_count = {delivery_count} WHERE id = ?",
        (now + ms(request.delay), item_id),
    )


def renew_activity_txn(conn: sqlite3.Connection, request: RenewRequest, now: int) -> None:
    item_id, session_id = _live_item_txn(conn, "renew_activity_lock", request.lock_token)
    conn.execute(
        "UPDATE worker_queue SET locked_until_ms = ? WHERE id = ?",
        (now + ms(request.extend_for), item_id),
    )
    if request.heartbeat_details is not None:
        (data,) = conn.execute("SELECT data FROM worker_queue WHERE id = ?", (item_id,)).fetchone()
        task = msgspec.structs.replace(
            decode_task(data), heartbeat_details=msgspec.Raw(request.heartbeat_details)
        )
        conn.execute(
            "UPDATE worker_queue SET data = ? WHERE id = ?", (encode_message(task), item_id)
        )
    _touch_session_txn(conn, session_id, now)


def renew_sessions_txn(conn: sqlite3.Connection, request: SessionRenewal, now: int) -> int:
    owners = sorted(set(request.owner_ids))
    if not owners:
        return 0
    marks = ", ".join("?" for _ in owners)
    cursor = conn.execute(
        f"UPDATE sessions SET locked_until_ms = ? WHERE owner_id IN ({marks})"
        " AND locked_until_ms > ? AND last_activity_ms > ?",
        (now + ms(request.extend_for), *owners, now, now - ms(request.idle_timeout)),
    )
    return cursor.rowcount


def cleanup_sessions_txn(conn: sqlite3.Connection, now: int) -> int:
    cursor = conn.execute(
        "DELETE FROM sessions WHERE locked_until_ms <= ? AND NOT EXISTS"
        " (SELECT 1 FROM worker_queue w WHERE w.session_id = sessions.session_id)",
        (now,),
    )
    return cursor.rowcount
