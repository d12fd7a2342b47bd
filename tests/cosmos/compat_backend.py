"""The compat layer's own view of the test server: raw calls, container metadata, etag forms.

The server never checks auth, so the layer's internal requests (reading a document before a
batch, looking up a container's partition key path) are sent unsigned and are not seen by the
fault plan or the request log: they are the layer's business, not the provider's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

__all__ = [
    "Backend",
    "Reply",
    "doc_path",
    "pk_value",
    "quote_etag",
    "quote_etags_in",
    "unquote_etag",
]

_FEEDS = ("Documents", "DocumentCollections", "Databases", "PartitionKeyRanges")


def quote_etag(etag: str) -> str:
    """Cosmos sends etags as quoted strings (``"00000000-0000-..."``); the server does not."""
    return etag if etag.startswith('"') or etag.startswith("W/") else f'"{etag}"'


def unquote_etag(etag: str) -> str:
    if len(etag) >= 2 and etag[0] == etag[-1] == '"':
        return etag[1:-1]
    return etag


def _quote_resource(item: Any) -> None:
    if isinstance(item, dict) and isinstance(item.get("_etag"), str):
        item["_etag"] = quote_etag(item["_etag"])


def quote_etags_in(data: Any) -> None:
    """Quote ``_etag`` of a resource body or of each resource in a feed/query page, in place."""
    _quote_resource(data)
    if isinstance(data, dict):
        for feed in _FEEDS:
            items = data.get(feed)
            if isinstance(items, list):
                for item in items:
                    _quote_resource(item)


def doc_path(collection: str, doc_id: str | None = None) -> str:
    """URL path for a decoded collection link (``dbs/d/colls/c``) and optional document id."""
    parts = [*collection.split("/"), "docs"]
    if doc_id is not None:
        parts.append(doc_id)
    return "/" + "/".join(quote(p, safe="") for p in parts)


def pk_value(document: Any, pk_path: str) -> Any:
    """The document's partition key value, or ``None`` when the path is absent."""
    current = document
    for part in pk_path.strip("/").split("/"):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: httpx.Headers
    data: Any  # parsed JSON body, or None


class Backend:
    """Unsigned access to the server plus a cache of container resources."""

    def __init__(self, base_url: str, inner: httpx.AsyncBaseTransport) -> None:
        self.base = httpx.URL(base_url)
        self.inner = inner
        self._containers: dict[str, dict[str, Any]] = {}

    def retarget(self, url: httpx.URL) -> httpx.URL:
        """The same URL on the real server (the provider may use any endpoint name)."""
        return url.copy_with(scheme=self.base.scheme, host=self.base.host, port=self.base.port)

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Forward a request and return a fully read response detached from the pool."""
        response = await self.inner.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        headers = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in {"content-length", "transfer-encoding", "connection"}
        ]
        return httpx.Response(
            response.status_code, headers=headers, content=content, request=request
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        pk: Any = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> Reply:
        hdrs = {"x-ms-version": "2018-12-31", "accept": "application/json"}
        if pk is not None:
            hdrs["x-ms-documentdb-partitionkey"] = json.dumps([pk])
        content = b""
        if body is not None:
            hdrs["content-type"] = "application/json"
            content = json.dumps(body).encode()
        hdrs.update(headers or {})
        url = self.base.copy_with(raw_path=path.encode("ascii"))
        response = await self.send(httpx.Request(method, url, headers=hdrs, content=content))
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = None
        return Reply(response.status_code, response.headers, data)

    async def read_doc(self, collection: str, doc_id: str, pk: Any) -> dict[str, Any] | None:
        # The cross-partition header makes the server skip a check that crashes (500) on
        # a missing document; the lookup itself stays scoped to `pk`.
        reply = await self.call(
            "GET",
            doc_path(collection, doc_id),
            pk=pk,
            headers={"x-ms-documentdb-query-enablecrosspartition": "True"},
        )
        if reply.status == 200 and isinstance(reply.data, dict):
            return reply.data
        if reply.status == 404:
            return None
        raise RuntimeError(f"compat layer: reading {collection}/{doc_id} gave {reply.status}")

    async def container(self, collection: str) -> dict[str, Any] | None:
        """The container resource (``_rid``, ``_self``, ``partitionKey`` ...), None if missing."""
        if collection not in self._containers:
            path = "/" + "/".join(quote(p, safe="") for p in collection.split("/"))
            reply = await self.call("GET", path)
            if reply.status == 404:
                return None  # not cached: it may be created later
            if reply.status != 200 or not isinstance(reply.data, dict):
                raise RuntimeError(f"compat layer: reading container {collection}: {reply}")
            self._containers[collection] = reply.data
        return self._containers[collection]

    async def pk_paths(self, collection: str) -> list[str] | None:
        """The container's partition key paths ([] if unpartitioned), None if it is missing."""
        container = await self.container(collection)
        if container is None:
            return None
        pk = container.get("partitionKey") or {}
        return list(pk.get("paths") or [])

    def forget(self, collection: str | None = None) -> None:
        if collection is None:
            self._containers.clear()
        else:
            self._containers.pop(collection, None)
