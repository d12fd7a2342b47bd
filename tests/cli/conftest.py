"""Run the real ``duro`` console script in a subprocess, with this checkout's duro.

The script pip installs for ``[project.scripts]`` is used when the test environment has it
(``scripts/test.sh`` installs the package, so CI does). An environment whose editable install
predates the script gets the same launcher pip would write, made from ``pyproject.toml``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)  # the whole of stdout is one document


@dataclass(frozen=True)
class Cli:
    """``cli(...)`` runs the console script and returns its exit code and output."""

    command: list[str]
    env: Mapping[str, str]

    def __call__(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        run = subprocess.run(
            [*self.command, *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Result(run.returncode, run.stdout, run.stderr)


def _launcher(folder: Path) -> Path:
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["duro"]
    module, function = entry.split(":")
    script = folder / "duro"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n"
    )
    script.chmod(0o755)
    return script


@pytest.fixture(scope="session")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    installed = Path(sys.executable).parent / "duro"
    if installed.exists() and "duro._cli" in installed.read_text(errors="replace"):
        script = installed
    else:
        script = _launcher(tmp_path_factory.mktemp("bin"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DURO_", "COSMOS_")) and k not in ("COLUMNS", "NO_COLOR")
    }
    env["PYTHONPATH"] = str(ROOT)  # this checkout's duro, whatever the venv points at
    return Cli([str(script)], env)
