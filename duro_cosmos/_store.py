"""The container the provider works in: lazy connection, bootstrapping, and small helpers.

Bootstrapping creates the database and the container (partition key ``/instanceId``) if they
are missing, retrying transient failures, with :data:`INDEXING_POLICY`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import httpx
from opentelemetry.metrics import MeterProvider

from duro._errors import ProviderError

from ._rest import (
    BatchOperation,
    BatchOperationResult,
    ContainerLink,
    CosmosAmbiguousWrite,
    CosmosConfig,
    CosmosConflict,
    CosmosError,
    CosmosNotFound,
    CosmosRestClient,
    HttpRetryPolicy,
)

_QUERIED_PATHS = (
    "type", "instanceId", "visibleAt", "slot", "lockedUntil", "tag", "session", "createdAt",
    "createdSeq", "name", "parentInstanceId", "status", "lock/until", "ownerId",
    "lastActivity", "executionId", "completedAt",
)  # fmt: skip

INDEXING_POLICY: Mapping[str, Any] = {
    "indexingMode": "consistent",
    "automatic": True,
    "includedPaths": [{"path": f"/{path}/?"} for path in _QUERIED_PATHS],
    "excludedPaths": [{"path": "/*"}],
    "compositeIndexes": [
        [
            {"path": "/createdAt", "order": "descending"},
            {"path": "/createdSeq", "order": "descending"},
        ]
    ],
}
"""Only the paths some query filters or sorts on are indexed (every indexed path of every
document costs on each write); payloads, executions, lock batches and delivery counts are not.
The composite index serves ``list_instances`` (newest first, ``ORDER BY createdAt DESC,
createdSeq DESC`` per partition). A container created by an earlier version keeps its policy:
replace it with this one (or recreate the container) to get both."""

_BOOTSTRAP_ATTEMPTS = 5

AMBIGUOUS_WRITE_ATTEMPTS = 4
"""How many times a non-idempotent write is sent while each response is lost and a re-read
proves it did not land."""

T = TypeVar("T")


class Store:
    """One container, opened on first use. Not a public API."""

    def __init__(
        self,
        config: CosmosConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: HttpRetryPolicy | None = None,
        batch_partition_key: bool = False,
        needs_ttl: bool = False,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.config = config
        self._meter_provider = meter_provider
        self._needs_ttl = needs_ttl
        self._batch_partition_key = batch_partition_key
        self.link = ContainerLink(config.database, config.container)
        self._transport = transport
        self._retry = retry
        self._client: CosmosRestClient | None = None
        self._ready = False
        self._open_lock: anyio.Lock | None = None
        self._ranges: list[str] | None = None

    @property
    def client(self) -> CosmosRestClient:
        if self._client is None:
            self._client = self.config.create_client(
                transport=self._transport,
                retry=self._retry,
                batch_partition_key=self._batch_partition_key,
                meter_provider=self._meter_provider,
            )
        return self._client

    async def open(self) -> None:
        if self._ready:
            return
        if self._open_lock is None:
            self._open_lock = anyio.Lock()
        async with self._open_lock:
            if self._ready:
                return
            await self._bootstrap()
            self._ready = True

    async def _bootstrap(self) -> None:
        client = self.client
        for attempt in range(1, _BOOTSTRAP_ATTEMPTS + 1):
            try:
                await client.create_database_if_missing(self.link.database)
                await client.create_container_if_missing(
                    self.link, partition_key_path="/instanceId",
                    indexing_policy=INDEXING_POLICY, default_ttl=-1,
                )  # fmt: skip
                if self._needs_ttl:
                    await self._check_ttl()
                return
            except CosmosError as exc:
                if not exc.retryable or attempt == _BOOTSTRAP_ATTEMPTS:
                    raise
                await anyio.sleep(0.1 * 2**attempt)

    async def _check_ttl(self) -> None:
        """Retention relies on the container's time to live being on (``defaultTtl`` set):
        without it Cosmos ignores every document's ``ttl`` and nothing would ever expire."""
        container = await self.client.read_container(self.link)
        if container.get("defaultTtl") is None:
            raise ProviderError(
                "open",
                f"retention needs time to live on container {self.link.path!r}: set its "
                "defaultTtl to -1 (on, no default expiry); containers duro creates have it",
                retryable=False,
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        self._ready = False
        if client is not None:
            await client.aclose()

    # -- helpers --------------------------------------------------------------------------------

    async def read(self, doc_id: str, pk: str) -> dict[str, Any] | None:
        await self.open()
        try:
            response = await self.client.read_document(self.link, doc_id, pk)
        except CosmosNotFound:
            return None
        return response.body

    async def query_partition(
        self, pk: str, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """A single-partition query: the partition key goes in the header and the WHERE."""
        await self.open()
        values = {"pk": pk, **(params or {})}
        return await self.client.query_all(self.link, sql, values, partition_key=pk)

    async def query_cross(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """A cross-partition filter query (never ORDER BY / TOP / aggregates: gateway-served)."""
        await self.open()
        return await self.client.query_all(self.link, sql, params)

    async def partition_key_ranges(self) -> list[str]:
        """The container's physical partitions (ranges), listed once and cached."""
        if self._ranges is None:
            await self.open()
            self._ranges = await self.client.partition_key_ranges(self.link) or ["0"]
        return self._ranges

    async def query_range(
        self, range_id: str, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[Any]:
        """A query addressed to one physical partition, where the gateway serves ORDER BY
        and TOP. A range that split is gone: the list is read again next time."""
        await self.open()
        try:
            return await self.client.query_all(
                self.link, sql, params, partition_key_range_id=range_id
            )
        except CosmosError:
            self._ranges = None
            raise

    async def query_each_range(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[list[Any]]:
        """The query on every physical partition at once (ORDER BY, TOP and aggregates are
        served per range): one result list per range, each bounded by the query's TOP."""
        ranges = await self.partition_key_ranges()
        results: list[list[Any]] = [[] for _ in ranges]

        async def one(index: int, range_id: str) -> None:
            results[index] = await self.query_range(range_id, sql, params)

        async with anyio.create_task_group() as tg:
            for index, range_id in enumerate(ranges):
                tg.start_soon(one, index, range_id)
        return results

    async def batch(
        self, pk: str, operations: Sequence[BatchOperation]
    ) -> list[BatchOperationResult]:
        await self.open()
        return await self.client.batch(self.link, pk, operations)

    async def create(self, body: Mapping[str, Any], pk: str) -> str | None:
        await self.open()
        return (await self.client.create_document(self.link, body, pk)).etag

    async def create_once(self, body: Mapping[str, Any], pk: str) -> None:
        """Create a document whose id names its origin, so an existing one (409) means it was
        delivered already; a lost response is resolved by reading it back."""

        async def landed() -> bool:
            return await self.read(str(body["id"]), pk) is not None

        try:
            await write_resolving_loss(lambda: self.create(body, pk), landed)
        except CosmosConflict:
            pass

    async def upsert(self, body: Mapping[str, Any], pk: str) -> str | None:
        await self.open()
        return (await self.client.upsert_document(self.link, body, pk)).etag

    async def replace(
        self, doc_id: str, body: Mapping[str, Any], pk: str, *, if_match: str | None
    ) -> str | None:
        await self.open()
        response = await self.client.replace_document(
            self.link, doc_id, body, pk, if_match=if_match
        )
        return response.etag

    async def delete(self, doc_id: str, pk: str, *, if_match: str | None = None) -> bool:
        """Delete; False if it was already gone."""
        await self.open()
        try:
            await self.client.delete_document(self.link, doc_id, pk, if_match=if_match)
        except CosmosNotFound:
            return False
        return True


async def write_resolving_loss(
    send: Callable[[], Awaitable[T]], landed: Callable[[], Awaitable[bool]]
) -> T | None:
    """Send a create or batch until it is known to have been applied exactly once.

    A lost response (:class:`CosmosAmbiguousWrite`) is resolved by ``landed``, which re-reads
    what the write would have made: True means it was applied (returns None), False that it
    provably was not, so sending it again is safe. ``landed`` may raise to say the write can
    no longer apply (a lock was taken over). After :data:`AMBIGUOUS_WRITE_ATTEMPTS` lost
    responses in a row the last one is raised: the outcome is unknown.
    """
    for attempt in range(1, AMBIGUOUS_WRITE_ATTEMPTS + 1):
        try:
            return await send()
        except CosmosAmbiguousWrite:
            if await landed():
                return None
            if attempt == AMBIGUOUS_WRITE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


class TurnTooLargeError(ProviderError):
    """A turn does not fit in one transactional batch (2 MB of payload), even after moving
    its activities and messages to the outbox. Permanent: split the work across turns."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(operation, message, retryable=False)
