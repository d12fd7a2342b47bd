"""Reads and management transactions of the SQLite provider.

Reads run in a read transaction on a reader connection (a consistent WAL snapshot); delete and
prune run in ``BEGIN IMMEDIATE`` on the writer.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from .._errors import (
    InstanceNotFoundError,
    InstanceStillRunningError,
    ProviderError,
    StoreCorruptionError,
)
from .._history import HistoryEvent, decode_event
from .._status import State
from ._sqlite_rows import INSTANCE_COLUMNS, PENDING_COLUMNS, instance_from_row
from ._types import (
    LISTED_STATES,
    DeleteRequest,
    DeleteResult,
    ExecutionRecord,
    ExecutionStatus,
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

# The first queued start of each instance that has no committed turn.
_PENDING_FROM = """
FROM orchestrator_queue q
WHERE q.kind = 'StartOrchestrationMessage'
  AND q.id = (SELECT min(s.id) FROM orchestrator_queue s
              WHERE s.instance_id = q.instance_id AND s.kind = 'StartOrchestrationMessage')
  AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.instance_id = q.instance_id)
"""
# As instance columns, for reading one.
_PENDING_SQL = f"SELECT {PENDING_COLUMNS}, q.id AS seq {_PENDING_FROM}"

_CORRUPT = (msgspec.DecodeError, msgspec.ValidationError, ValueError)


def _record(op: str, row: tuple[Any, ...]) -> InstanceRecord:
    try:
        return instance_from_row(row)
    except _CORRUPT as exc:
        raise StoreCorruptionError(op, f"instance record of {row[0]!r}: {exc}") from exc


def read_instance_txn(conn: sqlite3.Connection, instance_id: str) -> InstanceRecord | None:
    row = conn.execute(
        f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?", (instance_id,)
    ).fetchone()
    if row is None:
        row = conn.execute(f"{_PENDING_SQL} AND q.instance_id = ?", (instance_id,)).fetchone()
        if row is None:
            return None
        row = row[:-1]
    return _record("read_instance", row)


def read_history_txn(
    conn: sqlite3.Connection, instance_id: str, execution_id: int | None
) -> list[HistoryEvent]:
    if execution_id is None:
        row = conn.execute(
            "SELECT execution_id FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        if row is None:
            return []
        execution_id = row[0]
    events: list[HistoryEvent] = []
    for event_id, data in conn.execute(
        "SELECT event_id, data FROM history WHERE instance_id = ? AND execution_id = ?"
        " ORDER BY event_id",
        (instance_id, execution_id),
    ):
        try:
            events.append(decode_event(data))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StoreCorruptionError(
                "read_history",
                f"event {event_id} of execution {execution_id} of {instance_id!r} "
                f"cannot be decoded: {exc}",
            ) from exc
    return events


def read_executions_txn(conn: sqlite3.Connection, instance_id: str) -> list[ExecutionRecord]:
    return [
        ExecutionRecord(
            execution_id=execution_id,
            status=ExecutionStatus(status),
            started_at_ms=started,
            completed_at_ms=completed,
            event_count=events,
        )
        for execution_id, status, started, completed, events in conn.execute(
            "SELECT e.execution_id, e.status, e.started_at_ms, e.completed_at_ms,"
            " (SELECT count(*) FROM history h WHERE h.instance_id = e.instance_id"
            "  AND h.execution_id = e.execution_id)"
            " FROM executions e WHERE e.instance_id = ? ORDER BY e.execution_id",
            (instance_id,),
        )
    ]


def kv_snapshot_txn(
    conn: sqlite3.Connection, instance_id: str, key: str | None = None
) -> dict[str, KvEntry]:
    """The committed store alone (what the current execution replays from); one key with
    ``key``."""
    if _restart_queued(conn, instance_id):
        return {}
    return _committed_kv(conn, instance_id, key)


def kv_items_txn(
    conn: sqlite3.Connection, instance_id: str, key: str | None = None
) -> dict[str, KvEntry]:
    """The merged view: the current execution's delta over the committed store."""
    if _restart_queued(conn, instance_id):
        return {}
    merged = _committed_kv(conn, instance_id, key)
    for k, value, updated in _kv_rows(conn, "kv_delta", instance_id, key):
        if value is None:
            merged.pop(k, None)
        else:
            merged[k] = KvEntry(value=value, updated_at_ms=updated)
    return merged


