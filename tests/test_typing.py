"""User code type-checks: samples, the README and every Python block in the docs pass
``mypy --strict`` and ``pyright --strict``, the typed API infers what
``tests/typing/typed_api.py`` asserts, and the deliberate mistakes of
``tests/typing/type_errors.py`` are flagged, line by line.

Each checker runs once per module over everything (mypy about 5 s cold and under a second
warm, pyright about 5 s); each test reads its part of the report. pyright is there because it
finds what mypy does not (partly unknown types, optional members, deprecated APIs). The mypy
cache and the extracted blocks live in ``.mypy_cache/typecheck-tests`` (ignored by git).
"""

from __future__ import annotations

import ast
import json
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
mypy_path = {stubs}:{named}

"""

PYRIGHT_CONFIG = {
    "typeCheckingMode": "strict",
    "pythonVersion": "3.11",
    "reportMissingModuleSource": False,
}


@dataclass(frozen=True, slots=True)
class Finding:
    path: Path
    line: int
    message: str
    code: str | None


@dataclass(frozen=True, slots=True)
class Report:
    checker: str
    errors: dict[Path, list[Finding]]
    blocks: dict[Path, Block]
    """Module file written for a docs block -> the block."""
    output: str

    def in_tree(self, root: Path) -> list[Finding]:
        return [
            f for path, found in self.errors.items() if path.is_relative_to(root) for f in found
        ]


@pytest.fixture(scope="module")
def sources() -> tuple[list[Path], dict[Path, Block], dict[Path, list[Finding]]]:
    """Write the docs blocks as modules: the paths to check, block by module, syntax errors."""
    # A fixed place, not a fresh temporary directory: mypy's cache remembers each module's
    # path and reports cached errors under it.
    root = CACHE / "src"
    shutil.rmtree(root, ignore_errors=True)
    package = root / "docblocks"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    named = root / "docmodules"  # the "# orders.py" blocks, importable by that name
    named.mkdir()
    blocks: dict[Path, Block] = {}
    syntax: dict[Path, list[Finding]] = defaultdict(list)
    for block in all_blocks():
        if block.filename:
            (named / block.filename).write_text(block.code)
        module = (package / f"{block.module_name}.py").resolve()
        text = block.module_text()
        blocks[module] = block
        try:
            ast.parse(text)
        except SyntaxError as exc:  # a checker would stop at it and check nothing else
            syntax[module].append(Finding(module, exc.lineno or 0, exc.msg, "syntax"))
            continue
        module.write_text(text)
    return [REPO / "samples", TYPING, package], blocks, syntax


@pytest.fixture(scope="module", params=["mypy", "pyright"])
def report(
    request: pytest.FixtureRequest,
    sources: tuple[list[Path], dict[Path, Block], dict[Path, list[Finding]]],
) -> Report:
    targets, blocks, syntax = sources
    run = _run_mypy if request.param == "mypy" else _run_pyright
    errors, output = run(targets)
    for path, found in syntax.items():
        errors.setdefault(path, []).extend(found)
    return Report(request.param, errors, blocks, output)


def _run_mypy(targets: list[Path]) -> tuple[dict[Path, list[Finding]], str]:
    config = CACHE / "mypy.ini"
    config.write_text(
        MYPY_CONFIG.format(
            cache=CACHE, stubs=REPO / "tests" / "docstubs", named=CACHE / "src" / "docmodules"
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), *map(str, targets)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode not in (0, 1) or result.stderr.strip():
        pytest.fail(f"mypy did not run: {result.returncode}\n{result.stderr}\n{result.stdout}")
    errors: dict[Path, list[Finding]] = defaultdict(list)
    for line in result.stdout.splitlines():
        match = _LINE.match(line)
        if match is None or match["severity"] != "error":
            continue
        path = Path(match["path"]).resolve()
        errors[path].append(Finding(path, int(match["line"]), match["message"], match["code"]))
    return dict(errors), result.stdout


def _run_pyright(targets: list[Path]) -> tuple[dict[Path, list[Finding]], str]:
    pytest.importorskip("pyright", reason="pyright is a dev dependency: pip install -e .[dev]")
    config = CACHE / "pyrightconfig.json"
    paths = [REPO, REPO / "tests" / "docstubs", CACHE / "src" / "docmodules"]
    settings = {**PYRIGHT_CONFIG, "extraPaths": [str(p) for p in paths]}
    config.write_text(json.dumps(settings))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyright",
            "--outputjson",
            "--pythonpath",
            sys.executable,
            "-p",
            str(config),
            *map(str, targets),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        diagnostics = json.loads(result.stdout)["generalDiagnostics"]
    except (ValueError, KeyError):
        pytest.fail(f"pyright did not run: {result.returncode}\n{result.stderr}\n{result.stdout}")
    errors: dict[Path, list[Finding]] = defaultdict(list)
    for item in diagnostics:
        if item["severity"] != "error":
            continue
        path = Path(item["file"]).resolve()
        line = item["range"]["start"]["line"] + 1
        errors[path].append(Finding(path, line, item["message"], item.get("rule")))
    return dict(errors), result.stdout


def _listing(findings: list[Finding]) -> str:
    return "\n".join(
        f"{f.path.relative_to(REPO) if f.path.is_relative_to(REPO) else f.path}:{f.line}: "
        f"{f.message} [{f.code}]"
        for f in findings
    )


def test_samples_pass_the_checker_in_strict_mode(report: Report) -> None:
    found = report.in_tree(REPO / "samples")
    if found:
        pytest.fail(_listing(found), pytrace=False)


def test_every_python_block_in_the_readme_and_docs_passes_the_checker(
    report: Report,
) -> None:
    problems = [
        f"{block.source}:{block.source_line(f.line)}: {f.message} [{f.code}]"
        for module, block in report.blocks.items()
        for f in report.errors.get(module, [])
    ]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_typed_api_infers_the_asserted_types(report: Report) -> None:
    found = report.errors.get((TYPING / "typed_api.py").resolve(), [])
    if found:
        pytest.fail(_listing(found), pytrace=False)


def test_type_checker_flags_each_deliberate_mistake_and_nothing_else(report: Report) -> None:
    path = (TYPING / "type_errors.py").resolve()
    expected = {
        (number, match["code"])
        for number, text in enumerate(path.read_text().splitlines(), start=1)
        if (match := _EXPECTED.search(text)) is not None
    }
    found = report.errors.get(path, [])
    assert len(expected) >= 15
    if report.checker == "mypy":
        reported = {(f.line, f.code) for f in found}
    else:  # pyright names its rules differently: the lines must match
        expected = {(line, None) for line, _ in expected}
        reported = {(f.line, None) for f in found}
    assert sorted(reported - expected) == [], "flagged but not marked"
    assert sorted(expected - reported) == [], "marked but not flagged"


def test_every_markdown_file_under_docs_is_checked() -> None:
    files = set(markdown_files())
    assert set((REPO / "docs").rglob("*.md")) <= files
    assert REPO / "README.md" in files


def test_importable_file_names_of_docs_blocks_are_unique() -> None:
    # Other blocks import these by name; conftest.py and test files are never imported.
    names = [
        name
        for block in all_blocks()
        if (name := block.filename) and name != "conftest.py" and not name.startswith("test_")
    ]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


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
    assert second.source_line(3) == 10  # after the pyright header and the prelude line
    assert second.source_line(2) == 0  # a prelude line
