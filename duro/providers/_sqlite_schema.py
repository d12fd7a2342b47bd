"""The SQLite provider's schema: identity check, DDL and numbered migrations.

A duro database is recognised by ``PRAGMA application_id`` (``DURO_APPLICATION_ID``); its
schema version is ``PRAGMA user_version``. Both live in the database header and change
transactionally, so a migration and its version bump commit together or not at all.

``MIGRATIONS[n]`` takes a file from version ``n`` to ``n + 1``. Never edit a released
migration: append a new one. Each runs in its own ``BEGIN IMMEDIATE`` transaction that
re-reads the version first, so several processes opening one old file concurrently upgrade
it exactly once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ._sqlite_errors import NotADuroDatabaseError, SchemaVersionError

DURO_APPLICATION_ID = 0x6475726F
"""``b"duro"`` as a big-endian int, stored in the SQLite header."""

_V1 = (
    # Instances exist only once a turn committed. State is derived from execution_status.
    """
    CREATE TABLE instances (
        instance_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        version TEXT,
        execution_id INTEGER NOT NULL,
        execution_status TEXT NOT NULL,
        output BLOB,
        error BLOB,
        custom_status BLOB,
        custom_status_version INTEGER NOT NULL DEFAULT 0,
        parent_instance_id TEXT,
        created_at_ms INTEGER NOT NULL,
        created_seq INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        completed_at_ms INTEGER
    )
    """,
    "CREATE INDEX instances_by_parent ON instances (parent_instance_id)"
    " WHERE parent_instance_id IS NOT NULL",
    # created_seq is the queue id of the start message: it orders instances created in the
    # same millisecond (newest first) exactly as their starts were enqueued.
    "CREATE INDEX instances_by_created ON instances (created_at_ms, created_seq)",
    """
    CREATE TABLE executions (
        instance_id TEXT NOT NULL,
        execution_id INTEGER NOT NULL,
        status TEXT NOT NULL,
        output BLOB,
        error BLOB,
        started_at_ms INTEGER NOT NULL,
        completed_at_ms INTEGER,
        PRIMARY KEY (instance_id, execution_id)
    ) WITHOUT ROWID
    """,
    # Append-only; the primary key is what rejects duplicate event ids.
    """
    CREATE TABLE history (
        instance_id TEXT NOT NULL,
        execution_id INTEGER NOT NULL,
        event_id INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (instance_id, execution_id, event_id)
    ) WITHOUT ROWID
    """,
    # start_* columns are copied from StartOrchestrationMessage messages so pending instances can be
    # listed, filtered and cascaded without decoding every queued message.
    """
    CREATE TABLE orchestrator_queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        instance_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        data BLOB NOT NULL,
        visible_at_ms INTEGER NOT NULL,
        enqueued_at_ms INTEGER NOT NULL,
        lock_token TEXT,
        attempt INTEGER NOT NULL DEFAULT 0,
        start_name TEXT,
        start_version TEXT,
        start_parent_id TEXT
    )
    """,
    "CREATE INDEX orchestrator_queue_by_visible ON orchestrator_queue (visible_at_ms, id)",
    "CREATE INDEX orchestrator_queue_by_instance ON orchestrator_queue (instance_id, id)",
    "CREATE INDEX orchestrator_queue_by_token ON orchestrator_queue (lock_token)"
    " WHERE lock_token IS NOT NULL",
    "CREATE INDEX orchestrator_queue_by_start_parent ON orchestrator_queue (start_parent_id)"
    " WHERE start_parent_id IS NOT NULL",
    """
    CREATE TABLE instance_locks (
        instance_id TEXT PRIMARY KEY,
        lock_token TEXT NOT NULL UNIQUE,
        locked_until_ms INTEGER NOT NULL,
        owner_id TEXT NOT NULL DEFAULT ''
    )
    """,
    """
    CREATE TABLE worker_queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        instance_id TEXT NOT NULL,
        execution_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        session_id TEXT,
        tag TEXT,
        data BLOB NOT NULL,
        visible_at_ms INTEGER NOT NULL,
        lock_token TEXT UNIQUE,
        locked_until_ms INTEGER,
        attempt INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX worker_queue_by_visible ON worker_queue (visible_at_ms, id)",
    "CREATE INDEX worker_queue_by_activity ON worker_queue (instance_id, execution_id, seq)",
    "CREATE INDEX worker_queue_by_session ON worker_queue (session_id)"
    " WHERE session_id IS NOT NULL",
    """
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        locked_until_ms INTEGER NOT NULL,
        last_activity_ms INTEGER NOT NULL
    )
    """,
    "CREATE INDEX sessions_by_owner ON sessions (owner_id)",
    """
    CREATE TABLE kv_store (
        instance_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (instance_id, key)
    ) WITHOUT ROWID
    """,
    # value NULL is a tombstone: the key was deleted by the current execution.
    """
    CREATE TABLE kv_delta (
        instance_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (instance_id, key)
    ) WITHOUT ROWID
    """,
    # Rows that could not be decoded are moved here instead of being dropped or blocking a
    # queue forever; an operator can inspect and repair them.
    """
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        instance_id TEXT,
        data BLOB,
        reason TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    )
    """,
)

