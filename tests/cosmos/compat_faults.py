"""Request classification, fault injection rules and the request log of the compat transport.

A test programs a :class:`FaultPlan`; the transport asks it, for every request the provider
sends, whether a rule fires. Rules match on a :class:`RequestInfo` (what kind of Cosmos
operation the request is, which partition, which document) and do one of:

* answer with a canned Cosmos error (429 with ``x-ms-retry-after-ms``, 449, 503, 408, 410 ...)
  without touching the server;
* raise a network error (``httpx.ReadTimeout``, ``httpx.ConnectError`` ...) without sending;
* **lose the response**: send the request (so a write IS applied), then raise instead of
  returning the answer: the ambiguous outcome a provider must resolve by re-reading;
* add latency (``delay=``) before any of the above or before a normal forward.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

__all__ = [
    "FaultPlan",
    "FaultRule",
    "LoggedRequest",
    "RequestInfo",
    "RequestLog",
    "classify",
    "cosmos_error",
]

Matcher = Callable[["RequestInfo"], bool]
ErrorFactory = type[Exception] | Exception | Callable[[httpx.Request], Exception]

_KIND_OF_DOC_METHOD = {"GET": "read", "PUT": "replace", "DELETE": "delete", "PATCH": "patch"}
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    408: "RequestTimeout",
    409: "Conflict",
    410: "Gone",
    412: "PreconditionFailed",
    413: "RequestEntityTooLarge",
    424: "FailedDependency",
    429: "TooManyRequests",
    449: "RetryWith",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}


def _true(headers: httpx.Headers, name: str) -> bool:
    return str(headers.get(name, "")).strip().lower() == "true"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What a request is, in Cosmos terms. ``kind`` is one of: ``account``, ``database``,
    ``container``, ``pkranges``, ``create``, ``upsert``, ``read``, ``replace``, ``delete``,
    ``patch``, ``query``, ``batch``, ``readfeed`` (GET .../docs) or ``other``."""

    method: str
    path: str  # URL-decoded, e.g. /dbs/d/colls/c/docs/my id
    kind: str
    headers: httpx.Headers
    content: bytes
    collection: str | None  # "dbs/d/colls/c" for document-level requests
    doc_id: str | None
    partition_key: Any  # first component of x-ms-documentdb-partitionkey, or None

    @property
    def is_write(self) -> bool:
        return self.kind in {"create", "upsert", "replace", "delete", "patch", "batch"}

    def json(self) -> Any:
        return json.loads(self.content) if self.content else None


def classify(request: httpx.Request, content: bytes) -> RequestInfo:
    method = request.method.upper()
    raw = request.url.raw_path.decode("ascii").split("?", 1)[0]
    segments = [unquote(p) for p in raw.strip("/").split("/") if p]
    headers = request.headers
    kind, collection, doc_id = "other", None, None
    n = len(segments)
    if n == 0:
        kind = "account"
    elif segments[0] == "dbs" and n <= 2:
        kind = "query" if _true(headers, "x-ms-documentdb-isquery") else "database"
    elif n >= 3 and segments[2] == "colls" and n <= 4:
        kind = "query" if _true(headers, "x-ms-documentdb-isquery") else "container"
    elif n == 5 and segments[4] == "pkranges":
        kind = "pkranges"
    elif n in (5, 6) and segments[4] == "docs":
        collection = "/".join(segments[:4])
        if n == 6:
            doc_id = segments[5]
            kind = _KIND_OF_DOC_METHOD.get(method, "other")
        elif method == "GET":
            kind = "readfeed"
        elif method == "POST":
            if _true(headers, "x-ms-documentdb-isquery") or headers.get(
                "content-type", ""
            ).startswith("application/query+json"):
                kind = "query"
            elif _true(headers, "x-ms-cosmos-is-batch-request"):
                kind = "batch"
            elif _true(headers, "x-ms-documentdb-is-upsert"):
                kind = "upsert"
            else:
                kind = "create"
    pk: Any = None
    if "x-ms-documentdb-partitionkey" in headers:
        try:
            parsed = json.loads(headers["x-ms-documentdb-partitionkey"])
            pk = parsed[0] if isinstance(parsed, list) and parsed else parsed
        except ValueError:
            pk = None
    return RequestInfo(
        method=method,
        path="/" + "/".join(segments),
        kind=kind,
        headers=headers,
        content=content,
        collection=collection,
        doc_id=doc_id,
        partition_key=pk,
    )


