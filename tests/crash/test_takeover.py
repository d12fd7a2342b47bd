"""A runtime killed beside a live one on the same SQLite file: its work moves at once.

The killed runtime's locks last a minute (``tests/crash/holder.py``); the test waits far
less. Only the survivor finding the dead runtime's liveness file unlocked (see
``duro.providers._sqlite_liveness``) can move the held activity in time.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import duro

from .holder import LOCK_TIMEOUT, holds, registry

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        sys.platform == "win32",
        reason="Windows has no SIGKILL or flock: there a killed runtime's locks expire as "
        "before (tests/providers/test_sqlite_liveness.py covers that fallback)",
    ),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = LOCK_TIMEOUT / 3
"""Every wait of the test: well inside the killed runtime's lock timeout."""


async def written(path: Path) -> str:
    """What ``path`` holds once something was written to it."""
    file = anyio.Path(path)
    deadline = time.monotonic() + WAIT_S
    while not await file.exists() or not await file.read_text():
        assert time.monotonic() < deadline, f"{path} not written within {WAIT_S} s"
        await anyio.sleep(0.01)
    return await file.read_text()


async def test_a_survivor_takes_over_a_killed_runtimes_activity_before_its_lock_expires(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, marker = tmp_path / "duro.db", tmp_path / "attempt"
    monkeypatch.setenv("HOLDER_MARKER", str(marker))  # for the holder and the survivor
    async with duro.SqliteProvider(db) as store:
        client = duro.Client(store)
        await client.start_orchestration("held-1", holds)
        holder = subprocess.Popen(  # noqa: ASYNC220 (spawning does not block)
            [sys.executable, "-m", "tests.crash.holder", str(db)], cwd=REPO_ROOT
        )
        try:
            assert await written(marker) == "1"  # the holder runs it, under its lock
            await anyio.Path(marker).unlink()
            with caplog.at_level(logging.WARNING, logger="duro.providers.sqlite"):
                async with duro.Runtime(store, registry, duro.RuntimeOptions(worker_id="survivor")):
                    holder.send_signal(signal.SIGKILL)
                    holder.wait()
                    status = await client.wait_for_orchestration("held-1", timeout=WAIT_S)
        finally:
            if holder.poll() is None:
                holder.kill()
            holder.wait()
    assert status.state is duro.State.COMPLETED, status.error
    assert status.output == "finished on attempt 2"
    assert "runtime holder ended without stopping (killed?)" in caplog.text
