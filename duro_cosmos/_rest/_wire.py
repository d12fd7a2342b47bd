"""Encoding request bodies and decoding responses for :mod:`._client`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from ._errors import CosmosInvalidRequest, CosmosRequestTooLarge, CosmosUnavailable
from ._types import BatchOperationResult, ItemResponse, check_id

MAX_ITEM_BYTES = 2 * 1024 * 1024
"""Largest document Cosmos DB stores (2 MB); larger ones are refused before sending."""

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: httpx.Headers
    data: Any


def encode(operation: str, value: Any) -> bytes:
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CosmosInvalidRequest(operation, f"the body cannot be encoded as JSON: {exc}") from exc


def encode_item(operation: str, body: Mapping[str, Any]) -> bytes:
    data = encode(operation, body)
    if len(data) > MAX_ITEM_BYTES:
        raise CosmosRequestTooLarge(
            operation, f"the document is {len(data)} bytes; the limit is {MAX_ITEM_BYTES}"
        )
    return data


def body_id(operation: str, body: Mapping[str, Any]) -> str:
    doc_id = body.get("id")
    if not isinstance(doc_id, str):
        raise CosmosInvalidRequest(operation, "the document body needs a string 'id'")
    return check_id(operation, doc_id)


def charge(headers: httpx.Headers) -> float:
    raw = headers.get("x-ms-request-charge")
    if not raw:
        return 0.0
    try:
        return float(raw)
    except ValueError:
        return 0.0


def item(reply: Reply) -> ItemResponse:
    body = reply.data if isinstance(reply.data, dict) else None
    etag = reply.headers.get("etag")
    if etag is None and body is not None and isinstance(body.get("_etag"), str):
        etag = body["_etag"]
    return ItemResponse(
        status=reply.status,
        etag=etag,
        body=body,
        request_charge=charge(reply.headers),
        session_token=reply.headers.get("x-ms-session-token"),
        activity_id=reply.headers.get("x-ms-activity-id"),
    )


def batch_results(operation: str, reply: Reply, expected: int) -> list[BatchOperationResult]:
    raw = reply.data
    if not isinstance(raw, list) or len(raw) != expected:
        got = len(raw) if isinstance(raw, list) else type(raw).__name__
        raise CosmosUnavailable(
            operation,
            f"the batch response holds {got} results for {expected} operations",
            status=reply.status,
            may_have_applied=True,
            activity_id=reply.headers.get("x-ms-activity-id"),
        )
    return [BatchOperationResult.from_json(item) for item in raw]
