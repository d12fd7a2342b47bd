"""Orchestrator-queue transactions of the SQLite provider (starts, turns, locks).

Every ``*_txn`` function runs inside the caller's ``BEGIN IMMEDIATE`` transaction on the
writer connection and takes ``now`` (ms) from the provider's clock: SQLite never reads time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from .._errors import (
    DuplicateEventError,
    InstanceAlreadyExistsError,
    LockLostError,
    ProviderError,
)
from .._history import HistoryEvent, decode_event, encode_event
from .._messages import (
    AnyOrchestratorMessage,
    StartOrchestrationMessage,
    decode_message,
    encode_message,
)
from .._status import ErrorInfo
from ._sqlite_rows import instance_columns, instance_from_row, json_array
from ._types import (
    AbandonRequest,
    InstanceRecord,
    KvEntry,
    OrchestrationWorkItem,
    RenewRequest,
    StartOutcome,
    StartRequest,
    TurnCommit,
)

_ORPHAN_DROPPABLE = ("EnqueueEventMessage", "CancelOrchestrationMessage")
_START = "StartOrchestrationMessage"
_TIMER = "TimerFiredMessage"
# Message kinds are written into the SQL, never bound: `kind = ?` matches the shape of the
# partial index `orchestrator_queue_starts` (WHERE kind = '...'), so SQLite re-prepares such a
# statement at every execution to re-check the index against the bound value (measured: 25-70
# us a statement instead of 5, under the write lock).


C = TypeVar("C")


def ms(seconds: float | None) -> int:
    return 0 if seconds is None else max(0, round(seconds * 1000))


def insert_message_txn(
    conn: sqlite3.Connection,
    message: AnyOrchestratorMessage,
    visible_at_ms: int | None,
    now: int,
    started_by: str | None = None,
) -> None:
    """Queue ``message``; ``started_by``: the worker whose process started the instance
    (a start and the messages sent with it, see ``PEERS_FIRST_MS``)."""
    kind = message.__struct_config__.tag
    start_name = start_version = start_parent = None
    if isinstance(message, StartOrchestrationMessage):
        start_name, start_version = message.name, message.version
        start_parent = message.parent.instance_id if message.parent else None
    conn.execute(
        "INSERT INTO orchestrator_queue (instance_id, kind, data, visible_at_ms, enqueued_at_ms,"
        " start_name, start_version, start_parent_id, started_by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message.instance_id,
            kind,
            encode_message(message),
            now if visible_at_ms is None else visible_at_ms,
            now,
            start_name,
            start_version,
            start_parent,
            started_by,
        ),
    )


_FINISHED = ("completed", "failed")


def start_instance_txn(
    conn: sqlite3.Connection, request: StartRequest, now: int, started_by: str | None = None
) -> StartOutcome:
    """Queue the start (and the messages sent with it); ``started_by``: the worker running in
    the starting process, if one does (see ``PEERS_FIRST_MS``)."""
    start = request.start
    iid = start.instance_id
    instance = conn.execute(
        "SELECT execution_status, restarting FROM instances WHERE instance_id = ?", (iid,)
    ).fetchone()
    queued_start = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM orchestrator_queue"
        f" WHERE instance_id = ? AND kind = '{_START}')",
        (iid,),
    ).fetchone()[0]
    outcome = StartOutcome.STARTED
    if instance is not None or queued_start:
        if request.if_exists == "use_existing":
            outcome = StartOutcome.EXISTING
        elif (
            request.if_exists == "restart_if_finished"
            and instance is not None
            and not queued_start
            and not instance[1]
            and instance[0] in _FINISHED
        ):
            conn.execute(
                "UPDATE instances SET restarting = 1, updated_at_ms = ? WHERE instance_id = ?",
                (now, iid),
            )
            outcome = StartOutcome.RESTARTED
        else:
            raise InstanceAlreadyExistsError(iid)
    # The messages sent with a start wait with it; those for an existing instance do not.
    mark = None if outcome is StartOutcome.EXISTING else started_by
    if outcome is not StartOutcome.EXISTING:
        insert_message_txn(conn, start, None, now, mark)
    for message in request.messages:
        insert_message_txn(conn, message, None, now, mark)
    return outcome


# -- fetch ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoWork:
    """A fetch found nothing to lock now."""

    due_ms: int | None
    """When work may fall due by itself (a timer, an expiring lock); None: nothing scheduled."""


@dataclass(frozen=True, slots=True)
class RawTurn:
    """What ``fetch_turns_txn`` read under one instance's lock; decoded after COMMIT."""

    instance_id: str
    token: str
    execution_id: int
    instance_row: tuple[object, ...] | None
    history_rows: list[tuple[int, bytes]]
    messages: list[AnyOrchestratorMessage]
    delivery_count: int
    kv_rows: list[tuple[str, bytes, int]]
    history_omitted: bool = False


