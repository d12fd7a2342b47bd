"""Tools for testing workflows and providers.

For workflows: ``replay`` and ``replay_all`` check that changed code still replays recorded
histories (``duro.history.HistoryFile``). ``VirtualClock`` runs timers and lock expiry on
virtual time. For providers: ``ProviderContract`` is the shared pytest suite every provider
must pass (importing it needs pytest).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._clock import VirtualClock
from ._replay import ReplayResult, replay, replay_all

if TYPE_CHECKING:
    from ._contract import ProviderContract

__all__ = ["ProviderContract", "ReplayResult", "VirtualClock", "replay", "replay_all"]


def __getattr__(name: str) -> Any:
    # The contract suite imports pytest; load it only for those who ask for it.
    if name == "ProviderContract":
        from ._contract import ProviderContract

        return ProviderContract
    raise AttributeError(name)
