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

    VERSION_NOT_REGISTERED = "version_not_registered"
    """A known orchestration name, but not the version history needs: a worker running a
    newer (or older) deployment may have it."""
    NOT_STARTED = "not_started"
    """Messages for an instance that has no start yet; a start may still arrive."""
    CACHE_EVICTED = "cache_evicted"
    """The store left history out for an execution the cache no longer holds: fetch again."""


@dataclass(frozen=True, slots=True)
class Defer:
    """Put the batch back unchanged; it was not the messages' fault (no delivery counted)."""

    reason: DeferReason
    detail: str


TurnDecision = Commit | Defer
