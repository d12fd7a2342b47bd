"""The pure replay engine: history and messages in, a turn decision out. No I/O here."""

from __future__ import annotations

from ._check import ReplayCheck, check_replay
from ._context import OrchestrationContext
from ._decision import Commit, Defer, DeferReason, TurnDecision
from ._execution import Execution
from ._futures import DurableFuture
from ._kv import DurableKV
from ._outcomes import (
    DEFAULT_MAX_HISTORY_EVENTS,
    application_error,
    configuration_error,
    corrupt_history_error,
    poison_error,
)
from ._turn import TurnInput, run_turn, terminate

__all__ = [
    "DEFAULT_MAX_HISTORY_EVENTS",
    "Commit",
    "Defer",
    "DeferReason",
    "DurableFuture",
    "DurableKV",
    "Execution",
    "OrchestrationContext",
    "ReplayCheck",
    "TurnDecision",
    "TurnInput",
    "application_error",
    "check_replay",
    "configuration_error",
    "corrupt_history_error",
    "poison_error",
    "run_turn",
    "terminate",
]
