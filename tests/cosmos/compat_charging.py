"""Pricing one served request with the RU table: the glue between the transport and the meter.

The transport tells :class:`Charger` what it did (:class:`Served`: the meter kind, how many
physical partitions a query ran on, the document a delete removed); the charger reads sizes
off the request and the response, counts index terms under the container's indexing policy
(learnt from the container-create request the transport saw) and returns a :class:`Price`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from .compat_faults import RequestInfo
from .compat_indexing import DEFAULT_POLICY, IndexPolicy
from .compat_ru import DEFAULT_RU_TABLE, RuTable

__all__ = ["Charger", "Price", "Served", "meter_kind"]

_POINT_KINDS = {
    "read": "point_read",
    "create": "create",
    "upsert": "upsert",
    "replace": "replace",
    "patch": "patch",
    "delete": "delete",
    "batch": "batch",
    "pkranges": "pkranges",
}


def meter_kind(info: RequestInfo) -> str:
    """The meter's kind of a request that is not a document query (those depend on scope)."""
    return _POINT_KINDS.get(info.kind, "other")


@dataclass(slots=True)
class Served:
    """What serving a request did, as far as its price depends on it."""

    kind: str
    fanout: int = 1
    """Physical partitions a query ran on."""
    removed: Any = None
    """The document a point delete removed (read just before it)."""


@dataclass(frozen=True, slots=True)
class Price:
    ru: float
    conditional: bool
    ops: tuple[tuple[str, int, float], ...] = ()
    """A batch's ``(operation type, status, RU)``."""


def _size(document: Any) -> int:
    return len(json.dumps(document, separators=(",", ":")).encode()) if document else 0


def _json(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


class Charger:
    """Prices requests; remembers each container's indexing policy."""

    def __init__(self, table: RuTable = DEFAULT_RU_TABLE) -> None:
        self.table = table
        self._policies: dict[str, IndexPolicy] = {}

    # -- indexing policies ----------------------------------------------------------------------

    def policy(self, collection: str | None) -> IndexPolicy:
        return self._policies.get(collection or "", DEFAULT_POLICY)

    def learn(self, info: RequestInfo, status: int) -> None:
        """Record the indexing policy of a container created or replaced through the layer."""
        if info.kind == "container" and info.method in {"POST", "PUT"} and status in {200, 201}:
            body = _json(info.content)
            if not isinstance(body, dict):
                return
            link = info.path.strip("/")
            if info.method == "POST":
                link = f"{link}/{body.get('id', '')}"
            self._policies[link] = IndexPolicy.from_json(body.get("indexingPolicy"))
        elif info.kind in {"container", "database"} and info.method == "DELETE":
            gone = info.path.strip("/")
            for link in [k for k in self._policies if k == gone or k.startswith(gone + "/")]:
                del self._policies[link]

    # -- prices ---------------------------------------------------------------------------------

    def op_charge(self, collection: str | None, op_type: str, status: int, document: Any) -> float:
        """One transactional-batch operation (see ``compat_batch.OpCharge``)."""
        table, policy = self.table, self.policy(collection)
        if status >= 400:
            return table.refused(status)
        size, terms = _size(document), policy.terms(document)
        op = op_type.lower()
        if op == "read":
            return table.point_read(size)
        if op == "create" or (op == "upsert" and status == 201):
            return table.create(size, terms)
        if op in {"replace", "upsert"}:
            return table.replace(size, terms)
        if op == "delete":
            return table.delete(size, terms)
        if op == "patch":
            return table.patch(size, terms)
        return 0.0

    def price(self, info: RequestInfo, response: httpx.Response, served: Served) -> Price:
        status = response.status_code
        if info.kind == "batch":
            return self._batch(info, response)
        conditional = "if-match" in info.headers and info.is_write
        if status >= 400:
            return Price(self.table.refused(status), conditional)
        table, policy = self.table, self.policy(info.collection)
        kind = served.kind
        if kind == "point_read":
            ru = table.point_read(len(response.content))
        elif kind in {"create", "upsert", "replace"}:
            body = _json(info.content)
            size, terms = len(info.content), policy.terms(body)
            writes_new = kind == "create" or (kind == "upsert" and status == 201)
            ru = table.create(size, terms) if writes_new else table.replace(size, terms)
        elif kind == "patch":
            ru = table.patch(len(response.content), policy.terms(_json(response.content)))
        elif kind == "delete":
            ru = table.delete(_size(served.removed), policy.terms(served.removed))
        elif kind.endswith("_query"):
            ru = table.query_page(len(response.content), served.fanout)
        else:
            ru = table.metadata
        return Price(ru, conditional)

    def _batch(self, info: RequestInfo, response: httpx.Response) -> Price:
        request_ops = _json(info.content)
        results = _json(response.content)
        request_ops = request_ops if isinstance(request_ops, list) else []
        conditional = any(isinstance(op, dict) and op.get("ifMatch") for op in request_ops)
        if response.status_code not in {200, 207} or not isinstance(results, list):
            return Price(self.table.refused(response.status_code), conditional)
        ops = []
        for i, result in enumerate(results):
            if not isinstance(result, dict):
                continue
            request_op = request_ops[i] if i < len(request_ops) else {}
            op_type = str(request_op.get("operationType", "?")).lower()
            ops.append((op_type, int(result.get("statusCode", 0)), float(result["requestCharge"])))
        return Price(sum(ru for _, _, ru in ops), conditional, tuple(ops))

    def price_bulk(self, info: RequestInfo, response: httpx.Response) -> httpx.Response:
        """A non-atomic batch is answered by the server itself: re-price each operation from
        its request body (a delete's document is unknown: the 1 KB minimum applies)."""
        request_ops = _json(info.content)
        results = _json(response.content)
        if not isinstance(request_ops, list) or not isinstance(results, list):
            return response
        for request_op, result in zip(request_ops, results, strict=False):
            if isinstance(request_op, dict) and isinstance(result, dict):
                result["requestCharge"] = self.op_charge(
                    info.collection,
                    str(request_op.get("operationType", "")),
                    int(result.get("statusCode", 0)),
                    request_op.get("resourceBody"),
                )
        headers = [(k, v) for k, v in response.headers.multi_items() if k != "content-length"]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=json.dumps(results).encode(),
            request=response.request,
            extensions=response.extensions,
        )
