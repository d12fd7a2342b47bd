"""Pins the public surface: what users import from duro, duro.providers and duro.testing."""

from __future__ import annotations

import duro
import duro.providers
import duro.testing

EXPECTED_DURO = {
    "ActivityContext",
    "ActivityFailedError",
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
    "NotADuroDatabaseError",
    "NondeterminismError",
    "OrchestrationContext",
    "OrchestrationFailureError",
    "OrchestrationStatus",
    "PayloadError",
    "ProviderError",
    "ReadOnlyStoreError",
    "RegistrationError",
    "Registry",
    "RetryPolicy",
    "Runtime",
    "RuntimeOptions",
    "SchemaVersionError",
    "State",
    "StoreCorruptionError",
    "SubOrchestrationFailedError",
    "SqliteProvider",
    "StoreBusyError",
    "StoreFullError",
    "SystemClock",
    "TagFilter",
    "TaskCancelledError",
    "UnregisteredError",
    "WaitTimeoutError",
}


def test_duro_exports_exactly_the_documented_names() -> None:
    assert set(duro.__all__) == EXPECTED_DURO
    for name in duro.__all__:
        assert getattr(duro, name) is not None


def test_every_exported_member_of_each_namespace_exists() -> None:
    for module in (duro, duro.providers, duro.testing):
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert missing == []


def test_errors_share_one_root() -> None:
    errors = [getattr(duro, n) for n in duro.__all__ if n.endswith(("Error", "Failed"))]
    assert errors and all(issubclass(e, duro.DuroError) for e in errors)
