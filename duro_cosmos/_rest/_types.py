"""Values the REST client takes and returns: container links, responses, batch operations."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias
from urllib.parse import quote

from ._errors import CosmosInvalidRequest

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_OPERATIONS",
    "MAX_ID_LENGTH",
    "MAX_PATCH_OPERATIONS",
    "BatchOperation",
    "BatchOperationResult",
    "ContainerLink",
    "ItemResponse",
    "PartitionKeyValue",
    "QueryPage",
    "RequestKind",
    "RequestStatistics",
    "check_id",
    "partition_key_header",
]

MAX_BATCH_OPERATIONS = 100
"""Operations a transactional batch may hold (documented limit)."""
MAX_BATCH_BYTES = 2 * 1024 * 1024
"""Request payload limit of a transactional batch (documented limit: 2 MB)."""
MAX_PATCH_OPERATIONS = 10
"""Operations one PATCH may hold."""
MAX_ID_LENGTH = 255
"""Longest id Cosmos DB accepts (characters)."""

_FORBIDDEN_ID_CHARS = frozenset("/\\?#")

PartitionKeyValue: TypeAlias = str | int | float | bool
"""A partition key value. ``None`` is reserved for "no partition key" (cross-partition)."""


class RequestKind(enum.StrEnum):
    """What a request does; counted per kind for benchmarks and used to pick retry rules."""

    READ = "read"
    QUERY = "query"
    CREATE = "create"
    UPSERT = "upsert"
    REPLACE = "replace"
    DELETE = "delete"
    PATCH = "patch"
    BATCH = "batch"
    METADATA = "metadata"  # databases and containers


def check_id(operation: str, value: str, *, what: str = "id") -> str:
    """Return ``value`` if Cosmos DB can key on it, else raise ``CosmosInvalidRequest``.

    Refused here because the service's answers differ between deployments (and a local test
    server may silently accept them): empty, longer than 255, or containing / \\ ? #.
    """
    if not isinstance(value, str) or not value:
        raise CosmosInvalidRequest(operation, f"{what} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise CosmosInvalidRequest(operation, f"{what} is longer than {MAX_ID_LENGTH} characters")
    bad = sorted(_FORBIDDEN_ID_CHARS.intersection(value))
    if bad:
        raise CosmosInvalidRequest(
            operation, f"{what} {value!r} contains {''.join(bad)!r}, which ids cannot hold"
        )
    return value


def partition_key_header(value: PartitionKeyValue) -> str:
    """The ``x-ms-documentdb-partitionkey`` value: a one-element JSON array, ASCII-escaped."""
    if isinstance(value, float) and value != value:  # NaN
        raise CosmosInvalidRequest("encode partition key", "a partition key cannot be NaN")
    return json.dumps([value], ensure_ascii=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class ContainerLink:
    """Names one container: ``dbs/{database}/colls/{container}``."""

    database: str
    container: str

    def __post_init__(self) -> None:
        check_id("name container", self.database, what="database id")
        check_id("name container", self.container, what="container id")

    @property
    def path(self) -> str:
        """Resource link (unencoded, as signed)."""
        return f"dbs/{self.database}/colls/{self.container}"

    def document_path(self, doc_id: str) -> str:
        return f"{self.path}/docs/{doc_id}"


def url_path(path: str) -> str:
    """Percent-encode each segment of a resource link for the request URL."""
    return "/" + "/".join(quote(segment, safe="") for segment in path.split("/"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemResponse:
    """A point operation's outcome. ``body`` is ``None`` for deletes."""

    status: int
    etag: str | None
    body: dict[str, Any] | None
    request_charge: float = 0.0
    session_token: str | None = None
    activity_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryPage:
    """One page of query results; ``continuation`` is ``None`` on the last page."""

    items: list[Any]
    continuation: str | None
    request_charge: float = 0.0
    activity_id: str | None = None


