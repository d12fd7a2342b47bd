"""``CosmosRestClient``: the Cosmos DB (NoSQL API) data plane over one pooled httpx client.

Each request is signed afresh per attempt (a new ``x-ms-date``), sent through
:class:`HttpRetryPolicy`, and every failure is translated into the ``CosmosError`` tree.
The client talks only to the endpoint it was given: it never reads the account document
to discover regional endpoints (the local test server advertises ``https://`` even when
it serves plain HTTP).
"""

from __future__ import annotations

import logging
import ssl
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, Self

import httpx
import msgspec
from opentelemetry.metrics import MeterProvider

from duro._telemetry import Metrics

from ._auth import MasterKeySigner, http_date, resource_of_path
from ._errors import (
    CosmosBatchFailed,
    CosmosConflict,
    CosmosError,
    CosmosInvalidRequest,
    CosmosNotFound,
    CosmosRequestTooLarge,
    CosmosThrottled,
    CosmosUnavailable,
    error_from_response,
    error_from_transport,
)
from ._retry import HttpRetryPolicy
from ._session import SessionTokens
from ._types import (
    MAX_BATCH_BYTES,
    MAX_BATCH_OPERATIONS,
    BatchOperation,
    BatchOperationResult,
    ContainerLink,
    ItemResponse,
    PartitionKeyValue,
    QueryPage,
    RequestKind,
    RequestStatistics,
    check_id,
    partition_key_header,
    patch_body,
    url_path,
)
from ._wire import (
    MAX_ITEM_BYTES,
    Reply,
    batch_results,
    body_id,
    charge,
    encode,
    encode_item,
    item,
)

__all__ = ["API_VERSION", "DEFAULT_TIMEOUT", "MAX_ITEM_BYTES", "CosmosRestClient"]

log = logging.getLogger("duro_cosmos.rest")

API_VERSION = "2020-07-15"
"""``x-ms-version`` sent; transactional batch and PATCH need at least this version."""
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)

_JSON = "application/json"
_QUERY_JSON = "application/query+json"
_PATCH_JSON = "application/json_patch+json"
_TRUE = "True"


