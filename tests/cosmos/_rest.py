"""A deliberately tiny signed REST client for testing the compat layer itself.

Not the provider's client: it exists so the layer's tests speak raw Cosmos REST, signed as
documented, without depending on ``duro_cosmos``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, unquote

import httpx

_UNSET: Any = object()


def sign(key: str, verb: str, path: str, date: str) -> str:
    """The ``authorization`` header value for ``verb path`` (path URL-encoded, as sent)."""
    parts = [unquote(p) for p in path.strip("/").split("/") if p]
    if len(parts) % 2:
        rtype, link = parts[-1], "/".join(parts[:-1])
    else:
        rtype, link = (parts[-2] if parts else ""), "/".join(parts)
    text = f"{verb.lower()}\n{rtype.lower()}\n{link}\n{date.lower()}\n\n"
    mac = hmac.new(base64.b64decode(key), text.encode(), hashlib.sha256).digest()
    return quote(f"type=master&ver=1.0&sig={base64.b64encode(mac).decode()}", safe="")


def http_date(when: dt.datetime | None = None) -> str:
    return format_datetime(when or dt.datetime.now(dt.UTC), usegmt=True)


class Rest:
    """Signed requests against one database/container with partition key path ``/pk``."""

    def __init__(self, client: httpx.AsyncClient, key: str, database: str, container: str):
        self.client = client
        self.key = key
        self.db = database
        self.coll = container
        self.coll_path = f"/dbs/{quote(database, safe='')}/colls/{quote(container, safe='')}"

    def doc(self, doc_id: str | None = None) -> str:
        base = f"{self.coll_path}/docs"
        return base if doc_id is None else f"{base}/{quote(doc_id, safe='')}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        pk: Any = _UNSET,
        body: Any = _UNSET,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        date: str | None = None,
        key: str | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        date = date or http_date()
        hdrs = {"x-ms-date": date, "x-ms-version": "2018-12-31", "accept": "application/json"}
        if signed:
            hdrs["authorization"] = sign(key or self.key, method, path, date)
        if pk is not _UNSET:
            hdrs["x-ms-documentdb-partitionkey"] = json.dumps([pk])
        if body is not _UNSET:
            content = json.dumps(body).encode()
            hdrs["content-type"] = "application/json"
        hdrs.update(headers or {})
        return await self.client.request(method, path, headers=hdrs, content=content)

    async def setup(self, pk_path: str = "/pk") -> None:
        r = await self.request("POST", "/dbs", body={"id": self.db})
        assert r.status_code == 201, r.text
        r = await self.request(
            "POST",
            f"/dbs/{quote(self.db, safe='')}/colls",
            body={"id": self.coll, "partitionKey": {"paths": [pk_path], "kind": "Hash"}},
        )
        assert r.status_code == 201, r.text

    async def create(self, doc: dict[str, Any]) -> httpx.Response:
        return await self.request("POST", self.doc(), pk=doc["pk"], body=doc)

    async def read(self, doc_id: str, pk: Any) -> httpx.Response:
        return await self.request("GET", self.doc(doc_id), pk=pk)

    async def query(
        self,
        sql: str,
        params: list[dict[str, Any]] | None = None,
        *,
        pk: Any = _UNSET,
        cross_partition: bool = False,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        hdrs = {
            "content-type": "application/query+json",
            "x-ms-documentdb-isquery": "True",
            **(headers or {}),
        }
        if cross_partition:
            hdrs["x-ms-documentdb-query-enablecrosspartition"] = "True"
        content = json.dumps({"query": sql, "parameters": params or []}).encode()
        return await self.request("POST", self.doc(), pk=pk, content=content, headers=hdrs)

    async def batch(
        self, pk: Any, ops: list[dict[str, Any]], *, atomic: bool = True
    ) -> httpx.Response:
        hdrs = {
            "x-ms-cosmos-is-batch-request": "True",
            "x-ms-cosmos-batch-atomic": "True" if atomic else "False",
            "x-ms-cosmos-batch-continue-on-error": "False",
        }
        return await self.request("POST", self.doc(), pk=pk, body=ops, headers=hdrs)
