"""The global OpenTelemetry providers are picked up even when installed after the runtime
started (they are looked up per turn and activity, not once)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_global_providers_installed_after_the_runtime_started_are_used() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tests.telemetry._late_sdk"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    recorded = json.loads(run.stdout)
    assert sorted(recorded["spans"]) == [
        "duro.activity",
        "duro.orchestration",
        "duro.start_orchestration",
        "duro.turn",
        "duro.turn",
    ]
    assert {
        "duro.orchestration.turns",
        "duro.orchestration.completed",
        "duro.activity.executions",
        "duro.store.operation.duration",
        "duro.queue.depth",
        "duro.runtime.in_flight",
    } <= set(recorded["metrics"])
