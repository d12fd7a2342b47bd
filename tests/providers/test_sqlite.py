"""SQLite-specific behaviour: files, schema, bad input, locking across connections and processes.

The shared contract suite (``test_contract_sqlite.py``) covers the provider semantics; these
tests cover what only a real file can show.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from duro._errors import LockLostError, ProviderError, StoreCorruptionError
from duro._history import OrchestrationFailed, OrchestrationStarted
from duro._messages import (
    ActivityResultMessage,
    ActivityTask,
    RaiseEventMessage,
    StartOrchestrationMessage,
)
from duro._status import ErrorCategory, ErrorInfo, State
from duro.providers import _sqlite_schema
from duro.providers._sqlite import SqliteProvider, _new_token
from duro.providers._sqlite_errors import (
    NotADuroDatabaseError,
    ReadOnlyStoreError,
    SchemaVersionError,
    StoreBusyError,
    StoreFullError,
    translate,
)
from duro.providers._types import (
    ActivityCommit,
    ExecutionStatus,
    FetchActivityRequest,
    FetchTurnRequest,
    KvChange,
    ScheduledMessage,
    TagFilter,
    TurnChanges,
    TurnCommit,
)
from duro.testing import VirtualClock
from duro.testing._contract._fixtures import activity_task, schedule_activities, start_message

pytestmark = pytest.mark.anyio

EPOCH_MS = 1_700_000_000_000
REPO_ROOT = Path(__file__).resolve().parents[2]


def started(name: str = "orch") -> OrchestrationStarted:
    return OrchestrationStarted(event_id=1, ts=EPOCH_MS, name=name, version="1")


def first_turn(
    token: str,
    instance_id: str,
    status: ExecutionStatus = ExecutionStatus.RUNNING,
    **changes: Any,
) -> TurnCommit:
    turn = TurnChanges(
        instance_id=instance_id,
        execution_id=1,
        new_events=[started()],
        name="orch",
        version="1",
        execution_status=status,
    )
    return TurnCommit(lock_token=token, changes=dataclasses.replace(turn, **changes))


async def create_instance(provider: SqliteProvider, instance_id: str, **changes: Any) -> None:
    await provider.start_orchestration(
        StartOrchestrationMessage(instance_id=instance_id, name="orch")
    )
    item = await provider.fetch_turn(FetchTurnRequest(lock_timeout=30))
    assert item is not None and item.instance_id == instance_id
    await provider.commit_turn(first_turn(item.lock_token, instance_id, **changes))


def raw_connection(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=5)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start_ms=EPOCH_MS)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "duro.db"


# -- lifecycle and persistence ---------------------------------------------------------------


async def test_construction_does_no_io_and_first_use_creates_the_file(db_path: Path) -> None:
    provider = SqliteProvider(db_path)
    assert not await anyio.Path(db_path).exists()
    async with provider:
        assert await anyio.Path(db_path).exists()
        assert await provider.read_instance("nope") is None


async def test_committed_state_survives_close_and_reopen(
    db_path: Path, clock: VirtualClock
) -> None:
    async with SqliteProvider(db_path, clock=clock) as provider:
        await create_instance(
            provider,
            "i1",
            kv_changes={"k": KvChange(key="k", value=b'"v"', updated_at_ms=EPOCH_MS)},
            activity_tasks=[ActivityTask(instance_id="i1", execution_id=1, seq=1, name="a")],
        )
        await provider.enqueue_orchestrator_message(
            ScheduledMessage(message=RaiseEventMessage(instance_id="i1", name="go"))
        )

    async with SqliteProvider(db_path, clock=clock) as reopened:
        record = await reopened.read_instance("i1")
        assert record is not None and record.state is State.RUNNING
        assert await reopened.read_history("i1") == [started()]
        assert (await reopened.get_kv_items("i1"))["k"].value == b'"v"'
        work = await reopened.fetch_activity(FetchActivityRequest(lock_timeout=5))
        assert work is not None and work.task.name == "a"
        turn = await reopened.fetch_turn(FetchTurnRequest(lock_timeout=5))
        assert turn is not None and turn.messages == [
            RaiseEventMessage(instance_id="i1", name="go")
        ]


async def test_close_is_idempotent_and_use_after_close_reopens(db_path: Path) -> None:
    provider = SqliteProvider(db_path)
    await provider.close()
    await provider.start_orchestration(StartOrchestrationMessage(instance_id="i1", name="orch"))
    await provider.close()
    await provider.close()
    record = await provider.read_instance("i1")
    assert record is not None and record.state is State.PENDING
    await provider.close()


async def test_file_database_runs_in_wal_mode_with_the_latest_schema(db_path: Path) -> None:
    async with SqliteProvider(db_path) as provider:
        await provider.open()
        conn = raw_connection(db_path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA user_version").fetchone()[0] == (
                _sqlite_schema.latest_version()
            )
            assert conn.execute("PRAGMA application_id").fetchone()[0] == (
                _sqlite_schema.DURO_APPLICATION_ID
            )
        finally:
            conn.close()


async def test_in_memory_provider_round_trips_and_keeps_data_across_close(
    clock: VirtualClock,
) -> None:
    provider = SqliteProvider.in_memory(clock=clock)
    async with provider:
        await create_instance(provider, "i1")
    async with provider:
        assert await provider.read_history("i1") == [started()]
        assert await provider.list_executions("i1") == [1]


# -- schema versions and foreign files -------------------------------------------------------


async def test_older_schema_is_upgraded_in_place_keeping_data(
    db_path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SqliteProvider(db_path, clock=clock) as provider:
        await create_instance(provider, "i1")
    old_version = _sqlite_schema.latest_version()
    upgraded = (
        *_sqlite_schema.MIGRATIONS,
        ("ALTER TABLE instances ADD COLUMN note TEXT", "CREATE TABLE extra (x INTEGER)"),
    )
    monkeypatch.setattr(_sqlite_schema, "MIGRATIONS", upgraded)

    async with SqliteProvider(db_path, clock=clock) as provider:
        assert await provider.read_history("i1") == [started()]
        await create_instance(provider, "i2")

    conn = raw_connection(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == old_version + 1
        columns = [row[1] for row in conn.execute("PRAGMA table_info(instances)")]
        assert "note" in columns
        assert conn.execute("SELECT count(*) FROM extra").fetchone()[0] == 0
    finally:
        conn.close()


async def test_version_5_file_keeps_its_locks_and_work_items_and_never_reuses_an_item_id(
    db_path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Version 6 rebuilt the lock table and the work queue (without their token indexes).
    conn = raw_connection(db_path)
    _sqlite_schema.migrate(conn, str(db_path), target=5)
    # Today's starts and turn commits write columns of versions 7 and 8: the version-5 file
    # lends them while the test builds its state, and gives them back before the upgrade.
    conn.execute("ALTER TABLE instances ADD COLUMN last_worker_id TEXT")
    conn.execute("ALTER TABLE orchestrator_queue ADD COLUMN started_by TEXT")
    conn.close()
    with monkeypatch.context() as before_v6:
        before_v6.setattr(_sqlite_schema, "MIGRATIONS", _sqlite_schema.MIGRATIONS[:5])
        async with SqliteProvider(db_path, clock=clock) as provider:
            tasks = [activity_task("i1", seq) for seq in (1, 2, 3)]
            await schedule_activities(provider, "i1", tasks)
            first = await provider.fetch_activity(FetchActivityRequest(lock_timeout=30))
            assert first is not None and first.task.seq == 1
            await provider.complete_activity(
                ActivityCommit(lock_token=first.lock_token, result=None)
            )
            held = await provider.fetch_activity(FetchActivityRequest(lock_timeout=30))
            assert held is not None and held.task.seq == 2
            await provider.start_orchestration(start_message("i2"))
            turn = await provider.fetch_turn(FetchTurnRequest(lock_timeout=30))
            assert turn is not None and turn.instance_id == "i2"
    conn = raw_connection(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
        conn.execute("ALTER TABLE instances DROP COLUMN last_worker_id")
        conn.execute("ALTER TABLE orchestrator_queue DROP COLUMN started_by")
        # The newest work item (seq 3) gets id 3; delete it so only the sequence remembers.
        conn.execute("DELETE FROM worker_queue WHERE seq = 3")
    finally:
        conn.close()

    async with SqliteProvider(db_path, clock=clock) as provider:
        # Locks taken before the upgrade still hold, and are still honoured.
        assert await provider.fetch_activity(FetchActivityRequest(lock_timeout=30)) is None
        assert await provider.fetch_turn(FetchTurnRequest(lock_timeout=30)) is None
        await provider.complete_activity(ActivityCommit(lock_token=held.lock_token, result=None))
        await provider.commit_turn(first_turn(turn.lock_token, "i2"))
        await schedule_activities(provider, "i3", [activity_task("i3", 1)])
        again = await provider.fetch_activity(FetchActivityRequest(lock_timeout=30))
        assert again is not None and again.task.instance_id == "i3"
        assert again.lock_token.endswith("|4")  # ids 1-3 were used before the upgrade
        record = await provider.read_instance("i2")
        assert record is not None and record.state is State.RUNNING

    conn = raw_connection(db_path)
    try:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert not {"orchestrator_queue_by_token", "worker_queue_by_visible"} & indexes
        assert not any(name.startswith("sqlite_autoindex_worker_queue") for name in indexes)
        assert not any(name.startswith("sqlite_autoindex_instance_locks") for name in indexes)
    finally:
        conn.close()


async def test_version_1_file_keeps_its_queued_messages_and_delivery_counts(
    db_path: Path, clock: VirtualClock
) -> None:
    # Version 1 tagged messages "StartOrchestration", "ExternalEvent", ... and called the
    # delivery count "attempt"; version 2 renamed both. Work queued before the upgrade must
    # come out of it intact.
    conn = raw_connection(db_path)
    _sqlite_schema.migrate(conn, str(db_path), target=1)
    old_messages = [
        ("StartOrchestration", b'{"type":"StartOrchestration","name":"orch","instance_id":"i1"}'),
        ("ExternalEvent", b'{"type":"ExternalEvent","name":"go","data":7,"instance_id":"i1"}'),
    ]
    for kind, data in old_messages:
        conn.execute(
            "INSERT INTO orchestrator_queue (instance_id, kind, data, visible_at_ms,"
            " enqueued_at_ms, attempt, start_name) VALUES ('i1', ?, ?, 0, 0, 2, ?)",
            (kind, data, "orch" if kind == "StartOrchestration" else None),
        )
    conn.close()

    async with SqliteProvider(db_path, clock=clock) as provider:
        record = await provider.read_instance("i1")
        assert record is not None and record.state is State.PENDING and record.name == "orch"
        item = await provider.fetch_turn(FetchTurnRequest(lock_timeout=30))

    assert item is not None
    assert item.messages == [
        StartOrchestrationMessage(instance_id="i1", name="orch"),
        RaiseEventMessage(instance_id="i1", name="go", data=msgspec.Raw(b"7")),
    ]
    assert item.delivery_count == 3


def test_migrations_run_one_step_per_version_from_an_empty_file(db_path: Path) -> None:
    conn = raw_connection(db_path)
    try:
        _sqlite_schema.migrate(conn, str(db_path), target=0)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
        _sqlite_schema.migrate(conn, str(db_path))
        _sqlite_schema.migrate(conn, str(db_path))  # a second run is a no-op
        assert conn.execute("PRAGMA user_version").fetchone()[0] == (
            _sqlite_schema.latest_version()
        )
    finally:
        conn.close()


async def test_newer_schema_version_is_refused_without_touching_the_file(db_path: Path) -> None:
    async with SqliteProvider(db_path):
        pass
    conn = raw_connection(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()

    with pytest.raises(SchemaVersionError) as caught:
        await SqliteProvider(db_path).read_instance("i1")

    assert caught.value.found == 99
    assert caught.value.supported == _sqlite_schema.latest_version()
    assert not caught.value.retryable
    conn = raw_connection(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 99
    conn.close()


async def test_file_that_is_not_sqlite_is_refused_and_left_intact(db_path: Path) -> None:
    content = b"these are not the pages you are looking for\n" * 200
    await anyio.Path(db_path).write_bytes(content)

    provider = SqliteProvider(db_path)
    with pytest.raises(NotADuroDatabaseError) as caught:
        await provider.start_orchestration(StartOrchestrationMessage(instance_id="i1", name="orch"))

    assert not caught.value.retryable
    assert await anyio.Path(db_path).read_bytes() == content
    await provider.close()


async def test_sqlite_file_of_another_application_is_refused_and_left_intact(
    db_path: Path,
) -> None:
    conn = raw_connection(db_path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()
    before = await anyio.Path(db_path).read_bytes()

    with pytest.raises(NotADuroDatabaseError):
        await SqliteProvider(db_path).open()

    assert await anyio.Path(db_path).read_bytes() == before
    conn = raw_connection(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` unwritable, even for root (which ignores permission bits)."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", path], capture_output=True).returncode:
        pytest.skip("running as root without a working chattr: cannot make a file read-only")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", path], check=True)


async def test_read_only_file_gives_a_permanent_typed_error_on_write(
    db_path: Path, clock: VirtualClock
) -> None:
    async with SqliteProvider(db_path, clock=clock) as provider:
        await create_instance(provider, "i1")

    with read_only(db_path):
        provider = SqliteProvider(db_path, clock=clock)
        try:
            # Reading still works: nothing is lost, the store just cannot change.
            assert await provider.read_history("i1") == [started()]
            with pytest.raises(ReadOnlyStoreError) as caught:
                await provider.start_orchestration(
                    StartOrchestrationMessage(instance_id="i2", name="orch")
                )
            assert not caught.value.retryable
        finally:
            await provider.close()


@contextlib.contextmanager
def read_only_mount(directory: Path) -> Iterator[Path]:
    """``directory`` bind-mounted read-only (as a read-only volume would be)."""
    mount_point = directory.parent / f"{directory.name}-ro"
    mount_point.mkdir()
    bind = subprocess.run(["mount", "--bind", directory, mount_point], capture_output=True)
    if bind.returncode:
        pytest.skip(f"cannot bind-mount here (needs root in a privileged place): {bind.stderr!r}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", mount_point], check=True)
        yield mount_point
    finally:
        subprocess.run(["umount", mount_point], check=True)


async def test_a_file_on_a_read_only_mount_can_be_read_but_not_written(
    tmp_path: Path, clock: VirtualClock
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    async with SqliteProvider(data / "duro.db", clock=clock) as provider:
        await create_instance(provider, "i1")
    assert sorted(p.name for p in data.iterdir()) == ["duro.db"]  # a clean close: no WAL left

    with read_only_mount(data) as mounted:
        provider = SqliteProvider(mounted / "duro.db", clock=clock)
        try:
            assert await provider.read_history("i1") == [started()]
            assert (await provider.queue_depths()).orchestrator == 0
            with pytest.raises(ReadOnlyStoreError) as caught:
                await provider.start_orchestration(
                    StartOrchestrationMessage(instance_id="i2", name="orch")
                )
            assert not caught.value.retryable
        finally:
            await provider.close()


# -- corruption --------------------------------------------------------------------------------


async def test_corrupt_history_row_surfaces_as_history_error_and_blocks_nobody(
    db_path: Path, clock: VirtualClock
) -> None:
    async with SqliteProvider(db_path, clock=clock) as provider:
        await create_instance(provider, "bad")
        await create_instance(provider, "good")
        conn = raw_connection(db_path)
        conn.execute("UPDATE history SET data = x'7b7b6e6f74206a736f6e' WHERE instance_id = 'bad'")
        conn.close()
        for instance_id in ("bad", "good"):
            await provider.enqueue_orchestrator_message(
                ScheduledMessage(message=RaiseEventMessage(instance_id=instance_id, name="go"))
            )

        bad = await provider.fetch_turn(FetchTurnRequest(lock_timeout=30))
        assert bad is not None and bad.instance_id == "bad"
        assert bad.history == [] and bad.history_error is not None
        assert bad.delivery_count == 1

        good = await provider.fetch_turn(FetchTurnRequest(lock_timeout=30))
        assert good is not None and good.instance_id == "good"
        assert good.history == [started()] and good.history_error is None

        with pytest.raises(StoreCorruptionError):
            await provider.read_history("bad")

        # Append-only commits still work on a corrupt history (the poison path relies on it).
        error = ErrorInfo(category=ErrorCategory.INFRASTRUCTURE, error_type="Corrupt", message="x")
        await provider.commit_turn(
            TurnCommit(
                lock_token=bad.lock_token,
                changes=TurnChanges(
                    instance_id="bad",
                    execution_id=1,
                    new_events=[OrchestrationFailed(event_id=99999, ts=EPOCH_MS, error=error)],
                    name="orch",
                    version="1",
                    execution_status=ExecutionStatus.FAILED,
                    error=error,
                ),
            )
        )
        record = await provider.read_instance("bad")
        assert record is not None and record.state is State.FAILED


async def test_undecodable_queue_message_is_dead_lettered_not_dropped(
    db_path: Path, clock: VirtualClock
) -> None:
    async with SqliteProvider(db_path, clock=clock) as provider:
        await create_instance(provider, "i1")
        await provider.enqueue_orchestrator_message(
            ScheduledMessage(message=RaiseEventMessage(instance_id="i1", name="broken"))
        )
        await provider.enqueue_orchestrator_message(
            ScheduledMessage(message=RaiseEventMessage(instance_id="i1", name="fine"))
        )
        conn = raw_connection(db_path)
        conn.execute(
            "UPDATE orchestrator_queue SET data = x'00ff' WHERE CAST(data AS TEXT) LIKE '%broken%'"
        )
        conn.close()

        item = await provider.fetch_turn(FetchTurnRequest(lock_timeout=30))

        assert item is not None
        assert item.messages == [RaiseEventMessage(instance_id="i1", name="fine")]
        conn = raw_connection(db_path)
        dead = conn.execute("SELECT source, instance_id, data FROM dead_letters").fetchall()
        conn.close()
        assert dead == [("orchestrator_queue", "i1", b"\x00\xff")]


async def test_undecodable_work_item_is_dead_lettered_and_the_next_one_is_locked(
    db_path: Path, clock: VirtualClock
) -> None:
    async with SqliteProvider(db_path, clock=clock) as provider:
        await schedule_activities(provider, "i1", [activity_task("i1", 1), activity_task("i1", 2)])
        conn = raw_connection(db_path)
        conn.execute("UPDATE worker_queue SET data = x'00ff' WHERE seq = 1")
        conn.close()

        item = await provider.fetch_activity(FetchActivityRequest(lock_timeout=30))

        assert item is not None
        assert item.task.seq == 2
        assert item.delivery_count == 1
        conn = raw_connection(db_path)
        dead = conn.execute("SELECT source, instance_id, data FROM dead_letters").fetchall()
        left = conn.execute("SELECT seq FROM worker_queue").fetchall()
        conn.close()
        assert dead == [("worker_queue", None, b"\x00\xff")]
        assert left == [(2,)]


# -- full disk and locked database -------------------------------------------------------------


def test_full_database_translates_to_retryable_store_full_error(tmp_path: Path) -> None:
    conn = raw_connection(tmp_path / "small.db")
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.execute("PRAGMA max_page_count = 3")
    with pytest.raises(sqlite3.Error) as caught:
        for _ in range(10):
            conn.execute("INSERT INTO t VALUES (zeroblob(4096))")
    conn.close()

    error = translate("commit_turn", caught.value, str(tmp_path / "small.db"))

    assert isinstance(error, StoreFullError) and error.retryable


async def test_full_disk_during_commit_applies_nothing_and_keeps_the_lock(
    db_path: Path, clock: VirtualClock
) -> None:
    async with SqliteProvider(db_path, clock=clock) as provider:
        await provider.start_orchestration(StartOrchestrationMessage(instance_id="i1", name="orch"))
        item = await provider.fetch_turn(FetchTurnRequest(lock_timeout=30))
        assert item is not None

        def limit_size() -> None:
            writer = provider._db._writer
            assert writer is not None
            pages = writer.execute("PRAGMA page_count").fetchone()[0]
            writer.execute(f"PRAGMA max_page_count = {pages}")

        await anyio.to_thread.run_sync(limit_size)
        big = [
            ActivityTask(
                instance_id="i1",
                execution_id=1,
                seq=n,
                name="a",
                input=msgspec.Raw(b'"' + b"x" * 5000 + b'"'),
            )
            for n in range(1, 50)
        ]
        with pytest.raises(StoreFullError) as caught:
            await provider.commit_turn(first_turn(item.lock_token, "i1", activity_tasks=big))
        assert caught.value.retryable

        assert await provider.read_instance("i1") is not None  # still the PENDING start
        assert await provider.fetch_activity(FetchActivityRequest(lock_timeout=5)) is None
        # The lock is still ours: once space is back, the same commit succeeds.
        await anyio.to_thread.run_sync(
            lambda: provider._db._writer.execute("PRAGMA max_page_count = 1073741823")  # type: ignore[union-attr]
        )
        await provider.commit_turn(first_turn(item.lock_token, "i1", activity_tasks=big))
        record = await provider.read_instance("i1")
        assert record is not None and record.state is State.RUNNING


async def test_database_locked_past_busy_timeout_gives_retryable_error(db_path: Path) -> None:
    async with SqliteProvider(db_path, busy_timeout=0.1) as provider:
        await provider.open()
        holder = raw_connection(db_path)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreBusyError) as caught:
                await provider.start_orchestration(
                    StartOrchestrationMessage(instance_id="i1", name="o")
                )
            assert caught.value.retryable
            assert isinstance(caught.value, ProviderError)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        # Nothing stuck: the retry goes through.
        await provider.start_orchestration(StartOrchestrationMessage(instance_id="i1", name="o"))


async def test_write_waits_for_a_locked_database_without_blocking_the_event_loop(
    db_path: Path,
) -> None:
    async with SqliteProvider(db_path, busy_timeout=10) as provider:
        await provider.open()
        holder = raw_connection(db_path)
        holder.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def release_later() -> None:
            nonlocal ticks
            # If the provider blocked the loop, these ticks (and the release) could not run
            # and the start below would wait the whole busy_timeout.
            for _ in range(20):
                await anyio.sleep(0.01)
                ticks += 1
            holder.execute("ROLLBACK")

        started_at = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(release_later)
            await provider.start_orchestration(
                StartOrchestrationMessage(instance_id="i1", name="o")
            )
        holder.close()

        assert ticks == 20
        assert time.monotonic() - started_at < 5
        assert await provider.read_instance("i1") is not None


async def test_event_loop_keeps_ticking_during_many_commits(db_path: Path) -> None:
    async with SqliteProvider(db_path) as provider:
        gaps: list[float] = []
        done = anyio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not done.is_set():
                await anyio.sleep(0.002)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        async def workload() -> None:
            # Commits until the ticker has ticked 50 times (however fast the machine is), or
            # 5,000 of them if commits starve it.
            n = 0
            while len(gaps) < 50 and n < 5_000:
                await create_instance(provider, f"i{n}")
                n += 1
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            tg.start_soon(workload)

        assert len(gaps) >= 50
        assert max(gaps) < 0.5


# -- sharing one file ----------------------------------------------------------------------------


async def _drain(provider: SqliteProvider, seen: list[str], holding: set[str]) -> None:
    """Fetch and complete turns until none are left, recording overlaps in ``holding``."""
    idle = 0
    while idle < 3:
        item = await provider.fetch_turn(FetchTurnRequest(lock_timeout=30, poll_timeout=0.05))
        if item is None:
            idle += 1
            continue
        idle = 0
        assert item.instance_id not in holding, f"{item.instance_id} locked twice at once"
        holding.add(item.instance_id)
        seen.append(item.instance_id)
        await anyio.sleep(0.001)
        holding.discard(item.instance_id)
        await provider.commit_turn(
            first_turn(item.lock_token, item.instance_id, status=ExecutionStatus.COMPLETED)
        )


async def test_two_providers_on_one_file_never_lock_the_same_instance(db_path: Path) -> None:
    first, second = SqliteProvider(db_path), SqliteProvider(db_path)
    async with first, second:
        for n in range(60):
            await first.start_orchestration(
                StartOrchestrationMessage(instance_id=f"i{n}", name="o")
            )
        seen: list[str] = []
        holding: set[str] = set()
        async with anyio.create_task_group() as tg:
            for provider in (first, second, first, second):
                tg.start_soon(_drain, provider, seen, holding)

    assert sorted(seen) == sorted(f"i{n}" for n in range(60))


_WORKER_SCRIPT = textwrap.dedent(
    """
    import sys, anyio
    from duro.providers._sqlite import SqliteProvider
    from duro.providers._types import (
        ExecutionStatus, FetchTurnRequest, TurnChanges, TurnCommit,
    )
    from duro._history import OrchestrationStarted

    async def main(path, ready):
        idle = 0
        async with SqliteProvider(path) as provider:
            await anyio.Path(ready).touch()
            while idle < 10:
                item = await provider.fetch_turn(
                    FetchTurnRequest(lock_timeout=30, poll_timeout=0.05)
                )
                if item is None:
                    idle += 1
                    continue
                idle = 0
                print(item.instance_id, flush=True)
                await anyio.sleep(0.001)
                await provider.commit_turn(TurnCommit(
                    lock_token=item.lock_token,
                    changes=TurnChanges(
                        instance_id=item.instance_id, execution_id=1,
                        new_events=[OrchestrationStarted(event_id=1, ts=1, name="o", version="1")],
                        name="o", version="1", execution_status=ExecutionStatus.COMPLETED,
                    ),
                ))

    anyio.run(main, sys.argv[1], sys.argv[2])
    """
)


async def test_other_processes_on_one_file_never_take_the_same_instance(db_path: Path) -> None:
    total = 120
    async with SqliteProvider(db_path) as provider:
        await provider.open()
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        ready = [db_path.with_name(f"ready{n}") for n in range(2)]
        children = [
            await anyio.open_process(
                [sys.executable, "-c", _WORKER_SCRIPT, str(db_path), str(marker)], env=env
            )
            for marker in ready
        ]
        for marker in ready:  # children have imported duro and opened the file
            for _ in range(6000):
                if await anyio.Path(marker).exists():
                    break
                await anyio.sleep(0.01)
            else:
                pytest.fail("a worker process did not start")
        for n in range(total):
            await provider.start_orchestration(
                StartOrchestrationMessage(instance_id=f"i{n}", name="o")
            )
        seen: list[str] = []
        await _drain(provider, seen, set())
        for child in children:
            with anyio.fail_after(60):
                await child.wait()
        outputs = []
        for child in children:
            assert child.stdout is not None
            data = b""
            async for chunk in child.stdout:
                data += chunk
            outputs.extend(data.decode().split())
            await child.aclose()
            assert child.returncode == 0
        everything = seen + outputs
        assert sorted(everything) == sorted(f"i{n}" for n in range(total))
        assert outputs, "the other processes took no work at all"


_OPEN_AT_ONCE_SCRIPT = textwrap.dedent(
    """
    import sys, time, anyio
    from duro.providers._sqlite import SqliteProvider
    from duro._messages import StartOrchestrationMessage

    async def main(path, go, name):
        while time.time() < go:  # every process opens at the same moment
            pass
        async with SqliteProvider(path) as provider:
            start = StartOrchestrationMessage(instance_id=name, name="o")
            await provider.start_orchestration(start)

    anyio.run(main, sys.argv[1], float(sys.argv[2]), sys.argv[3])
    """
)


def test_lock_tokens_never_repeat_within_a_process() -> None:
    assert len({_new_token() for _ in range(10_000)}) == 10_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_forked_child_makes_lock_tokens_its_parent_never_makes() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next tokens, then leave without any cleanup
        os.write(write, " ".join(_new_token() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as child_out:
        child_tokens = set(child_out.read().split())
    os.waitpid(pid, 0)
    assert len(child_tokens) == 100
    assert not child_tokens & {_new_token() for _ in range(100)}


def test_processes_opening_a_new_file_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    # Switching a new file to WAL (and migrating it) takes locks some of which SQLite refuses
    # without waiting: opening must wait for them like any other busy lock, not fail.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for round_ in range(6):
        path = tmp_path / f"new{round_}.db"
        go = time.time() + 1.5  # after every child has imported duro
        children = [
            subprocess.Popen(
                [sys.executable, "-c", _OPEN_AT_ONCE_SCRIPT, str(path), str(go), f"p{n}"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for n in range(6)
        ]
        outputs = [child.communicate(timeout=120)[0].decode() for child in children]
        failures = [out for child, out in zip(children, outputs, strict=True) if child.returncode]
        assert not failures, f"round {round_}: {failures[0][-2000:]}"
        conn = raw_connection(path)
        try:
            started = conn.execute("SELECT count(*) FROM orchestrator_queue").fetchone()[0]
        finally:
            conn.close()
        assert started == 6


async def test_a_runtime_restarted_under_its_worker_id_takes_its_locks_back_at_once(
    db_path: Path, clock: VirtualClock
) -> None:
    turns = FetchTurnRequest(lock_timeout=60, owner_id="pod-a")
    items = FetchActivityRequest(lock_timeout=60, owner_id="pod-a")
    async with SqliteProvider(db_path, clock=clock) as crashed:
        await schedule_activities(crashed, "i1", [activity_task("i1", 1)])
        await crashed.start_orchestration(start_message("i2"))
        held_item = await crashed.fetch_activity(items)
        held_turn = await crashed.fetch_turn(turns)
        assert held_item is not None and held_turn is not None
        # The process dies here: nothing is committed, abandoned or released.

    async with SqliteProvider(db_path, clock=clock) as restarted:
        await restarted.runtime_started("pod-b")  # someone else's restart changes nothing
        assert await restarted.fetch_activity(dataclasses.replace(items, owner_id="b")) is None
        assert await restarted.fetch_turn(dataclasses.replace(turns, owner_id="b")) is None

        await restarted.runtime_started("pod-a")

        item = await restarted.fetch_activity(items)
        turn = await restarted.fetch_turn(turns)
        assert item is not None and item.task == held_item.task and item.delivery_count == 2
        assert turn is not None and turn.instance_id == held_turn.instance_id
        with pytest.raises(LockLostError):  # the crashed run's tokens are fenced off
            await restarted.complete_activity(
                ActivityCommit(lock_token=held_item.lock_token, result=None)
            )


# -- basic round trips ---------------------------------------------------------------------------


async def test_turn_and_activity_round_trip(db_path: Path, clock: VirtualClock) -> None:
    async with SqliteProvider(db_path, clock=clock) as provider:
        task = ActivityTask(instance_id="i1", execution_id=1, seq=1, name="charge", tag="gpu")
        await create_instance(provider, "i1", activity_tasks=[task])
        assert await provider.fetch_activity(FetchActivityRequest(lock_timeout=5)) is None

        work = await provider.fetch_activity(
            FetchActivityRequest(lock_timeout=5, tag_filter=TagFilter(tags=frozenset({"gpu"})))
        )
        assert work is not None and work.task == task and work.delivery_count == 1

        result = ActivityResultMessage(
            instance_id="i1", execution_id=1, seq=1, result=msgspec.Raw(b"7")
        )
        await provider.complete_activity(
            ActivityCommit(lock_token=work.lock_token, result=ScheduledMessage(message=result))
        )
        with pytest.raises(LockLostError):
            await provider.complete_activity(
                ActivityCommit(lock_token=work.lock_token, result=None)
            )

        turn = await provider.fetch_turn(FetchTurnRequest(lock_timeout=5))
        assert turn is not None and turn.messages == [result]
        assert turn.history == [started()] and turn.execution_id == 1


async def _fetched_across_processes(db_path: Path, *, idle: float, within: float) -> Any:
    """What a fetch long-polling through one provider (30 s; ``poll_interval`` 60 s) returns
    when another provider writes a start ``idle`` seconds into its wait; fails unless it
    returns within ``within`` seconds of the write.

    Two providers on one file stand for two processes. The waiting one binds no socket, so
    no wake-up reaches it (test_sqlite_wakeups covers those): what it notices is the change
    of the file's data_version, which it looks at while it waits."""
    waiting = SqliteProvider(db_path, poll_interval=60.0)
    waiting._peers.listen = lambda: None  # type: ignore[method-assign]
    writing = SqliteProvider(db_path)
    fetched: list[Any] = []

    async def fetch() -> None:
        request = FetchTurnRequest(lock_timeout=5, poll_timeout=30.0)
        fetched.append(await waiting.fetch_turn(request))

    async with waiting, writing:
        await writing.open()
        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch)
            while waiting._db._watch is None:  # noqa: ASYNC110 - until it waits for work
                await anyio.sleep(0.001)
            await anyio.sleep(idle)
            with anyio.fail_after(within):
                await writing.enqueue_orchestrator_message(
                    ScheduledMessage(message=start_message("elsewhere"))
                )
                while not fetched:  # noqa: ASYNC110 - until the waiting fetch returns
                    await anyio.sleep(0.005)
    return fetched[0]


