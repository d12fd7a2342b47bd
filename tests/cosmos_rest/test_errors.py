"""HTTP status / substatus and transport failures map to typed, classified errors."""

from __future__ import annotations

import ssl

import httpx
import pytest

from duro._errors import ProviderError
from duro_cosmos._rest import (
    BatchOperationResult,
    CosmosAmbiguousWrite,
    CosmosAuthError,
    CosmosBadRequest,
    CosmosBatchFailed,
    CosmosConflict,
    CosmosError,
    CosmosHttpError,
    CosmosInvalidRequest,
    CosmosNotFound,
    CosmosPreconditionFailed,
    CosmosRequestTooLarge,
    CosmosThrottled,
    CosmosUnavailable,
    error_from_response,
    error_from_transport,
)

# status, substatus -> error class, retryable, may_have_applied
CASES = [
    (400, None, CosmosBadRequest, False, False),
    (400, 1004, CosmosBadRequest, False, False),
    (401, None, CosmosAuthError, False, False),
    (403, None, CosmosAuthError, False, False),
    (403, 1008, CosmosAuthError, False, False),
    (403, 3, CosmosUnavailable, True, False),  # write forbidden during failover
    (404, None, CosmosNotFound, False, False),
    (404, 1003, CosmosNotFound, False, False),
    (404, 1002, CosmosUnavailable, True, False),  # read session not available
    (408, None, CosmosUnavailable, True, True),
    (409, None, CosmosConflict, False, False),
    (410, 1002, CosmosUnavailable, True, False),  # partition key range gone
    (412, None, CosmosPreconditionFailed, False, False),
    (413, None, CosmosRequestTooLarge, False, False),
    (413, 3402, CosmosRequestTooLarge, False, False),
    (429, 3200, CosmosThrottled, True, False),
    (449, None, CosmosUnavailable, True, False),
    (500, None, CosmosUnavailable, True, True),
    (503, None, CosmosUnavailable, True, False),
    (405, None, CosmosHttpError, False, False),
]


def headers(substatus: int | None, **extra: str) -> httpx.Headers:
    h = {"x-ms-activity-id": "a-1", **extra}
    if substatus is not None:
        h["x-ms-substatus"] = str(substatus)
    return httpx.Headers(h)


@pytest.mark.parametrize(("status", "substatus", "cls", "retryable", "applied"), CASES)
def test_status_mapping(
    status: int, substatus: int | None, cls: type[CosmosError], retryable: bool, applied: bool
) -> None:
    body = b'{"code":"Failure","message":"Message: something went wrong"}'
    exc = error_from_response("op", status, headers(substatus), body)
    assert type(exc) is cls
    assert isinstance(exc, ProviderError)
    assert exc.retryable is retryable
    assert exc.may_have_applied is applied
    assert exc.status == status
    assert exc.substatus == substatus
    assert exc.activity_id == "a-1"
    assert "something went wrong" in str(exc)
    assert str(status) in str(exc)


def test_throttled_carries_retry_after_in_seconds() -> None:
    exc = error_from_response("op", 429, headers(3200, **{"x-ms-retry-after-ms": "250"}), b"")
    assert isinstance(exc, CosmosThrottled)
    assert exc.retry_after == pytest.approx(0.25)
    missing = error_from_response("op", 429, headers(None), b"")
    assert isinstance(missing, CosmosThrottled) and missing.retry_after is None
    garbage = error_from_response("op", 429, headers(None, **{"x-ms-retry-after-ms": "x"}), b"")
    assert isinstance(garbage, CosmosThrottled) and garbage.retry_after is None


