"""What a turn decides: commit its changes, or put the batch back for later."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._records import TurnChanges
from ._attempts import AttemptOutcome

if TYPE_CHECKING:
    from ._execution import Execution


@dataclass(slots=True)
class Commit:
    """Commit ``changes``; ``execution`` is the live execution, worth caching if it runs on.

    ``replayed_events`` and ``attempts`` are for telemetry only: how many recorded events the
    turn replayed (0 when it went on from a cached execution), and how the activity attempts
    that ended in this turn ended, as ``(activity name, outcome)``.
    """

    changes: TurnChanges
    execution: Execution | None = None
    replayed_events: int = 0
    attempts: list[tuple[str, AttemptOutcome]] = field(default_factory=list)


class DeferReason(enum.Enum):
    """Why a batch is put back without a commit. The shell decides how long it waits."""

    NOT_REGISTERED = "not_registered"
    """An orchestration name, or the version history needs, this worker does not have: a
    worker running a newer (or older) deployment may. Counted as a delivery, so an instance
    nobody can run fails in the end (see ``TurnInput.final_delivery``)."""
    NOT_STARTED = "not_started"
    """Messages for an instance that has no start yet; a start may still arrive."""
    CACHE_EVICTED = "cache_evicted"
    """The store left history out for an execution the cache no longer holds: fetch again."""


@dataclass(frozen=True, slots=True)
class Defer:
    """Put the batch back unchanged, for later or for another worker."""

    reason: DeferReason
    detail: str


TurnDecision = Commit | Defer
