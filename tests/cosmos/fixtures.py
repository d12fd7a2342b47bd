"""Fixtures for Cosmos DB tests: the local server, the compat/fault transport, unique names.

``tests/conftest.py`` registers this module as a plugin, so every test directory can ask for
these fixtures by name.

* ``cosmos_server`` (session): the HTTP server, started once; ``cosmos_server_url`` its URL.
* ``cosmos_https_server`` (session): the HTTPS server, started only if a test asks for it.
* ``cosmos_faults`` / ``compat_transport`` (function): a fresh fault plan and transport.
* ``cosmos_env`` (function): all of it plus a unique database and container name; the
  database is dropped after the test.
* ``cosmos_proxy`` (function): a :class:`~tests.cosmos.proxy.CompatProxy`, one compat
  transport served over HTTP on loopback so that several processes share its batch lock,
  fault plan and request log; ``cosmos_proxy_env`` adds unique names (database dropped after).
* ``rest`` (function, async): a tiny signed REST client over ``cosmos_env`` with the
  container created (partition key ``/pk``); for the layer's own tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from ._rest import Rest
from .compat import EMULATOR_KEY, CompatTransport
from .compat_faults import FaultPlan
from .proxy import CompatProxy, ProxyEnv
from .server import CosmosServer, start_server
from .support import CosmosTestEnv, fresh_database, unique_name


@pytest.fixture(scope="session")
def cosmos_server() -> Iterator[CosmosServer]:
    server = start_server(https=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cosmos_server_url(cosmos_server: CosmosServer) -> str:
    return cosmos_server.url


@pytest.fixture(scope="session")
def cosmos_https_server() -> Iterator[CosmosServer]:
    server = start_server(https=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cosmos_key() -> str:
    return EMULATOR_KEY


@pytest.fixture
def cosmos_faults() -> FaultPlan:
    return FaultPlan(seed=0)


@pytest.fixture
def compat_transport(
    cosmos_server_url: str, cosmos_key: str, cosmos_faults: FaultPlan
) -> CompatTransport:
    return CompatTransport(cosmos_server_url, key=cosmos_key, faults=cosmos_faults)


@pytest.fixture
def cosmos_env(
    cosmos_server_url: str, cosmos_key: str, compat_transport: CompatTransport
) -> Iterator[CosmosTestEnv]:
    with fresh_database(cosmos_server_url) as database:
        yield CosmosTestEnv(
            url=cosmos_server_url,
            key=cosmos_key,
            database=database,
            container=unique_name("c"),
            transport=compat_transport,
        )


@pytest.fixture
async def rest(cosmos_env: CosmosTestEnv) -> AsyncIterator[Rest]:
    """A signed raw-REST client through the compat transport, with the container created."""
    async with httpx.AsyncClient(
        transport=cosmos_env.transport, base_url=cosmos_env.url, timeout=30
    ) as client:
        api = Rest(client, cosmos_env.key, cosmos_env.database, cosmos_env.container)
        await api.setup()
        cosmos_env.log.clear()
        yield api


@pytest.fixture
def cosmos_proxy(cosmos_server_url: str, cosmos_key: str) -> Iterator[CompatProxy]:
    """A compat proxy on 127.0.0.1 (random port) in front of the session's server."""
    with CompatProxy(cosmos_server_url, key=cosmos_key, faults=FaultPlan(seed=0)) as proxy:
        yield proxy


@pytest.fixture
def cosmos_proxy_env(
    cosmos_server_url: str, cosmos_key: str, cosmos_proxy: CompatProxy
) -> Iterator[ProxyEnv]:
    """``cosmos_proxy`` plus a unique database and container name (not created)."""
    with fresh_database(cosmos_server_url) as database:
        yield ProxyEnv(
            url=cosmos_proxy.url,
            key=cosmos_key,
            database=database,
            container=unique_name("c"),
            proxy=cosmos_proxy,
        )
