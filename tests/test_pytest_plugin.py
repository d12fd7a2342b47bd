"""The opt-in pytest plugin, run the way a user runs it: a separate pytest session on a project
of its own, with the plugin enabled from its conftest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CONFTEST = """
import pytest
import duro

pytest_plugins = ["duro.testing.pytest_plugin"]

registry = duro.Registry()


@registry.activity
async def greet(ctx: duro.ActivityContext, name: str) -> str:
    return f"Hello, {name}!"


@registry.orchestration
async def reminder(ctx: duro.OrchestrationContext, name: str) -> str:
    await ctx.schedule_timer(30 * 24 * 3600)
    return await ctx.schedule_activity(greet, name)


@pytest.fixture
def duro_registry() -> duro.Registry:
    return registry
"""

TESTS = """
import anyio
import duro
from duro.testing import WorkflowEnvironment
from conftest import reminder


async def test_reminder(duro_env: WorkflowEnvironment, anyio_backend: str) -> None:
    await duro_env.client.start_orchestration("r-1", reminder, "Ada")
    status = await duro_env.client.wait_for_orchestration("r-1", timeout=5)
    assert status.output == "Hello, Ada!"
    assert anyio_backend in ("asyncio", "trio")
"""


def _run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _project(tmp_path: Path, conftest: str = CONFTEST, ini: str = "") -> Path:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(conftest))
    (tmp_path / "test_workflows.py").write_text(textwrap.dedent(TESTS))
    (tmp_path / "pytest.ini").write_text(f"[pytest]\nfilterwarnings = error\n{ini}")
    return tmp_path


def test_duro_env_runs_each_test_on_asyncio_and_trio_without_a_marker(tmp_path: Path) -> None:
    result = _run(_project(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_reminder[asyncio] PASSED" in result.stdout
    assert "test_reminder[trio] PASSED" in result.stdout


def test_the_backends_are_configurable(tmp_path: Path) -> None:
    result = _run(_project(tmp_path, ini="duro_backends = asyncio\n"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout and "[trio]" not in result.stdout


def test_a_missing_registry_fixture_is_explained(tmp_path: Path) -> None:
    conftest = CONFTEST.replace("def duro_registry", "def not_the_registry")
    result = _run(_project(tmp_path, conftest))
    assert result.returncode != 0
    assert "define a fixture `duro_registry`" in result.stdout + result.stderr
