"""Time to live, on demand: what Cosmos's background TTL process does, which the server lacks.

On Cosmos, a container with ``defaultTtl`` set deletes each document whose ``ttl`` seconds
have passed since its last write (``_ts``), in the background and with leftover throughput.
The test server stores ``ttl`` but never expires anything; :func:`expire_documents` deletes
what Cosmos would have deleted by ``now_s``, so a test can check that retention removes every
document of a finished instance and nothing else.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from .compat import CompatTransport
from .compat_backend import doc_path


async def expire_documents(
    transport: CompatTransport, database: str, container: str, *, now_s: float | None = None
) -> list[dict[str, Any]]:
    """Delete every document of the container whose time to live ran out; returns them.

    Only when the container has time to live on (``defaultTtl`` set), as on Cosmos.
    """
    backend = transport.backend
    collection = f"dbs/{database}/colls/{container}"
    info = await backend.container(collection)
    if info is None or info.get("defaultTtl") is None:
        return []
    paths = await backend.pk_paths(collection) or ["/instanceId"]
    key = paths[0].lstrip("/")
    now = time.time() if now_s is None else now_s
    reply = await backend.call(
        "POST",
        "/" + "/".join(quote(p, safe="") for p in collection.split("/")) + "/docs",
        headers={
            "content-type": "application/query+json",
            "x-ms-documentdb-isquery": "True",
            "x-ms-documentdb-query-enablecrosspartition": "True",
        },
        body={"query": "SELECT * FROM c", "parameters": []},
    )
    documents = reply.data.get("Documents", []) if isinstance(reply.data, dict) else []
    expired = [
        doc
        for doc in documents
        if isinstance(doc.get("ttl"), int) and doc["ttl"] > 0 and doc["_ts"] + doc["ttl"] <= now
    ]
    for doc in expired:
        await backend.call("DELETE", doc_path(collection, doc["id"]), pk=doc[key])
    return expired


__all__ = ["expire_documents"]
