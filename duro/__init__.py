"""duro: durable execution for Python.

Write orchestrations as ``async def`` functions taking an ``OrchestrationContext``; every
durable step is recorded in history and replayed after a crash or restart.
"""

from __future__ import annotations

from . import history as history
from ._client import Client
from ._clock import Clock, SystemClock
from ._codec import AesGcmCodec, Codec, CodecContext
from ._engine import DurableFuture, DurableKV, OrchestrationContext
from ._errors import (
    ActivityFailedError,
    CodecError,
    CronSyntaxError,
    DuplicateEventError,
    DuroError,
    InstanceAlreadyExistsError,
    InstanceFinishedError,
    InstanceNotFailedError,
    InstanceNotFoundError,
    InstanceStillRunningError,
    InvalidInstanceIdError,
    InvalidScheduleError,
    LockLostError,
    NondeterminismError,
    NonDurableAwaitError,
    OrchestrationFailureError,
    PayloadAuthenticationError,
    PayloadError,
    ProviderError,
    RegistrationError,
    ScheduleNotFoundError,
    StoreCorruptionError,
    StoreLostError,
    SubOrchestrationFailedError,
    TaskCancelledError,
    UnknownKeyError,
    UnregisteredError,
    WaitTimeoutError,
)
from ._registry import Registry
from ._retry import RetryPolicy
from ._runtime import ActivityContext, Runtime, RuntimeOptions
from ._schedules import ScheduleInfo
from ._status import (
    ErrorCategory,
    ErrorInfo,
    ExecutionInfo,
    ExecutionStatus,
    InstanceTree,
    KvValue,
    OrchestrationStatus,
    State,
)
from .providers import TagFilter
from .providers._memory import InMemoryProvider
from .providers._sqlite import SqliteProvider
from .providers._sqlite_errors import (
    NotADuroDatabaseError,
    ReadOnlyStoreError,
    SchemaVersionError,
    StoreBusyError,
    StoreFullError,
)

__all__ = [
    "ActivityContext",
    "ActivityFailedError",
    "AesGcmCodec",
    "Client",
    "Clock",
    "Codec",
    "CodecContext",
    "CodecError",
    "CronSyntaxError",
    "DuplicateEventError",
    "DurableFuture",
    "DurableKV",
    "DuroError",
    "ErrorCategory",
    "ErrorInfo",
    "ExecutionInfo",
    "ExecutionStatus",
    "InMemoryProvider",
    "InstanceAlreadyExistsError",
    "InstanceFinishedError",
    "InstanceNotFailedError",
    "InstanceNotFoundError",
    "InstanceStillRunningError",
    "InstanceTree",
    "InvalidInstanceIdError",
    "InvalidScheduleError",
    "KvValue",
    "LockLostError",
    "NonDurableAwaitError",
    "NondeterminismError",
    "NotADuroDatabaseError",
    "OrchestrationContext",
    "OrchestrationFailureError",
    "OrchestrationStatus",
    "PayloadAuthenticationError",
    "PayloadError",
    "ProviderError",
    "ReadOnlyStoreError",
    "RegistrationError",
    "Registry",
    "RetryPolicy",
    "Runtime",
    "RuntimeOptions",
    "ScheduleInfo",
    "ScheduleNotFoundError",
    "SchemaVersionError",
    "SqliteProvider",
    "State",
    "StoreBusyError",
    "StoreCorruptionError",
    "StoreFullError",
    "StoreLostError",
    "SubOrchestrationFailedError",
    "SystemClock",
    "TagFilter",
    "TaskCancelledError",
    "UnknownKeyError",
    "UnregisteredError",
    "WaitTimeoutError",
]