def cosmos_error(
    request: httpx.Request,
    status: int,
    message: str,
    *,
    substatus: int | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A Cosmos-shaped error response: ``{"code", "message"}`` plus the usual headers."""
    out = {
        "content-type": "application/json",
        "x-ms-activity-id": str(uuid.uuid4()),
        "x-ms-request-charge": "0",
    }
    if substatus is not None:
        out["x-ms-substatus"] = str(substatus)
    out.update(headers or {})
    body = {"code": _REASONS.get(status, str(status)), "message": message}
    return httpx.Response(status, headers=out, json=body, request=request)


@dataclass(eq=False)
class FaultRule:
    """One programmed fault. ``hits`` counts how often it fired, ``seen`` how often it matched."""

    match: Matcher
    status: int | None = None
    substatus: int | None = None
    retry_after_ms: int | None = None
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error: ErrorFactory | None = None
    lose_response: ErrorFactory | None = None
    delay: float = 0.0
    times: int | None = None
    skip: int = 0
    probability: float = 1.0
    hits: int = 0
    seen: int = 0

    @property
    def action(self) -> str:
        """``status``, ``error``, ``lose_response`` or ``delay``: what the rule does."""
        if self.status is not None:
            return "status"
        if self.error is not None:
            return "error"
        if self.lose_response is not None:
            return "lose_response"
        return "delay"

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def response(self, request: httpx.Request) -> httpx.Response:
        if self.status is None:
            raise ValueError("this rule does not answer with a status")
        headers = dict(self.headers)
        if self.retry_after_ms is not None:
            headers["x-ms-retry-after-ms"] = str(self.retry_after_ms)
        message = self.message or f"Injected {self.status} by the compat fault plan."
        return cosmos_error(
            request, self.status, message, substatus=self.substatus, headers=headers
        )


def build_error(factory: ErrorFactory, request: httpx.Request, what: str) -> Exception:
    if isinstance(factory, Exception):
        return factory
    if isinstance(factory, type) and issubclass(factory, httpx.RequestError):
        return factory(f"injected {what}", request=request)
    if isinstance(factory, type):
        error: Exception = factory(f"injected {what}")
        return error
    return factory(request)


_DEFAULT_SUBSTATUS = {429: 3200, 410: 1002}


class FaultPlan:
    """The faults a test wants. Rules are tried in the order added; the first that fires wins.

    >>> faults.add(kind="batch", status=429, retry_after_ms=20, times=2)
    >>> faults.add(kind="create", lose_response=httpx.ReadTimeout, times=1)
    >>> faults.add(match=lambda r: r.doc_id == "x", error=httpx.ConnectError)
    """

    def __init__(self, *, seed: int = 0) -> None:
        self.rules: list[FaultRule] = []
        self.rng = random.Random(seed)

    def add(
        self,
        *,
        match: Matcher | None = None,
        kind: str | tuple[str, ...] | None = None,
        method: str | None = None,
        path: str | None = None,
        partition_key: Any = None,
        doc_id: str | None = None,
        status: int | None = None,
        substatus: int | None = None,
        retry_after_ms: int | None = None,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        error: ErrorFactory | None = None,
        lose_response: ErrorFactory | None = None,
        delay: float = 0.0,
        times: int | None = 1,
        skip: int = 0,
        probability: float = 1.0,
    ) -> FaultRule:
        """Program a fault. All given matchers must hold (``path`` is a regex searched in the
        decoded path). Give at most one of ``status`` / ``error`` / ``lose_response``; ``delay``
        (seconds) may go with any of them, or alone for pure latency. ``times=None`` fires
        forever; ``skip`` lets the first N matching requests through first. A 429 gets
        ``x-ms-retry-after-ms`` (default 10) and substatus 3200 unless told otherwise."""
        actions = [x for x in (status, error, lose_response) if x is not None]
        if len(actions) > 1:
            raise ValueError("give at most one of status=, error=, lose_response=")
        if not actions and delay <= 0:
            raise ValueError("a fault needs status=, error=, lose_response= or delay=")
        if status == 429 and retry_after_ms is None:
            retry_after_ms = 10
        if status is not None and substatus is None:
            substatus = _DEFAULT_SUBSTATUS.get(status)
        kinds = (kind,) if isinstance(kind, str) else kind
        pattern = re.compile(path) if path is not None else None

        def matches(info: RequestInfo) -> bool:
            return (
                (kinds is None or info.kind in kinds)
                and (method is None or info.method == method.upper())
                and (pattern is None or pattern.search(info.path) is not None)
                and (partition_key is None or info.partition_key == partition_key)
                and (doc_id is None or info.doc_id == doc_id)
                and (match is None or match(info))
            )

        rule = FaultRule(
            match=matches,
            status=status,
            substatus=substatus,
            retry_after_ms=retry_after_ms,
            message=message,
            headers=dict(headers or {}),
            error=error,
            lose_response=lose_response,
            delay=delay,
            times=times,
            skip=skip,
            probability=probability,
        )
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def pick(self, info: RequestInfo) -> FaultRule | None:
        for rule in self.rules:
            if rule.exhausted or not rule.match(info):
                continue
            rule.seen += 1
            if rule.seen <= rule.skip:
                continue
            if rule.probability < 1.0 and self.rng.random() >= rule.probability:
                continue
            rule.hits += 1
            return rule
        return None


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request as the provider sent it, with how the transport answered it."""

    seq: int
    at: float  # time.monotonic()
    info: RequestInfo
    status: int | None  # None when an exception was raised to the client
    fault: str | None  # "status", "error", "lose_response", "delay" or None
    error: str | None  # exception class name raised to the client


class RequestLog:
    """Every request the transport saw, in order. Counters for assertions."""

    def __init__(self) -> None:
        self.entries: list[LoggedRequest] = []

    def record(
        self, info: RequestInfo, status: int | None, fault: str | None, error: str | None
    ) -> None:
        seq = len(self.entries)
        self.entries.append(LoggedRequest(seq, time.monotonic(), info, status, fault, error))

    def clear(self) -> None:
        self.entries.clear()

    def count(
        self,
        kind: str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
    ) -> int:
        """Requests matching all the given filters (``path`` is a regex)."""
        pattern = re.compile(path) if path is not None else None
        return sum(
            1
            for e in self.entries
            if (kind is None or e.info.kind == kind)
            and (method is None or e.info.method == method.upper())
            and (pattern is None or pattern.search(e.info.path))
            and (status is None or e.status == status)
        )

    def by_kind(self) -> Counter[str]:
        return Counter(e.info.kind for e in self.entries)

    def by_method_path(self) -> Counter[tuple[str, str]]:
        return Counter((e.info.method, e.info.path) for e in self.entries)

    def by_status(self) -> Counter[int | None]:
        return Counter(e.status for e in self.entries)
