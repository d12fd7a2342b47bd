"""A message that kills its handler every time: poison for its instance, nobody else's.

A real worker process runs an activity that SIGKILLs the process. A supervisor (this test)
restarts it each time, as a process manager would. After ``max_deliveries`` deliveries the
instance fails with a poison error that says how often it was delivered, while the healthy
instances beside it complete.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import duro

from .worker import MAX_DELIVERIES, registry

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL"),
]

REPO = Path(__file__).resolve().parents[2]


def _worker(db: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.poison.worker", "--db", str(db)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


async def test_a_message_that_kills_its_worker_every_time_ends_as_poison_alone(
    tmp_path: Path,
) -> None:
    db = tmp_path / "poison.db"
    async with duro.SqliteProvider(db) as store:
        client = duro.Client(store, registry=registry)
        await client.start_orchestration("doomed", "doomed")
        healthy = [f"healthy-{n}" for n in range(10)]
        for n, instance_id in enumerate(healthy):
            await client.start_orchestration(instance_id, "healthy", n * 10)

        deaths = 0
        worker = _worker(db)
        deadline = time.monotonic() + 90
        try:
            while (await client.get_status("doomed")).state is not duro.State.FAILED:
                assert time.monotonic() < deadline, "the poison message never ended"
                if worker.poll() is not None:
                    assert worker.returncode == -signal.SIGKILL
                    deaths += 1
                    worker = _worker(db)  # the supervisor restarts it
                await anyio.sleep(0.05)
            for instance_id in healthy:
                status = await client.wait_for_orchestration(instance_id, timeout=60)
                assert status.state is duro.State.COMPLETED, (instance_id, status.error)
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=30)

        error = (await client.get_status("doomed")).error
        assert error is not None
        assert error.error_type == "ActivityFailedError" or error.error_type == "PoisonMessage"
        assert "PoisonMessage" in error.message
        assert f"delivered {MAX_DELIVERIES + 1} times" in error.message
        assert deaths == MAX_DELIVERIES  # each delivery killed the worker; the next was poison
