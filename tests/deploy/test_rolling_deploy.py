"""A rolling deployment: workers running old and new code share one SQLite file.

Work the old code cannot run (a new orchestration, a new version, a new activity) waits for a
worker that can, instead of failing; once a new worker runs, it completes. Real processes,
real signals.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import duro

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="needs SIGTERM"),
]


class Workers:
    def __init__(self, db: Path, directory: Path) -> None:
        self.db = db
        self.directory = directory
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, code: str) -> None:
        with (self.directory / f"{code}.out").open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.deploy.worker", "--db", str(self.db), "--code", code],
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs[code] = proc
        deadline = time.monotonic() + 30
        while b"ready" not in (self.directory / f"{code}.out").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the {code} worker did not start:\n{self.output(code)}")
            time.sleep(0.02)

    def output(self, code: str) -> str:
        return (self.directory / f"{code}.out").read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        for code, proc in self.procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    assert proc.wait(timeout=30) == 0, self.output(code)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    pytest.fail(f"the {code} worker did not stop:\n{self.output(code)}")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    group = Workers(tmp_path / "deploy.db", tmp_path)
    try:
        yield group
    finally:
        for proc in group.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def _states(store: duro.SqliteProvider, ids: list[str]) -> dict[str, duro.State]:
    client = duro.Client(store)
    return {i: (await client.get_status(i)).state for i in ids}


def test_work_only_new_code_can_run_waits_for_a_new_worker_instead_of_failing(
    workers: Workers,
) -> None:
    async def scenario() -> None:
        async with duro.SqliteProvider(workers.db) as store:
            client = duro.Client(store)
            workers.start("old")
            await client.start_orchestration("v1", "greet", "ada", version="1.0.0")
            await client.start_orchestration("v2", "greet", "bob", version="2.0.0")
            await client.start_orchestration("new-name", "onboard", "cy")
            ids = ["v1", "v2", "new-name"]
            with anyio.fail_after(30):
                assert (await client.wait_for_orchestration("v1", timeout=30)).output == (
                    "hello ada (1.0.0)"
                )
            await anyio.sleep(3.0)  # several deliveries to the old worker, with back-off
            waiting = await _states(store, ids[1:])
            assert waiting == {"v2": duro.State.PENDING, "new-name": duro.State.PENDING}, (
                workers.output("old")
            )
            workers.start("new")
            v2 = await client.wait_for_orchestration("v2", timeout=60)
            onboarded = await client.wait_for_orchestration("new-name", timeout=60)
            assert v2.output == "hello bob (2.0.0)"
            assert onboarded.output == "welcome mail for cy"
            workers.stop_all()
            assert "leaving the turn of v2 for another worker" in workers.output("old")

    anyio.run(scenario)
