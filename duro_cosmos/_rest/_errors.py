"""Cosmos DB errors, translated at the HTTP boundary into duro's ``ProviderError`` tree::

    ProviderError                       (duro._errors)
    └── CosmosError                     status / substatus / activity id of the failure
        ├── CosmosThrottled             429; ``retry_after`` seconds from x-ms-retry-after-ms
        ├── CosmosUnavailable           503, 449, 410, 408, 500, 404/1002, 403/3, timeouts and
        │                               dropped connections (retryable; ``may_have_applied``)
        ├── CosmosAmbiguousWrite        a non-idempotent write whose outcome is unknown
        ├── CosmosBadRequest            400; ``cross_partition_query_not_servable`` for 1004
        ├── CosmosAuthError             401, 403 (bad key, clock skew, account not found, ...)
        ├── CosmosNotFound              404 (``owner_missing`` when the container is gone)
        ├── CosmosConflict              409: the id already exists in the partition
        ├── CosmosPreconditionFailed    412: If-Match etag or patch condition did not hold
        ├── CosmosRequestTooLarge       413: item, request or batch over the size limits
        ├── CosmosBatchFailed           a transactional batch rolled back (207); per-op results
        ├── CosmosInvalidRequest        refused before sending (bad id, bad key, bad limits)
        └── CosmosHttpError             any other status

``retryable`` is set where each error is raised. ``may_have_applied`` says whether the
request may have changed data although it failed (response lost, server-side timeout):
:mod:`._retry` never repeats a non-idempotent write in that case and raises
:class:`CosmosAmbiguousWrite` instead, so the caller can resolve the outcome by re-reading.

No error ever carries request headers, so the account key and signatures never appear in a
message or ``repr``. Server messages are quoted, shortened.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import msgspec

from duro._errors import ProviderError

if TYPE_CHECKING:
    from ._types import BatchOperationResult

__all__ = [
    "SUBSTATUS_CROSS_PARTITION_QUERY_NOT_SERVABLE",
    "SUBSTATUS_OWNER_RESOURCE_NOT_FOUND",
    "SUBSTATUS_READ_SESSION_NOT_AVAILABLE",
    "SUBSTATUS_WRITE_FORBIDDEN",
    "CosmosAmbiguousWrite",
    "CosmosAuthError",
    "CosmosBadRequest",
    "CosmosBatchFailed",
    "CosmosConflict",
    "CosmosError",
    "CosmosHttpError",
    "CosmosInvalidRequest",
    "CosmosNotFound",
    "CosmosPreconditionFailed",
    "CosmosRequestTooLarge",
    "CosmosThrottled",
    "CosmosUnavailable",
    "error_from_response",
    "error_from_transport",
]

SUBSTATUS_CROSS_PARTITION_QUERY_NOT_SERVABLE = 1004  # with 400
SUBSTATUS_READ_SESSION_NOT_AVAILABLE = 1002  # with 404 (with 410 it means pkrange gone)
SUBSTATUS_OWNER_RESOURCE_NOT_FOUND = 1003  # with 404: the database or container is missing
SUBSTATUS_WRITE_FORBIDDEN = 3  # with 403: region failover in progress

_MAX_SERVER_MESSAGE = 300


class CosmosError(ProviderError):
    """A Cosmos DB request failed.

    ``status`` is the HTTP status (``None`` when no response arrived), ``substatus`` the
    ``x-ms-substatus`` header, ``activity_id`` the ``x-ms-activity-id`` to quote to support.
    ``after_ambiguous_failure`` is set by the retry layer when an earlier attempt of the
    same request failed ambiguously: a 409 / 412 / 404 then may be the echo of our own
    write, so the caller must re-read rather than conclude.
    """

    def __init__(
        self,
        operation: str,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        substatus: int | None = None,
        activity_id: str | None = None,
        may_have_applied: bool = False,
    ) -> None:
        detail = message
        if status is not None:
            code = f"{status}" + (f"/{substatus}" if substatus else "")
            detail = f"HTTP {code}: {message}"
        if activity_id:
            detail += f" [activity {activity_id}]"
        super().__init__(operation, detail, retryable=retryable)
        self.status = status
        self.substatus = substatus
        self.activity_id = activity_id
        self.may_have_applied = may_have_applied
        self.after_ambiguous_failure = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(operation={self.operation!r}, status={self.status!r}, "
            f"substatus={self.substatus!r}, retryable={self.retryable!r})"
        )


class CosmosThrottled(CosmosError):
    """429: the request rate exceeded the provisioned throughput; nothing was applied.

    ``retry_after`` is the server's ``x-ms-retry-after-ms`` in seconds (``None`` if absent).
    """

    def __init__(
        self,
        operation: str,
        message: str,
        *,
        retry_after: float | None,
        substatus: int | None = None,
        activity_id: str | None = None,
    ) -> None:
        super().__init__(
            operation,
            message,
            retryable=True,
            status=429,
            substatus=substatus,
            activity_id=activity_id,
        )
        self.retry_after = retry_after


class CosmosUnavailable(CosmosError):
    """A transient failure: retry with backoff.

    ``may_have_applied`` is ``False`` when the service says the request was not processed
    (503, 449, 410, 403/3, 404/1002, connection refused) and ``True`` when it may have been
    (408, 500, read timeout, dropped connection, unreadable response body).
    """

    def __init__(
        self,
        operation: str,
        message: str,
        *,
        may_have_applied: bool,
        status: int | None = None,
        substatus: int | None = None,
        activity_id: str | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(
            operation,
            message,
            retryable=retryable,
            status=status,
            substatus=substatus,
            activity_id=activity_id,
            may_have_applied=may_have_applied,
        )


class CosmosAmbiguousWrite(CosmosError):
    """A non-idempotent write was sent but its outcome is unknown (the response was lost).

    Not retryable at this layer: repeating a create or a batch could apply it twice. Re-read
    the affected documents (by id, or by the batch's guard document etag) to learn whether
    it was applied, then continue or retry. ``cause`` is the underlying failure.
    """

    def __init__(self, operation: str, cause: CosmosError) -> None:
        super().__init__(
            operation,
            "the write may or may not have been applied (the request was sent but no usable "
            f"response came back: {cause.message}); re-read to resolve it before retrying",
            retryable=False,
            status=cause.status,
            substatus=cause.substatus,
            activity_id=cause.activity_id,
            may_have_applied=True,
        )
        self.cause = cause


class _PermanentStatusError(CosmosError):
    """A status that no retry can change; subclasses name it with ``STATUS``."""

    STATUS: ClassVar[int]

    def __init__(
        self,
        operation: str,
        message: str,
        *,
        substatus: int | None = None,
        activity_id: str | None = None,
    ) -> None:
        super().__init__(
            operation,
            message,
            retryable=False,
            status=self.STATUS,
            substatus=substatus,
            activity_id=activity_id,
        )


class CosmosBadRequest(_PermanentStatusError):
    """400: the request is malformed or cannot be served as written."""

    STATUS = 400

    @property
    def cross_partition_query_not_servable(self) -> bool:
        """The gateway cannot run this cross-partition query without a client query plan
        (ORDER BY, TOP, OFFSET, aggregates, DISTINCT, GROUP BY): make it single-partition."""
        return self.substatus == SUBSTATUS_CROSS_PARTITION_QUERY_NOT_SERVABLE


class CosmosAuthError(CosmosError):
    """401 / 403: the key, the signature or the date was refused, or access is forbidden.

    Check the account key, the machine clock (``x-ms-date`` must be within minutes of the
    service's time) and that the endpoint names the right account.
    """

    def __init__(
        self,
        operation: str,
        message: str,
        *,
        status: int,
        substatus: int | None = None,
        activity_id: str | None = None,
    ) -> None:
        super().__init__(
            operation,
            message,
            retryable=False,
            status=status,
            substatus=substatus,
            activity_id=activity_id,
        )


class CosmosNotFound(_PermanentStatusError):
    """404: the document (or, with ``owner_missing``, its container or database) is missing."""

    STATUS = 404

    @property
    def owner_missing(self) -> bool:
        """The database or container itself does not exist (substatus 1003)."""
        return self.substatus == SUBSTATUS_OWNER_RESOURCE_NOT_FOUND


class CosmosConflict(_PermanentStatusError):
    """409: a document with this id already exists in the partition."""

    STATUS = 409


class CosmosPreconditionFailed(_PermanentStatusError):
    """412: the If-Match etag no longer matches (or a patch condition was false).

    Someone else changed the document: re-read it, then decide; never retry blindly.
    """

    STATUS = 412


class CosmosRequestTooLarge(_PermanentStatusError):
    """413 (or refused before sending): an item over 2 MB, or a batch over its limits."""

    STATUS = 413


class CosmosBatchFailed(CosmosError):
    """A transactional batch failed as a whole: nothing in it was applied.

    ``results`` holds one result per operation; ``failed_index`` is the operation that
    caused the rollback (the first status that is neither a success nor 424) and
    ``failed_status`` / ``failed_substatus`` its codes. The batch is retryable only when
    the failing operation was throttled or transiently unavailable.
    """

    def __init__(
        self,
        operation: str,
        results: Sequence[BatchOperationResult],
        *,
        status: int,
        activity_id: str | None = None,
    ) -> None:
        index = _first_failure(results)
        failed = results[index] if index is not None else None
        failed_status = failed.status if failed is not None else status
        failed_substatus = failed.substatus if failed is not None else None
        where = f"operation {index}" if index is not None else "an unidentified operation"
        super().__init__(
            operation,
            f"transactional batch rolled back: {where} of {len(results)} failed with "
            f"{failed_status}" + (f"/{failed_substatus}" if failed_substatus else ""),
            retryable=failed_status in (429, 449, 503),
            status=status,
            substatus=failed_substatus,
            activity_id=activity_id,
        )
        self.results = tuple(results)
        self.failed_index = index
        self.failed_status = failed_status
        self.failed_substatus = failed_substatus
        self.retry_after = failed.retry_after if failed is not None else None


class CosmosInvalidRequest(CosmosError):
    """The client refused the request before sending it (bad id, key, size or option)."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(operation, message, retryable=False)


class CosmosHttpError(CosmosError):
    """A status this client does not map to a more specific error."""


def _first_failure(results: Sequence[BatchOperationResult]) -> int | None:
    for i, result in enumerate(results):
        if result.status >= 400 and result.status != 424:
            return i
    for i, result in enumerate(results):
        if result.status >= 400:
            return i
    return None


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        return None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``x-ms-retry-after-ms`` as seconds, or ``None`` when absent or malformed."""
    raw = headers.get("x-ms-retry-after-ms")
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return max(value, 0.0) / 1000.0


def server_message(body: bytes) -> str:
    """The ``message`` of a Cosmos error body (``{"code": ..., "message": ...}``), shortened."""
    text = ""
    try:
        decoded: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace")
    else:
        if isinstance(decoded, dict):
            code = decoded.get("code")
            message = decoded.get("message") or decoded.get("Message") or ""
            text = f"{code}: {message}" if code else str(message)
        else:
            text = str(decoded)
    text = " ".join(text.split())
    if len(text) > _MAX_SERVER_MESSAGE:
        text = text[: _MAX_SERVER_MESSAGE - 3] + "..."
    return text or "no message"


def error_from_response(
    operation: str, status: int, headers: Mapping[str, str], body: bytes
) -> CosmosError:
    """The most specific error for a failed response (``status`` >= 400)."""
    substatus = _int_header(headers, "x-ms-substatus")
    activity = headers.get("x-ms-activity-id")
    message = server_message(body)
    common: dict[str, Any] = {"substatus": substatus, "activity_id": activity}
    if status == 429:
        return CosmosThrottled(
            operation, message, retry_after=retry_after_seconds(headers), **common
        )
    if status == 400:
        return CosmosBadRequest(operation, message, **common)
    if status == 401:
        return CosmosAuthError(operation, message, status=status, **common)
    if status == 403:
        if substatus == SUBSTATUS_WRITE_FORBIDDEN:
            return CosmosUnavailable(
                operation, f"writes forbidden (failover): {message}", status=status,
                may_have_applied=False, **common,
            )  # fmt: skip
        return CosmosAuthError(operation, message, status=status, **common)
    if status == 404:
        if substatus == SUBSTATUS_READ_SESSION_NOT_AVAILABLE:
            return CosmosUnavailable(
                operation, f"read session not available: {message}", status=status,
                may_have_applied=False, **common,
            )  # fmt: skip
        return CosmosNotFound(operation, message, **common)
    if status == 409:
        return CosmosConflict(operation, message, **common)
    if status == 412:
        return CosmosPreconditionFailed(operation, message, **common)
    if status == 413:
        return CosmosRequestTooLarge(operation, message, **common)
    if status in (410, 449, 503):
        return CosmosUnavailable(
            operation, message, status=status, may_have_applied=False, **common
        )
    if status == 408 or status >= 500:
        return CosmosUnavailable(operation, message, status=status, may_have_applied=True, **common)
    return CosmosHttpError(operation, message, retryable=False, status=status, **common)


def _caused_by_tls(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def error_from_transport(operation: str, exc: httpx.TransportError) -> CosmosError:
    """Translate an httpx transport failure; says whether the request may have been applied."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())[:_MAX_SERVER_MESSAGE]
    if text:
        name = f"{name}: {text}"
    if isinstance(exc, httpx.ConnectError) and _caused_by_tls(exc):
        return CosmosUnavailable(
            operation,
            f"TLS handshake failed ({name}); check the endpoint scheme and the verify / "
            "ca_bundle settings",
            may_have_applied=False,
            retryable=False,
        )
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return CosmosUnavailable(
            operation, f"could not connect ({name}); the request was not sent",
            may_have_applied=False,
        )  # fmt: skip
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        return CosmosInvalidRequest(operation, f"the request could not be sent ({name})")
    if isinstance(exc, httpx.TimeoutException):
        return CosmosUnavailable(
            operation, f"timed out waiting for the response ({name})", may_have_applied=True
        )
    return CosmosUnavailable(
        operation, f"the connection failed mid-request ({name})", may_have_applied=True
    )
