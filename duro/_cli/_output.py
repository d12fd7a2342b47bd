"""Where a command's result goes: one JSON document for scripts, or tables for people.

Human output uses ``rich`` (the ``cli`` extra): tables fit the terminal's width, states are
coloured only when writing to a terminal (and never with ``NO_COLOR``), and long operations
show a progress bar on stderr when it is a terminal. ``--json`` needs nothing beyond duro.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._status import State
from ._errors import CliError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

_PIPE_WIDTH = 1000
MIN_WIDTHS = {"INSTANCE": 12, "NAME": 8, "STATE": 9, "EVENT": 12, "DETAIL": 12, "RESULT": 12}
"""In a narrow terminal every column folds onto more lines, but these never get narrower."""

STATE_STYLES = {
    State.PENDING: "yellow",
    State.RUNNING: "cyan",
    State.COMPLETED: "green",
    State.FAILED: "bold red",
    State.NOT_FOUND: "dim",
}


def _rich() -> Any:
    try:
        import rich
    except ImportError:
        raise CliError(
            "tables need the cli extra: pip install 'duro[cli]' (or pass --json)"
        ) from None
    return rich


class Output:
    """One command's output: ``as_json`` prints exactly one JSON document on stdout."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        self._console: Console | None = None
        self._errors: Console | None = None

    # -- JSON ------------------------------------------------------------------------------------

    def json(self, document: object) -> None:
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    # -- people ----------------------------------------------------------------------------------

    @property
    def console(self) -> Console:
        if self._console is None:
            _rich()
            from rich.console import Console

            console = Console(highlight=False, soft_wrap=False)
            if not console.is_terminal and "COLUMNS" not in os.environ:
                # No terminal to fit: keep every row on one line for grep and friends.
                console = Console(highlight=False, soft_wrap=False, width=_PIPE_WIDTH)
            self._console = console
        return self._console

    def line(self, text: str | Text = "") -> None:
        self.console.print(text)

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str | Text]],
        *,
        title: str = "",
        optional: Sequence[str] = (),
    ) -> None:
        """Aligned columns that fit the console: the ``optional`` columns go first (in that
        order) when the rest would not fit on one line each, then cells fold, never cut."""
        _rich()
        from rich import box
        from rich.table import Table

        keep = list(range(len(headers)))
        natural = [max([len(headers[i]), *(len(str(row[i])) for row in rows)]) for i in keep]
        for name in optional:
            if sum(natural[i] for i in keep) + 3 * (len(keep) - 1) <= self.console.width:
                break
            if name in headers:
                keep.remove(headers.index(name))
        table = Table(
            title=title or None,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            highlight=False,
        )
        for i in keep:
            table.add_column(headers[i], overflow="fold", min_width=MIN_WIDTHS.get(headers[i]))
        for row in rows:
            table.add_row(*(row[i] for i in keep))
        self.console.print(table)

    def fields(self, pairs: Sequence[tuple[str, str | Text]]) -> None:
        """A two-column key/value table."""
        _rich()
        from rich.table import Table

        table = Table(box=None, show_header=False, pad_edge=False, highlight=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in pairs:
            table.add_row(key, value)
        self.console.print(table)

    def state(self, state: State) -> Text:
        from rich.text import Text

        return Text(state.value, style=STATE_STYLES.get(state, ""))

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Any]:
        """A progress bar on stderr for ``total`` steps (None: not known in advance; call
        ``advance()`` on what this yields); nothing when stderr is no terminal, with
        ``--json``, or for one step."""
        if self.as_json or (total is not None and total < 2):
            yield _NoProgress()
            return
        _rich()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        if self._errors is None:
            self._errors = Console(stderr=True)
        if not self._errors.is_terminal:
            yield _NoProgress()
            return
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=self._errors,
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=total)
            yield _Advance(bar, task)


class _NoProgress:
    def advance(self) -> None:
        pass


class _Advance:
    def __init__(self, bar: Any, task: Any) -> None:
        self._bar = bar
        self._task = task

    def advance(self) -> None:
        self._bar.advance(self._task)


def when(value: datetime | None) -> str:
    """Local time for people (no time zone clutter), blank when unknown."""
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def iso(value: datetime | None) -> str | None:
    """UTC ISO 8601 for scripts."""
    return None if value is None else value.isoformat()