def test_substatus_properties() -> None:
    e1004 = error_from_response("q", 400, headers(1004), b"{}")
    assert isinstance(e1004, CosmosBadRequest) and e1004.cross_partition_query_not_servable
    plain = error_from_response("q", 400, headers(None), b"{}")
    assert isinstance(plain, CosmosBadRequest) and not plain.cross_partition_query_not_servable
    owner = error_from_response("r", 404, headers(1003), b"{}")
    assert isinstance(owner, CosmosNotFound) and owner.owner_missing
    doc = error_from_response("r", 404, headers(None), b"{}")
    assert isinstance(doc, CosmosNotFound) and not doc.owner_missing


def test_unparseable_and_long_bodies_are_quoted_shortly() -> None:
    exc = error_from_response("op", 400, headers(None), b"<html>" + b"x" * 5000)
    assert len(exc.message) < 400
    empty = error_from_response("op", 400, headers(None), b"")
    assert "no message" in str(empty)


def _results(*statuses: int) -> list[BatchOperationResult]:
    return [BatchOperationResult(status=s) for s in statuses]


def test_batch_failed_names_the_failing_operation() -> None:
    exc = CosmosBatchFailed("batch", _results(424, 424, 412, 424), status=207)
    assert exc.failed_index == 2
    assert exc.failed_status == 412
    assert not exc.retryable
    assert "operation 2 of 4" in str(exc)
    assert len(exc.results) == 4


def test_batch_failed_throttled_operation_is_retryable() -> None:
    results = [BatchOperationResult(status=429, retry_after=0.01), *_results(424)]
    exc = CosmosBatchFailed("batch", results, status=207)
    assert exc.retryable and exc.failed_index == 0 and exc.retry_after == 0.01


def test_ambiguous_write_wraps_its_cause() -> None:
    cause = CosmosUnavailable("create", "read timeout", may_have_applied=True)
    exc = CosmosAmbiguousWrite("create", cause)
    assert exc.cause is cause
    assert not exc.retryable and exc.may_have_applied
    assert "re-read" in str(exc)


@pytest.mark.parametrize(
    ("exc", "cls", "retryable", "applied"),
    [
        (httpx.ConnectError("refused"), CosmosUnavailable, True, False),
        (httpx.ConnectTimeout("slow connect"), CosmosUnavailable, True, False),
        (httpx.PoolTimeout("pool"), CosmosUnavailable, True, False),
        (httpx.ReadTimeout("slow read"), CosmosUnavailable, True, True),
        (httpx.WriteTimeout("slow write"), CosmosUnavailable, True, True),
        (httpx.ReadError("reset"), CosmosUnavailable, True, True),
        (httpx.RemoteProtocolError("disconnected"), CosmosUnavailable, True, True),
        (httpx.UnsupportedProtocol("ftp"), CosmosInvalidRequest, False, False),
    ],
)
def test_transport_mapping(
    exc: httpx.TransportError, cls: type[CosmosError], retryable: bool, applied: bool
) -> None:
    mapped = error_from_transport("op", exc)
    assert type(mapped) is cls
    assert mapped.retryable is retryable
    assert mapped.may_have_applied is applied
    assert mapped.status is None


def test_tls_failure_is_permanent() -> None:
    exc = httpx.ConnectError("certificate verify failed")
    exc.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    mapped = error_from_transport("op", exc)
    assert isinstance(mapped, CosmosUnavailable)
    assert not mapped.retryable
    assert "ca_bundle" in str(mapped)


def test_public_surface_is_pinned() -> None:
    import duro_cosmos._rest as rest

    exported = set(rest.__all__)
    assert exported == {name for name in dir(rest) if not name.startswith("_")}
    for cls in (
        CosmosThrottled,
        CosmosUnavailable,
        CosmosAmbiguousWrite,
        CosmosBadRequest,
        CosmosAuthError,
        CosmosNotFound,
        CosmosConflict,
        CosmosPreconditionFailed,
        CosmosRequestTooLarge,
        CosmosBatchFailed,
        CosmosInvalidRequest,
        CosmosHttpError,
    ):
        assert issubclass(cls, CosmosError) and issubclass(cls, ProviderError)
        assert cls.__name__ in exported