def _restart_queued(conn: sqlite3.Connection, instance_id: str) -> bool:
    """A queued restart reads as a new instance: its finished executions' KV is not shown
    (its first turn drops it)."""
    row = conn.execute(
        "SELECT restarting FROM instances WHERE instance_id = ?", (instance_id,)
    ).fetchone()
    return row is not None and bool(row[0])


def _committed_kv(
    conn: sqlite3.Connection, instance_id: str, key: str | None
) -> dict[str, KvEntry]:
    return {
        k: KvEntry(value=value, updated_at_ms=updated)
        for k, value, updated in _kv_rows(conn, "kv_store", instance_id, key)
    }


def _kv_rows(
    conn: sqlite3.Connection, table: str, instance_id: str, key: str | None
) -> sqlite3.Cursor:
    key_filter = "" if key is None else " AND key = :key"
    return conn.execute(
        f"SELECT key, value, updated_at_ms FROM {table} WHERE instance_id = :iid{key_filter}",
        {"iid": instance_id, "key": key},
    )


def _parse_continuation(token: str) -> tuple[int, int]:
    created, _, seq = token.partition(".")
    try:
        return int(created), int(seq)
    except ValueError:
        raise ProviderError(
            "list_instances", f"invalid continuation token {token!r}", retryable=False
        ) from None


# The same pending starts in the instances table's column names, so one set of filters (and
# one ORDER BY) serves both.
_PENDING_ROWS = f"""
SELECT q.instance_id AS instance_id, q.start_name AS name, q.start_version AS version,
  0 AS execution_id, NULL AS execution_status, NULL AS output, NULL AS error,
  NULL AS custom_status, 0 AS custom_status_version, q.start_parent_id AS parent_instance_id,
  q.enqueued_at_ms AS created_at_ms, q.enqueued_at_ms AS updated_at_ms,
  NULL AS completed_at_ms, q.id AS created_seq, 0 AS restarting
{_PENDING_FROM}"""

_NEWEST_FIRST = "ORDER BY created_at_ms DESC, created_seq DESC"


_PREFIX_PROBE = 2000
"""An id prefix matching fewer instances than this is read by id and sorted (cheap); a broader
one is checked while walking newest first, which soon finds a page. With 100,000 instances:
sorting every match of a prefix that all share took 60 ms, the walk under 1 ms."""


