"""The replay checker: does changed code still replay recorded histories?

Temporal calls this a replayer. Export the histories of running instances
(``Client.export_history``), keep them with the code, and run ``replay_all`` in CI: a change
that running instances could not replay fails the build instead of failing instances after
the deployment.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

from .._engine import check_replay
from .._history import HistoryEvent
from .._history_file import HistoryFile
from .._registry import Registry
from .._status import ExecutionStatus

History = HistoryFile | Sequence[HistoryEvent] | str | os.PathLike[str]
"""What ``replay`` takes: an export, its file, or events from ``Client.get_history``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayResult:
    """A history the current code replays without a divergence."""

    instance_id: str
    orchestration: str
    version: str
    """The orchestration version the history runs (and the code replayed)."""
    status: ExecutionStatus
    """Where the recorded execution stood: running, or how it ended."""
    events: int
    """Recorded events replayed."""
    next_steps: list[HistoryEvent] = field(default_factory=list)
    """For a running history, the durable calls (and ending) the current code would make next
    (new work after the end of history is allowed, as on a worker)."""
    source: Path | None = None
    """The file it was read from, if any."""


@overload
def replay(registry: Registry, history: HistoryFile | str | os.PathLike[str]) -> ReplayResult: ...
@overload
def replay(
    registry: Registry,
    history: Sequence[HistoryEvent],
    *,
    instance_id: str,
    execution_id: int = 1,
) -> ReplayResult: ...


def replay(
    registry: Registry,
    history: History,
    *,
    instance_id: str | None = None,
    execution_id: int = 1,
) -> ReplayResult:
    """Replay one recorded history against the code registered in ``registry``.

    ``history`` is a ``HistoryFile``, the path of one (``HistoryFile.write``), or the events of
    one execution (``await client.get_history(instance_id)``) with the ``instance_id`` (and
    ``execution_id``) they belong to: default sub-orchestration ids and ``ctx.new_guid()``
    derive from them. Raises ``duro.NondeterminismError`` naming the position, the recorded
    and the requested step when the code no longer matches (also when it now fails where the
    history went on, or no longer ends a finished history the same way);
    ``duro.UnregisteredError`` when the history's orchestration and version are not
    registered; ``duro.PayloadError`` for a file that is not a history export this duro reads.
    Pure: no store, no clock, no activity runs.
    """
    source: Path | None = None
    if isinstance(history, str | os.PathLike):
        source = Path(history)
        history = HistoryFile.read(source)
    if isinstance(history, HistoryFile):
        exported = history
    elif instance_id is None:
        raise TypeError(
            "replay(registry, events) needs instance_id=: default sub-orchestration ids and "
            "ctx.new_guid() derive from it (an exported HistoryFile carries it)"
        )
    else:
        exported = HistoryFile(
            instance_id=instance_id, execution_id=execution_id, events=list(history)
        )
    checked = check_replay(
        registry,
        exported.events,
        instance_id=exported.instance_id,
        execution_id=exported.execution_id,
        kv_snapshot=exported.kv_snapshot(),
    )
    return ReplayResult(
        instance_id=exported.instance_id,
        orchestration=checked.name,
        version=checked.version,
        status=exported.status,
        events=checked.events,
        next_steps=checked.next_steps,
        source=source,
    )


def replay_all(
    registry: Registry, directory: str | os.PathLike[str], *, pattern: str = "**/*.json"
) -> list[ReplayResult]:
    """Replay every history file under ``directory`` (``pattern``: all ``.json`` files, in
    subdirectories too) and return the results, in file-name order.

    Every file is checked. If any fails, an ``ExceptionGroup`` of all the failures is raised
    (each one noted with its file), so one CI run lists every instance a change would break.
    ``FileNotFoundError`` if ``directory`` does not exist; ``ValueError`` if it holds no history
    file, so a wrong path cannot pass silently.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"no history directory at {root}")
    files = sorted(p for p in root.glob(pattern) if p.is_file())
    if not files:
        raise ValueError(f"no history files ({pattern}) under {root}")
    results: list[ReplayResult] = []
    failures: list[Exception] = []
    for path in files:
        try:
            results.append(replay(registry, path))
        except Exception as exc:
            exc.add_note(f"history file: {path}")
            failures.append(exc)
    if failures:
        raise ExceptionGroup(
            f"{len(failures)} of {len(files)} histories under {root} do not replay on this code",
            failures,
        )
    return results