# Version 2 (duro 0.2): one meaning per name. The delivery count is no longer called an
# attempt (that word is kept for retry attempts), and queue messages are tagged with their
# class names, which no longer collide with history event tags ("TimerFired" was both).
_RENAMED_MESSAGE_TAGS = {
    "StartOrchestration": "StartOrchestrationMessage",
    "ContinueAsNew": "ContinueAsNewMessage",
    "ActivityResult": "ActivityResultMessage",
    "TimerFired": "TimerFiredMessage",
    "SubOrchestrationResult": "SubOrchestrationResultMessage",
    "ExternalEvent": "RaiseEventMessage",
    "QueueEvent": "EnqueueEventMessage",
    "CancelInstance": "CancelOrchestrationMessage",
}


def _retag(old: str, new: str) -> str:
    # msgspec writes the tag first, so the encoded message starts with exactly this prefix.
    old_prefix, new_prefix = f'{{"type":"{old}"', f'{{"type":"{new}"'
    return (
        f"UPDATE orchestrator_queue SET kind = '{new}',"
        f" data = CAST('{new_prefix}' || substr(CAST(data AS TEXT), {len(old_prefix) + 1}) AS BLOB)"
        f" WHERE kind = '{old}'"
    )


_V2 = (
    "ALTER TABLE orchestrator_queue RENAME COLUMN attempt TO delivery_count",
    "ALTER TABLE worker_queue RENAME COLUMN attempt TO delivery_count",
    *(_retag(old, new) for old, new in _RENAMED_MESSAGE_TAGS.items()),
)

# Version 3 (duro 0.2): work item locks record who holds them, so a runtime restarted under
# the same worker id takes its predecessor's items back at once (see runtime_started).
_V3 = ("ALTER TABLE worker_queue ADD COLUMN lock_owner TEXT",)

# Version 4 (duro 0.2): listings and counts stay index walks of a page's length however many
# instances the file holds (`duro ui` polls them). Newest first within one status, and within
# one name and status; counting a state reads index entries only. Measured with 100,000
# instances: an unfiltered page took 111 ms before (a full scan and sort), under 1 ms after.
_V4 = (
    "CREATE INDEX instances_by_status ON instances (execution_status, created_at_ms, created_seq)",
    "CREATE INDEX instances_by_name"
    " ON instances (name, execution_status, created_at_ms, created_seq)",
    # Pending starts, newest first, without reading the rest of the queue (timers, events).
    "CREATE INDEX orchestrator_queue_starts ON orchestrator_queue (enqueued_at_ms, id)"
    " WHERE kind = 'StartOrchestrationMessage'",
)

# Version 5 (duro 0.2): a finished instance can be restarted (Provider.start_instance); while
# its restart is queued the record reads as PENDING (see INSTANCE_COLUMNS), and listings find
# such instances through a partial index (there are few) instead of a scan.
_V5 = (
    "ALTER TABLE instances ADD COLUMN restarting INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX instances_restarting ON instances (created_at_ms, created_seq) WHERE restarting",
)

_WORKER_QUEUE_COLUMNS = (
    "id, instance_id, execution_id, seq, session_id, tag, data, visible_at_ms, lock_token,"
    " locked_until_ms, delivery_count, lock_owner"
)

