"""Atomic transactional batch on top of a server whose batch is not atomic.

The server runs batch operations one by one and keeps the ones before a failure. Cosmos runs
a batch as one ACID transaction in the logical partition: all or nothing, and a failure is
answered with HTTP 207, the failing operation's own status, and 424 for every other one.

Emulation (the caller holds the layer's exclusive lock, so no other request interleaves):

1. Check the request: a partition key header, 1..100 operations, at most 2 MB of body, known
   operation types, per-op ``partitionKey`` (optional, as in Cosmos) equal to the header's.
2. **Dry run** against current state: read each touched document once, then simulate the
   operations in order (create on an existing id 409; read/replace/delete/patch on a missing
   id 404; ``ifMatch`` that is not the current etag 412; a document whose partition key value
   is not the batch's 400). On the first failure answer 207/424 and send nothing, so etags of
   untouched documents stay exactly as they were.
3. **Apply** each operation as a point request (this also gives Patch, which the server's
   batch lacks). Should one still fail (a patch condition, an invalid patch path ...), the
   applied ones are **compensated** from the snapshots taken in step 2 and 207/424 answered.
   Compensation restores content but gives the restored documents new etags: the only
   visible difference from Cosmos, and only on that rare path.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .compat_backend import Backend, doc_path, pk_value, quote_etags_in, unquote_etag
from .compat_faults import RequestInfo, cosmos_error

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_OPERATIONS", "OpCharge", "run_atomic_batch"]

MAX_BATCH_OPERATIONS = 100
MAX_BATCH_BYTES = 2 * 1024 * 1024
_OP_TYPES = {t.lower(): t for t in ("Create", "Upsert", "Read", "Replace", "Delete", "Patch")}
_MISSING: Any = object()
_SUCCESS = {"Create": 201, "Delete": 204}

OpCharge = Callable[[str, int, Any], float]
"""``(operation type, status, document) -> RU`` of one batch operation. The document is the
one written (create, upsert, replace), patched or read (the result), or deleted (as it was)."""


def _flat_charge(op_type: str, status: int, document: Any) -> float:
    return 0.0 if status == 424 else 1.0


@dataclass(slots=True)
class _Op:
    index: int
    type: str
    id: str
    body: Any
    if_match: str | None


@dataclass(slots=True)
class _Failure:
    index: int
    status: int
    substatus: int | None = None


@dataclass(slots=True)
class _Run:
    backend: Backend
    collection: str
    pk: Any
    snapshots: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)

    async def current(self, doc_id: str) -> dict[str, Any] | None:
        if doc_id not in self.snapshots:
            self.snapshots[doc_id] = await self.backend.read_doc(self.collection, doc_id, self.pk)
        return self.snapshots[doc_id]


def _parse_ops(data: Any, header_pk: Any) -> list[_Op] | str:
    """The operations, or the reason the whole request is a 400."""
    if not isinstance(data, list):
        return "The batch request body must be a JSON array of operations."
    ops: list[_Op] = []
    for index, raw in enumerate(data):
        if not isinstance(raw, dict):
            return f"Operation {index} is not a JSON object."
        op_type = _OP_TYPES.get(str(raw.get("operationType", "")).lower())
        if op_type is None:
            return f"Operation {index}: unknown operationType {raw.get('operationType')!r}."
        if "partitionKey" in raw:
            try:
                op_pk = json.loads(raw["partitionKey"])
            except (TypeError, ValueError):
                return f"Operation {index}: partitionKey is not a JSON array."
            if op_pk != [header_pk]:
                return f"Operation {index}: partitionKey differs from the batch partition key."
        body = raw.get("resourceBody")
        doc_id = raw.get("id")
        if doc_id is None and isinstance(body, dict) and op_type in {"Create", "Upsert", "Replace"}:
            doc_id = body.get("id")
        if not isinstance(doc_id, str) or not doc_id:
            return f"Operation {index} ({op_type}) has no document id."
        if_match = raw.get("ifMatch")
        ops.append(_Op(index, op_type, doc_id, body, unquote_etag(if_match) if if_match else None))
    return ops


async def _dry_run(run: _Run, ops: list[_Op], pk_path: str | None) -> _Failure | None:
    state: dict[str, Any] = {}  # id -> document, None (absent) or "written" (etag unknown)

    async def get(doc_id: str) -> Any:
        if doc_id not in state:
            state[doc_id] = await run.current(doc_id)
        return state[doc_id]

    for op in ops:
        if op.type in {"Create", "Upsert", "Replace"}:
            if not isinstance(op.body, dict) or op.body.get("id") != op.id:
                return _Failure(op.index, 400)
            if pk_path is not None and pk_value(op.body, pk_path) != run.pk:
                return _Failure(op.index, 400, 1001)  # PartitionKeyMismatch
        if op.type == "Patch" and not isinstance(op.body, (dict, list)):
            return _Failure(op.index, 400)
        doc = await get(op.id)
        if op.type == "Create":
            if doc is not None:
                return _Failure(op.index, 409)
            state[op.id] = "written"
            continue
        if doc is None and op.type != "Upsert":
            return _Failure(op.index, 404)
        stale = doc == "written" or (doc is not None and doc.get("_etag") != op.if_match)
        if op.if_match is not None and doc is not None and stale:
            return _Failure(op.index, 412)
        if op.type == "Delete":
            state[op.id] = None
        elif op.type != "Read":
            state[op.id] = "written"
    return None


async def _apply(run: _Run, op: _Op) -> tuple[int, Any]:
    headers: dict[str, str] = {}
    if op.if_match is not None:
        headers["if-match"] = op.if_match
    backend, path = run.backend, doc_path(run.collection, op.id)
    if op.type == "Read":
        doc = await backend.read_doc(run.collection, op.id, run.pk)
        return (200, doc) if doc is not None else (404, None)
    await run.current(op.id)  # make sure a snapshot exists before the first write
    run.applied.append(op.id)
    if op.type == "Create":
        reply = await backend.call("POST", doc_path(run.collection), pk=run.pk, body=op.body)
    elif op.type == "Upsert":
        headers["x-ms-documentdb-is-upsert"] = "True"
        reply = await backend.call(
            "POST", doc_path(run.collection), pk=run.pk, headers=headers, body=op.body
        )
    elif op.type == "Replace":
        reply = await backend.call("PUT", path, pk=run.pk, headers=headers, body=op.body)
    elif op.type == "Delete":
        reply = await backend.call("DELETE", path, pk=run.pk, headers=headers)
    else:
        reply = await backend.call("PATCH", path, pk=run.pk, headers=headers, body=op.body)
    return reply.status, reply.data


async def _compensate(run: _Run) -> None:
    for doc_id in dict.fromkeys(reversed(run.applied)):
        original = run.snapshots.get(doc_id, _MISSING)
        if original is _MISSING:
            continue
        path = doc_path(run.collection, doc_id)
        if original is None:
            await run.backend.call("DELETE", path, pk=run.pk)
        else:
            body = {k: v for k, v in original.items() if k not in {"_rid", "_self", "_ts"}}
            body.pop("_etag", None)
            await run.backend.call(
                "POST",
                doc_path(run.collection),
                pk=run.pk,
                headers={"x-ms-documentdb-is-upsert": "True"},
                body=body,
            )


def _batch_response(
    request: httpx.Request, status: int, results: list[dict[str, Any]]
) -> httpx.Response:
    charge = sum(float(r.get("requestCharge", 0)) for r in results)
    headers = {
        "content-type": "application/json",
        "x-ms-activity-id": str(uuid.uuid4()),
        "x-ms-request-charge": f"{charge:g}",
    }
    return httpx.Response(status, headers=headers, json=results, request=request)


def _failed(
    request: httpx.Request, run: _Run, ops: list[_Op], failure: _Failure, charge: OpCharge
) -> httpx.Response:
    # Cosmos rolls the batch back, but the operations before the failing one were executed
    # and are charged (on their 424 results); the failing one costs what a refused point
    # operation does; the ones after it never ran.
    results: list[dict[str, Any]] = []
    for op in ops:
        if op.index == failure.index:
            item: dict[str, Any] = {
                "statusCode": failure.status,
                "requestCharge": charge(op.type, failure.status, None),
            }
            if failure.substatus is not None:
                item["subStatusCode"] = failure.substatus
        elif op.index < failure.index:
            done = charge(op.type, _SUCCESS.get(op.type, 200), _document_of(run, op, None))
            item = {"statusCode": 424, "requestCharge": done}
        else:
            item = {"statusCode": 424, "requestCharge": 0.0}
        results.append(item)
    return _batch_response(request, 207, results)


def _document_of(run: _Run, op: _Op, result: Any) -> Any:
    """The document an operation's charge depends on (see :data:`OpCharge`)."""
    if op.type in {"Create", "Upsert", "Replace"}:
        return op.body
    if op.type == "Delete":
        return run.snapshots.get(op.id)
    return result if result is not None else run.snapshots.get(op.id)


