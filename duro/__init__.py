"""duro: durable execution for Python.

Write orchestrations as ``async def`` functions taking an ``OrchestrationContext``; every
durable step is recorded in history and replayed after a crash or restart.
"""

from __future__ import annotations

from ._client import Client
from ._clock import Clock, SystemClock
from ._engine import DurableFuture, DurableKV, OrchestrationContext
from ._errors import (
    ActivityFailed,
    DuplicateEventError,
    DuroError,
    InstanceAlreadyExistsError,
    InstanceNotFoundError,
    InstanceStillRunningError,
    InvalidInstanceIdError,
    LockLostError,
    NondeterminismError,
    NonDurableAwaitError,
    OrchestrationFailureError,
    PayloadError,
    ProviderError,
    RegistrationError,
    StoreCorruptionError,
    SubOrchestrationFailed,
    TaskCancelledError,
    UnregisteredError,
    WaitTimeoutError,
)
from ._registry import Registry
from ._retry import RetryPolicy
from ._runtime import ActivityContext, Runtime, RuntimeOptions
from ._status import ErrorCategory, ErrorInfo, OrchestrationStatus, State
from .providers import TagFilter
from .providers._memory import InMemoryProvider

__all__ = [
    "ActivityContext",
    "ActivityFailed",
    "Client",
    "Clock",
    "DuplicateEventError",
    "DurableFuture",
    "DurableKV",
    "DuroError",
    "ErrorCategory",
    "ErrorInfo",
    "InMemoryProvider",
    "InstanceAlreadyExistsError",
    "InstanceNotFoundError",
    "InstanceStillRunningError",
    "InvalidInstanceIdError",
    "LockLostError",
    "NonDurableAwaitError",
    "NondeterminismError",
    "OrchestrationContext",
    "OrchestrationFailureError",
    "OrchestrationStatus",
    "PayloadError",
    "ProviderError",
    "RegistrationError",
    "RetryPolicy",
    "Runtime",
    "RuntimeOptions",
    "State",
    "StoreCorruptionError",
    "SubOrchestrationFailed",
    "SystemClock",
    "TagFilter",
    "TaskCancelledError",
    "UnregisteredError",
    "WaitTimeoutError",
]
