"""Tools for testing workflows and providers.

For workflows: ``WorkflowEnvironment`` runs them on virtual time that skips ahead by itself
(with ``mock_activity``); ``activity_context`` builds an ``ActivityContext`` for unit tests of
activities; ``replay`` and ``replay_all`` check that changed code still replays recorded
histories (``duro.history.HistoryFile``); the opt-in pytest plugin
``duro.testing.pytest_plugin`` provides a ``duro_env`` fixture. ``VirtualClock`` runs timers
and lock expiry on virtual time. ``FaultyProvider`` wraps any provider and injects failures,
latency, stalls and lost responses. For providers: ``ProviderContract`` is the shared pytest
suite every provider must pass (importing it needs pytest).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._activity_context import activity_context
from ._clock import VirtualClock
from ._environment import TEST_OPTIONS, WorkflowEnvironment
from ._faulty import Fault, FaultKind, FaultyProvider, InjectedFault
from ._replay import ReplayResult, replay, replay_all

if TYPE_CHECKING:
    from ._contract import ProviderContract

__all__ = [
    "TEST_OPTIONS",
    "Fault",
    "FaultKind",
    "FaultyProvider",
    "InjectedFault",
    "ProviderContract",
    "ReplayResult",
    "VirtualClock",
    "WorkflowEnvironment",
    "activity_context",
    "replay",
    "replay_all",
]


def __getattr__(name: str) -> Any:
    # The contract suite imports pytest; load it only for those who ask for it.
    if name == "ProviderContract":
        from ._contract import ProviderContract

        return ProviderContract
    raise AttributeError(name)
