"""Wake-ups between processes sharing one SQLite file (``_sqlite_wake``).

Each test silences the other way a waiting fetch finds another process's work (its looks at
``PRAGMA data_version``) and sets ``poll_interval`` far beyond the test's guard, so a fetch
that returns was woken by a peer's datagram and nothing else.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import textwrap
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from duro.providers._sqlite import SqliteProvider
from duro.providers._sqlite_wake import PeerWakeups
from duro.providers._types import (
    ActivityCommit,
    FetchActivityRequest,
    FetchTurnRequest,
    OrchestrationWorkItem,
    ScheduledMessage,
)
from duro.testing._contract._fixtures import (
    activity_result,
    activity_task,
    schedule_activities,
    start_message,
)

pytestmark = pytest.mark.anyio

GUARD_S = 20.0
"""Fails a test that hangs; a wake-up takes milliseconds, a re-query would take a minute."""


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def db_path() -> Iterator[Path]:
    # A short path: a socket address holds about 100 bytes, and pytest's tmp_path can be long.
    with tempfile.TemporaryDirectory(prefix="dw") as directory:
        yield Path(directory) / "duro.db"


def waiting_provider(db_path: Path) -> SqliteProvider:
    """A provider whose fetches only a peer's wake-up can end early (their looks see no
    change, and they query again after a minute)."""
    provider = SqliteProvider(db_path, poll_interval=60.0)
    provider._db.data_version = lambda: 0  # type: ignore[method-assign]
    return provider


async def fetch_turn_waiting(provider: SqliteProvider) -> OrchestrationWorkItem | None:
    return await provider.fetch_turn(FetchTurnRequest(lock_timeout=5, poll_timeout=60.0))


def listening(provider: SqliteProvider) -> Callable[[], bool]:
    return lambda: provider._peers.listening


async def run_once_waiting(
    fetch: Callable[[], Coroutine[Any, Any, object]],
    waits: Callable[[], bool],
    write: Callable[[], Awaitable[object]],
) -> None:
    """Run ``fetch``, and ``write`` as soon as ``waits`` says the fetch waits; both must end
    within ``GUARD_S``."""
    with anyio.fail_after(GUARD_S):
        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch)
            while not waits():  # noqa: ASYNC110 - until the fetch waits
                await anyio.sleep(0.001)
            await write()


async def turn_fetched_around(
    waiting: SqliteProvider, write: Callable[[], Awaitable[object]]
) -> OrchestrationWorkItem | None:
    """What a turn fetch waiting through ``waiting`` returns when ``write`` runs."""
    fetched: list[OrchestrationWorkItem | None] = []

    async def fetch() -> None:
        fetched.append(await fetch_turn_waiting(waiting))

    await run_once_waiting(fetch, listening(waiting), write)
    return fetched[0]


async def test_a_waiting_turn_fetch_wakes_when_another_provider_starts_an_instance(
    db_path: Path,
) -> None:
    waiting, writing = waiting_provider(db_path), SqliteProvider(db_path)
    async with waiting, writing:
        await writing.open()
        item = await turn_fetched_around(
            waiting, lambda: writing.start_orchestration(start_message("elsewhere"))
        )

    assert item is not None and item.instance_id == "elsewhere"


async def test_a_waiting_activity_fetch_wakes_when_another_provider_schedules_work(
    db_path: Path,
) -> None:
    waiting, writing = waiting_provider(db_path), SqliteProvider(db_path)
    fetched: list[str] = []

    async def fetch() -> None:
        request = FetchActivityRequest(lock_timeout=5, poll_timeout=60.0)
        items = await waiting.fetch_activities(request)
        fetched.extend(item.task.name for item in items)

    async with waiting, writing:
        await writing.open()
        await run_once_waiting(
            fetch,
            listening(waiting),
            lambda: schedule_activities(writing, "i", [activity_task("i", 1, name="charge")]),
        )

    assert fetched == ["charge"]


async def test_a_waiting_turn_fetch_wakes_when_another_provider_reports_a_result(
    db_path: Path,
) -> None:
    waiting, writing = waiting_provider(db_path), SqliteProvider(db_path)
    task = activity_task("i", 1)
    async with waiting, writing:
        await schedule_activities(writing, "i", [task])
        work = await writing.fetch_activity(FetchActivityRequest(lock_timeout=5))
        assert work is not None
        commit = ActivityCommit(lock_token=work.lock_token, result=activity_result(task, 1))
        item = await turn_fetched_around(waiting, lambda: writing.complete_activity(commit))

    assert item is not None and item.instance_id == "i"


_START_SCRIPT = textwrap.dedent(
    """
    import sys, anyio
    from duro.providers._sqlite import SqliteProvider
    from duro.testing._contract._fixtures import start_message

    async def main():
        async with SqliteProvider(sys.argv[1]) as store:
            await store.start_orchestration(start_message("from-a-process"))

    anyio.run(main)
    """
)


async def test_a_waiting_fetch_wakes_when_another_process_starts_an_instance(
    db_path: Path,
) -> None:
    waiting = waiting_provider(db_path)
    async with waiting:
        item = await turn_fetched_around(
            waiting,
            lambda: anyio.run_process([sys.executable, "-c", _START_SCRIPT, str(db_path)]),
        )

    assert item is not None and item.instance_id == "from-a-process"


def leave_a_dead_socket(db_path: Path) -> anyio.Path:
    """A socket file nobody listens on, as a killed process leaves it."""
    wake_dir = Path(f"{db_path}-wake")
    wake_dir.mkdir(parents=True)
    left = wake_dir / "deadbeef"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
        dead.bind(str(left))
    return anyio.Path(left)


async def test_a_socket_a_killed_process_left_is_removed_by_the_next_writer(
    db_path: Path,
) -> None:
    left = leave_a_dead_socket(db_path)
    assert await left.exists()

    async with SqliteProvider(db_path) as writing:
        await writing.start_orchestration(start_message("i"))

        assert not await left.exists()


async def test_only_a_provider_whose_fetch_waited_listens_and_closing_it_cleans_up(
    db_path: Path,
) -> None:
    waiting, writing = waiting_provider(db_path), SqliteProvider(db_path)
    wake_dir = anyio.Path(f"{db_path}-wake")
    async with waiting, writing:
        await writing.start_orchestration(start_message("i"))
        assert await waiting.fetch_turn(FetchTurnRequest(lock_timeout=5)) is not None
        assert not await wake_dir.exists()  # nothing waited yet: nobody listens

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch_turn_waiting, waiting)  # nothing left: it waits
            with anyio.fail_after(GUARD_S):
                while not waiting._peers.listening:  # noqa: ASYNC110 - until it waits
                    await anyio.sleep(0.001)
            tg.cancel_scope.cancel()
        assert len([p async for p in wake_dir.iterdir()]) == 1
        assert not writing._peers.listening

    assert not await wake_dir.exists()


async def test_a_path_too_long_for_a_socket_still_finds_other_providers_work_by_looking(
    tmp_path: Path,
) -> None:
    deep = anyio.Path(tmp_path.joinpath(*["d" * 50] * 3))
    await deep.mkdir(parents=True)
    db_path = deep / "duro.db"
    waiting = SqliteProvider(db_path, poll_interval=60.0)  # looks at data_version, no socket
    writing = SqliteProvider(db_path)
    fetched: list[OrchestrationWorkItem | None] = []

    async def fetch() -> None:
        fetched.append(await fetch_turn_waiting(waiting))

    async with waiting, writing:
        await writing.open()
        await run_once_waiting(
            fetch,
            lambda: waiting._db._watch is not None,
            lambda: writing.enqueue_orchestrator_message(
                ScheduledMessage(message=start_message("deep"))
            ),
        )

        assert not waiting._peers.listening

    assert fetched[0] is not None and fetched[0].instance_id == "deep"


async def test_a_forked_child_closing_its_copy_leaves_the_parents_socket(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peers = PeerWakeups(str(db_path))
    peers.listen()
    wake_dir = anyio.Path(f"{db_path}-wake")
    (socket_file,) = [p async for p in wake_dir.iterdir()]

    parent = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: parent + 1)  # what the copy sees in a child
    assert not peers.listening
    peers.close()
    monkeypatch.undo()

    assert await socket_file.exists()
