"""Word of committed turns for clients in other processes (``SqliteProvider.instance_notices``).

A client that waits for an instance in one process, while a runtime in another runs it, used
to learn of the end only at its next poll (5 ms doubling to 50 ms). The runtime's provider now
sends the committed turns' instance ids to the sockets in ``<file>-watch/``, where only
waiting clients listen. The client tests set the waits' polls to a minute, far beyond the
guard: a wait that returns was woken by a notice and nothing else.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import duro
from duro import _client_reads
from duro.providers import ExecutionStatus, InstanceNotice
from duro.providers._sqlite import SqliteProvider
from duro.providers._sqlite_wake import MAX_DATAGRAM, decode_notices, encode_notices
from duro.testing._contract._fixtures import start_and_lock, turn_commit

pytestmark = pytest.mark.anyio

GUARD_S = 20.0
"""Fails a test that hangs; a notice takes milliseconds, a poll would take a minute."""


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def db_path() -> Iterator[Path]:
    # A short path: a socket address holds about 100 bytes, and pytest's tmp_path can be long.
    with tempfile.TemporaryDirectory(prefix="dn") as directory:
        yield Path(directory) / "duro.db"


@pytest.fixture
def polls_every_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_client_reads, "_POLL_START", 60.0)
    monkeypatch.setattr(_client_reads, "_POLL_MAX", 60.0)


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