async def run_atomic_batch(
    backend: Backend, request: httpx.Request, info: RequestInfo, charge: OpCharge | None = None
) -> httpx.Response:
    """Answer an atomic batch like Cosmos. The caller must hold the exclusive lock.
    ``charge`` prices each operation's ``requestCharge`` (default: 1 RU each)."""
    charge = charge or _flat_charge
    if info.collection is None:
        raise ValueError("run_atomic_batch needs a document-collection request")
    if info.partition_key is None:
        return cosmos_error(request, 400, "A batch request needs x-ms-documentdb-partitionkey.")
    if len(info.content) > MAX_BATCH_BYTES:
        return cosmos_error(
            request, 413, f"The batch request body exceeds {MAX_BATCH_BYTES} bytes."
        )
    try:
        data = info.json()
    except ValueError:
        return cosmos_error(request, 400, "The batch request body is not valid JSON.")
    ops = _parse_ops(data, info.partition_key)
    if isinstance(ops, str):
        return cosmos_error(request, 400, ops)
    if not ops:
        return cosmos_error(request, 400, "The batch request has no operations.")
    if len(ops) > MAX_BATCH_OPERATIONS:
        return cosmos_error(
            request,
            400,
            f"Batch request has more operations ({len(ops)}) than the maximum "
            f"{MAX_BATCH_OPERATIONS}.",
        )
    pk_paths = await backend.pk_paths(info.collection)
    if pk_paths is None:
        return cosmos_error(request, 404, "The container does not exist.")
    run = _Run(backend, info.collection, info.partition_key)
    failure = await _dry_run(run, ops, pk_paths[0] if pk_paths else None)
    if failure is not None:
        return _failed(request, run, ops, failure, charge)
    results: list[dict[str, Any]] = []
    for op in ops:
        status, body = await _apply(run, op)
        if status >= 400:
            await _compensate(run)
            return _failed(request, run, ops, _Failure(op.index, status), charge)
        item: dict[str, Any] = {
            "statusCode": status,
            "requestCharge": charge(op.type, status, _document_of(run, op, body)),
        }
        if isinstance(body, dict) and op.type != "Delete":
            quote_etags_in(body)
            if isinstance(body.get("_etag"), str):
                item["eTag"] = body["_etag"]
            item["resourceBody"] = body
        results.append(item)
    return _batch_response(request, 200, results)
