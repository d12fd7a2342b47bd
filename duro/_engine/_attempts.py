"""How the activity attempts that ended in a turn ended, as the orchestration saw them.

Telemetry for the shell (``duro.activity.executions``), never stored. An attempt is noted
when the turn records what ended it: its completion or failure arriving, or its cancellation
(a select loser, a cancelled branch, work withdrawn when the execution ends). Replay records
nothing, so nothing is noted twice. The retry loop of ``schedule_activity(retry=...)``
refines a failure it retries into ``retried`` and an attempt it gave up waiting for into
``timed_out``.
"""

from __future__ import annotations

import enum


class AttemptOutcome(enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    """Failed, and nothing retries it: the orchestration sees the error."""
    RETRIED = "retried"
    """Failed, and its retry policy schedules another attempt."""
    CANCELLED = "cancelled"
    """Withdrawn before it reported: a select loser, a cancelled branch, the execution ended."""
    TIMED_OUT = "timed_out"
    """Its retry policy's ``attempt_timeout`` passed first; the attempt was withdrawn."""


class Attempts:
    """This turn's ended attempts, by the seq of their ``ActivityScheduled``."""

    __slots__ = ("_ended", "_refined")

    def __init__(self) -> None:
        self._ended: dict[int, tuple[str, AttemptOutcome]] = {}
        self._refined: dict[int, AttemptOutcome] = {}

    def ended(self, seq: int, name: str, outcome: AttemptOutcome) -> None:
        self._ended[seq] = (name, outcome)

    def refine(self, seq: int, outcome: AttemptOutcome) -> None:
        """What the retry loop made of the attempt (before or after its end is noted)."""
        self._refined[seq] = outcome

    def take(self) -> list[tuple[str, AttemptOutcome]]:
        """The turn's attempts as ``(activity name, outcome)``, and start afresh."""
        refined = self._refined
        taken = [(name, refined.get(seq, outcome)) for seq, (name, outcome) in self._ended.items()]
        self._ended = {}
        self._refined = {}
        return taken
