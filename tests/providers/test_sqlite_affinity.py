"""Runtimes in several processes on one SQLite file leave an instance's turns to the runtime
that ran its last one (it holds the execution in memory), for a while (``_candidate_txn``),
and a workflow started in a runtime's own process to the others, for a moment.

Two providers on one file stand for two processes; each binds its wake-up socket, as a
runtime's waiting fetch does, so each sees the other.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from duro.providers import _sqlite_schema, _sqlite_turns
from duro.providers._sqlite import SqliteProvider
from duro.providers._sqlite_turns import (
    AFFINITY_BUSY_MS,
    AFFINITY_IDLE_MS,
    PEERS_FIRST_MS,
    NoWork,
    fetch_turns_txn,
)
from duro.providers._types import (
    AbandonRequest,
    FetchTurnRequest,
    OrchestrationWorkItem,
    StartRequest,
)
from duro.testing import VirtualClock
from duro.testing._contract._fixtures import external_event, start_message, turn_commit

pytestmark = pytest.mark.anyio

A, B = "worker-a", "worker-b"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start_ms=1_700_000_000_000)


@pytest.fixture
async def pair(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[tuple[SqliteProvider, ...]]:
    path = tmp_path / "duro.db"
    async with SqliteProvider(path, clock=clock) as a, SqliteProvider(path, clock=clock) as b:
        a._peers.listen()
        b._peers.listen()
        yield a, b


async def fetch(provider: SqliteProvider, worker: str) -> OrchestrationWorkItem | None:
    return await provider.fetch_turn(
        FetchTurnRequest(lock_timeout=30, poll_timeout=0, owner_id=worker)
    )


async def taken_once_waited(
    clock: VirtualClock, wait_ms: int, provider: SqliteProvider, worker: str
) -> OrchestrationWorkItem:
    """Nothing for ``worker`` until ``wait_ms`` have passed, then a turn."""
    await clock.advance((wait_ms - 1) / 1000)
    assert await fetch(provider, worker) is None
    await clock.advance(0.001)
    item = await fetch(provider, worker)
    assert item is not None
    return item


async def start_beside_runtime(provider: SqliteProvider, worker: str, instance_id: str) -> None:
    """Start ``instance_id`` through ``provider``, on which runtime ``worker`` runs."""
    await provider.runtime_started(worker)
    await provider.start_orchestration(start_message(instance_id))


async def first_turn_run_by(provider: SqliteProvider, worker: str, instance_id: str) -> None:
    """Start ``instance_id`` and commit its first turn as ``worker`` (nothing left queued)."""
    await provider.start_orchestration(start_message(instance_id))
    item = await fetch(provider, worker)
    assert item is not None and item.instance_id == instance_id
    await provider.commit_turn(turn_commit(item))


async def message_after_a_turn(provider: SqliteProvider, worker: str, instance_id: str) -> None:
    """``first_turn_run_by``, then queue a message for the instance (a next turn's work)."""
    await first_turn_run_by(provider, worker, instance_id)
    await provider.enqueue_orchestrator_message(external_event(instance_id))


async def test_a_message_waits_for_the_worker_that_ran_the_instances_last_turn(
    pair: tuple[SqliteProvider, SqliteProvider],
) -> None:
    a, b = pair
    await message_after_a_turn(a, A, "i1")

    assert await fetch(b, B) is None
    item = await fetch(a, A)
    assert item is not None and item.instance_id == "i1"


async def test_an_idle_worker_takes_the_instance_over_after_a_short_wait(
    pair: tuple[SqliteProvider, SqliteProvider], clock: VirtualClock
) -> None:
    a, b = pair
    await message_after_a_turn(a, A, "i1")

    item = await taken_once_waited(clock, AFFINITY_IDLE_MS, b, B)
    assert item.instance_id == "i1"


async def test_a_worker_with_other_work_runs_it_first_and_takes_over_after_the_long_wait(
    pair: tuple[SqliteProvider, SqliteProvider], clock: VirtualClock
) -> None:
    a, b = pair
    await message_after_a_turn(a, A, "left-to-a")
    await clock.advance(1.0)
    await b.start_orchestration(start_message("new-1"))

    # The other worker's older message waits, past the idle wait, while there is other work.
    first = await fetch(b, B)
    assert first is not None and first.instance_id == "new-1"

    await clock.advance(AFFINITY_BUSY_MS / 1000 - 1.0)
    await b.start_orchestration(start_message("new-2"))
    taken = await fetch(b, B)
    assert taken is not None and taken.instance_id == "left-to-a"


async def test_the_turn_commit_moves_the_instance_to_the_worker_that_ran_it(
    pair: tuple[SqliteProvider, SqliteProvider], clock: VirtualClock
) -> None:
    a, b = pair
    await message_after_a_turn(a, A, "i1")
    await clock.advance(AFFINITY_IDLE_MS / 1000)
    item = await fetch(b, B)
    assert item is not None
    await b.commit_turn(turn_commit(item, events=()))

    await b.enqueue_orchestrator_message(external_event("i1"))
    assert await fetch(a, A) is None
    again = await fetch(b, B)
    assert again is not None and again.instance_id == "i1"


async def test_a_stopped_worker_hands_its_instances_over_at_once(
    pair: tuple[SqliteProvider, SqliteProvider],
) -> None:
    a, b = pair
    await message_after_a_turn(a, A, "i1")

    await a.runtime_stopped(A)
    item = await fetch(b, B)
    assert item is not None and item.instance_id == "i1"


async def test_an_abandoned_turn_is_left_to_no_worker(
    pair: tuple[SqliteProvider, SqliteProvider],
) -> None:
    # A worker that lacks an instance's code hands its turns on this way.
    a, b = pair
    await message_after_a_turn(a, A, "i1")
    item = await fetch(a, A)
    assert item is not None
    await a.abandon_turn(AbandonRequest(lock_token=item.lock_token))

    taken = await fetch(b, B)
    assert taken is not None and taken.instance_id == "i1"


async def test_a_worker_alone_on_the_file_leaves_nothing_to_others(
    tmp_path: Path, clock: VirtualClock
) -> None:
    # The worker that ran the last turn stopped without saying so (it crashed): a runtime
    # alone on the file does not wait for it.
    async with SqliteProvider(tmp_path / "duro.db", clock=clock) as provider:
        await message_after_a_turn(provider, A, "i1")
        item = await fetch(provider, B)
        assert item is not None and item.instance_id == "i1"


async def test_a_fetch_that_found_only_others_work_is_due_when_the_idle_wait_ends(
    pair: tuple[SqliteProvider, SqliteProvider], clock: VirtualClock
) -> None:
    a, b = pair
    await message_after_a_turn(a, A, "i1")
    visible = clock.now_ms()
    now = visible + 5

    found = await b._db.write(
        "fetch_turns",
        lambda conn: fetch_turns_txn(
            conn, now=now, lock_until=now + 30_000, owner_id=B,
            new_token=lambda: "t", max_items=4, shared=True,
        ),
    )  # fmt: skip
    assert found == NoWork(due_ms=visible + _sqlite_turns.AFFINITY_IDLE_MS)


async def test_a_version_6_file_gains_the_column_and_its_work_goes_to_any_worker(
    tmp_path: Path, clock: VirtualClock
) -> None:
    path = tmp_path / "duro.db"
    conn = sqlite3.connect(path, isolation_level=None)
    _sqlite_schema.migrate(conn, str(path), target=6)
    conn.close()
    async with SqliteProvider(path, clock=clock) as a, SqliteProvider(path, clock=clock) as b:
        a._peers.listen()
        b._peers.listen()
        await a.start_orchestration(start_message("i1"))
        item = await fetch(b, B)
        assert item is not None and item.instance_id == "i1"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(instances)")}
        assert "last_worker_id" in columns
    finally:
        conn.close()


async def test_a_workflow_started_in_a_runtimes_process_goes_to_the_other_runtimes_first(
    pair: tuple[SqliteProvider, SqliteProvider],
) -> None:
    a, b = pair
    await start_beside_runtime(a, A, "mine")

    assert await fetch(a, A) is None
    item = await fetch(b, B)
    assert item is not None and item.instance_id == "mine"


async def test_the_messages_sent_with_a_start_go_to_the_other_runtimes_with_it(
    pair: tuple[SqliteProvider, SqliteProvider],
) -> None:
    a, b = pair
    await a.runtime_started(A)
    await a.start_instance(
        StartRequest(start=start_message("mine"), messages=(external_event("mine").message,))
    )

    assert await fetch(a, A) is None
    item = await fetch(b, B)
    assert item is not None and len(item.messages) == 2


async def test_a_message_sent_with_a_start_to_an_existing_instance_stays_with_its_runtime(
    pair: tuple[SqliteProvider, SqliteProvider],
) -> None:
    a, b = pair
    await first_turn_run_by(a, A, "i1")
    await a.runtime_started(A)
    await a.start_instance(
        StartRequest(
            start=start_message("i1"),
            if_exists="use_existing",
            messages=(external_event("i1").message,),
        )
    )

    assert await fetch(b, B) is None
    again = await fetch(a, A)
    assert again is not None and again.instance_id == "i1"


async def test_the_starting_runtime_takes_its_workflow_once_the_others_left_it(
    pair: tuple[SqliteProvider, SqliteProvider], clock: VirtualClock
) -> None:
    a, _ = pair
    await start_beside_runtime(a, A, "mine")

    item = await taken_once_waited(clock, PEERS_FIRST_MS, a, A)
    assert item.instance_id == "mine"


async def test_a_runtime_runs_other_processes_starts_before_its_own(
    pair: tuple[SqliteProvider, SqliteProvider], clock: VirtualClock
) -> None:
    a, b = pair
    await start_beside_runtime(a, A, "mine")
    await clock.advance(0.001)
    await b.start_orchestration(start_message("theirs"))

    item = await fetch(a, A)
    assert item is not None and item.instance_id == "theirs"


async def test_a_runtime_alone_on_the_file_runs_its_own_starts_at_once(
    tmp_path: Path, clock: VirtualClock
) -> None:
    async with SqliteProvider(tmp_path / "duro.db", clock=clock) as provider:
        await start_beside_runtime(provider, A, "mine")
        item = await fetch(provider, A)
        assert item is not None and item.instance_id == "mine"


async def test_a_start_names_a_runtime_that_still_runs_in_its_process(
    pair: tuple[SqliteProvider, SqliteProvider],
) -> None:
    a, _ = pair
    await a.runtime_started(A)
    await a.runtime_stopped(A)
    await start_beside_runtime(a, "worker-a2", "mine")

    assert await fetch(a, "worker-a2") is None
    item = await fetch(a, A)
    assert item is not None and item.instance_id == "mine"


async def test_a_fetch_that_found_only_its_own_start_is_due_when_the_others_had_their_moment(
    pair: tuple[SqliteProvider, SqliteProvider], clock: VirtualClock
) -> None:
    a, _ = pair
    await start_beside_runtime(a, A, "mine")
    visible = clock.now_ms()
    now = visible + 1

    found = await a._db.write(
        "fetch_turns",
        lambda conn: fetch_turns_txn(
            conn, now=now, lock_until=now + 30_000, owner_id=A,
            new_token=lambda: "t", max_items=4, shared=True,
        ),
    )  # fmt: skip
    assert found == NoWork(due_ms=visible + PEERS_FIRST_MS)