# Candidates in the order their messages became visible (enqueue order breaks ties), which
# walks the (visible_at_ms, id) index and stops at the first qualifying message. Messages of a
# never-started instance only qualify when a start is visible (or when they are droppable
# orphans), so they cannot starve the queue. ``{skip}`` leaves out the instances the caller
# hands to other workers (a JSON array in ``:skip``). The candidate's instance row comes with
# it (NULLs if it has none), and its current execution's event count (event ids are dense):
# the turn needs both, and one statement costs less than three.
_CANDIDATE_TEMPLATE = f"""
SELECT q.instance_id, {instance_columns("i")}, (
  SELECT max(h.event_id) FROM history h
  WHERE h.instance_id = i.instance_id AND h.execution_id = i.execution_id
)
FROM orchestrator_queue q
LEFT JOIN instance_locks l ON l.instance_id = q.instance_id
LEFT JOIN instances i ON i.instance_id = q.instance_id
WHERE q.visible_at_ms <= :now
  AND (l.locked_until_ms IS NULL OR l.locked_until_ms <= :now){{skip}}{{affinity}}
  AND (
    q.kind IN ('{_START}', '{_ORPHAN_DROPPABLE[0]}', '{_ORPHAN_DROPPABLE[1]}')
    OR i.instance_id IS NOT NULL
    OR EXISTS (
      SELECT 1 FROM orchestrator_queue s
      WHERE s.instance_id = q.instance_id AND s.kind = '{_START}' AND s.visible_at_ms <= :now
    )
  )
ORDER BY q.visible_at_ms, q.id
LIMIT 1
"""
_SKIP = "\n  AND q.instance_id NOT IN (SELECT value FROM json_each(:skip))"
# A message of an instance whose last turn another worker ran is left to that worker (it
# holds the execution in memory; here the turn would read and replay the whole history) until
# it has waited since ``:others_after``; a start made in this worker's process is left to the
# others until ``:peers_first_until`` (``PEERS_FIRST_MS``).
_AFFINITY = (
    "\n  AND (i.last_worker_id IS NULL OR i.last_worker_id = :me"
    " OR q.visible_at_ms <= :others_after)"
    "\n  AND (q.started_by IS NULL OR q.started_by <> :me"
    " OR q.visible_at_ms <= :peers_first_until)"
)
_CANDIDATES = {
    (skipping, shared): _CANDIDATE_TEMPLATE.format(
        skip=_SKIP if skipping else "", affinity=_AFFINITY if shared else ""
    )
    for skipping in (False, True)
    for shared in (False, True)
}
_CANDIDATE_SQL = _CANDIDATES[False, False]

AFFINITY_BUSY_MS = 2_000
"""How long a worker that has other turns to run leaves a message to the worker that ran its
instance's last turn. Long enough to outlast the queue's wait under a backlog; a worker that
stops hands its instances over at once (``runtime_stopped``), so this bounds only a crashed
or stalled one."""
AFFINITY_IDLE_MS = 20
"""The same for a worker with nothing else to run: a few of the other worker's fetches."""
PEERS_FIRST_MS = 5
"""How long a worker leaves a workflow started in its own process to the other workers on
the file, busy or not. The worker that runs an instance's first turn keeps it (see
``_AFFINITY``), and a start wakes its own process's fetches first: without this, a process
that starts the workflows runs most of them, and its start loop waits behind them (two
runtimes, one of them starting 5,000 fan-outs: it ran 63-65 % of the turns; with this,
9-11 %, see docs/performance.md). A few of the other workers' fetches; after it the
starting worker takes the instance itself, so one that nobody else runs (the others are
busy, or run activities only) waits that long."""


