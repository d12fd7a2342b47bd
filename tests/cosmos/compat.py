"""An httpx transport that makes ``@vercel/cosmosdb-server`` answer like Azure Cosmos DB.

Wire it under the client the provider uses::

    faults = FaultPlan()
    transport = CompatTransport(server_url, key=EMULATOR_KEY, faults=faults)
    client = httpx.AsyncClient(transport=transport)

What it changes, request by request (see ``tests/cosmos/README.md`` for the full story):

* **auth**: the master-key signature and ``x-ms-date`` (15 minutes) are verified with ``key``;
  401 otherwise. The server itself accepts anything.
* **atomic transactional batch** with 207/424, the 100-operation and 2 MB limits, and ops
  without a per-op ``partitionKey`` (see :mod:`.compat_batch`).
* **partition-scoped queries**: a query with ``x-ms-documentdb-partitionkey`` only sees that
  partition; a cross-partition query with ORDER BY / TOP / OFFSET / LIMIT / DISTINCT /
  GROUP BY / aggregates gets 400 substatus 1004; a query with neither the partition key nor
  ``x-ms-documentdb-query-enablecrosspartition: True`` gets 400.
* **point operations**: 404 (not 500) for a missing document or container, 400 without the
  partition key header, 400/1001 when the body's partition key is not the header's, 400 when
  a replace body's id is not the URL's (the server would overwrite that other document), 413
  for a document over 2 MB, 400 for malformed JSON.
* **etags** are quoted (``"…"``) in headers and ``_etag`` fields, and unquoted on the way in.
* the account document advertises the endpoint the client used, not ``https://``.
* **faults** from the :class:`FaultPlan`, and a :class:`RequestLog` of every request.
* **request charges**: every response carries an estimated ``x-ms-request-charge`` (Azure's
  rules of thumb, :mod:`.compat_ru`), and a :class:`~.compat_meter.Meter` (``meter``) totals
  requests and RU by source, kind and status (:mod:`.compat_meter`).
* **simulated physical partitions** (``partitions=P``, default 1): ``GET .../pkranges`` lists P
  ranges; a query with ``x-ms-documentdb-partitionkeyrangeid`` sees only that range's
  documents (ORDER BY / TOP / aggregates allowed there, as on Cosmos) and is charged for one
  partition, a cross-partition query for P (:mod:`.compat_partitions`).

Writes are isolated with a reader/writer lock held per transport: an atomic batch runs alone,
everything else runs concurrently. Share one transport between all clients of one test.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import httpx

from .compat_auth import DEFAULT_MAX_SKEW, verify_authorization
from .compat_backend import Backend, pk_value, quote_etag, quote_etags_in, unquote_etag
from .compat_batch import MAX_BATCH_BYTES, run_atomic_batch
from .compat_charging import Charger, Served, meter_kind
from .compat_faults import (
    FaultPlan,
    FaultRule,
    RequestInfo,
    RequestLog,
    build_error,
    classify,
    cosmos_error,
)
from .compat_lock import ReadWriteLock
from .compat_meter import METER_SOURCE_HEADER, Meter
from .compat_partitions import RANGE_ID_HEADER, PartitionLayout, keys_in_range
from .compat_query import (
    PK_PARAM,
    PK_VALUES_PARAM,
    QueryRewriteError,
    cross_partition_blocker,
    scope_to_keys,
    scope_to_partition,
)
from .compat_ru import DEFAULT_RU_TABLE, RuTable

__all__ = ["EMULATOR_KEY", "CompatTransport", "FaultPlan", "Meter", "RequestLog"]

EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
MAX_DOCUMENT_BYTES = 2 * 1024 * 1024
_XP = "x-ms-documentdb-query-enablecrosspartition"
_PK = "x-ms-documentdb-partitionkey"


def _is_quoted_etag(value: str) -> bool:
    """An etag of the test server (a UUID) as Cosmos quotes it. Only those: any other string
    a query parameter carries, quotes included, is user data and passes untouched."""
    if len(value) != 38 or value[0] != '"' or value[-1] != '"':
        return False
    try:
        uuid.UUID(value[1:-1])
    except ValueError:
        return False
    return True


def _true(headers: httpx.Headers, name: str) -> bool:
    return str(headers.get(name, "")).strip().lower() == "true"


class CompatTransport(httpx.AsyncBaseTransport):
    """Cosmos DB semantics and fault injection in front of the local test server.

    ``key=None`` disables signature checking. ``clock`` returns the "server time" used for
    the ``x-ms-date`` window (tests of clock skew can move it). ``faults`` and ``log`` are
    public: program the first, assert on the second. ``partitions`` is the number of simulated
    physical partitions; ``meter`` (created if not given) totals the estimated request charges
    priced by ``ru_table``.
    """

    def __init__(
        self,
        server_url: str,
        *,
        key: str | None = EMULATOR_KEY,
        faults: FaultPlan | None = None,
        max_clock_skew: dt.timedelta = DEFAULT_MAX_SKEW,
        clock: Callable[[], dt.datetime] | None = None,
        quote_etags: bool = True,
        inner: httpx.AsyncBaseTransport | None = None,
        partitions: int = 1,
        meter: Meter | None = None,
        ru_table: RuTable = DEFAULT_RU_TABLE,
    ) -> None:
        if inner is None:
            # The HTTPS server's certificate is self-signed and expired: the layer talks to it
            # unverified; the provider's own TLS settings are exercised without this layer.
            inner = httpx.AsyncHTTPTransport(verify=not server_url.startswith("https"))
        self.backend = Backend(server_url, inner)
        self.key = key
        self.faults = faults if faults is not None else FaultPlan()
        self.log = RequestLog()
        self.max_clock_skew = max_clock_skew
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.quote_etags = quote_etags
        self.layout = PartitionLayout(partitions)
        self.meter = meter if meter is not None else Meter(partitions=partitions)
        self.meter.partitions = partitions
        self.charger = Charger(ru_table)
        self._lock = ReadWriteLock()

    async def aclose(self) -> None:
        await self.backend.inner.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        info = classify(request, content)
        fault: str | None = None
        try:
            response = self._check_auth(request, info)
            if response is not None:
                self._meter_unserved(info, response.status_code)
            else:
                rule = self.faults.pick(info)
                fault = rule.action if rule is not None else None
                response = await self._run(request, info, rule)
        except BaseException as exc:
            self.log.record(info, None, fault, type(exc).__name__)
            raise
        self.log.record(info, response.status_code, fault, None)
        return response

    def _meter_unserved(self, info: RequestInfo, status: int | None) -> None:
        """A request no partition executed (auth failure, injected fault): 0 RU."""
        self.meter.record(
            source=info.headers.get(METER_SOURCE_HEADER, ""),
            kind=self._kind_of(info),
            status=status,
            ru=0.0,
            conditional="if-match" in info.headers and info.is_write,
            bytes_sent=len(info.content),
        )

    def _check_auth(self, request: httpx.Request, info: RequestInfo) -> httpx.Response | None:
        if self.key is None:
            return None
        failure = verify_authorization(
            key=self.key,
            method=info.method,
            path=request.url.raw_path.decode("ascii").split("?", 1)[0],
            headers={k.lower(): v for k, v in request.headers.items()},
            now=self.clock(),
            max_skew=self.max_clock_skew,
        )
        if failure is None:
            return None
        return cosmos_error(request, failure.status, failure.message)

    async def _run(
        self, request: httpx.Request, info: RequestInfo, rule: FaultRule | None
    ) -> httpx.Response:
        if rule is None:
            return await self._serve(request, info)
        if rule.delay > 0:
            await anyio.sleep(rule.delay)
        if rule.status is not None:
            self._meter_unserved(info, rule.status)
            return rule.response(request)
        if rule.error is not None:
            self._meter_unserved(info, None)
            raise build_error(rule.error, request, f"{rule.error!r} before sending")
        response = await self._serve(request, info)
        if rule.lose_response is not None:
            raise build_error(rule.lose_response, request, "loss of an applied response")
        return response

    # -- serving ---------------------------------------------------------------------------

    def _kind_of(self, info: RequestInfo) -> str:
        if info.kind != "query" or info.collection is None:
            return meter_kind(info)
        if _PK in info.headers:
            return "partition_query"
        if RANGE_ID_HEADER in info.headers:
            return "range_query"
        return "cross_partition_query"

    async def _serve(self, request: httpx.Request, info: RequestInfo) -> httpx.Response:
        kind = self._kind_of(info)
        served = Served(kind, fanout=self.layout.count if kind == "cross_partition_query" else 1)
        if info.kind == "batch" and _true(info.headers, "x-ms-cosmos-batch-atomic"):

            def charge(op_type: str, status: int, document: Any) -> float:
                return self.charger.op_charge(info.collection, op_type, status, document)

            # Once sent, Cosmos applies a batch whole or not at all, whatever the client does
            # meanwhile: shield it from the caller's cancellation.
            with anyio.CancelScope(shield=True):
                async with self._lock.exclusive():
                    response = await run_atomic_batch(self.backend, request, info, charge)
        else:
            async with self._lock.shared():
                response = await self._serve_shared(request, info, served)
            if info.kind == "batch" and response.status_code < 300:
                response = self.charger.price_bulk(info, response)
        response = self._finish(response)
        self.charger.learn(info, response.status_code)
        return self._charge(info, response, served)

    def _charge(
        self, info: RequestInfo, response: httpx.Response, served: Served
    ) -> httpx.Response:
        """Put the estimated charge in ``x-ms-request-charge`` and on the meter."""
        price = self.charger.price(info, response, served)
        response.headers["x-ms-request-charge"] = f"{price.ru:.2f}"
        self.meter.record(
            source=info.headers.get(METER_SOURCE_HEADER, ""),
            kind=served.kind,
            status=response.status_code,
            ru=price.ru,
            conditional=price.conditional,
            bytes_sent=len(info.content),
            bytes_received=len(response.content),
            ops=price.ops,
        )
        return response

    async def _serve_shared(
        self, request: httpx.Request, info: RequestInfo, served: Served
    ) -> httpx.Response:
        headers = self._forward_headers(request)
        content = info.content
        if info.kind in {"database", "container"} and info.method != "GET":
            self.backend.forget()
        if info.kind == "pkranges":
            return await self._pkranges(request, info)
        if info.collection is not None:
            early = await self._check_document_request(request, info)
            if early is not None:
                return early
            if info.kind == "query":
                prepared = await self._prepare_query(request, info, headers)
                if isinstance(prepared, httpx.Response):
                    return prepared
                content = prepared
            elif info.kind == "batch":
                content = self._bulk_body(info)
            elif info.kind == "read":
                headers[_XP] = "True"  # turns the server's 500 on a missing doc into 404
            elif info.kind == "delete":
                served.removed = await self._document_before_delete(info)
        forward = httpx.Request(
            info.method,
            self.backend.retarget(request.url),
            headers=headers,
            content=content,
            extensions=request.extensions,
        )
        response = await self.backend.send(forward)
        if info.kind == "account":
            return self._rewrite_endpoints(request, response)
        return response

    async def _document_before_delete(self, info: RequestInfo) -> Any:
        """The document a delete is about to remove: its size and index terms set the price."""
        assert info.collection is not None and info.doc_id is not None
        try:
            return await self.backend.read_doc(info.collection, info.doc_id, info.partition_key)
        except RuntimeError:
            return None  # the delete itself reports the problem

    async def _pkranges(self, request: httpx.Request, info: RequestInfo) -> httpx.Response:
        collection = info.path.strip("/").rsplit("/", 1)[0]  # dbs/d/colls/c
        container = await self.backend.container(collection)
        if container is None:
            return cosmos_error(request, 404, f"Container {collection} does not exist.")
        body = self.layout.pkranges_body(container)
        headers = {
            "content-type": "application/json",
            "x-ms-activity-id": str(uuid.uuid4()),
            "x-ms-item-count": str(body["_count"]),
        }
        return httpx.Response(200, headers=headers, json=body, request=request)

    def _forward_headers(self, request: httpx.Request) -> dict[str, str]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        headers.pop("content-length", None)
        headers.pop(METER_SOURCE_HEADER, None)
        headers["host"] = self.backend.base.netloc.decode("ascii")
        for name in ("if-match", "if-none-match"):
            if name in headers:
                headers[name] = unquote_etag(headers[name])
        return headers

    async def _check_document_request(
        self, request: httpx.Request, info: RequestInfo
    ) -> httpx.Response | None:
        assert info.collection is not None
        pk_paths = await self.backend.pk_paths(info.collection)
        if pk_paths is None:
            return cosmos_error(request, 404, f"Container {info.collection} does not exist.")
        if not pk_paths or info.kind in {"query", "readfeed", "batch", "other"}:
            return None
        if "x-ms-documentdb-partitionkey" not in info.headers:
            return cosmos_error(
                request,
                400,
                "The partition key supplied in x-ms-partitionkey header has fewer components "
                "than defined in the collection.",
            )
        if info.kind not in {"create", "upsert", "replace"}:
            return None
        if len(info.content) > MAX_DOCUMENT_BYTES:
            return cosmos_error(request, 413, "Request size is too large.")
        try:
            body = info.json()
        except ValueError:
            return cosmos_error(request, 400, "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return cosmos_error(request, 400, "The document must be a JSON object.")
        if info.kind == "replace" and body.get("id") != info.doc_id:
            return cosmos_error(
                request, 400, "The id in the body does not match the id in the request URL."
            )
        if pk_value(body, pk_paths[0]) != info.partition_key:
            return cosmos_error(
                request,
                400,
                "PartitionKey extracted from document doesn't match the one specified in the "
                "header.",
                substatus=1001,
            )
        return None

    async def _prepare_query(
        self, request: httpx.Request, info: RequestInfo, headers: dict[str, str]
    ) -> bytes | httpx.Response:
        assert info.collection is not None
        try:
            body = info.json()
        except ValueError:
            return cosmos_error(request, 400, "The query body is not valid JSON.")
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return info.content  # let the server answer its own 400
        pk_paths = await self.backend.pk_paths(info.collection) or []
        params = [dict(p) for p in body.get("parameters") or []]
        for param in params:
            value = param.get("value")
            if isinstance(value, str) and _is_quoted_etag(value):
                param["value"] = unquote_etag(value)  # a quoted etag the server stores bare
        if not pk_paths:
            pass
        elif _PK in headers:
            try:
                body["query"] = scope_to_partition(body["query"], pk_paths[0])
            except QueryRewriteError as exc:
                return cosmos_error(request, 400, f"compat layer cannot scope this query: {exc}")
            params.append({"name": PK_PARAM, "value": info.partition_key})
            headers[_XP] = "True"  # the filter is in the query now; skip the server's check
        elif RANGE_ID_HEADER in headers:
            # One physical partition: the SDKs' way to run ORDER BY / TOP / aggregates, so
            # the gateway's cross-partition rules do not apply.
            index = self.layout.parse_range_id(headers[RANGE_ID_HEADER])
            if index is None:
                return cosmos_error(
                    request,
                    410,
                    f"Partition key range {headers[RANGE_ID_HEADER]!r} is gone; read the "
                    "partition key ranges again.",
                    substatus=1002,
                )
            if self.layout.count > 1:
                keys = await keys_in_range(
                    self.backend, info.collection, pk_paths[0], self.layout, index
                )
                try:
                    body["query"] = scope_to_keys(body["query"], pk_paths[0])
                except QueryRewriteError as exc:
                    return cosmos_error(
                        request, 400, f"compat layer cannot scope this query: {exc}"
                    )
                params.append({"name": PK_VALUES_PARAM, "value": keys})
            headers[_XP] = "True"
        elif _true(info.headers, _XP):
            blocker = cross_partition_blocker(body["query"])
            if blocker is not None:
                return cosmos_error(
                    request,
                    400,
                    "The provided cross partition query can not be directly served by the "
                    f"gateway ({blocker}); the client must run it with a query plan.",
                    substatus=1004,
                )
        else:
            return cosmos_error(
                request,
                400,
                "Cross partition query is required but disabled. Set "
                "x-ms-documentdb-query-enablecrosspartition to true, or specify "
                "x-ms-documentdb-partitionkey.",
            )
        body["parameters"] = params
        return json.dumps(body).encode()

    def _bulk_body(self, info: RequestInfo) -> bytes:
        """Non-atomic (bulk) batch: the server needs a per-op partitionKey; Cosmos does not."""
        if len(info.content) > MAX_BATCH_BYTES:
            return info.content
        try:
            ops = info.json()
        except ValueError:
            return info.content
        if not isinstance(ops, list):
            return info.content
        for op in ops:
            if isinstance(op, dict):
                if "partitionKey" not in op and info.partition_key is not None:
                    op["partitionKey"] = json.dumps([info.partition_key])
                if isinstance(op.get("ifMatch"), str):
                    op["ifMatch"] = unquote_etag(op["ifMatch"])
        return json.dumps(ops).encode()

    @staticmethod
    def _rewrite_endpoints(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        try:
            data = response.json()
        except ValueError:
            return response
        if not isinstance(data, dict):
            return response
        endpoint = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}/"
        for key in ("writableLocations", "readableLocations"):
            for location in data.get(key) or []:
                if isinstance(location, dict):
                    location["databaseAccountEndpoint"] = endpoint
        headers = [(k, v) for k, v in response.headers.multi_items() if k != "content-length"]
        return httpx.Response(
            response.status_code, headers=headers, json=data, request=response.request
        )

    def _finish(self, response: httpx.Response) -> httpx.Response:
        if not self.quote_etags:
            return response
        headers = httpx.Headers(response.headers)
        if "etag" in headers:
            headers["etag"] = quote_etag(headers["etag"])
        content = response.content
        if content and headers.get("content-type", "").startswith("application/json"):
            try:
                data: Any = json.loads(content)
            except ValueError:
                data = None
            if isinstance(data, list):  # a batch response: one result per operation
                for item in data:
                    if isinstance(item, dict):
                        if isinstance(item.get("eTag"), str):
                            item["eTag"] = quote_etag(item["eTag"])
                        quote_etags_in(item.get("resourceBody"))
            else:
                quote_etags_in(data)
            content = json.dumps(data).encode()
        headers.pop("content-length", None)
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=content,
            request=response.request,
            extensions=response.extensions,
        )
