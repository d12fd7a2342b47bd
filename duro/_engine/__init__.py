"""The pure replay engine: history and messages in, a turn decision out. No I/O here."""

from __future__ import annotations

from ._context import DurableKV, OrchestrationContext
from ._execution import Execution
from ._futures import DurableFuture
from ._outcomes import KvState, TurnResult
from ._turn import TurnDecision, TurnInput, run_turn, terminate

__all__ = [
    "DurableFuture",
    "DurableKV",
    "Execution",
    "KvState",
    "OrchestrationContext",
    "TurnDecision",
    "TurnInput",
    "TurnResult",
    "run_turn",
    "terminate",
]
