"""The example projects in the docs work as shown: the named blocks of a page (``# orders.py``,
``# test_orders.py``, ...) are written into a fresh directory and pytest runs their tests, the
way a reader would after copying them (see ``tests/docblocks.py`` for the convention)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .docblocks import REPO, blocks_of, markdown_files

PAGES = [
    page
    for page in markdown_files()
    if any((b.filename or "").startswith("test_") for b in blocks_of(page))
]


def test_the_pages_with_example_projects_are_found() -> None:
    assert {p.name for p in PAGES} >= {"testing.md", "getting-started.md"}


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_the_example_project_of_the_page_passes_its_own_tests(page: Path, tmp_path: Path) -> None:
    files = {b.filename: b.code for b in blocks_of(page) if b.filename}
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout
