"""Tools for testing workflows and providers.

``VirtualClock`` runs timers and lock expiry on virtual time. ``FaultyProvider`` wraps any
provider and injects failures, latency, stalls and lost responses. ``ProviderContract`` is
the shared pytest suite every provider must pass (importing it needs pytest).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._clock import VirtualClock
from ._faulty import Fault, FaultKind, FaultyProvider, InjectedFault

if TYPE_CHECKING:
    from ._contract import ProviderContract

__all__ = [
    "Fault",
    "FaultKind",
    "FaultyProvider",
    "InjectedFault",
    "ProviderContract",
    "VirtualClock",
]


def __getattr__(name: str) -> Any:
    # The contract suite imports pytest; load it only for those who ask for it.
    if name == "ProviderContract":
        from ._contract import ProviderContract

        return ProviderContract
    raise AttributeError(name)
