"""Fixtures for the end-to-end tests: every test runs on each store and backend.

The in-process stores (``memory``, ``sqlite``) run on asyncio and on trio. ``cosmos``
(``CosmosProvider`` through the Cosmos compatibility layer of ``tests/cosmos`` against the
local ``@vercel/cosmosdb-server``) runs on asyncio only, to bound the suite's time: the
provider's code is the same on both backends (anyio), and the combination trio x cosmos is
never generated (see :func:`pytest_generate_tests`), so it neither runs nor shows as skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import duro
import duro.providers
from duro.providers import Provider
from duro.testing import VirtualClock
from tests.cosmos.support import CosmosTestEnv

BACKENDS = ("asyncio", "trio")
STORES = ("memory", "sqlite", "cosmos")
ASYNCIO_ONLY_STORES = frozenset({"cosmos"})
"""Stores that run on asyncio only (a network store costs seconds per backend)."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``anyio_backend`` x ``store`` without the asyncio-only stores on trio."""
    names = metafunc.fixturenames
    if "anyio_backend" not in names or _parametrised_directly(metafunc, "anyio_backend"):
        return
    if "store" in names and not _parametrised_directly(metafunc, "store"):
        combos = [
            (backend, store)
            for backend in BACKENDS
            for store in STORES
            if backend == "asyncio" or store not in ASYNCIO_ONLY_STORES
        ]
        metafunc.parametrize(
            ("anyio_backend", "store"),
            combos,
            indirect=True,
            ids=[f"{backend}-{store}" for backend, store in combos],
        )
    else:
        metafunc.parametrize("anyio_backend", BACKENDS, indirect=True)


def _parametrised_directly(metafunc: pytest.Metafunc, name: str) -> bool:
    """Whether the test itself already parametrises ``name`` (its own marker wins)."""
    for mark in metafunc.definition.iter_markers("parametrize"):
        argnames = mark.args[0]
        if isinstance(argnames, str):
            argnames = [part.strip() for part in argnames.split(",")]
        if name in argnames:
            return True
    return False


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start_ms=1_700_000_000_000)


@pytest.fixture
async def store(
    request: pytest.FixtureRequest, clock: VirtualClock, tmp_path: Path
) -> AsyncIterator[duro.providers.Provider]:
    """The provider under test; it reads time from the test's virtual ``clock``."""
    provider: duro.providers.Provider
    if request.param == "memory":
        provider = duro.InMemoryProvider(clock=clock)
    elif request.param == "sqlite":
        provider = duro.SqliteProvider(tmp_path / "e2e.db", clock=clock)
    else:
        provider = _cosmos_provider(request.getfixturevalue("cosmos_env"), clock)
    async with provider:
        yield provider


def _cosmos_provider(env: CosmosTestEnv, clock: VirtualClock) -> duro.providers.Provider:
    from duro_cosmos import CosmosConfig, CosmosProvider

    config = CosmosConfig(env.url, env.key, env.database, env.container)
    return CosmosProvider(config, transport=env.transport, clock=clock)


@pytest.fixture
def registry() -> duro.Registry:
    return duro.Registry()


@pytest.fixture
def client(store: Provider, registry: duro.Registry) -> duro.Client:
    return duro.Client(store, registry=registry)
