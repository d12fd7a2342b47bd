"""The container the provider works in: lazy connection, bootstrapping, and small helpers.

Bootstrapping creates the database and the container (partition key ``/instanceId``) if they
are missing, retrying transient failures, with :data:`INDEXING_POLICY`. Every dispatcher
query is a filter without ORDER BY / TOP / aggregates, so the default range indexes serve
them; the policy only drops the bulky payload fields from the index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import httpx

from duro._errors import ProviderError

from ._rest import (
    BatchOperation,
    BatchOperationResult,
    ContainerLink,
    CosmosConfig,
    CosmosError,
    CosmosNotFound,
    CosmosRestClient,
    RetryPolicy,
)

INDEXING_POLICY: Mapping[str, Any] = {
    "indexingMode": "consistent",
    "automatic": True,
    "includedPaths": [{"path": "/*"}],
    "excludedPaths": [
        {"path": '/"_etag"/?'},
        {"path": "/msg/?"},
        {"path": "/task/?"},
        {"path": "/events/?"},
        {"path": "/output/?"},
        {"path": "/error/?"},
        {"path": "/customStatus/?"},
        {"path": "/entries/*"},
        {"path": "/items/*"},
        {"path": "/attempts/*"},
        {"path": "/executions/*"},
    ],
}
"""Range indexes on every scalar the queries filter on (``type``, ``visibleAt``, ``slot``,
``lockedUntil``, ``createdAt``, ``parentInstanceId``, ``ownerId``, ``lock/until`` ...);
payloads are not indexed. No composite indexes: no query sorts on the server."""

_BOOTSTRAP_ATTEMPTS = 5


class Store:
    """One container, opened on first use. Not a public API."""

    def __init__(
        self,
        config: CosmosConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        batch_partition_key: bool = False,
    ) -> None:
        self.config = config
        self._batch_partition_key = batch_partition_key
        self.link = ContainerLink(config.database, config.container)
        self._transport = transport
        self._retry = retry
        self._client: CosmosRestClient | None = None
        self._ready = False
        self._open_lock: anyio.Lock | None = None

    @property
    def client(self) -> CosmosRestClient:
        if self._client is None:
            self._client = self.config.create_client(
                transport=self._transport,
                retry=self._retry,
                batch_partition_key=self._batch_partition_key,
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
                    self.link, partition_key_path="/instanceId", indexing_policy=INDEXING_POLICY
                )
                return
            except CosmosError as exc:
                if not exc.retryable or attempt == _BOOTSTRAP_ATTEMPTS:
                    raise
                await anyio.sleep(0.1 * 2**attempt)

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

    async def batch(
        self, pk: str, operations: Sequence[BatchOperation]
    ) -> list[BatchOperationResult]:
        await self.open()
        return await self.client.batch(self.link, pk, operations)

    async def create(self, body: Mapping[str, Any], pk: str) -> str | None:
        await self.open()
        return (await self.client.create_document(self.link, body, pk)).etag

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


class TurnTooLargeError(ProviderError):
    """A turn does not fit in one transactional batch (2 MB of payload), even after moving
    its activities and messages to the outbox. Permanent: split the work across turns."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(operation, message, retryable=False)
