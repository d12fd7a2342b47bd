"""The history export format: one execution of one instance as a versioned JSON file.

Written by ``Client.export_history(...).write(path)``, read back by ``HistoryFile.read`` and
replayed against changed code by ``duro.testing.replay`` / ``replay_all``. The layout, version
1::

    {
     "format": "duro-history",
     "version": 1,
     "instance_id": "order-42",
     "execution_id": 1,
     "exported_at": "2025-01-31T09:30:00.123000Z",
     "kv": {"total": {"value": 30, "updated_at_ms": 1738315800123}},
     "events": [
      {"type":"OrchestrationStarted","name":"order",...,"event_id":1,"ts":1738315800000},
      {"type":"ActivityScheduled","seq":1,...},
      ...
     ]
    }

``events`` are the stored history events (``duro.history``), one per line, payloads byte for
byte as recorded: replay compares activity and child inputs as bytes, so do not re-indent a
file with a JSON pretty-printer. ``kv`` is the instance's committed durable map when it was
exported: for a running or failed execution the map it started from (replay starts from it,
as a worker does, and replays the execution's own writes from its events); an execution that
completed has merged its writes into it. Stability: a reader of version ``n`` reads every
file of version ``<= n``; new fields get defaults; a file of a newer version is refused with a
``PayloadError`` that says so.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from ._errors import PayloadError
from ._history import (
    ContinuedAsNew,
    HistoryEvent,
    OrchestrationCompleted,
    OrchestrationFailed,
    OrchestrationStarted,
    encode_event,
)
from ._records import KvEntry
from ._status import ExecutionStatus

HISTORY_FORMAT = "duro-history"
"""The ``format`` field of every history export."""
HISTORY_FORMAT_VERSION = 1
"""The export format version this duro writes, and the newest it reads."""


class ExportedKv(msgspec.Struct, frozen=True, kw_only=True):
    """One key of the instance's durable map in an exported history."""

    value: msgspec.Raw
    """The stored JSON, byte for byte."""
    updated_at_ms: int


class _Header(msgspec.Struct, kw_only=True):
    format: str = ""
    version: int = 0


class HistoryFile(msgspec.Struct, frozen=True, kw_only=True):
    """One execution's history as exported: the input of ``duro.testing.replay``.

    ``to_json`` / ``from_json`` convert it, ``write`` / ``read`` put it in a file. The layout is
    documented (and versioned) in ``docs/testing.md``.
    """

    format: str = HISTORY_FORMAT
    version: int = HISTORY_FORMAT_VERSION
    instance_id: str
    execution_id: int = 1
    exported_at: datetime | None = None
    kv: dict[str, ExportedKv] = msgspec.field(default_factory=dict)
    events: list[HistoryEvent]

    @property
    def started(self) -> OrchestrationStarted:
        """The first event: the orchestration's name, version and input."""
        first = self.events[0] if self.events else None
        if not isinstance(first, OrchestrationStarted):
            raise PayloadError(
                f"history of {self.instance_id!r} does not begin with OrchestrationStarted"
            )
        return first

    @property
    def status(self) -> ExecutionStatus:
        """Where the execution stood when exported, read from its last event."""
        last = self.events[-1] if self.events else None
        return _ENDINGS.get(type(last), ExecutionStatus.RUNNING)

    def kv_snapshot(self) -> dict[str, KvEntry]:
        """The durable map as the engine takes it."""
        return {
            key: KvEntry(value=bytes(entry.value), updated_at_ms=entry.updated_at_ms)
            for key, entry in self.kv.items()
        }

    def to_json(self) -> bytes:
        """The file's bytes: a header, then one event per line (payloads untouched)."""
        exported = None if self.exported_at is None else _encode(self.exported_at).decode()
        header: list[tuple[str, Any]] = [
            ("format", self.format),
            ("version", self.version),
            ("instance_id", self.instance_id),
            ("execution_id", self.execution_id),
        ]
        lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in header]
        lines.append(f'"exported_at": {exported or "null"}')
        lines.append(f'"kv": {_encode(self.kv).decode()}')
        events = ",\n  ".join(encode_event(e).decode() for e in self.events)
        body = ",\n ".join(lines)
        return f'{{\n {body},\n "events": [\n  {events}\n ]\n}}\n'.encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> HistoryFile:
        """Read an exported history; ``PayloadError`` if it is not one this duro can read."""
        try:
            header = msgspec.json.decode(data, type=_Header)
        except msgspec.DecodeError as exc:
            raise PayloadError(f"not a duro history export: {exc}") from exc
        if header.format != HISTORY_FORMAT:
            raise PayloadError(
                f"not a duro history export: format is {header.format!r}, "
                f"expected {HISTORY_FORMAT!r}"
            )
        if header.version > HISTORY_FORMAT_VERSION or header.version < 1:
            raise PayloadError(
                f"history export version {header.version} cannot be read by this duro, "
                f"which reads versions 1 to {HISTORY_FORMAT_VERSION}; upgrade duro"
            )
        try:
            # msgspec, not json: payloads stay the exact bytes the file holds.
            return msgspec.json.decode(data, type=cls)
        except msgspec.DecodeError as exc:
            raise PayloadError(f"history export cannot be decoded: {exc}") from exc

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the file (parents are created); returns its path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.to_json())
        return target

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> HistoryFile:
        """Read a file written by :meth:`write`."""
        return cls.from_json(Path(path).read_bytes())


_encoder = msgspec.json.Encoder()
_encode = _encoder.encode

_ENDINGS: dict[type[Any], ExecutionStatus] = {
    OrchestrationCompleted: ExecutionStatus.COMPLETED,
    OrchestrationFailed: ExecutionStatus.FAILED,
    ContinuedAsNew: ExecutionStatus.CONTINUED_AS_NEW,
}
