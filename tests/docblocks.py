"""The Python code blocks of the Markdown docs, as modules a type checker can read.

Every fenced block tagged ``python`` (or ``py``) in ``README.md``, ``samples/README.md`` and
``docs/**/*.md`` becomes one module, checked by mypy and pyright in strict mode. So a block is
code a reader can paste: ``await`` only inside ``async def`` (pyright cannot allow it at top
level). One convention keeps snippets short and still checkable: an HTML comment
``<!-- typecheck-prelude ... -->`` holds code that is put in front of every later block of
the same file, for names a snippet uses without defining them. It does not show on a rendered
page::

      <!-- typecheck-prelude
      import duro
      registry = duro.Registry()
      -->

A block whose first line is a file name comment (``# orders.py``) is a whole file: it gets no
prelude, other blocks may import it by that name (``from orders import Order``), and
``tests/test_docs_examples.py`` writes the named files of a page into a project and runs the
tests among them with pytest. Importable file names (not ``conftest.py`` or ``test_*.py``)
are unique across the docs. Modules the docs import
only as examples (``mystore``) are stubbed in ``tests/docstubs``. A block that is not meant to
be Python at all (a signature, a shell session) should use another tag (``text``, ``bash``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON_TAGS = {"python", "py", "python3"}
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>[^\n`]*)$")
_PRELUDE_START = "<!-- typecheck-prelude"
_FILENAME = re.compile(r"#\s*([A-Za-z_][A-Za-z0-9_]*\.py)")
PYRIGHT_HEADER = (
    "# pyright: reportUnusedImport=false, reportUnusedVariable=false, "
    "reportUnusedExpression=false, reportUnusedClass=false, reportUnusedFunction=false\n"
)
"""Snippets show one thing each: a name a prelude defines but a snippet does not use, or an
expression shown for its value (``len(ctx.kv)``), is not a mistake there."""


@dataclass(frozen=True, slots=True)
class Block:
    source: Path
    """The Markdown file, relative to the repository."""
    line: int
    """1-based line of the block's first code line in ``source``."""
    prelude: str
    code: str

    @property
    def module_name(self) -> str:
        stem = re.sub(r"\W", "_", str(self.source.with_suffix("")))
        return f"{stem}_line{self.line}"

    @property
    def filename(self) -> str | None:
        """``orders.py`` for a block that starts with the comment ``# orders.py``."""
        first = self.code.split("\n", 1)[0]
        match = _FILENAME.fullmatch(first.strip())
        return None if match is None else match[1]

    def module_text(self) -> str:
        prelude = "" if self.filename else self.prelude
        return PYRIGHT_HEADER + prelude + self.code

    def source_line(self, module_line: int) -> int:
        """The Markdown line of line ``module_line`` of :meth:`module_text` (prelude: 0)."""
        prelude = "" if self.filename else self.prelude
        offset = module_line - PYRIGHT_HEADER.count("\n") - prelude.count("\n")
        return self.line + offset - 1 if offset >= 1 else 0


def markdown_files() -> list[Path]:
    """Every Markdown file whose Python blocks must type-check."""
    files = [REPO / "README.md", REPO / "samples" / "README.md"]
    files += sorted((REPO / "docs").rglob("*.md"))
    return [f for f in files if f.exists()]


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    relative = path.relative_to(REPO)
    prelude = ""
    found: list[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.strip().startswith(_PRELUDE_START):
            end = index + 1
            while end < len(lines) and lines[end].strip() != "-->":
                end += 1
            prelude += "\n".join(lines[index + 1 : end]) + "\n"
            index = end + 1
            continue
        fence = _FENCE.match(line)
        if fence is None:
            index += 1
            continue
        closing = fence["fence"]
        indent = len(fence["indent"])
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(closing):
            end += 1
        tag = (fence["info"].split() or [""])[0].lower()
        if tag in PYTHON_TAGS:
            body = [
                text[indent:] if text[:indent].isspace() else text
                for text in lines[index + 1 : end]
            ]
            found.append(Block(relative, index + 2, prelude, "\n".join(body) + "\n"))
        index = end + 1
    return found


def all_blocks() -> list[Block]:
    return [block for path in markdown_files() for block in blocks_of(path)]