def _candidate_txn(
    conn: sqlite3.Connection, now: int, params: dict[str, object], *, skipping: bool, shared: bool
) -> tuple[Any, ...] | None:
    """The next message's instance to lock (a ``_CANDIDATE_TEMPLATE`` row), or None.

    ``shared``: other workers use the file, so messages of their instances wait for them a
    while (``AFFINITY_BUSY_MS`` while this worker has anything else to run, else
    ``AFFINITY_IDLE_MS``), and so do starts made in this worker's process
    (``PEERS_FIRST_MS``)."""
    sql = _CANDIDATES[skipping, shared]
    waits = (AFFINITY_BUSY_MS, AFFINITY_IDLE_MS) if shared else (0,)
    params["peers_first_until"] = now - PEERS_FIRST_MS
    for wait in waits:
        params["others_after"] = now - wait
        row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
        if row is not None:
            return row
    return None


def _lock_turn_txn(
    conn: sqlite3.Connection,
    *,
    now: int,
    lock_until: int,
    owner_id: str,
    token: str,
    cached: Mapping[str, tuple[int, int]] | None = None,
    skip: Collection[str] = (),
    shared: bool = False,
) -> RawTurn | NoWork:
    """Lock one instance and read its batch (none of ``skip``; see ``_candidate_txn`` for
    ``shared``)."""
    params: dict[str, object] = {"now": now, "me": owner_id}
    if skip:
        params["skip"] = json_array(skip)
    while True:
        row = _candidate_txn(conn, now, params, skipping=bool(skip), shared=shared)
        if row is None:
            return NoWork(_turn_due_txn(conn, now, owner_id if shared else None))
        instance_id: str = row[0]
        instance_row: tuple[Any, ...] | None = None if row[1] is None else row[1:-1]
        event_count: int = row[-1] or 0
        turn_token = _turn_token(token, instance_id)
        batch, delivery_count = _tag_batch_txn(conn, instance_id, turn_token, now)
        started = instance_row is not None
        if not started and not any(isinstance(m, StartOrchestrationMessage) for m in batch):
            # Never started and no start in sight: drop what only a running instance could
            # use; everything else stays, untouched, for a later start.
            conn.execute(
                "DELETE FROM orchestrator_queue WHERE instance_id = ? AND lock_token = ?"
                f" AND kind IN ('{_ORPHAN_DROPPABLE[0]}', '{_ORPHAN_DROPPABLE[1]}')",
                (instance_id, turn_token),
            )
            conn.execute(
                "UPDATE orchestrator_queue SET lock_token = NULL,"
                " delivery_count = delivery_count - 1 WHERE instance_id = ? AND lock_token = ?",
                (instance_id, turn_token),
            )
            continue
        if not batch:
            continue
        conn.execute(
            "INSERT INTO instance_locks (instance_id, lock_token, locked_until_ms, owner_id)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (instance_id) DO UPDATE SET"
            " lock_token = excluded.lock_token, locked_until_ms = excluded.locked_until_ms,"
            " owner_id = excluded.owner_id",
            (instance_id, turn_token, lock_until, owner_id),
        )
        history_rows: list[tuple[int, bytes]] = []
        kv_rows: list[tuple[str, bytes, int]] = []
        # The caller's in-memory copy is exactly the stored history: reading and decoding
        # it again would be wasted work.
        omitted = instance_row is not None and (cached or {}).get(instance_id) == (
            instance_row[3],
            event_count,
        )
        if instance_row is not None and not omitted:
            history_rows = conn.execute(
                "SELECT event_id, data FROM history WHERE instance_id = ? AND execution_id = ?"
                " ORDER BY event_id",
                (instance_id, instance_row[3]),
            ).fetchall()
            kv_rows = conn.execute(
                "SELECT key, value, updated_at_ms FROM kv_store WHERE instance_id = ?",
                (instance_id,),
            ).fetchall()
        return RawTurn(
            instance_id=instance_id,
            token=turn_token,
            execution_id=0 if instance_row is None else int(instance_row[3]),
            instance_row=instance_row,
            history_rows=history_rows,
            messages=batch,
            delivery_count=delivery_count,
            kv_rows=kv_rows,
            history_omitted=omitted,
        )


