"""The API reference (docs/reference.md) documents every public name and is up to date.

It is generated from the docstrings by ``scripts/api_reference.py``: a public class, function,
method, property or constant without a docstring fails here, and so does a page that was not
regenerated after a docstring or a signature changed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "api_reference", REPO / "scripts" / "api_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("api_reference", module)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_has_a_docstring() -> None:
    assert _generator().undocumented() == []


def test_the_reference_page_is_generated_from_the_current_docstrings() -> None:
    generator = _generator()
    assert generator.OUTPUT.read_text() == generator.render(), (
        "docs/reference.md is stale: run python scripts/api_reference.py"
    )


def test_the_reference_covers_each_namespace_and_the_typed_overloads() -> None:
    page = (REPO / "docs" / "reference.md").read_text()
    for heading in ("## `duro`", "## `duro.testing`", "## `duro.history`", "## `duro_cosmos`"):
        assert heading in page
    assert "### `duro.testing.WorkflowEnvironment`" in page
    assert "-> DurableFuture[R]" in page  # overloads are listed, not only the implementation
