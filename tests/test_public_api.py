"""Pins the public surface: what users import from duro, duro.providers and duro.testing."""

from __future__ import annotations

import typing

import msgspec

import duro
import duro.history
import duro.providers
import duro.testing
from duro._messages import AnyOrchestratorMessage

EXPECTED_DURO = {
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
    "NotADuroDatabaseError",
    "NondeterminismError",
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
    "State",
    "StoreCorruptionError",
    "SubOrchestrationFailedError",
    "SqliteProvider",
    "StoreBusyError",
    "StoreFullError",
    "StoreLostError",
    "SystemClock",
    "TagFilter",
    "TaskCancelledError",
    "UnknownKeyError",
    "UnregisteredError",
    "WaitTimeoutError",
}


EXPECTED_HISTORY = {
    "ACTION_EVENTS",
    "HISTORY_FORMAT",
    "HISTORY_FORMAT_VERSION",
    "TERMINAL_EVENTS",
    "ActivityCompleted",
    "ActivityFailed",
    "ActivityScheduled",
    "CancelRequested",
    "CarriedEvent",
    "ContinuedAsNew",
    "CustomStatusSet",
    "Event",
    "EventQueued",
    "EventRaised",
    "EventSent",
    "ExecutionRewound",
    "ExportedKv",
    "HistoryEvent",
    "HistoryFile",
    "KvCleared",
    "KvDeleted",
    "KvSet",
    "OrchestrationChained",
    "OrchestrationCompleted",
    "OrchestrationFailed",
    "OrchestrationStarted",
    "ParentRef",
    "SubOrchestrationCompleted",
    "SubOrchestrationFailed",
    "SubOrchestrationScheduled",
    "TaskCancelled",
    "TimerCreated",
    "TimerFired",
    "decode_event",
    "decode_events",
    "encode_event",
    "encode_events",
}

EXPECTED_PROVIDERS = {
    "InstanceCountQuery",
    "InstanceCounts",
    "InstanceNotice",
    "ANY_INSTANCE",
    "AbandonRequest",
    "ActivityCommit",
    "ActivityResultMessage",
    "ActivityTask",
    "ActivityWorkItem",
    "AnyOrchestratorMessage",
    "CancelOrchestrationMessage",
    "ContinueAsNewMessage",
    "DeleteRequest",
    "DeleteResult",
    "EnqueueEventMessage",
    "ExecutionRecord",
    "ExecutionStatus",
    "FetchActivityRequest",
    "FetchTurnRequest",
    "IfExists",
    "InstancePage",
    "InstanceQuery",
    "InstanceRecord",
    "InstrumentedProvider",
    "KvChange",
    "KvEntry",
    "OrchestrationWorkItem",
    "OrchestratorMessage",
    "Provider",
    "PruneRequest",
    "PruneResult",
    "QueueDepths",
    "RaiseEventMessage",
    "RewindOrchestrationMessage",
    "RenewRequest",
    "ScheduledMessage",
    "SessionRenewal",
    "StartOrchestrationMessage",
    "StartOutcome",
    "StartRequest",
    "SubOrchestrationResultMessage",
    "TagFilter",
    "TimerFiredMessage",
    "TurnChanges",
    "TurnCommit",
    "WorkSignal",
    "decode_message",
    "decode_task",
    "encode_message",
}


EXPECTED_TESTING = {
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
}


def test_history_and_providers_export_exactly_the_documented_names() -> None:
    assert set(duro.history.__all__) == EXPECTED_HISTORY
    assert set(duro.providers.__all__) == EXPECTED_PROVIDERS


def test_testing_exports_exactly_the_documented_names() -> None:
    assert set(duro.testing.__all__) == EXPECTED_TESTING


def test_every_history_event_is_documented() -> None:
    events = typing.get_args(duro.history.HistoryEvent)
    undocumented = [e.__name__ for e in events if not (e.__doc__ or "").strip()]
    assert events and undocumented == []


def test_messages_and_history_events_share_no_name_or_tag() -> None:
    events = typing.get_args(duro.history.HistoryEvent)
    messages = typing.get_args(AnyOrchestratorMessage)
    event_names = {e.__name__ for e in events} | {e.__struct_config__.tag for e in events}
    message_names = {m.__name__ for m in messages} | {m.__struct_config__.tag for m in messages}
    assert event_names & message_names == set()
    assert all(m.__name__.endswith("Message") for m in messages)
    assert all(m.__struct_config__.tag == m.__name__ for m in messages)
    assert all(issubclass(m, msgspec.Struct) for m in messages)


def test_duro_exports_exactly_the_documented_names() -> None:
    assert set(duro.__all__) == EXPECTED_DURO
    for name in duro.__all__:
        assert getattr(duro, name) is not None


def test_every_exported_member_of_each_namespace_exists() -> None:
    for module in (duro, duro.history, duro.providers, duro.testing):
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert missing == []


def test_errors_share_one_root() -> None:
    errors = [getattr(duro, n) for n in duro.__all__ if n.endswith(("Error", "Failed"))]
    assert errors and all(issubclass(e, duro.DuroError) for e in errors)