def fetch_turns_txn(
    conn: sqlite3.Connection,
    *,
    now: int,
    lock_until: int,
    owner_id: str,
    new_token: Callable[[], str],
    max_items: int,
    cached: Mapping[str, tuple[int, int]] | None = None,
    skip: Collection[str] = (),
    shared: bool = False,
) -> list[RawTurn] | NoWork:
    """Lock up to ``max_items`` instances, each with its batch (none of ``skip``; see
    ``_candidate_txn`` for ``shared``)."""
    turns: list[RawTurn] = []
    for _ in range(max(1, max_items)):
        result = _lock_turn_txn(
            conn,
            now=now,
            lock_until=lock_until,
            owner_id=owner_id,
            token=new_token(),
            cached=cached,
            skip=skip,
            shared=shared,
        )
        if isinstance(result, NoWork):
            return turns or result
        turns.append(result)
    return turns


def turn_work_remains_txn(conn: sqlite3.Connection, now: int) -> bool:
    """Whether some instance could be locked for a turn right now."""
    return conn.execute(_CANDIDATE_SQL, {"now": now}).fetchone() is not None


def decode_turns(raw: list[RawTurn] | NoWork) -> list[OrchestrationWorkItem] | NoWork:
    return decode_turn_list(raw) if isinstance(raw, list) else raw


def decode_turn_list(raw: list[RawTurn]) -> list[OrchestrationWorkItem]:
    return [_decode_turn(turn) for turn in raw]


def each_in_savepoint_txn(
    conn: sqlite3.Connection, items: Sequence[C], apply: Callable[[C], None]
) -> list[ProviderError | None]:
    """Apply each item in its own savepoint: a failing one changes nothing, the others stand."""
    results: list[ProviderError | None] = []
    for item in items:
        conn.execute("SAVEPOINT item")
        try:
            apply(item)
        except ProviderError as exc:
            conn.execute("ROLLBACK TO item")
            results.append(exc)
        else:
            results.append(None)
        conn.execute("RELEASE item")
    return results


def commit_turns_txn(
    conn: sqlite3.Connection, commits: Sequence[TurnCommit], now: int
) -> list[ProviderError | None]:
    return each_in_savepoint_txn(conn, commits, lambda c: commit_turn_txn(conn, c, now))


def _tag_batch_txn(
    conn: sqlite3.Connection, instance_id: str, token: str, now: int
) -> tuple[list[AnyOrchestratorMessage], int]:
    """Tag every visible message of one instance with ``token`` (one more delivery each);
    returns them in visibility order, and their highest delivery count. Undecodable ones are
    set aside instead."""
    rows = conn.execute(
        "UPDATE orchestrator_queue SET lock_token = ?, delivery_count = delivery_count + 1"
        " WHERE instance_id = ? AND visible_at_ms <= ?"
        " RETURNING visible_at_ms, id, data, delivery_count",
        (token, instance_id, now),
    ).fetchall()
    rows.sort(key=lambda r: (r[0], r[1]))
    batch: list[AnyOrchestratorMessage] = []
    delivery_count = 0
    for _, message_id, data, count in rows:
        try:
            batch.append(decode_message(data))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            dead_letter_txn(conn, "orchestrator_queue", instance_id, data, str(exc), now)
            conn.execute("DELETE FROM orchestrator_queue WHERE id = ?", (message_id,))
        else:
            delivery_count = max(delivery_count, count)
    return batch, delivery_count


