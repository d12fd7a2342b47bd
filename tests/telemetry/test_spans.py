"""Spans for turns and activities once an OpenTelemetry provider is installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_turns_and_activities_get_spans_once_a_provider_is_installed() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tests.telemetry._traced_run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    spans = json.loads(run.stdout)
    assert [s["name"] for s in spans] == ["duro.turn", "duro.activity", "duro.turn"]
    final_turn = spans[2]["attributes"]
    assert final_turn == {
        "duro.instance_id": "traced-1",
        "duro.execution_id": 1,
        "duro.messages": 1,  # the activity's result
    }
    assert spans[1]["attributes"] == {
        "duro.instance_id": "traced-1",
        "duro.activity": "double",
        "duro.attempt": 1,
    }
