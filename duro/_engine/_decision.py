"""What a turn decides: commit its changes, or put the batch back for later."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._records import TurnChanges

if TYPE_CHECKING:
    from ._execution import Execution


@dataclass(slots=True)
class Commit:
    """Commit ``changes``; ``execution`` is the live execution, worth caching if it runs on."""

    changes: TurnChanges
    execution: Execution | None = None


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
