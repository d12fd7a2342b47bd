"""User code type-checks: samples, the README and every Python block in the docs pass
``mypy --strict``, the typed API infers what ``tests/typing/typed_api.py`` asserts, and the
deliberate mistakes of ``tests/typing/type_errors.py`` are flagged, line by line.

mypy runs once per module over everything (about 5 s cold, under a second warm); each test
reads its part of the report. Its cache and the extracted blocks live in
``.mypy_cache/typecheck-tests`` (ignored by git).
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from .docblocks import REPO, Block, all_blocks, blocks_of, markdown_files

TYPING = REPO / "tests" / "typing"
CACHE = REPO / ".mypy_cache" / "typecheck-tests"
_LINE = re.compile(
    r"^(?P<path>.+?):(?P<line>\d+): (?P<severity>error|note): (?P<message>.*?)"
    r"(?:  \[(?P<code>[a-z0-9-]+)\])?$"
)
_EXPECTED = re.compile(r"#\s*E:\s*(?P<code>[a-z0-9-]+)")

MYPY_CONFIG = """\
[mypy]
python_version = 3.11
strict = True
warn_unused_ignores = True
show_error_codes = True
show_absolute_path = True
pretty = False
error_summary = False
cache_dir = {cache}
mypy_path = {stubs}

[mypy-docblocks.*]
disable_error_code = top-level-await
"""


@dataclass(frozen=True, slots=True)
class Finding:
    path: Path
    line: int
    message: str
    code: str | None


@dataclass(frozen=True, slots=True)
class Report:
    errors: dict[Path, list[Finding]]
    blocks: dict[Path, Block]
    """Module file written for a docs block -> the block."""
    output: str

    def in_tree(self, root: Path) -> list[Finding]:
        return [
            f for path, found in self.errors.items() if path.is_relative_to(root) for f in found
        ]


@pytest.fixture(scope="module")
def mypy_report() -> Report:
    # A fixed place, not a fresh temporary directory: mypy's cache remembers each module's
    # path and reports cached errors under it.
    root = CACHE / "src"
    shutil.rmtree(root, ignore_errors=True)
    package = root / "docblocks"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    blocks: dict[Path, Block] = {}
    errors: dict[Path, list[Finding]] = defaultdict(list)
    for block in all_blocks():
        module = (package / f"{block.module_name}.py").resolve()
        text = block.module_text()
        blocks[module] = block
        try:
            ast.parse(text)
        except SyntaxError as exc:  # mypy would stop at it and check nothing else
            errors[module].append(Finding(module, exc.lineno or 0, exc.msg, "syntax"))
            continue
        module.write_text(text)
    config = root / "mypy.ini"
    config.write_text(MYPY_CONFIG.format(cache=CACHE, stubs=REPO / "tests" / "docstubs"))
    targets = [str(REPO / "samples"), str(TYPING), str(package)]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), *targets],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode not in (0, 1) or result.stderr.strip():
        pytest.fail(f"mypy did not run: {result.returncode}\n{result.stderr}\n{result.stdout}")
    for line in result.stdout.splitlines():
        match = _LINE.match(line)
        if match is None or match["severity"] != "error":
            continue
        path = Path(match["path"]).resolve()
        errors[path].append(Finding(path, int(match["line"]), match["message"], match["code"]))
    return Report(dict(errors), blocks, result.stdout)


def _listing(findings: list[Finding]) -> str:
    return "\n".join(
        f"{f.path.relative_to(REPO) if f.path.is_relative_to(REPO) else f.path}:{f.line}: "
        f"{f.message} [{f.code}]"
        for f in findings
    )


def test_samples_pass_mypy_strict(mypy_report: Report) -> None:
    found = mypy_report.in_tree(REPO / "samples")
    if found:
        pytest.fail(_listing(found), pytrace=False)


def test_every_python_block_in_the_readme_and_docs_passes_mypy_strict(
    mypy_report: Report,
) -> None:
    problems = [
        f"{block.source}:{block.source_line(f.line)}: {f.message} [{f.code}]"
        for module, block in mypy_report.blocks.items()
        for f in mypy_report.errors.get(module, [])
    ]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_typed_api_infers_the_asserted_types(mypy_report: Report) -> None:
    found = mypy_report.errors.get((TYPING / "typed_api.py").resolve(), [])
    if found:
        pytest.fail(_listing(found), pytrace=False)


def test_type_checker_flags_each_deliberate_mistake_and_nothing_else(
    mypy_report: Report,
) -> None:
    path = (TYPING / "type_errors.py").resolve()
    expected = {
        (number, match["code"])
        for number, text in enumerate(path.read_text().splitlines(), start=1)
        if (match := _EXPECTED.search(text)) is not None
    }
    reported = {(f.line, f.code) for f in mypy_report.errors.get(path, [])}
    assert len(expected) >= 15
    assert sorted(reported - expected) == [], "flagged but not marked"
    assert sorted(expected - reported) == [], "marked but not flagged"


def test_every_markdown_file_under_docs_is_checked() -> None:
    files = set(markdown_files())
    assert set((REPO / "docs").rglob("*.md")) <= files
    assert REPO / "README.md" in files


def test_blocks_keep_their_markdown_line_and_take_the_preludes_before_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tests.docblocks.REPO", tmp_path)
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n"
        "<!-- typecheck-prelude\n"
        "import duro\n"
        "-->\n"
        "```python\n"
        "x = 1\n"
        "```\n"
        "- a list item:\n"
        "  ```py\n"
        "  y = duro.Registry()\n"
        "  ```\n"
        "```text\n"
        "not python\n"
        "```\n"
    )
    first, second = blocks_of(page)
    assert (first.line, first.code, first.prelude) == (6, "x = 1\n", "import duro\n")
    assert (second.line, second.code) == (10, "y = duro.Registry()\n")
    assert second.source_line(2) == 10
    assert second.source_line(1) == 0  # a prelude line
