"""What the Cosmos fixtures hand to a test: names, the transport, the fault plan."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from .compat import CompatTransport
from .compat_faults import FaultPlan, RequestLog

__all__ = ["CosmosTestEnv", "drop_database", "fresh_database", "unique_name"]


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True, slots=True)
class CosmosTestEnv:
    """One test's isolated Cosmos world.

    ``url`` is the endpoint to configure the provider with and ``transport`` the httpx
    transport to give its client (``httpx.AsyncClient(transport=env.transport)``). The
    database and container are *not* created: the provider bootstraps them.
    """

    url: str
    key: str
    database: str
    container: str
    transport: CompatTransport

    @property
    def faults(self) -> FaultPlan:
        return self.transport.faults

    @property
    def log(self) -> RequestLog:
        return self.transport.log


def drop_database(server_url: str, database: str) -> None:
    """Delete a database straight on the server (which needs no auth); absent is fine."""
    with httpx.Client(base_url=server_url, verify=False, timeout=10) as client:
        response = client.delete(f"/dbs/{quote(database, safe='')}")
        if response.status_code not in (204, 404):
            raise RuntimeError(f"dropping test database {database}: {response.status_code}")


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str = "test") -> Iterator[str]:
    """A unique database name, dropped from the server when the block ends."""
    database = unique_name(prefix)
    try:
        yield database
    finally:
        drop_database(server_url, database)