class CosmosRestClient:
    """Async Cosmos DB REST client with master-key auth, retries and request counters.

    ``transport`` replaces the network layer (tests put a compatibility / fault layer
    there); ``verify`` is ``True``, ``False`` or a CA bundle path (``False`` for an https
    endpoint logs a warning on the ``duro_cosmos.rest`` logger). ``batch_partition_key``
    adds each operation's partition key to a batch body (some servers need it; Azure reads
    the header). The key is held only by the signer and never shown. Every HTTP attempt is
    counted in ``duro.cosmos.requests`` and its charge in ``duro.cosmos.request_units`` on
    ``meter_provider`` (default: the global one; nothing while none is installed).
    """

    def __init__(
        self,
        endpoint: str,
        key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: bool | str = True,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_connections: int = 64,
        retry: HttpRetryPolicy | None = None,
        user_agent: str = "duro-cosmos/0.1",
        batch_partition_key: bool = False,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        url = httpx.URL(endpoint)
        if url.scheme not in ("http", "https") or not url.host:
            raise CosmosInvalidRequest(
                "configure Cosmos DB", f"endpoint {endpoint!r} is not an http(s) URL with a host"
            )
        if max_connections < 1:
            raise CosmosInvalidRequest("configure Cosmos DB", "max_connections must be >= 1")
        self._endpoint = str(url.copy_with(path="/", query=None, fragment=None)).rstrip("/")
        self._signer = MasterKeySigner(key)
        self._retry = retry if retry is not None else HttpRetryPolicy()
        self._user_agent = user_agent
        self._batch_partition_key = batch_partition_key
        self._sessions = SessionTokens()
        self._counts: Counter[str] = Counter()
        self._retries = 0
        self._throttled = 0
        self._ambiguous = 0
        self._charge = 0.0
        self._metrics = Metrics(meter_provider)
        ssl_verify: bool | ssl.SSLContext
        if isinstance(verify, str):
            ssl_verify = ssl.create_default_context(cafile=verify)
        else:
            ssl_verify = verify
        if ssl_verify is False and url.scheme == "https":
            log.warning(
                "TLS certificate verification is off for %s: anyone on the network path can "
                "pose as the account and read or change every document. Verify (the default), "
                "or trust a local emulator's certificate with ca_bundle / COSMOS_CA_BUNDLE.",
                self._endpoint,
            )
        self._http = httpx.AsyncClient(
            transport=transport,
            verify=ssl_verify,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,
        )

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def __repr__(self) -> str:
        return f"CosmosRestClient(endpoint={self._endpoint!r}, key=<hidden>)"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    def statistics(self) -> RequestStatistics:
        """A frozen snapshot of the request counters."""
        return RequestStatistics(
            total=sum(self._counts.values()),
            by_kind=MappingProxyType(dict(self._counts)),
            retries=self._retries,
            throttled=self._throttled,
            ambiguous_writes=self._ambiguous,
            request_charge=self._charge,
        )

    def reset_statistics(self) -> None:
        self._counts.clear()
        self._retries = self._throttled = self._ambiguous = 0
        self._charge = 0.0

    # -- databases and containers ---------------------------------------------------------

    async def create_database_if_missing(self, database: str) -> bool:
        """Create the database unless it exists; ``True`` if this call created it."""
        op = f"create database {database!r}"
        check_id(op, database, what="database id")
        try:
            await self._request(RequestKind.METADATA, op, "GET", f"dbs/{database}", idempotent=True)
            return False
        except CosmosNotFound:
            pass
        try:
            await self._request(
                RequestKind.METADATA, op, "POST", "dbs",
                body=encode(op, {"id": database}), idempotent=False,
            )  # fmt: skip
        except CosmosConflict:
            return False
        return True

    async def create_container_if_missing(
        self,
        container: ContainerLink,
        *,
        partition_key_path: str,
        indexing_policy: Mapping[str, Any] | None = None,
        default_ttl: int | None = None,
        throughput: int | None = None,
    ) -> bool:
        """Create the container unless it exists; ``True`` if this call created it.

        An existing container must have ``partition_key_path`` as its (single, hash)
        partition key, else :class:`CosmosInvalidRequest`: writing into a container keyed on
        something else would scatter every instance. An existing container's indexing
        policy is left as it is.
        """
        op = f"create container {container.path!r}"
        if not partition_key_path.startswith("/"):
            raise CosmosInvalidRequest(op, "partition_key_path must start with '/'")
        try:
            existing = await self.read_container(container)
        except CosmosNotFound:
            existing = None
        created = False
        if existing is None:
            spec: dict[str, Any] = {
                "id": container.container,
                "partitionKey": {"paths": [partition_key_path], "kind": "Hash", "version": 2},
            }
            if indexing_policy is not None:
                spec["indexingPolicy"] = dict(indexing_policy)
            if default_ttl is not None:
                spec["defaultTtl"] = default_ttl
            headers = {"x-ms-offer-throughput": str(throughput)} if throughput else {}
            try:
                await self._request(
                    RequestKind.METADATA, op, "POST", f"dbs/{container.database}/colls",
                    body=encode(op, spec), headers=headers, idempotent=False,
                )  # fmt: skip
                created = True
            except CosmosConflict:
                pass
            if not created:
                existing = await self.read_container(container)
        if existing is not None:
            paths = (existing.get("partitionKey") or {}).get("paths")
            if paths is not None and list(paths) != [partition_key_path]:
                raise CosmosInvalidRequest(
                    op,
                    f"the container exists with partition key {paths!r}, not "
                    f"[{partition_key_path!r}]; use another container",
                )
        return created

    async def read_container(self, container: ContainerLink) -> dict[str, Any]:
        """The container's properties (``partitionKey``, ``indexingPolicy``, ...)."""
        reply = await self._request(
            RequestKind.METADATA, f"read container {container.path!r}", "GET", container.path,
            idempotent=True,
        )  # fmt: skip
        return reply.data if isinstance(reply.data, dict) else {}

    async def partition_key_ranges(self, container: ContainerLink) -> list[str]:
        """Ids of the container's partition key ranges (one per physical partition)."""
        reply = await self._request(
            RequestKind.METADATA, f"list partition key ranges of {container.path!r}", "GET",
            f"{container.path}/pkranges", idempotent=True,
        )  # fmt: skip
        data = reply.data if isinstance(reply.data, dict) else {}
        ranges = data.get("PartitionKeyRanges")
        if not isinstance(ranges, list):
            return []
        return [str(r["id"]) for r in ranges if isinstance(r, dict) and "id" in r]

    async def delete_database(self, database: str) -> bool:
        """Delete a database and everything in it; ``False`` if it did not exist."""
        op = f"delete database {database!r}"
        check_id(op, database, what="database id")
        try:
            await self._request(
                RequestKind.METADATA, op, "DELETE", f"dbs/{database}", idempotent=True
            )
        except CosmosNotFound:
            return False
        return True

    # -- point operations -----------------------------------------------------------------

    async def read_document(
        self, container: ContainerLink, doc_id: str, partition_key: PartitionKeyValue
    ) -> ItemResponse:
        """Read one document; :class:`CosmosNotFound` if it does not exist."""
        op = f"read document {doc_id!r}"
        check_id(op, doc_id)
        reply = await self._request(
            RequestKind.READ, op, "GET", container.document_path(doc_id),
            partition_key=partition_key, idempotent=True, session=container.path,
        )  # fmt: skip
        return item(reply)

    async def create_document(
        self, container: ContainerLink, body: Mapping[str, Any], partition_key: PartitionKeyValue
    ) -> ItemResponse:
        """Create a document; :class:`CosmosConflict` if the id exists in the partition.

        Not idempotent: a lost response raises :class:`CosmosAmbiguousWrite`.
        """
        op = f"create document {body.get('id')!r}"
        body_id(op, body)
        reply = await self._request(
            RequestKind.CREATE, op, "POST", f"{container.path}/docs",
            body=encode_item(op, body), partition_key=partition_key, idempotent=False,
            session=container.path,
        )  # fmt: skip
        return item(reply)

    async def upsert_document(
        self,
        container: ContainerLink,
        body: Mapping[str, Any],
        partition_key: PartitionKeyValue,
        *,
        if_match: str | None = None,
    ) -> ItemResponse:
        """Create or replace a document (idempotent, so retried after a lost response)."""
        op = f"upsert document {body.get('id')!r}"
        body_id(op, body)
        headers = {"x-ms-documentdb-is-upsert": _TRUE}
        if if_match is not None:
            headers["if-match"] = if_match
        reply = await self._request(
            RequestKind.UPSERT, op, "POST", f"{container.path}/docs",
            body=encode_item(op, body), headers=headers, partition_key=partition_key,
            idempotent=True, session=container.path,
        )  # fmt: skip
        return item(reply)

    async def replace_document(
        self,
        container: ContainerLink,
        doc_id: str,
        body: Mapping[str, Any],
        partition_key: PartitionKeyValue,
        *,
        if_match: str | None = None,
    ) -> ItemResponse:
        """Replace a document; with ``if_match``, :class:`CosmosPreconditionFailed` if changed."""
        op = f"replace document {doc_id!r}"
        check_id(op, doc_id)
        if body.get("id") != doc_id:
            raise CosmosInvalidRequest(op, "the body's 'id' differs from the document id")
        headers = {"if-match": if_match} if if_match is not None else {}
        reply = await self._request(
            RequestKind.REPLACE, op, "PUT", container.document_path(doc_id),
            body=encode_item(op, body), headers=headers, partition_key=partition_key,
            idempotent=True, session=container.path,
        )  # fmt: skip
        return item(reply)

    async def delete_document(
        self,
        container: ContainerLink,
        doc_id: str,
        partition_key: PartitionKeyValue,
        *,
        if_match: str | None = None,
    ) -> ItemResponse:
        """Delete a document; :class:`CosmosNotFound` if it is already gone."""
        op = f"delete document {doc_id!r}"
        check_id(op, doc_id)
        headers = {"if-match": if_match} if if_match is not None else {}
        reply = await self._request(
            RequestKind.DELETE, op, "DELETE", container.document_path(doc_id),
            headers=headers, partition_key=partition_key, idempotent=True,
            session=container.path,
        )  # fmt: skip
        return item(reply)

    async def patch_document(
        self,
        container: ContainerLink,
        doc_id: str,
        partition_key: PartitionKeyValue,
        operations: Sequence[Mapping[str, Any]],
        *,
        if_match: str | None = None,
        condition: str | None = None,
    ) -> ItemResponse:
        """Apply up to 10 patch operations (``{"op": "set", "path": "/x", "value": 1}``).

        Idempotent only with ``if_match`` (an ``incr`` repeated would count twice), so
        without it a lost response raises :class:`CosmosAmbiguousWrite`.
        """
        op = f"patch document {doc_id!r}"
        check_id(op, doc_id)
        headers = {"if-match": if_match} if if_match is not None else {}
        reply = await self._request(
            RequestKind.PATCH, op, "PATCH", container.document_path(doc_id),
            body=encode(op, patch_body(op, operations, condition)), content_type=_PATCH_JSON,
            headers=headers, partition_key=partition_key, idempotent=if_match is not None,
            session=container.path,
        )  # fmt: skip
        return item(reply)

    # -- queries --------------------------------------------------------------------------

    async def query(
        self,
        container: ContainerLink,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        partition_key: PartitionKeyValue | None = None,
        partition_key_range_id: str | None = None,
        max_item_count: int = -1,
        continuation: str | None = None,
    ) -> AsyncGenerator[QueryPage, None]:
        """Run a parameterised query and yield its pages, following ``x-ms-continuation``.

        With ``partition_key`` the query is scoped to that logical partition (put the same
        equality in the WHERE clause too); with ``None`` it runs across partitions, which
        the gateway serves only for queries that need no client-side merge (else
        :class:`CosmosBadRequest` with ``cross_partition_query_not_servable``), unless
        ``partition_key_range_id`` addresses one physical partition, where ORDER BY, TOP and
        aggregates are served.
        ``parameters`` maps names (with or without the leading ``@``) to values.
        ``continuation`` resumes from a page's token. Pages may be empty.
        """
        op = "query documents"
        if max_item_count == 0 or max_item_count < -1:
            raise CosmosInvalidRequest(op, "max_item_count must be -1 or positive")
        params = [
            {"name": name if name.startswith("@") else f"@{name}", "value": value}
            for name, value in (parameters or {}).items()
        ]
        body = encode(op, {"query": sql, "parameters": params})
        base_headers = {
            "x-ms-documentdb-isquery": _TRUE,
            "x-ms-max-item-count": str(max_item_count),
        }
        if partition_key is None:
            base_headers["x-ms-documentdb-query-enablecrosspartition"] = _TRUE
        if partition_key_range_id is not None:
            base_headers["x-ms-documentdb-partitionkeyrangeid"] = partition_key_range_id
        token = continuation
        while True:
            headers = dict(base_headers)
            if token:
                headers["x-ms-continuation"] = token
            reply = await self._request(
                RequestKind.QUERY, op, "POST", f"{container.path}/docs",
                body=body, content_type=_QUERY_JSON, headers=headers,
                partition_key=partition_key, idempotent=True, session=container.path,
            )  # fmt: skip
            data = reply.data if isinstance(reply.data, dict) else {}
            items = data.get("Documents")
            token = reply.headers.get("x-ms-continuation") or None
            yield QueryPage(
                items=list(items) if isinstance(items, list) else [],
                continuation=token,
                request_charge=charge(reply.headers),
                activity_id=reply.headers.get("x-ms-activity-id"),
            )
            if token is None:
                return

    async def query_all(
        self,
        container: ContainerLink,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        partition_key: PartitionKeyValue | None = None,
        partition_key_range_id: str | None = None,
        max_item_count: int = -1,
    ) -> list[Any]:
        """Every result of :meth:`query`, all pages concatenated."""
        out: list[Any] = []
        pages = self.query(
            container, sql, parameters, partition_key=partition_key,
            partition_key_range_id=partition_key_range_id, max_item_count=max_item_count,
        )  # fmt: skip
        try:
            async for page in pages:
                out.extend(page.items)
        finally:
            await pages.aclose()
        return out

    # -- transactional batch --------------------------------------------------------------

    async def batch(
        self,
        container: ContainerLink,
        partition_key: PartitionKeyValue,
        operations: Sequence[BatchOperation],
    ) -> list[BatchOperationResult]:
        """Run ``operations`` atomically in one logical partition; one result per operation.

        All succeed or none: if any fails the service rolls back and answers 207, raised
        as :class:`CosmosBatchFailed` naming the failing operation (its peers get 424).
        More than 100 operations or a body over 2 MB is refused before sending with
        :class:`CosmosRequestTooLarge`. Not idempotent: a lost response raises
        :class:`CosmosAmbiguousWrite`.
        """
        op = f"batch of {len(operations)} operation(s)"
        if not operations:
            raise CosmosInvalidRequest(op, "a batch needs at least one operation")
        if len(operations) > MAX_BATCH_OPERATIONS:
            raise CosmosRequestTooLarge(
                op, f"a transactional batch holds at most {MAX_BATCH_OPERATIONS} operations"
            )
        pk = partition_key_header(partition_key)
        per_op_pk = pk if self._batch_partition_key else None
        body = encode(op, [o.to_json(per_op_pk) for o in operations])
        if len(body) > MAX_BATCH_BYTES:
            raise CosmosRequestTooLarge(
                op, f"the batch body is {len(body)} bytes; the limit is {MAX_BATCH_BYTES}"
            )
        headers = {
            "x-ms-cosmos-is-batch-request": _TRUE,
            "x-ms-cosmos-batch-atomic": _TRUE,
        }

        async def check(reply: Reply) -> None:
            results = batch_results(op, reply, len(operations))
            if reply.status == 207 or any(not r.ok for r in results):
                raise CosmosBatchFailed(
                    op, results, status=reply.status,
                    activity_id=reply.headers.get("x-ms-activity-id"),
                )  # fmt: skip

        reply = await self._request(
            RequestKind.BATCH, op, "POST", f"{container.path}/docs",
            body=body, headers=headers, partition_key=partition_key, idempotent=False,
            session=container.path, check=check,
        )  # fmt: skip
        return batch_results(op, reply, len(operations))

    # -- plumbing -------------------------------------------------------------------------

    async def _request(
        self,
        kind: RequestKind,
        operation: str,
        method: str,
        path: str,
        *,
        idempotent: bool,
        body: bytes | None = None,
        content_type: str = _JSON,
        headers: Mapping[str, str] | None = None,
        partition_key: PartitionKeyValue | None = None,
        session: str | None = None,
        check: Callable[[Reply], Awaitable[None]] | None = None,
    ) -> Reply:
        resource_type, resource_link = resource_of_path(path)
        url = self._endpoint + url_path(path)
        pk_header = partition_key_header(partition_key) if partition_key is not None else None
        is_read = method == "GET" or kind is RequestKind.QUERY

        async def attempt() -> Reply:
            date = http_date()
            request_headers = {
                "authorization": self._signer.authorization(
                    method, resource_type, resource_link, date
                ),
                "x-ms-date": date,
                "x-ms-version": API_VERSION,
                "accept": _JSON,
                "user-agent": self._user_agent,
            }
            if body is not None:
                request_headers["content-type"] = content_type
            if pk_header is not None:
                request_headers["x-ms-documentdb-partitionkey"] = pk_header
            if session is not None and is_read:
                token = self._sessions.header(session)
                if token:
                    request_headers["x-ms-session-token"] = token
            if headers:
                request_headers.update(headers)
            request = self._http.build_request(method, url, headers=request_headers, content=body)
            self._counts[kind.value] += 1
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                self._measure(kind, {"error.type": type(exc).__name__}, 0.0)
                raise error_from_transport(operation, exc) from exc
            request_charge = charge(response.headers)
            self._charge += request_charge
            self._measure(kind, {"http.response.status_code": response.status_code}, request_charge)
            if session is not None:
                self._sessions.update(session, response.headers.get("x-ms-session-token"))
            if response.status_code >= 400:
                raise error_from_response(
                    operation, response.status_code, response.headers, response.content
                )
            data: Any = None
            if response.content:
                try:
                    data = msgspec.json.decode(response.content)
                except msgspec.DecodeError:
                    raise CosmosUnavailable(
                        operation,
                        "the response body is not valid JSON (truncated?)",
                        status=response.status_code,
                        may_have_applied=True,
                        activity_id=response.headers.get("x-ms-activity-id"),
                    ) from None
            reply = Reply(response.status_code, response.headers, data)
            if check is not None:
                await check(reply)
            return reply

        try:
            return await self._retry.run(
                operation, attempt, idempotent=idempotent, on_retry=self._on_retry
            )
        except CosmosError as exc:
            if exc.may_have_applied and not idempotent:
                self._ambiguous += 1
            raise

    def _measure(
        self, kind: RequestKind, result: dict[str, int | str], request_charge: float
    ) -> None:
        meters = self._metrics.instruments()
        if meters is None:
            return
        attributes: dict[str, int | str] = {"duro.cosmos.request.kind": kind.value, **result}
        meters.cosmos_requests.add(1, attributes)
        if request_charge > 0:
            meters.cosmos_request_units.add(request_charge, attributes)

    def _on_retry(self, exc: CosmosError, delay: float) -> None:
        self._retries += 1
        if isinstance(exc, CosmosThrottled) or (
            isinstance(exc, CosmosBatchFailed) and exc.failed_status == 429
        ):
            self._throttled += 1
