"""Extra runtime processes of a multi-process benchmark cell (``benchmarks._runtime_process``).

The harness process runs the client and one runtime; each extra process runs one more
runtime on the same store and reports its counts when stopped, so a cell's figures cover
every runtime.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

REPO_ROOT = Path(__file__).resolve().parent.parent
_START_S = 60.0
_STOP_S = 30.0


@dataclass
class _Process:
    source: str
    proc: subprocess.Popen[bytes]
    out: Path
    stats: Path


@dataclass
class RuntimeProcesses:
    """Starts runtime processes, waits until each serves, stops them and collects counts."""

    work_dir: str
    processes: list[_Process] = field(default_factory=list)

    def spawn(self, source: str, store_args: list[str], role: str = "all") -> None:
        """Start ``benchmarks._runtime_process`` with ``store_args`` (``--sqlite PATH`` or the
        Cosmos flags); ``source`` names it in logs and in the Cosmos meter."""
        out = Path(self.work_dir) / f"{source}.out"
        stats = Path(self.work_dir) / f"{source}.json"
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "benchmarks._runtime_process",
                    *store_args, "--role", role, "--source", source, "--stats", str(stats),
                ],
                cwd=REPO_ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.processes.append(_Process(source, proc, out, stats))

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + _START_S
        for p in self.processes:
            while b"ready" not in p.out.read_bytes():
                if p.proc.poll() is not None or time.monotonic() > deadline:
                    tail = p.out.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"runtime process {p.source} did not start:\n{tail}")
                await anyio.sleep(0.05)

    async def stop(self) -> dict[str, dict[str, Any]]:
        """SIGTERM every process (graceful), wait, and return what each reported."""
        for p in self.processes:
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
        out: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + _STOP_S
        for p in self.processes:
            while p.proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 (polling a child process)
                await anyio.sleep(0.05)
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()
            if p.stats.exists():
                out[p.source] = json.loads(p.stats.read_text())
        return out
