"""The engine is pure: importing it pulls in no I/O library and no provider."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ["anyio", "httpx", "sqlite3", "duro.providers", "duro._runtime", "duro._client"]


def test_engine_imports_no_io_and_no_provider() -> None:
    code = (
        "import sys, duro._engine\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    # duro/__init__ imports everything, so load the engine package without running it.
    out = subprocess.run(
        [sys.executable, "-c", _isolated(code)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def _isolated(code: str) -> str:
    """Run ``code`` with a stub ``duro`` package so ``duro/__init__.py`` is not executed."""
    return (
        "import sys, types, pathlib, importlib.util\n"
        "spec = importlib.util.find_spec('duro')\n"
        "pkg = types.ModuleType('duro')\n"
        "pkg.__path__ = list(spec.submodule_search_locations)\n"
        "sys.modules['duro'] = pkg\n" + code
    )
