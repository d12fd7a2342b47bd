"""The golden history file format: one execution of one instance per file.

``tests/histories/<name>.json``::

    {
     "orchestration": "trip_saga",
     "instance_id": "trip-7",
     "execution_id": 1,
     "status": "running" | "completed" | "failed" | "continued_as_new",
     "ended_by": null | "replay" | "terminate",
     "events": [
      {"type":"OrchestrationStarted", ...},
      ...
     ]
    }

``status`` is the state replaying ``events`` leaves the execution in. For a terminal status
the last event is the terminal one and ``ended_by`` says who wrote it:

* ``"replay"``: the engine reproduces it by replaying the events before it (the code returned,
  raised or continued as new; a cancel request; a nondeterminism or unregistered-name failure).
* ``"terminate"``: the runtime ended the instance from outside the code
  (``duro._engine.terminate``, for a poison message); replaying the events before it must leave
  the code running.

A continue-as-new is two files, one per execution (``order_mailbox_1``, ``order_mailbox_2``).
Events are written one per line with payloads byte-exact. Do not reformat the files: replay
compares activity and child inputs as bytes, so a payload re-indented by a JSON pretty-printer
no longer matches what the code sends.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from duro._history import HistoryEvent, encode_event
from duro._status import ErrorInfo, ExecutionStatus

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
REPO = HISTORIES.parent.parent


class GoldenHistory(msgspec.Struct, frozen=True, kw_only=True):
    orchestration: str
    instance_id: str
    execution_id: int
    status: ExecutionStatus
    ended_by: str | None
    events: list[HistoryEvent]

    @property
    def terminal(self) -> HistoryEvent | None:
        return self.events[-1] if self.status.is_terminal else None

    @property
    def before_terminal(self) -> list[HistoryEvent]:
        """The events replay runs on: all of them, or all but the terminal one."""
        return self.events[:-1] if self.status.is_terminal else self.events

    def to_json(self) -> str:
        header = [
            f"{json.dumps(key)}: {json.dumps(value)}"
            for key, value in (
                ("orchestration", self.orchestration),
                ("instance_id", self.instance_id),
                ("execution_id", self.execution_id),
                ("status", self.status.value),
                ("ended_by", self.ended_by),
            )
        ]
        events = ",\n  ".join(encode_event(_portable(e)).decode() for e in self.events)
        return "{\n " + ",\n ".join(header) + f',\n "events": [\n  {events}\n ]\n}}\n'

    @classmethod
    def load(cls, name: str) -> GoldenHistory:
        # msgspec, not json: payloads stay the exact bytes the file holds.
        return msgspec.json.decode((HISTORIES / f"{name}.json").read_bytes(), type=cls)


def golden_names() -> list[str]:
    return sorted(p.stem for p in HISTORIES.glob("*.json"))


def _portable(event: HistoryEvent) -> HistoryEvent:
    """Tracebacks name files by absolute path; keep the files stable across checkouts."""
    error = getattr(event, "error", None)
    if not isinstance(error, ErrorInfo) or not error.details:
        return event
    details = error.details.replace(f"{REPO}/", "")
    return msgspec.structs.replace(event, error=msgspec.structs.replace(error, details=details))
