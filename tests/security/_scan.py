"""Looking for a secret in what a store or a process left behind, in every form it could take.

A store that encoded a payload in some way of its own (base64 in a document, hex in a log) must
still be caught, so a secret is searched for raw and in each common text encoding.
"""

from __future__ import annotations

import base64
import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from duro_cosmos import CosmosConfig
from duro_cosmos._rest import ContainerLink
from tests.cosmos.support import CosmosTestEnv


def forms(secret: bytes) -> list[bytes]:
    """``secret`` raw, escaped as ``repr`` shows bytes, in hex, and in base64 (standard and
    URL-safe) at each of the three alignments it can have inside a longer encoded blob."""
    out = {
        secret,
        repr(secret)[2:-1].encode(),
        secret.hex().encode(),
        secret.hex().upper().encode(),
    }
    for offset in range(3):
        tail = secret[offset:]
        usable = len(tail) - len(tail) % 3  # the groups that do not depend on what follows
        if usable >= 9:
            out.add(base64.b64encode(tail[:usable]))
            out.add(base64.urlsafe_b64encode(tail[:usable]))
    return sorted(out, key=len)


def found(haystack: bytes, secret: bytes) -> list[bytes]:
    """The forms of ``secret`` that occur in ``haystack``."""
    return [form for form in forms(secret) if form in haystack]


def reachable_bytes(root: object) -> bytes:
    """Every str, bytes and raw JSON reachable from ``root`` through attributes, slots,
    struct fields and containers, joined: what an in-process store holds."""
    chunks: list[bytes] = []
    seen: set[int] = set()
    stack: list[Any] = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            chunks.append(obj.encode("utf-8", "surrogatepass"))
        elif isinstance(obj, bytes | bytearray | msgspec.Raw):
            chunks.append(bytes(obj))
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif isinstance(obj, msgspec.Struct):
            stack.extend(getattr(obj, name) for name in obj.__struct_fields__)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            stack.extend(getattr(obj, f.name) for f in dataclasses.fields(obj))
        elif hasattr(obj, "__dict__") and not callable(obj):
            stack.extend(vars(obj).values())
    return b"\n".join(chunks)


def sqlite_dump(path: Path) -> dict[str, bytes]:
    """The database file with its WAL and shared-memory files byte for byte (``"files"``),
    and every value of each table as SQLite returns it, by table name. (The ``-wake``
    directory beside them holds sockets only.)"""
    files = sorted(p for p in path.parent.glob(path.name + "*") if p.is_file())
    out = {"files": b"\n".join(p.read_bytes() for p in files)}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            chunks: list[bytes] = []
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, str):
                        chunks.append(value.encode())
                    elif isinstance(value, bytes):
                        chunks.append(value)
            out[table] = b"\n".join(chunks)
    finally:
        conn.close()
    return out


async def cosmos_documents(env: CosmosTestEnv) -> list[dict[str, Any]]:
    """Every document of the test's container, read straight over REST (cross-partition)."""
    config = CosmosConfig(env.url, env.key, env.database, env.container)
    async with config.create_client(transport=env.transport) as client:
        link = ContainerLink(env.database, env.container)
        documents: list[dict[str, Any]] = await client.query_all(link, "SELECT * FROM c")
    return documents


def cosmos_dump(documents: list[dict[str, Any]]) -> dict[str, bytes]:
    """The documents as JSON, by document type."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        by_type.setdefault(str(document.get("type")), []).append(document)
    return {kind: msgspec.json.encode(docs) for kind, docs in by_type.items()}