async def test_a_waiting_fetch_takes_work_another_process_writes_without_waiting_a_poll(
    db_path: Path,
) -> None:
    item = await _fetched_across_processes(db_path, idle=0.0, within=10.0)  # a poll: 30 s

    assert item is not None and item.instance_id == "elsewhere"


async def test_a_fetch_that_waited_long_still_notices_another_process_within_a_look(
    db_path: Path,
) -> None:
    # The looks at data_version double from 1 ms to a cap (64 ms) and stay there while the
    # fetch waits: after two idle seconds a write is seen within one look, not after a gap
    # as long as the wait so far (the looks used to double up to poll_interval).
    item = await _fetched_across_processes(db_path, idle=2.1, within=1.5)

    assert item is not None and item.instance_id == "elsewhere"


async def _paces_of_looks(provider: SqliteProvider) -> list[float]:
    """The pace each of ``provider``'s waits for work starts at, from now on (a spy)."""
    paces: list[float] = []
    wait = provider._wait_for_work

    async def spy(event: anyio.Event, until_ms: int, pace: float) -> float:
        paces.append(pace)
        return await wait(event, until_ms, pace)

    provider._wait_for_work = spy  # type: ignore[method-assign]
    return paces


async def test_a_fetch_after_one_that_found_nothing_goes_on_at_the_pace_it_reached(
    db_path: Path,
) -> None:
    async with SqliteProvider(db_path, poll_interval=0.05) as provider:
        paces = await _paces_of_looks(provider)
        await provider.fetch_turn(FetchTurnRequest(lock_timeout=5, poll_timeout=0.3))
        first_poll = len(paces)
        await provider.fetch_turn(FetchTurnRequest(lock_timeout=5, poll_timeout=0.1))

    # The first long poll starts looking at 1 ms; the next one does not start over.
    assert paces[0] == 0.001
    assert paces[first_poll] > 0.001


async def test_a_wait_that_ends_at_its_due_time_keeps_its_pace(db_path: Path) -> None:
    async with SqliteProvider(db_path, poll_interval=60.0) as provider:
        await provider.open()
        version = provider._db.data_version()
        due = provider._clock.now_ms() + 20

        pace = await provider._watch_for_work(anyio.Event(), due, 0.064, version, 0.064)

    assert pace == 0.064  # a due time is not a sign of a burst of work (that would be 1 ms)
