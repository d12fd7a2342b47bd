"""Which runtimes sharing a SQLite file are alive (``_sqlite_liveness``), with real processes.

A child process claims a worker id and sleeps; the test kills it with SIGKILL, as the OOM
killer or a crash would end a runtime, and looks at what its peers see.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from duro.providers import _sqlite_liveness
from duro.providers._sqlite_liveness import RuntimeLiveness

pytestmark = pytest.mark.anyio

needs_flock = pytest.mark.skipif(
    sys.platform == "win32",
    reason="Windows has no flock or SIGKILL: there a killed runtime's locks expire as before "
    "(test_without_flock_a_runtime_claims_nothing_and_its_locks_just_expire)",
)

_CLAIMER = textwrap.dedent(
    """
    import sys, time, anyio
    from duro.providers._sqlite_liveness import RuntimeLiveness

    liveness = RuntimeLiveness(sys.argv[1])
    assert anyio.run(liveness.claim, sys.argv[2])
    print("claimed", flush=True)
    time.sleep(3600)
    """
)

Spawn = Callable[[Path, str], subprocess.Popen[str]]


@pytest.fixture
def claimed_in_child() -> Iterator[Spawn]:
    """Starts a process that claims a worker id on a file; returns once it holds it."""
    children: list[subprocess.Popen[str]] = []

    def spawn(db: Path, worker_id: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, str(db), worker_id],
            stdout=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "claimed"
        return child

    yield spawn
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()


def killed(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait()


@needs_flock
async def test_a_live_runtime_is_not_dead_and_a_killed_one_is_found_by_its_worker_id(
    tmp_path: Path, claimed_in_child: Spawn
) -> None:
    db = tmp_path / "duro.db"
    child = claimed_in_child(db, "worker in the child")
    here = RuntimeLiveness(str(db))
    assert await here.claim("worker here")
    assert list(here.dead()) == []
    killed(child)
    dead = list(here.dead())
    assert [d.worker_id for d in dead] == ["worker in the child"]
    dead[0].bury()
    assert list(here.dead()) == []
    assert len(os.listdir(f"{db}-live")) == 1  # this runtime's own file only
    here.release_all()


@needs_flock
async def test_a_dead_runtime_is_taken_by_one_peer_at_a_time(
    tmp_path: Path, claimed_in_child: Spawn
) -> None:
    db = tmp_path / "duro.db"
    killed(claimed_in_child(db, "gone"))
    first, second = RuntimeLiveness(str(db)), RuntimeLiveness(str(db))
    taken = list(first.dead())
    assert [d.worker_id for d in taken] == ["gone"]
    assert list(second.dead()) == []  # the first holds it while it ends its locks
    taken[0].leave()  # ending them failed: the next look tries again
    taken = list(second.dead())
    assert [d.worker_id for d in taken] == ["gone"]
    taken[0].bury()
    assert list(first.dead()) == []


@needs_flock
async def test_a_restart_under_the_same_worker_id_claims_its_dead_predecessors_file(
    tmp_path: Path, claimed_in_child: Spawn
) -> None:
    db = tmp_path / "duro.db"
    killed(claimed_in_child(db, "stable-id"))
    restarted, peer = RuntimeLiveness(str(db)), RuntimeLiveness(str(db))
    assert await restarted.claim("stable-id")
    assert list(peer.dead()) == []  # the new run holds it: nothing to take over
    restarted.release("stable-id")
    assert not await anyio.Path(f"{db}-live").exists()  # the last to stop removes the directory


@needs_flock
async def test_a_second_live_runtime_with_the_same_worker_id_is_not_watched_and_says_so(
    tmp_path: Path,
    claimed_in_child: Spawn,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "duro.db"
    claimed_in_child(db, "twice")
    monkeypatch.setattr(_sqlite_liveness, "CLAIM_PATIENCE_S", 0.05)
    with caplog.at_level(logging.WARNING, logger="duro.providers.sqlite"):
        assert not await RuntimeLiveness(str(db)).claim("twice")
    assert "another live process runs a runtime with worker id 'twice'" in caplog.text


@needs_flock
async def test_a_file_a_runtime_left_empty_when_killed_while_claiming_is_removed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "duro.db"
    here = RuntimeLiveness(str(db))
    assert await here.claim("here")
    (tmp_path / "duro.db-live" / "0123456789abcdef").write_bytes(b"")
    assert list(here.dead()) == []
    assert len(os.listdir(f"{db}-live")) == 1
    here.release_all()


@needs_flock
async def test_runtimes_of_one_process_never_take_each_other_over(tmp_path: Path) -> None:
    db = tmp_path / "duro.db"
    first, second = RuntimeLiveness(str(db)), RuntimeLiveness(str(db))
    assert await first.claim("one") and await second.claim("two")
    assert list(first.dead()) == [] and list(second.dead()) == []
    first.release_all()
    second.release_all()


async def test_without_flock_a_runtime_claims_nothing_and_its_locks_just_expire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite_liveness, "fcntl", None)  # as on Windows
    here = RuntimeLiveness(str(tmp_path / "duro.db"))
    assert not await here.claim("here")
    assert not here.due()  # nothing to look for: lock expiry moves a dead runtime's work
    assert list(here.dead()) == []
    assert not await anyio.Path(tmp_path / "duro.db-live").exists()
