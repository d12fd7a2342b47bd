"""Wake-ups between processes sharing one SQLite file (``_sqlite_wake``).

Each test silences the other way a waiting fetch finds another process's work (its looks at
``PRAGMA data_version``) and sets ``poll_interval`` far beyond the test's guard, so a fetch
that returns was woken by a peer's datagram and nothing else.

The last tests cover word of committed turns for clients waiting in other processes
(``SqliteProvider.instance_notices``, sockets in ``<file>-watch/``). They set the client
waits' polls to a minute, far beyond the guard: a wait that returns was woken by a notice.
"""

from __future__ import annotations

import contextlib
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

import duro
from duro import _client_reads
from duro._watch import InstanceWatch
from duro.providers import ANY_INSTANCE, ExecutionStatus, InstanceNotice
from duro.providers._sqlite import SqliteProvider
from duro.providers._sqlite_wake import (
    MAX_DATAGRAM,
    TURNS,
    PeerWakeups,
    decode_notices,
    encode_notices,
)
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
    start_and_lock,
    start_message,
    turn_commit,
)

pytestmark = pytest.mark.anyio

GUARD_S = 20.0
"""Fails a test that hangs; a wake-up takes milliseconds, a re-query or poll a minute."""


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


def test_a_send_reaches_the_peer_listed_after_a_dead_one(db_path: Path) -> None:
    left = leave_a_dead_socket(db_path)
    listening, sending = PeerWakeups(str(db_path)), PeerWakeups(str(db_path))
    try:
        listening.listen()
        sending._resolve_dir()
        sending._refresh_peers()
        # The dead socket first: forgetting it must not skip the one after it.
        dead = os.path.realpath(left)
        sending._peers.sort(key=lambda peer: peer != dead)
        assert sending._peers[0] == dead and len(sending._peers) == 2

        sending.announce(TURNS)

        assert listening.drain() == TURNS
    finally:
        listening.close()
        sending.close()


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


# -- word of committed turns for waiting clients ---------------------------------------------


@pytest.fixture
def polls_every_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_client_reads, "_POLL_START", 60.0)
    monkeypatch.setattr(_client_reads, "_POLL_MAX", 60.0)
    monkeypatch.setattr(_client_reads, "_POLL_LONGEST", 60.0)


def watch_dir(db_path: Path) -> anyio.Path:
    return anyio.Path(f"{db_path}-watch")


async def until_listening(db_path: Path) -> None:
    while not await watch_dir(db_path).exists() or not [  # noqa: ASYNC110 - until it binds
        p async for p in watch_dir(db_path).iterdir()
    ]:
        await anyio.sleep(0.001)