# Version 6 (duro 0.2): a step writes fewer index entries, and those are what the file's one
# write lock is held for. A lock token names the row it locks (``<token>|<instance id>`` for a
# turn, ``<token>|<work item id>`` for an activity), so a commit finds its lock by primary key
# and no token needs an index: the queue's partial one goes, and so do the UNIQUE ones of the
# lock table (now WITHOUT ROWID: one b-tree, not three) and of the work queue (rebuilt, its
# AUTOINCREMENT sequence kept). The work queue's visibility index goes too: fetches walk the
# queue in id order, and only an idle fetch's "when is the next item due" reads the rest.
_V6 = (
    "DROP INDEX orchestrator_queue_by_token",
    "DROP INDEX worker_queue_by_visible",
    """
    CREATE TABLE instance_locks_v6 (
        instance_id TEXT PRIMARY KEY,
        lock_token TEXT NOT NULL,
        locked_until_ms INTEGER NOT NULL,
        owner_id TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID
    """,
    "INSERT INTO instance_locks_v6 SELECT instance_id, lock_token, locked_until_ms, owner_id"
    " FROM instance_locks",
    "DROP TABLE instance_locks",
    "ALTER TABLE instance_locks_v6 RENAME TO instance_locks",
    """
    CREATE TABLE worker_queue_v6 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        instance_id TEXT NOT NULL,
        execution_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        session_id TEXT,
        tag TEXT,
        data BLOB NOT NULL,
        visible_at_ms INTEGER NOT NULL,
        lock_token TEXT,
        locked_until_ms INTEGER,
        delivery_count INTEGER NOT NULL DEFAULT 0,
        lock_owner TEXT
    )
    """,
    f"INSERT INTO worker_queue_v6 ({_WORKER_QUEUE_COLUMNS})"
    f" SELECT {_WORKER_QUEUE_COLUMNS} FROM worker_queue",
    # Ids are never reused (a late completion of a deleted item must not match a new one).
    "DELETE FROM sqlite_sequence WHERE name = 'worker_queue_v6'",
    "INSERT INTO sqlite_sequence (name, seq)"
    " SELECT 'worker_queue_v6', seq FROM sqlite_sequence WHERE name = 'worker_queue'",
    "DROP TABLE worker_queue",
    "ALTER TABLE worker_queue_v6 RENAME TO worker_queue",
    "CREATE INDEX worker_queue_by_activity ON worker_queue (instance_id, execution_id, seq)",
    "CREATE INDEX worker_queue_by_session ON worker_queue (session_id)"
    " WHERE session_id IS NOT NULL",
)

# Version 7 (duro 0.2): the worker that ran an instance's last turn, and so holds its
# execution in memory. While other workers share the file they leave the instance's next
# turns to it for a while (see ``_sqlite_turns._candidate_txn``): elsewhere a turn would read
# and replay the whole history.
_V7 = ("ALTER TABLE instances ADD COLUMN last_worker_id TEXT",)

# Version 8 (duro 0.2): a start records the runtime of the process that started it. While
# other runtimes share the file, that runtime leaves the instance's first turn to them for a
# moment (see ``_sqlite_turns.PEERS_FIRST_MS``): whoever runs the first turn keeps the
# instance (version 7), so otherwise the process that starts the workflows runs most of them.
_V8 = ("ALTER TABLE orchestrator_queue ADD COLUMN started_by TEXT",)

MIGRATIONS: Sequence[Sequence[str]] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8)
"""``MIGRATIONS[n]`` upgrades schema version ``n`` to ``n + 1``."""


def latest_version() -> int:
    return len(MIGRATIONS)


def check_identity(conn: sqlite3.Connection, path: str) -> int:
    """Return the file's schema version; refuse foreign databases and newer schemas.

    Reads the header only (no writes), so a file that is not ours is never modified. The
    reads share one snapshot: another process may be creating the schema at this moment.
    """
    if not conn.in_transaction:
        conn.execute("BEGIN")
        try:
            return check_identity(conn, path)
        finally:
            conn.execute("COMMIT")
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id == 0:
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchone()[0]
        if tables:
            raise NotADuroDatabaseError(path, "it holds tables but no duro application id")
        return 0
    if app_id != DURO_APPLICATION_ID:
        raise NotADuroDatabaseError(path, f"its application id is {app_id:#x}")
    if version > latest_version():
        raise SchemaVersionError(path, found=version, supported=latest_version())
    return int(version)


def migrate(conn: sqlite3.Connection, path: str, *, target: int | None = None) -> None:
    """Bring the schema up to ``target`` (default: the latest), one transaction per step."""
    goal = latest_version() if target is None else target
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = check_identity(conn, path)
            if current >= goal:
                conn.execute("COMMIT")
                return
            for statement in MIGRATIONS[current]:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {DURO_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {current + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
