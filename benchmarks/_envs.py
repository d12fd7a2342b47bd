"""Virtual environments the benchmark creates on demand, never duro's own dependencies.

- ``benchmarks/.peers/<peer>``: one per peer, holding exactly the pinned peer package.
- ``benchmarks/.venv-tools``: matplotlib for the chart, py-spy for profiling.

All are gitignored (``benchmarks/.gitignore``) and rebuilt when missing or pinned differently.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PEERS_DIR = BENCH_DIR / ".peers"
TOOLS_VENV = BENCH_DIR / ".venv-tools"


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    name: str
    package: str
    version: str
    module: str
    """The workload script, run as ``python -m`` from the repository root."""
    configs: tuple[str, ...]

    @property
    def venv(self) -> Path:
        return PEERS_DIR / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


# The versions peers.md measured; its configurations are named in each workload script.
PEERS: dict[str, Peer] = {
    "duroxide": Peer(
        name="duroxide",
        package="duroxide",
        version="0.2.2",
        module="benchmarks.peers.duroxide_workloads",
        configs=("default", "poll10"),
    ),
    "dbos": Peer(
        name="dbos",
        package="dbos",
        version="3.4.0",
        module="benchmarks.peers.dbos_workloads",
        configs=("async-default", "async-tuned"),
    ),
}


def _installed_version(python: Path, package: str) -> str | None:
    if not python.exists():
        return None
    proc = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _base_python() -> str:
    # A venv made from inside duro's venv would still be a clean venv, but start from the
    # base interpreter so nothing of duro's environment can leak in.
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure_venv(venv: Path, requirements: list[str], probe: tuple[str, str | None]) -> Path:
    """Create ``venv`` and pip-install ``requirements`` unless ``probe`` (package, version;
    None: any version) is already installed there. Returns the venv's python."""
    python = venv / "bin" / "python"
    installed = _installed_version(python, probe[0])
    if installed is not None and probe[1] in (None, installed):
        return python
    print(
        f"  setting up {venv.relative_to(REPO_ROOT)}: pip install {' '.join(requirements)}",
        flush=True,
    )
    if not python.exists():
        subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
        check=True,
    )
    return python


def ensure_peer(peer: Peer) -> Path:
    return ensure_venv(peer.venv, [f"{peer.package}=={peer.version}"], (peer.package, peer.version))


def ensure_tools() -> Path:
    """The benchmark-only tool venv: matplotlib (chart) and py-spy (profiling)."""
    return ensure_venv(TOOLS_VENV, ["matplotlib", "py-spy"], ("py-spy", None))