def dead_letter_txn(
    conn: sqlite3.Connection,
    source: str,
    instance_id: str | None,
    data: bytes | None,
    reason: str,
    now: int,
) -> None:
    conn.execute(
        "INSERT INTO dead_letters (source, instance_id, data, reason, created_at_ms)"
        " VALUES (?, ?, ?, ?, ?)",
        (source, instance_id, data, reason, now),
    )


_TURN_DUE_SQL = (
    "SELECT min(t) FROM ("
    " SELECT min(visible_at_ms) AS t FROM orchestrator_queue WHERE visible_at_ms > :now"
    " UNION ALL"
    " SELECT min(locked_until_ms) FROM instance_locks WHERE locked_until_ms > :now{})"
)
_TURN_DUE_SQL_ALONE = _TURN_DUE_SQL.format("")
_TURN_DUE_SQL_SHARED = _TURN_DUE_SQL.format(
    " UNION ALL SELECT min(q.visible_at_ms) + :wait FROM orchestrator_queue q"
    " JOIN instances i ON i.instance_id = q.instance_id"
    " WHERE q.visible_at_ms > :now - :wait AND q.visible_at_ms <= :now"
    " AND i.last_worker_id <> :me"
    " UNION ALL SELECT min(visible_at_ms) + :peers_first FROM orchestrator_queue"
    " WHERE visible_at_ms > :now - :peers_first AND visible_at_ms <= :now"
    " AND started_by = :me"
)


def _turn_due_txn(conn: sqlite3.Connection, now: int, me: str | None = None) -> int | None:
    """When a message becomes visible or a lock expires; with ``me`` (a worker sharing the
    file), also when a message left to other workers stops waiting for them."""
    if me is None:
        due: int | None = conn.execute(_TURN_DUE_SQL_ALONE, {"now": now}).fetchone()[0]
    else:
        params = {"now": now, "me": me, "wait": AFFINITY_IDLE_MS, "peers_first": PEERS_FIRST_MS}
        due = conn.execute(_TURN_DUE_SQL_SHARED, params).fetchone()[0]
    return due


def _decode_turn(raw: RawTurn) -> OrchestrationWorkItem:
    """Decode a fetched batch. Never raises: the lock is held, so problems go in the item."""
    history: list[HistoryEvent] = []
    history_error: str | None = None
    instance: InstanceRecord | None = None
    if raw.instance_row is not None:
        try:
            instance = instance_from_row(raw.instance_row)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            history_error = f"instance record of {raw.instance_id!r} cannot be decoded: {exc}"
    for event_id, data in raw.history_rows:
        if history_error is not None:
            break
        try:
            history.append(decode_event(data))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            history_error = f"history event {event_id} of {raw.instance_id!r}: {exc}"
    if history_error is not None:
        history = []
    return OrchestrationWorkItem(
        instance_id=raw.instance_id,
        lock_token=raw.token,
        execution_id=raw.execution_id,
        instance=instance,
        history=history,
        messages=raw.messages,
        delivery_count=raw.delivery_count,
        kv_snapshot={
            key: KvEntry(value=value, updated_at_ms=updated) for key, value, updated in raw.kv_rows
        },
        history_error=history_error,
        history_omitted=raw.history_omitted,
    )


def forget_worker_txn(conn: sqlite3.Connection, worker_id: str) -> int:
    """Stop leaving ``worker_id``'s instances to it (it stopped: its memory is gone)."""
    cursor = conn.execute(
        "UPDATE instances SET last_worker_id = NULL WHERE last_worker_id = ?", (worker_id,)
    )
    return cursor.rowcount


def expire_turn_locks_txn(conn: sqlite3.Connection, owner_id: str, now: int) -> int:
    """End ``owner_id``'s live instance locks now (the next fetch takes them over)."""
    cursor = conn.execute(
        "UPDATE instance_locks SET locked_until_ms = ? WHERE owner_id = ? AND locked_until_ms > ?",
        (now, owner_id, now),
    )
    return cursor.rowcount


# -- commit, abandon, renew --------------------------------------------------------------------


LOCK_LOST = "lock token is unknown, released or taken over"