async def test_a_listening_provider_hears_of_turns_another_provider_commits(
    db_path: Path,
) -> None:
    async with SqliteProvider(db_path) as listening, SqliteProvider(db_path) as running:
        ended = await start_and_lock(running, "ends")
        goes_on = await start_and_lock(running, "goes-on")
        # The first call binds the socket and tells every waiter to read again: turns
        # committed before it told nobody.
        assert await listening.instance_notices() == [InstanceNotice(ANY_INSTANCE, ended=True)]
        heard: list[InstanceNotice] = []

        async def listen() -> None:
            while len(heard) < 2:
                heard.extend(await listening.instance_notices())

        with anyio.fail_after(GUARD_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(listen)
                await until_listening(db_path)
                await running.commit_turns(
                    [turn_commit(ended, status=ExecutionStatus.COMPLETED), turn_commit(goes_on)]
                )

    assert heard == [InstanceNotice("ends", ended=True), InstanceNotice("goes-on", ended=False)]


async def test_a_failed_commit_is_not_announced(db_path: Path) -> None:
    async with SqliteProvider(db_path) as listening, SqliteProvider(db_path) as running:
        stale = await start_and_lock(running, "stale")
        fresh = await start_and_lock(running, "fresh")
        await running.commit_turns([turn_commit(stale)])  # its lock token is spent now
        await listening.instance_notices()  # binds
        heard: list[InstanceNotice] = []

        async def listen() -> None:
            heard.extend(await listening.instance_notices())

        with anyio.fail_after(GUARD_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(listen)
                await until_listening(db_path)
                errors = await running.commit_turns([turn_commit(stale), turn_commit(fresh)])

    assert errors[0] is not None and errors[1] is None
    assert heard == [InstanceNotice("fresh", ended=False)]


async def test_a_listener_that_missed_notices_is_told_with_the_next_one(db_path: Path) -> None:
    async with SqliteProvider(db_path) as listening, SqliteProvider(db_path) as running:
        listening._watchers.listen()
        (socket_file,) = [p async for p in watch_dir(db_path).iterdir()]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):  # until its queue is full
                while True:
                    filler.sendto(b"Cfiller", str(socket_file))
        missed = await start_and_lock(running, "missed")
        await running.commit_turns([turn_commit(missed, status=ExecutionStatus.COMPLETED)])
        listening._watchers.receive()  # the queue empties: only the filler was in it
        later = await start_and_lock(running, "later")
        await running.commit_turns([turn_commit(later)])

        with anyio.fail_after(GUARD_S):
            heard = await listening.instance_notices()

    assert heard == [InstanceNotice(ANY_INSTANCE, ended=True), InstanceNotice("later", False)]


def test_word_that_notices_were_lost_wakes_every_waiter() -> None:
    watch = InstanceWatch()
    change, ending = watch.event("a"), watch.event("b", ending_only=True)

    watch.notify(ANY_INSTANCE, ended=True)

    assert change.is_set() and ending.is_set()


async def test_nobody_listens_until_a_client_waits_and_the_socket_goes_at_close(
    db_path: Path,
) -> None:
    async with SqliteProvider(db_path) as running, SqliteProvider(db_path) as client:
        item = await start_and_lock(running, "i")
        await running.commit_turns([turn_commit(item)])
        assert not await watch_dir(db_path).exists()  # committing alone binds nothing

        with anyio.move_on_after(0.01):
            await client.instance_notices()
        assert len([p async for p in watch_dir(db_path).iterdir()]) == 1

    assert not await watch_dir(db_path).exists()


def test_notices_split_into_datagrams_that_fit_and_decode_back() -> None:
    notices = [InstanceNotice(f"i-{n:0190d}", ended=n % 3 == 0) for n in range(1000)]

    datagrams = encode_notices(notices)

    assert len(datagrams) > 1
    assert all(len(d) <= MAX_DATAGRAM for d in datagrams)
    assert decode_notices(datagrams) == notices


def test_a_datagram_that_is_not_a_notice_is_skipped() -> None:
    assert decode_notices([b"\x01", b"", b"Xnope\nEyes"]) == [InstanceNotice("yes", ended=True)]


_RUNTIME_SCRIPT = textwrap.dedent(
    """
    import sys

    import anyio

    import duro

    registry = duro.Registry()


    @registry.orchestration
    async def greet(ctx: duro.OrchestrationContext, name: str) -> str:
        await ctx.wait_for_event("go")
        return f"hello {name}"


    @registry.orchestration
    async def echo(ctx: duro.OrchestrationContext, value: str) -> str:
        return value


    async def main() -> None:
        store = duro.SqliteProvider(sys.argv[1])
        async with store, duro.Runtime(store, registry):
            print("ready", flush=True)
            await anyio.sleep(float(sys.argv[2]))


    anyio.run(main)
    """
)


async def test_a_client_wait_wakes_when_a_runtime_in_another_process_ends_the_instance(
    db_path: Path, polls_every_minute: None
) -> None:
    store = duro.SqliteProvider(db_path)
    async with store:
        client = duro.Client(store)
        await client.start_orchestration("greeting", "greet", "you")
        statuses: list[duro.OrchestrationStatus[str]] = []

        async def wait() -> None:
            statuses.append(
                await client.wait_for_orchestration("greeting", timeout=GUARD_S, output_type=str)
            )

        with anyio.fail_after(GUARD_S):
            async with (
                await anyio.open_process(
                    [sys.executable, "-c", _RUNTIME_SCRIPT, str(db_path), str(GUARD_S)]
                ) as runtime,
                anyio.create_task_group() as tg,
            ):
                assert runtime.stdout is not None
                await runtime.stdout.receive()  # "ready"
                tg.start_soon(wait)
                await until_listening(db_path)
                await client.raise_event("greeting", "go")
                while not statuses:  # noqa: ASYNC110 - until the wait returns
                    await anyio.sleep(0.001)
                runtime.terminate()

    assert statuses[0].state is duro.State.COMPLETED
    assert statuses[0].output == "hello you"


async def test_many_concurrent_waits_all_hear_a_burst_of_endings_from_another_process(
    db_path: Path, polls_every_minute: None
) -> None:
    # Each task starts a workflow and waits for it, and the runtime ends them as fast as
    # they come: endings land before the client's socket is bound, and more datagrams than
    # a socket queue holds (10 on Linux). The first bind and the "some were lost" mark
    # cover both; without them most of these waits sit out their minute-long poll.
    store = duro.SqliteProvider(db_path)
    ids = [f"echo-{n}" for n in range(300)]
    outputs: dict[str, object] = {}
    async with store:
        client = duro.Client(store)

        async def run(instance_id: str) -> None:
            await client.start_orchestration(instance_id, "echo", instance_id)
            status = await client.wait_for_orchestration(instance_id, timeout=GUARD_S)
            outputs[instance_id] = status.output

        async with await anyio.open_process(
            [sys.executable, "-c", _RUNTIME_SCRIPT, str(db_path), str(GUARD_S)]
        ) as runtime:
            try:
                assert runtime.stdout is not None
                await runtime.stdout.receive()  # "ready"
                with anyio.move_on_after(GUARD_S):
                    async with anyio.create_task_group() as tg:
                        for instance_id in ids:
                            tg.start_soon(run, instance_id)
            finally:
                runtime.terminate()

    assert outputs == {instance_id: instance_id for instance_id in ids}
