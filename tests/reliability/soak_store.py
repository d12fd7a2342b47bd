"""Where a soak test keeps its state: a new SQLite file, or a Cosmos container on the local
test server behind a compatibility proxy that throttles (see :mod:`tests.reliability.soak`)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duro
from duro.providers import Provider

if TYPE_CHECKING:
    from .soak import SoakConfig


@dataclass
class SoakStore:
    """What the driver and the workers need to reach the store."""

    provider: Callable[[], Provider]
    """A new provider for the driver's client."""
    worker_args: list[str]
    throttled: Callable[[], int] = lambda: 0
    calm: Callable[[], None] = lambda: None
    """Stop injecting faults (before the checks read everything)."""
    problems: Callable[[], list[str]] = list
    size: Callable[[], dict[str, int]] = dict
    """How much the store holds at the end (bytes, documents)."""
    leftovers: Callable[[], list[str]] = list
    """The messages left in the queues, described (read when the checks found some)."""


@contextlib.contextmanager
def open_store(config: SoakConfig, directory: Path, server_url: str | None) -> Iterator[SoakStore]:
    if config.store == "sqlite":
        db = directory / "soak.db"
        args = ["--store", "sqlite", "--db", str(db)]

        def size() -> dict[str, int]:
            files = [p for p in directory.glob("soak.db*") if p.is_file()]
            return {"bytes": sum(p.stat().st_size for p in files)}

        def leftovers() -> list[str]:
            with contextlib.closing(sqlite3.connect(db)) as conn:
                rows = conn.execute(
                    "SELECT 'orchestrator', instance_id, kind, visible_at_ms FROM"
                    " orchestrator_queue UNION ALL SELECT 'worker', instance_id, '', visible_at_ms"
                    " FROM worker_queue"
                ).fetchall()
            return [f"{iid}: {queue} {kind} visible at {at}" for queue, iid, kind, at in rows]

        yield SoakStore(
            provider=lambda: duro.SqliteProvider(db), worker_args=args, size=size,
            leftovers=leftovers,
        )  # fmt: skip
        return
    with _cosmos_store(config, server_url) as store:
        yield store


@contextlib.contextmanager
def _cosmos_store(config: SoakConfig, server_url: str | None) -> Iterator[SoakStore]:
    from duro_cosmos import CosmosConfig, CosmosProvider
    from tests.cosmos.compat import EMULATOR_KEY
    from tests.cosmos.compat_faults import FaultPlan
    from tests.cosmos.proxy import CompatProxy
    from tests.cosmos.server import start_server
    from tests.cosmos.support import drop_database, unique_name

    with contextlib.ExitStack() as stack:
        if server_url is None:
            server = start_server(https=False)
            stack.callback(server.stop)
            server_url = server.url
        database, container = unique_name("soak"), unique_name("c")
        url = server_url
        stack.callback(lambda: drop_database(url, database))
        faults = FaultPlan(seed=config.seed)
        proxy = stack.enter_context(CompatProxy(server_url, key=EMULATOR_KEY, faults=faults))
        rule = None
        if config.throttle > 0:
            rule = faults.add(
                kind=("create", "upsert", "read", "replace", "delete", "patch", "query", "batch"),
                status=429,
                retry_after_ms=20,
                probability=config.throttle,
                times=None,
            )
        cosmos = CosmosConfig(proxy.url, EMULATOR_KEY, database, container)
        args = ["--store", "cosmos", "--endpoint", proxy.url, "--key", EMULATOR_KEY]
        args += ["--database", database, "--container", container]
        if config.reconcile_ms is not None:
            args += ["--reconcile-ms", str(config.reconcile_ms)]

        def calm() -> None:
            proxy.call(faults.clear)

        def trim_log() -> int:
            # The request log keeps every request; a long run only needs the fault counts.
            proxy.call(proxy.log.clear)
            return 0 if rule is None else rule.hits

        yield SoakStore(
            provider=lambda: CosmosProvider(cosmos),
            worker_args=args,
            throttled=trim_log,
            calm=calm,
            problems=lambda: [f"compat proxy error: {e[-500:]}" for e in proxy.internal_errors],
            size=lambda: _cosmos_size(url, database, container),
            leftovers=lambda: _cosmos_leftovers(url, database, container),
        )


def _cosmos_size(server_url: str, database: str, container: str) -> dict[str, int]:
    """Documents in the container and their JSON size."""
    docs = _cosmos_documents(server_url, database, container)
    return {"documents": len(docs), "bytes": sum(len(json.dumps(doc)) for doc in docs)}


def _cosmos_leftovers(server_url: str, database: str, container: str) -> list[str]:
    return [
        f"{doc.get('instanceId')}: {doc.get('type')} {doc.get('kind', '')} {doc.get('id')} "
        f"visible at {doc.get('visibleAt')}"
        for doc in _cosmos_documents(server_url, database, container)
        if doc.get("type") in _COSMOS_QUEUES
    ]


_COSMOS_QUEUES = ("orch_queue", "worker_queue", "outbox_intent")


def _cosmos_documents(server_url: str, database: str, container: str) -> list[dict[str, Any]]:
    """Every document in the container, read straight from the test server (which needs no
    auth and answers cross-partition queries)."""
    from urllib.parse import quote

    import httpx

    path = f"/dbs/{quote(database, safe='')}/colls/{quote(container, safe='')}/docs"
    query = json.dumps({"query": "SELECT * FROM c", "parameters": []})
    headers = {
        "content-type": "application/query+json", "x-ms-documentdb-isquery": "True",
        "x-ms-documentdb-query-enablecrosspartition": "True", "x-ms-max-item-count": "1000",
    }  # fmt: skip
    documents: list[dict[str, Any]] = []
    with httpx.Client(base_url=server_url, timeout=30) as client:
        while True:
            response = client.post(path, content=query, headers=headers)
            response.raise_for_status()
            documents += response.json()["Documents"]
            continuation = response.headers.get("x-ms-continuation")
            if not continuation:
                return documents
            headers["x-ms-continuation"] = continuation