def _turn_token(base: str, instance_id: str) -> str:
    """A turn's lock token names its instance, so its lock and messages are found by the
    instance's keys (no index on tokens; schema version 6). ``base`` holds no ``|``."""
    return f"{base}|{instance_id}"


def _token_instance(token: str) -> str:
    return token.partition("|")[2]


def live_turn_lock_txn(conn: sqlite3.Connection, op: str, token: str) -> str:
    row = conn.execute(
        "SELECT instance_id FROM instance_locks WHERE instance_id = ? AND lock_token = ?",
        (_token_instance(token), token),
    ).fetchone()
    if row is None:
        raise LockLostError(op, LOCK_LOST)
    instance_id: str = row[0]
    return instance_id


_ERROR_ENCODER = msgspec.json.Encoder()


def encode_error(error: ErrorInfo | None) -> bytes | None:
    return None if error is None else _ERROR_ENCODER.encode(error)


_STORED_ROW = (
    "i.execution_id, i.name, i.execution_status, i.parent_instance_id, i.restarting,"
    " i.last_worker_id"
)
"""What ``_update_instance_txn`` compares, read with the lock check."""
StoredRow = tuple[int, str, str, str | None, int, str | None]
"""``_STORED_ROW`` as read."""


def commit_turn_txn(conn: sqlite3.Connection, commit: TurnCommit, now: int) -> None:
    op = "commit_turn"
    iid = commit.changes.instance_id
    lock = conn.execute(
        f"SELECT l.instance_id, l.owner_id, {_STORED_ROW} FROM instance_locks l"
        " LEFT JOIN instances i ON i.instance_id = l.instance_id"
        " WHERE l.instance_id = ? AND l.lock_token = ?",
        (_token_instance(commit.lock_token), commit.lock_token),
    ).fetchone()
    if lock is None:
        raise LockLostError(op, LOCK_LOST)
    if lock[0] != iid:
        raise LockLostError(op, "lock token belongs to another instance")
    worker: str = lock[1]
    stored: StoredRow | None = None if lock[2] is None else lock[2:]
    current = None if stored is None else stored[0]  # the instance row's execution
    if current is not None and commit.changes.execution_id < current:
        raise ProviderError(
            op,
            f"execution {commit.changes.execution_id} is older than the current execution "
            f"{current} of {iid!r}",
            retryable=False,
        )
    # Creation time and order come from the start message, and only a new row takes them.
    start = None
    if current is None:
        start = conn.execute(
            "SELECT enqueued_at_ms, id FROM orchestrator_queue"
            " WHERE instance_id = ? AND lock_token = ?"
            f" AND kind = '{_START}' ORDER BY id LIMIT 1",
            (iid, commit.lock_token),
        ).fetchone()
    created_at, created_seq = (now, 0) if start is None else start
    conn.execute(
        "DELETE FROM orchestrator_queue WHERE instance_id = ? AND lock_token = ?",
        (iid, commit.lock_token),
    )

    status = commit.changes.execution_status
    error = encode_error(commit.changes.error)
    instance_completed = now if status.instance_state().is_terminal else None
    if stored is not None:
        _update_instance_txn(conn, commit, stored, error, now, instance_completed, worker)
    else:
        _insert_instance_txn(
            conn, commit, error, now, instance_completed, created_at, created_seq, worker
        )
    # Most turns leave the execution's row as it was (still running): skip the write.
    unchanged = (
        stored is not None
        and stored[0] == commit.changes.execution_id
        and stored[2] == status.value
        and not status.is_terminal
        and commit.changes.output is None
        and error is None
    )
    if not unchanged:
        conn.execute(
            "INSERT INTO executions (instance_id, execution_id, status, output, error,"
            " started_at_ms, completed_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (instance_id, execution_id) DO UPDATE SET status = excluded.status,"
            " output = excluded.output, error = excluded.error,"
            " completed_at_ms = CASE WHEN excluded.completed_at_ms IS NULL THEN NULL"
            " ELSE coalesce(executions.completed_at_ms, excluded.completed_at_ms) END",
            (
                iid,
                commit.changes.execution_id,
                status.value,
                commit.changes.output,
                error,
                now,
                now if status.is_terminal else None,
            ),
        )
    _append_history_txn(conn, iid, commit.changes.execution_id, commit.changes.new_events)
    if commit.changes.custom_status_changed:
        conn.execute(
            "UPDATE instances SET custom_status = ?,"
            " custom_status_version = custom_status_version + 1 WHERE instance_id = ?",
            (commit.changes.custom_status, iid),
        )
    # A restart's first commit: the new execution starts from no KV at all (client reads
    # and the snapshot later turns replay from), whatever earlier executions left.
    restarted = stored is not None and bool(stored[4]) and commit.changes.execution_id > stored[0]
    _apply_kv_txn(conn, commit, now, restarted=restarted)
    if commit.changes.activity_tasks:
        conn.executemany(
            "INSERT INTO worker_queue (instance_id, execution_id, seq, session_id, tag, data,"
            " visible_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (t.instance_id, t.execution_id, t.seq, t.session, t.tag, encode_message(t), now)
                for t in commit.changes.activity_tasks
            ],
        )
    if cancelled := commit.changes.cancelled_activities:
        conn.executemany(
            "DELETE FROM worker_queue WHERE instance_id = ? AND execution_id = ? AND seq = ?",
            [(iid, commit.changes.execution_id, seq) for seq in cancelled],
        )
    for scheduled in commit.changes.orchestrator_messages:
        insert_message_txn(conn, scheduled.message, scheduled.visible_at_ms, now)
    if status.instance_state().is_terminal:
        # Timers an ended instance will never want (a select's losing timeout, say).
        conn.execute(
            f"DELETE FROM orchestrator_queue WHERE instance_id = ? AND kind = '{_TIMER}'",
            (iid,),
        )
    conn.execute("DELETE FROM instance_locks WHERE instance_id = ?", (iid,))