def _common_filters(
    conn: sqlite3.Connection, query: InstanceQuery
) -> tuple[list[str], dict[str, Any]]:
    """Every filter but the state, in column names both instances and pending rows have."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if query.name is not None:
        where.append("name = :name")
        params["name"] = query.name
    if query.parent_instance_id is not None:
        where.append("parent_instance_id = :parent")
        params["parent"] = query.parent_instance_id
    if query.created_after_ms is not None:
        where.append("created_at_ms > :after")
        params["after"] = query.created_after_ms
    if query.created_before_ms is not None:
        where.append("created_at_ms < :before")
        params["before"] = query.created_before_ms
    if query.instance_id_prefix:
        # A range (ids are ASCII: nothing sorts after U+10FFFF), which the primary key serves.
        params["prefix"] = query.instance_id_prefix
        params["prefix_end"] = query.instance_id_prefix + "\U0010ffff"
        (matches,) = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM instances"
            " WHERE instance_id >= :prefix AND instance_id < :prefix_end LIMIT :probe)",
            {**params, "probe": _PREFIX_PROBE},
        ).fetchone()
        # A unary + keeps SQLite from choosing the primary key for the range.
        column = "instance_id" if matches < _PREFIX_PROBE else "+instance_id"
        where.append(f"{column} >= :prefix AND {column} < :prefix_end")
    if query.completed_before_ms is not None:
        where.append("completed_at_ms < :completed_before")
        params["completed_before"] = query.completed_before_ms
    if query.min_execution_id is not None:
        where.append("execution_id >= :min_execution")
        params["min_execution"] = query.min_execution_id
    if query.continuation:
        params["c_at"], params["c_seq"] = _parse_continuation(query.continuation)
        where.append("(created_at_ms, created_seq) < (:c_at, :c_seq)")
    return where, params


def _arm(source: str, where: list[str]) -> str:
    """One newest-first run of at most ``:limit`` rows; the arms are merged afterwards."""
    condition = f"WHERE {' AND '.join(where)}" if where else ""
    return (
        f"SELECT * FROM (SELECT {INSTANCE_COLUMNS}, created_seq FROM {source} {condition}"
        f" {_NEWEST_FIRST} LIMIT :limit)"
    )


def list_instances_txn(conn: sqlite3.Connection, query: InstanceQuery) -> InstancePage:
    """A page is a merge of newest-first runs that each read at most ``limit + 1`` rows of an
    index (``instances_by_created``, ``_by_status``, ``_by_name``): one run per execution
    status when the query names states or a name, so that every run walks an index in order
    instead of sorting every match."""
    if query.limit < 1:
        raise ProviderError("list_instances", "limit must be at least 1", retryable=False)
    where, params = _common_filters(conn, query)
    params["limit"] = query.limit + 1
    arms: list[str] = []
    if query.states is None and query.name is None:
        arms.append(_arm("instances", where))
    else:
        statuses = [
            status.value
            for status in ExecutionStatus
            if query.states is None or status.instance_state() in query.states
        ]
        for i, status in enumerate(statuses):
            params[f"st{i}"] = status
            arms.append(_arm("instances", [*where, f"execution_status = :st{i}", "NOT restarting"]))
        if query.states is None or State.PENDING in query.states:
            # A finished instance whose restart is queued reads as PENDING.
            # (Through its partial index, newest first: other indexes would need a sort.)
            arms.append(_arm("instances INDEXED BY instances_restarting", [*where, "restarting"]))
    if query.states is None or State.PENDING in query.states:
        arms.append(_arm(f"({_PENDING_ROWS})", where))
    if not arms:
        return InstancePage(instances=[])
    sql = f"{' UNION ALL '.join(arms)} {_NEWEST_FIRST} LIMIT :limit"
    rows = conn.execute(sql, params).fetchall()
    page = rows[: query.limit]
    more = len(rows) > query.limit
    return InstancePage(
        instances=[_record("list_instances", row[:-1]) for row in page],
        continuation=f"{page[-1][10]}.{page[-1][-1]}" if more and page else None,
    )


def count_instances_txn(conn: sqlite3.Connection, query: InstanceCountQuery) -> InstanceCounts:
    """Each status is counted on ``instances_by_status`` up to ``at_most + 1`` entries, so a
    count reads index entries only and never more than that many."""
    if query.at_most < 0:
        raise ProviderError("count_instances", "at_most must not be negative", retryable=False)
    cap = query.at_most + 1
    found: dict[State, int] = dict.fromkeys(LISTED_STATES, 0)
    for status in ExecutionStatus:
        (n,) = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM instances WHERE execution_status = ? LIMIT ?)",
            (status.value, cap),
        ).fetchone()
        found[status.instance_state()] += n
    # A finished instance whose restart is queued counts as PENDING (a few rows, by index).
    for status, n in conn.execute(
        "SELECT execution_status, count(*) FROM instances WHERE restarting"
        " GROUP BY execution_status"
    ):
        found[ExecutionStatus(status).instance_state()] -= n
        found[State.PENDING] += n
    (queued,) = conn.execute(
        f"SELECT count(*) FROM (SELECT 1 {_PENDING_FROM} LIMIT ?)", (cap,)
    ).fetchone()
    found[State.PENDING] += queued
    return InstanceCounts(
        counts={state: min(n, query.at_most) for state, n in found.items()},
        capped=frozenset(state for state, n in found.items() if n > query.at_most),
    )


def children_txn(conn: sqlite3.Connection, instance_id: str) -> list[str]:
    committed = [
        row[0]
        for row in conn.execute(
            "SELECT instance_id FROM instances WHERE parent_instance_id = ?"
            " ORDER BY created_at_ms, created_seq",
            (instance_id,),
        )
    ]
    pending = [
        row[0]
        for row in conn.execute(
            f"{_PENDING_SQL} AND q.start_parent_id = ? ORDER BY q.id",
            (instance_id,),
        )
    ]
    return committed + pending


def delete_instance_txn(conn: sqlite3.Connection, request: DeleteRequest) -> DeleteResult:
    root = request.instance_id
    if read_instance_txn(conn, root) is None:
        raise InstanceNotFoundError(root)
    tree = [root]
    for instance_id in tree:  # grows while iterating: breadth-first over descendants
        tree.extend(child for child in children_txn(conn, instance_id) if child not in tree)
    if not request.force:
        for instance_id in tree:
            record = read_instance_txn(conn, instance_id)
            if record is not None and not record.state.is_terminal:
                raise InstanceStillRunningError(instance_id)
    executions = events = messages = 0
    for iid in tree:
        args = (iid,)
        events += conn.execute("DELETE FROM history WHERE instance_id = ?", args).rowcount
        executions += conn.execute("DELETE FROM executions WHERE instance_id = ?", args).rowcount
        messages += conn.execute(
            "DELETE FROM orchestrator_queue WHERE instance_id = ?", args
        ).rowcount
        messages += conn.execute("DELETE FROM worker_queue WHERE instance_id = ?", args).rowcount
        for table in ("instance_locks", "kv_store", "kv_delta", "instances"):
            conn.execute(f"DELETE FROM {table} WHERE instance_id = ?", args)
    return DeleteResult(
        instances_deleted=len(tree),
        executions_deleted=executions,
        events_deleted=events,
        messages_deleted=messages,
    )


def prune_txn(conn: sqlite3.Connection, request: PruneRequest) -> PruneResult:
    iid = request.instance_id
    row = conn.execute("SELECT execution_id FROM instances WHERE instance_id = ?", (iid,))
    current = row.fetchone()
    if current is None:
        if read_instance_txn(conn, iid) is not None:
            return PruneResult()  # pending: nothing has run yet
        raise InstanceNotFoundError(iid)
    executions = conn.execute(
        "SELECT execution_id, status, completed_at_ms FROM executions WHERE instance_id = ?"
        " ORDER BY execution_id",
        (iid,),
    ).fetchall()
    keep = {e[0] for e in executions[-max(1, request.keep_last) :]} | {current[0]}
    cutoff = request.completed_before_ms
    deleted_executions = deleted_events = 0
    for execution_id, status, completed_at in executions:
        if execution_id in keep or status == ExecutionStatus.RUNNING.value:
            continue
        if cutoff is not None and (completed_at is None or completed_at >= cutoff):
            continue
        args = (iid, execution_id)
        deleted_events += conn.execute(
            "DELETE FROM history WHERE instance_id = ? AND execution_id = ?", args
        ).rowcount
        conn.execute("DELETE FROM executions WHERE instance_id = ? AND execution_id = ?", args)
        deleted_executions += 1
    return PruneResult(executions_deleted=deleted_executions, events_deleted=deleted_events)


def queue_depths_txn(conn: sqlite3.Connection, now: int) -> QueueDepths:
    row = conn.execute(
        """
        SELECT
          sum(CASE WHEN live THEN 0 WHEN q.visible_at_ms > :now THEN 0 ELSE 1 END),
          sum(CASE WHEN live THEN 0 WHEN q.visible_at_ms > :now THEN 1 ELSE 0 END),
          sum(live),
          min(CASE WHEN NOT live AND q.visible_at_ms > :now THEN q.visible_at_ms END)
        FROM (
          SELECT q.visible_at_ms, EXISTS (
            SELECT 1 FROM instance_locks l
            WHERE l.instance_id = q.instance_id AND l.lock_token = q.lock_token
              AND l.locked_until_ms > :now) AS live
          FROM orchestrator_queue q
        ) AS q
        """,
        {"now": now},
    ).fetchone()
    work = conn.execute(
        """
        SELECT
          sum(CASE WHEN lock_token IS NOT NULL AND locked_until_ms > :now THEN 0
                   WHEN visible_at_ms <= :now THEN 1 ELSE 0 END),
          sum(CASE WHEN lock_token IS NOT NULL AND locked_until_ms > :now THEN 1 ELSE 0 END),
          min(CASE WHEN lock_token IS NOT NULL AND locked_until_ms > :now THEN NULL
                   WHEN visible_at_ms > :now THEN visible_at_ms END)
        FROM worker_queue
        """,
        {"now": now},
    ).fetchone()
    return QueueDepths(
        orchestrator=row[0] or 0,
        timers=row[1] or 0,
        worker=work[0] or 0,
        locked=(row[2] or 0) + (work[1] or 0),
        next_due_ms=min((t for t in (row[3], work[2]) if t is not None), default=None),
    )
