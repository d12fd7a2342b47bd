"""Where SQLite calls run: short ones on the event loop unless a lock is in the way, WAL
checkpoints in their own thread (decision 0006)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from duro._messages import StartOrchestrationMessage
from duro.providers import _sqlite_db
from duro.providers._sqlite import SqliteProvider
from duro.providers._sqlite_checkpoint import Checkpointer
from duro.providers._types import FetchTurnRequest

from .test_sqlite import first_turn

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "duro.db"


class ThreadHops:
    """Counts calls handed to worker threads while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = anyio.to_thread.run_sync

        async def counting(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await real(fn, *args, **kwargs)

        monkeypatch.setattr(anyio.to_thread, "run_sync", counting)


def start(instance_id: str) -> StartOrchestrationMessage:
    return StartOrchestrationMessage(instance_id=instance_id, name="orch")


async def test_a_turn_round_trip_runs_on_the_event_loop(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SqliteProvider(db_path) as provider:
        await provider.open()
        await provider.read_instance("warm-up")  # the first read opens a reader in a thread
        hops = ThreadHops(monkeypatch)

        await provider.start_orchestration(start("i1"))
        [item] = await provider.fetch_turns(FetchTurnRequest(lock_timeout=5, max_items=4))
        await provider.commit_turns([first_turn(item.lock_token, "i1")])
        record = await provider.read_instance("i1")

        assert record is not None and record.execution_id == 1
        assert hops.count == 0


async def test_a_write_that_meets_another_connections_lock_waits_for_it_on_the_loop(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SqliteProvider(db_path, busy_timeout=10) as provider:
        await provider.open()
        await provider.read_instance("warm-up")  # the first read opens a reader in a thread
        hops = ThreadHops(monkeypatch)
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(provider.start_orchestration, start("i1"))
                tg.start_soon(provider.start_orchestration, start("i2"))
                await anyio.sleep(0.05)
                assert await provider.read_instance("i1") is None  # still waiting
                holder.execute("ROLLBACK")
        finally:
            holder.close()
        assert await provider.read_instance("i1") is not None
        assert await provider.read_instance("i2") is not None
        assert hops.count == 0  # no thread: the wait and both writes ran on the loop


class WaitRecorder:
    """Records how ``_LockWait`` waits: naps on the loop thread and sleeps on loop timers."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.naps: list[float] = []
        self.timer_sleeps: list[float] = []
        real_sleep, real_timer_sleep = time.sleep, anyio.sleep
        loop_thread = threading.current_thread()

        def nap(seconds: float) -> None:
            if threading.current_thread() is loop_thread:
                self.naps.append(seconds)
            else:  # another test's leftover thread: not ours to count
                real_sleep(seconds)

        async def timer_sleep(seconds: float) -> None:
            self.timer_sleeps.append(seconds)
            await real_timer_sleep(0)

        monkeypatch.setattr(_sqlite_db.time, "sleep", nap)
        monkeypatch.setattr(_sqlite_db.anyio, "sleep", timer_sleep)


async def test_a_lock_wait_naps_on_the_loop_thread_while_the_loop_has_nothing_else_to_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_sqlite_db, "_NAPPING_S", 60.0)  # the whole test within the window
    # A loaded machine may take longer than 50 us over an idle checkpoint (then the wait just
    # tries again without a nap): here every checkpoint counts as idle.
    monkeypatch.setattr(_sqlite_db, "_IDLE_CHECKPOINT_S", 60.0)
    recorder = WaitRecorder(monkeypatch)
    wait = _sqlite_db._LockWait(busy_timeout=60)
    for _ in range(3):
        assert await wait.before_next_try()
    assert recorder.naps == [_sqlite_db._NAP_S] * 3
    assert recorder.timer_sleeps == []


# trio runs a batch of ready tasks in shuffled order, so one checkpoint may come back before
# the others ran; the wait then naps once and they run at the next.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_lock_wait_lets_ready_tasks_run_and_then_tries_again_without_a_nap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_sqlite_db, "_NAPPING_S", 60.0)
    recorder = WaitRecorder(monkeypatch)
    wait = _sqlite_db._LockWait(busy_timeout=60)
    ran = 0

    async def busy_task() -> None:
        nonlocal ran
        ran += 1
        deadline = time.perf_counter() + 0.001  # longer than an idle loop's checkpoint
        while time.perf_counter() < deadline:
            pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(busy_task)
        assert await wait.before_next_try()
    assert ran == 1
    assert recorder.naps == []
    assert recorder.timer_sleeps == []


async def test_a_long_lock_wait_moves_to_loop_timers_and_ends_at_the_busy_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_sqlite_db, "_NAPPING_S", 0.0)  # the window has passed
    recorder = WaitRecorder(monkeypatch)
    wait = _sqlite_db._LockWait(busy_timeout=60)
    for _ in range(8):
        assert await wait.before_next_try()
    assert recorder.naps == []
    first, most = _sqlite_db._RETRY_FIRST_S, _sqlite_db._RETRY_MOST_S
    assert recorder.timer_sleeps == [min(first * 2**n, most) for n in range(8)]

    timed_out = _sqlite_db._LockWait(busy_timeout=0)
    assert not await timed_out.before_next_try()
    assert len(recorder.timer_sleeps) == 8  # gave up without waiting


async def test_a_caller_cancelled_before_its_write_writes_nothing(db_path: Path) -> None:
    async with SqliteProvider(db_path) as provider:
        await provider.open()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await provider.start_orchestration(start("i1"))
        assert await provider.read_instance("i1") is None


async def test_checkpoints_keep_the_wal_bounded_under_continuous_writes(db_path: Path) -> None:
    async with SqliteProvider(db_path) as provider:
        await provider.open()
        checkpointer = provider._db.checkpointer
        assert isinstance(checkpointer, Checkpointer)
        for n in range(3000):
            await provider.start_orchestration(start(f"i{n}"))
        # Without checkpoints (automatic ones are off) 3,000 starts leave a WAL of about
        # 67 MB; each checkpoint lets the next write restart it from the beginning. The file
        # keeps the largest size it reached: 200 commits and those made during a checkpoint's
        # first pass (6-8 MB here, on a loaded machine too).
        assert checkpointer.checkpoints >= 1
        assert checkpointer.reached_end == checkpointer.checkpoints  # no other writer
        wal = await anyio.Path(f"{db_path}-wal").stat()
        assert wal.st_size < 24 * 2**20


async def test_checkpoints_keep_the_wal_bounded_while_two_providers_write_without_pause(
    db_path: Path,
) -> None:
    # Each provider is another process to the other: a checkpoint holding one provider's lock
    # does not stop the other's commits, so it must take the file's write lock to reach the
    # end of the WAL (before: the WAL never restarted and grew by every commit).
    async with SqliteProvider(db_path) as first, SqliteProvider(db_path) as second:

        async def start_many(provider: SqliteProvider, prefix: str) -> None:
            for n in range(3000):
                await provider.start_orchestration(start(f"{prefix}{n}"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(start_many, first, "a")
            tg.start_soon(start_many, second, "b")
        # The WAL file keeps the largest size it reached. With restarts that depends on how
        # many commits land during a checkpoint (12-22 MB here, on a loaded machine too);
        # without them the 6,000 commits leave 135 MB.
        wal = await anyio.Path(f"{db_path}-wal").stat()
        assert wal.st_size < 48 * 2**20
        ends = [p._db.checkpointer.reached_end for p in (first, second) if p._db.checkpointer]
        assert sum(ends) >= 1


def test_the_checkpointer_thread_ends_on_stop_and_restarts_on_demand(db_path: Path) -> None:
    sqlite3.connect(db_path).execute("PRAGMA journal_mode = WAL").close()
    checkpointer = Checkpointer(lambda: sqlite3.connect(db_path), threading.Lock(), every=2)
    checkpointer.committed()
    assert checkpointer.checkpoints == 0  # not due yet
    checkpointer.committed()
    deadline = time.monotonic() + 10
    while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert checkpointer.checkpoints == 1
    checkpointer.stop()
    checkpointer.committed()
    checkpointer.committed()
    checkpointer.stop()  # a checkpoint due at stop may or may not run; the thread ends
    assert checkpointer.checkpoints in (1, 2)