def _insert_instance_txn(
    conn: sqlite3.Connection,
    commit: TurnCommit,
    error: bytes | None,
    now: int,
    completed_at: int | None,
    created_at: int,
    created_seq: int,
    worker: str,
) -> None:
    """The instance's row, at its first commit (``worker`` ran it)."""
    c = commit.changes
    conn.execute(
        "INSERT INTO instances (instance_id, name, version, execution_id, execution_status,"
        " output, error, parent_instance_id, created_at_ms, created_seq, updated_at_ms,"
        " completed_at_ms, last_worker_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            c.instance_id,
            c.name,
            c.version,
            c.execution_id,
            c.execution_status.value,
            c.output,
            error,
            c.parent_instance_id,
            created_at,
            created_seq,
            now,
            completed_at,
            worker,
        ),
    )


def _update_instance_txn(
    conn: sqlite3.Connection,
    commit: TurnCommit,
    stored: StoredRow,
    error: bytes | None,
    now: int,
    completed_at: int | None,
    worker: str,
) -> None:
    """The instance's row after a later commit (``worker`` ran it). Indexed columns (name,
    status, parent, restarting) are set only when they change, and so is ``last_worker_id``:
    SQLite rewrites an index entry for every column an UPDATE sets, changed or not, and most
    turns change none of them."""
    c = commit.changes
    _, name, status, parent, restarting, last_worker = stored
    sets: dict[str, object] = {
        "version": c.version,
        "execution_id": c.execution_id,
        "output": c.output,
        "error": error,
        "updated_at_ms": now,
        "completed_at_ms": completed_at,
    }
    if name != c.name:
        sets["name"] = c.name
    if status != c.execution_status.value:
        sets["execution_status"] = c.execution_status.value
    if parent is None and c.parent_instance_id is not None:
        sets["parent_instance_id"] = c.parent_instance_id
    if restarting:
        sets["restarting"] = 0
    if last_worker != worker:
        sets["last_worker_id"] = worker
    assignments = ", ".join(f"{column} = ?" for column in sets)
    conn.execute(
        f"UPDATE instances SET {assignments} WHERE instance_id = ?", (*sets.values(), c.instance_id)
    )


