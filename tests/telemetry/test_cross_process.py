"""One workflow, one trace, across processes and a restart.

The test process is the client; one child process runs the turns, another the activities,
all on one SQLite file. Midway, the turn process is stopped and a new one takes over. Every
span of every process must belong to the caller's trace and have its parent among the spans
recorded somewhere (``tests/telemetry/_process.py`` writes each process's spans to a file).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import duro
from tests.e2e._support import wait_until

from .conftest import Spans

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="needs SIGTERM"),
]

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0


class Children:
    def __init__(self, db: Path, spans: Path) -> None:
        self.db = db
        self.spans = spans
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def start(self, name: str, role: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.telemetry._process", "--db", str(self.db),
             "--spans", str(self.spans), "--role", role, "--name", name],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
        self.procs[name] = proc

    def stop(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    procs = Children(tmp_path / "shared.db", tmp_path / "spans.jsonl")
    yield procs
    procs.kill_all()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_client_turns_and_activities_in_three_processes_and_a_restart_share_one_trace(
    children: Children, spans: Spans
) -> None:
    store = duro.SqliteProvider(children.db)
    client = duro.Client(store, tracer_provider=spans.provider)
    caller = spans.provider.get_tracer("caller")
    async with store:
        children.start("turns-1", "orchestrations")
        children.start("activities", "activities")
        with caller.start_as_current_span("checkout request"):
            await client.start_orchestration("order", "workflow", 3)

        async def waiting() -> bool:
            return (await client.get_status("order")).custom_status == "waiting"

        await wait_until(waiting, timeout=DEADLINE, what="the workflow waiting for 'go'")
        children.stop("turns-1")  # the instance lives on only in the file
        children.start("turns-2", "orchestrations")
        await client.raise_event("order", "go", 1)  # a span in a trace of its own
        status = await client.wait_for_orchestration("order", timeout=DEADLINE)
        assert status.output == 2 * (2 * (2 * 3) + 1)
        children.stop("turns-2")
        children.stop("activities")

    recorded = [json.loads(line) for line in children.spans.read_text().splitlines()]
    recorded += [_describe(s) for s in spans.finished()]
    [request] = [s for s in recorded if s["name"] == "checkout request"]
    [start] = [s for s in recorded if s["name"] == "duro.start_orchestration"]
    [raised] = [s for s in recorded if s["name"] == "duro.raise_event"]
    workflow = [s for s in recorded if s is not raised]
    assert {s["trace_id"] for s in workflow} == {request["trace_id"]}
    by_id = {s["span_id"]: s for s in recorded}
    for span in workflow:
        if span is not request:
            assert span["parent_id"] in by_id, f"{span['name']} in {span['process']}: no parent"

    processes = {s["process"] for s in workflow if s["name"].startswith("duro.")}
    assert processes == {"client", "turns-1", "turns-2", "activities"}
    turns = [s for s in workflow if s["name"] == "duro.turn"]
    parent_turns = [t for t in turns if t["attributes"]["duro.instance_id"] == "order"]
    assert {t["parent_id"] for t in parent_turns} == {start["span_id"]}
    assert {t["process"] for t in parent_turns} == {"turns-1", "turns-2"}
    for activity in (s for s in workflow if s["name"] == "duro.activity"):
        assert activity["process"] == "activities"
        assert by_id[activity["parent_id"]]["name"] == "duro.turn"
    child_turns = [t for t in turns if t["attributes"]["duro.instance_id"] == "order-child"]
    assert child_turns
    assert all(by_id[t["parent_id"]] in parent_turns for t in child_turns)
    # After the restart the event's turn still hangs under the client's start, linked to the
    # raise_event span that sent the event.
    assert any(t["process"] == "turns-2" for t in parent_turns)
    executions = [s for s in workflow if s["name"] == "duro.orchestration"]
    assert sorted(s["attributes"]["duro.instance_id"] for s in executions) == [
        "order",
        "order-child",
    ]


def _describe(span: Any) -> dict[str, Any]:
    from ._process import describe

    described: dict[str, Any] = describe(span, "client")
    return described