BatchOperationType: TypeAlias = Literal["Create", "Upsert", "Replace", "Delete", "Read", "Patch"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchOperation:
    """One operation of a transactional batch; build with the class methods."""

    operation_type: BatchOperationType
    id: str | None = None
    resource_body: Mapping[str, Any] | None = None
    if_match: str | None = None

    @classmethod
    def create(cls, body: Mapping[str, Any]) -> BatchOperation:
        return cls(operation_type="Create", id=_body_id(body), resource_body=body)

    @classmethod
    def upsert(cls, body: Mapping[str, Any], *, if_match: str | None = None) -> BatchOperation:
        return cls(
            operation_type="Upsert", id=_body_id(body), resource_body=body, if_match=if_match
        )

    @classmethod
    def replace(
        cls, doc_id: str, body: Mapping[str, Any], *, if_match: str | None = None
    ) -> BatchOperation:
        if body.get("id") != doc_id:
            raise CosmosInvalidRequest(
                "build batch", f"replace of {doc_id!r} carries a body whose id differs"
            )
        return cls(operation_type="Replace", id=doc_id, resource_body=body, if_match=if_match)

    @classmethod
    def delete(cls, doc_id: str, *, if_match: str | None = None) -> BatchOperation:
        return cls(operation_type="Delete", id=check_id("build batch", doc_id), if_match=if_match)

    @classmethod
    def read(cls, doc_id: str) -> BatchOperation:
        return cls(operation_type="Read", id=check_id("build batch", doc_id))

    @classmethod
    def patch(
        cls,
        doc_id: str,
        operations: Sequence[Mapping[str, Any]],
        *,
        if_match: str | None = None,
        condition: str | None = None,
    ) -> BatchOperation:
        body = patch_body("build batch", operations, condition)
        return cls(
            operation_type="Patch",
            id=check_id("build batch", doc_id),
            resource_body=body,
            if_match=if_match,
        )

    def to_json(self, partition_key: str | None = None) -> dict[str, Any]:
        """The wire form; ``partition_key`` (a header-encoded value) is added when given."""
        out: dict[str, Any] = {"operationType": self.operation_type}
        if self.id is not None:
            out["id"] = self.id
        if self.resource_body is not None:
            out["resourceBody"] = dict(self.resource_body)
        if self.if_match is not None:
            out["ifMatch"] = self.if_match
        if partition_key is not None:
            out["partitionKey"] = partition_key
        return out


def _body_id(body: Mapping[str, Any]) -> str:
    doc_id = body.get("id")
    if not isinstance(doc_id, str):
        raise CosmosInvalidRequest("build batch", "a document body needs a string 'id'")
    return check_id("build batch", doc_id)


def patch_body(
    operation: str, operations: Sequence[Mapping[str, Any]], condition: str | None
) -> dict[str, Any]:
    if not operations:
        raise CosmosInvalidRequest(operation, "a patch needs at least one operation")
    if len(operations) > MAX_PATCH_OPERATIONS:
        raise CosmosInvalidRequest(
            operation, f"a patch holds at most {MAX_PATCH_OPERATIONS} operations"
        )
    body: dict[str, Any] = {"operations": [dict(op) for op in operations]}
    if condition is not None:
        body["condition"] = condition
    return body


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchOperationResult:
    """The outcome of one batch operation (``status`` 424 = rolled back with the batch)."""

    status: int
    etag: str | None = None
    body: Any = None
    request_charge: float = 0.0
    substatus: int | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @classmethod
    def from_json(cls, raw: Any) -> BatchOperationResult:
        if not isinstance(raw, dict):
            return cls(status=0)

        def number(*names: str) -> float | None:
            for name in names:
                value = raw.get(name)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return float(value)
            return None

        status = number("statusCode", "status")
        substatus = number("subStatusCode", "substatus")
        retry_ms = number("retryAfterMilliseconds", "retryAfterMs")
        etag = raw.get("eTag", raw.get("etag"))
        return cls(
            status=int(status) if status is not None else 0,
            etag=etag if isinstance(etag, str) else None,
            body=raw.get("resourceBody"),
            request_charge=number("requestCharge") or 0.0,
            substatus=int(substatus) if substatus else None,
            retry_after=retry_ms / 1000.0 if retry_ms is not None else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestStatistics:
    """A snapshot of what a client sent. ``total`` counts HTTP attempts, retries included."""

    total: int = 0
    by_kind: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    retries: int = 0
    throttled: int = 0
    ambiguous_writes: int = 0
    request_charge: float = 0.0
