"""What importing duro costs: optional libraries load only where they are used."""

from __future__ import annotations

import subprocess
import sys

LAZY = ["cryptography", "starlette", "uvicorn", "jinja2"]
"""Loaded only by the code that needs it (payload encryption, ``duro ui``), never by importing
duro."""


def test_importing_every_public_namespace_loads_no_lazy_dependency() -> None:
    code = (
        "import sys\n"
        "import duro, duro.history, duro.providers, duro.testing, duro_cosmos\n"
        f"print(','.join(m for m in {LAZY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
