"""Every sample runs, as a user runs it (``python -m samples.<name>``), and ends as it says.

Each sample checks its own results and exits non-zero when they are wrong; these tests run
each one in a fresh process and look for its last line. A sample that is not listed here (or
in ``samples/README.md``) fails the suite. Below, the samples' workflows also run on a
``WorkflowEnvironment`` with their real durations (days), which take milliseconds there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import duro
from duro.testing import WorkflowEnvironment
from samples import approval_workflow, durable_timer, retries, saga

REPO = Path(__file__).resolve().parent.parent.parent
SAMPLES = REPO / "samples"
COSMOS_CLI = (
    REPO / "tests" / "cosmos_server" / "node_modules" / "@vercel" / "cosmosdb-server" / "lib"
)

RUNS: dict[str, tuple[list[str], str]] = {
    "hello": ([], "inst-1: completed -> 'Hello, Python!'"),
    "demo": ([], "activity results reported"),
    "chaining": ([], "write_draft -> proofread -> publish"),
    "fan_out_fan_in": ([], "'total': 13"),
    "approval_workflow": ([], "expense-2: completed -> escalated"),
    "durable_timer": (["--seconds", "0.5"], "trial-ada completed -> 'reminded ada'"),
    "saga": ([], "trip-bob: failed"),
    "retries": ([], "charge: InvalidCard after 1 attempt(s)"),
    "rewind": ([], "order-1: completed after rewind -> ['reserved 2 x mug', 'charged 24']"),
    "schedules": ([], "digest: paused; digest-now -> 'digest for ops'"),
    "cancellation": ([], "report-1: failed, Cancelled"),
    "sub_orchestrations": ([], "order-7-flooded failed: ActivityFailedError"),
    "mailbox_counter": ([], "account-1: completed, total 280"),
    "tagged_workers": ([], "on gpu-box"),
    "sessions": ([], "session cy: all on"),
    "durable_kv": ([], "checked out: {'mug': 1}"),
    "cosmos_worker": (["--local-server", "--start", "2"], "completed -> 'Hello, hello-"),
}


def _run(module: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", f"samples.{module}", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("module", sorted(RUNS))
def test_sample_runs_and_ends_as_it_says(module: str) -> None:
    if module == "cosmos_worker" and (shutil.which("node") is None or not COSMOS_CLI.is_dir()):
        pytest.skip("needs Node.js and npm ci --prefix tests/cosmos_server")
    args, expected = RUNS[module]
    result = _run(module, args)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert expected in result.stdout, result.stdout


def test_every_sample_is_run_here_and_listed_in_the_samples_readme() -> None:
    modules = {p.stem for p in SAMPLES.glob("*.py") if p.stem != "__init__"}
    assert modules == set(RUNS)
    readme = (SAMPLES / "README.md").read_text()
    assert [m for m in sorted(modules) if f"samples.{m}" not in readme] == []


# -- the same workflows with their real durations, on virtual time -----------------------------


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.mark.anyio
async def test_approval_escalates_after_two_days_and_is_approved_within_them() -> None:
    request = approval_workflow.Request("ada", 120)  # answer_within: two days
    async with WorkflowEnvironment(approval_workflow.registry) as env:
        start = env.clock.now_ms()
        await env.client.start_orchestration("late", approval_workflow.approval_workflow, request)
        late = await env.client.wait_for_orchestration("late", timeout=5, output_type=str)
        assert env.clock.now_ms() - start == 2 * 24 * 3600 * 1000

        await env.client.start_orchestration(
            "on-time", approval_workflow.approval_workflow, request
        )
        decision = approval_workflow.Decision(approved=False, by="grace")
        await env.client.raise_event("on-time", "approval", decision)
        on_time = await env.client.wait_for_orchestration("on-time", timeout=5, output_type=str)
    assert (late.output, on_time.output) == ("escalated", "rejected")


@pytest.mark.anyio
async def test_a_thirty_day_trial_reminder_fires_after_thirty_days() -> None:
    trial = durable_timer.Trial("ada", timedelta(days=30).total_seconds())
    async with WorkflowEnvironment(durable_timer.registry) as env:
        env.mock_activity(durable_timer.send_email, lambda ctx, text: None)
        start = env.clock.now_ms()
        await env.client.start_orchestration("trial", durable_timer.trial_reminder, trial)
        status = await env.client.wait_for_orchestration("trial", timeout=5, output_type=str)
    assert status.output == "reminded ada"
    assert env.clock.now_ms() - start == 30 * 24 * 3600 * 1000


@pytest.mark.anyio
async def test_retries_back_off_and_time_out_on_virtual_time() -> None:
    async with WorkflowEnvironment(retries.registry) as env:
        start = env.clock.now_ms()
        await env.client.start_orchestration("r", retries.integrate, "r")
        status = await env.client.wait_for_orchestration("r", timeout=5)
    assert status.output["slow"] == "r: ok on attempt 2"
    # Back-off 100 ms + 200 ms for the flaky call; for the slow one a 500 ms attempt timeout,
    # then 100 ms of back-off: virtual time, to the millisecond.
    assert env.clock.now_ms() - start == 100 + 200 + 500 + 100


@pytest.mark.anyio
async def test_saga_compensates_in_reverse_order() -> None:
    cancelled: list[str] = []
    async with WorkflowEnvironment(saga.registry) as env:
        env.mock_activity(saga.cancel_booking, lambda ctx, ref: cancelled.append(ref) or ref)
        await env.client.start_orchestration("trip", saga.book_trip, saga.Trip("bob"))
        status = await env.client.wait_for_orchestration("trip", timeout=5)
    assert status.state is duro.State.FAILED
    assert cancelled == ["HO-bob", "FL-bob"]