def _append_history_txn(
    conn: sqlite3.Connection, iid: str, execution_id: int, events: Sequence[HistoryEvent]
) -> None:
    try:
        conn.executemany(
            "INSERT INTO history (instance_id, execution_id, event_id, event_type, data)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (iid, execution_id, e.event_id, e.__struct_config__.tag, encode_event(e))
                for e in events
            ],
        )
    except sqlite3.IntegrityError as exc:
        raise DuplicateEventError(
            "commit_turn",
            f"an event id of this commit already exists in execution {execution_id} "
            f"of {iid!r} ({exc})",
        ) from exc


def _apply_kv_txn(
    conn: sqlite3.Connection, commit: TurnCommit, now: int, *, restarted: bool
) -> None:
    iid = commit.changes.instance_id
    if restarted:
        conn.execute("DELETE FROM kv_store WHERE instance_id = ?", (iid,))
        conn.execute("DELETE FROM kv_delta WHERE instance_id = ?", (iid,))
    elif commit.changes.kv_clear_all:
        conn.execute("UPDATE kv_delta SET value = NULL WHERE instance_id = ?", (iid,))
        conn.execute(
            "INSERT OR IGNORE INTO kv_delta (instance_id, key, value, updated_at_ms)"
            " SELECT instance_id, key, NULL, ? FROM kv_store WHERE instance_id = ?",
            (now, iid),
        )
    if commit.changes.kv_changes:
        conn.executemany(
            "INSERT INTO kv_delta (instance_id, key, value, updated_at_ms) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value,"
            " updated_at_ms = excluded.updated_at_ms",
            [(iid, c.key, c.value, c.updated_at_ms) for c in commit.changes.kv_changes.values()],
        )
    if commit.changes.execution_status.commits_kv:
        conn.execute(
            "INSERT INTO kv_store (instance_id, key, value, updated_at_ms)"
            " SELECT instance_id, key, value, updated_at_ms FROM kv_delta"
            " WHERE instance_id = ? AND value IS NOT NULL"
            " ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value,"
            " updated_at_ms = excluded.updated_at_ms",
            (iid,),
        )
        conn.execute(
            "DELETE FROM kv_store WHERE instance_id = ? AND key IN"
            " (SELECT key FROM kv_delta WHERE instance_id = ? AND value IS NULL)",
            (iid, iid),
        )
        conn.execute("DELETE FROM kv_delta WHERE instance_id = ?", (iid,))


def abandon_turn_txn(conn: sqlite3.Connection, request: AbandonRequest, now: int) -> None:
    iid = live_turn_lock_txn(conn, "abandon_turn", request.lock_token)
    delivery_count = (
        "max(delivery_count - 1, 0)" if request.undo_delivery_count else "delivery_count"
    )
    conn.execute(
        f"UPDATE orchestrator_queue SET lock_token = NULL, delivery_count = {delivery_count}"
        " WHERE instance_id = ? AND lock_token = ?",
        (iid, request.lock_token),
    )
    # Every message of the instance moves, not just the batch, so a message that arrived
    # during the turn is not served alone ahead of older ones (as InMemoryProvider does).
    conn.execute(
        "UPDATE orchestrator_queue SET visible_at_ms = max(visible_at_ms, ?) WHERE instance_id = ?",
        (now + ms(request.delay), iid),
    )
    conn.execute("DELETE FROM instance_locks WHERE instance_id = ?", (iid,))
    # Its worker gave the turn up (it lacks the code, or the execution): others need not
    # leave the instance to it.
    conn.execute(
        "UPDATE instances SET last_worker_id = NULL"
        " WHERE instance_id = ? AND last_worker_id IS NOT NULL",
        (iid,),
    )


def renew_turn_txn(conn: sqlite3.Connection, request: RenewRequest, now: int) -> None:
    iid = live_turn_lock_txn(conn, "renew_turn_lock", request.lock_token)
    conn.execute(
        "UPDATE instance_locks SET locked_until_ms = ? WHERE instance_id = ?",
        (now + ms(request.extend_for), iid),
    )
