"""Fixtures for the end-to-end tests: every test runs on asyncio and on trio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import duro
import duro.providers
from duro.providers import Provider
from duro.testing import VirtualClock


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start_ms=1_700_000_000_000)


@pytest.fixture(params=["memory", "sqlite"])
async def store(
    request: pytest.FixtureRequest, clock: VirtualClock, tmp_path: Path
) -> AsyncIterator[duro.providers.Provider]:
    """Every end-to-end test runs on each shipped store (Cosmos joins in its own suite)."""
    provider: duro.providers.Provider
    if request.param == "memory":
        provider = duro.InMemoryProvider(clock=clock)
    else:
        provider = duro.SqliteProvider(tmp_path / "e2e.db", clock=clock)
    async with provider:
        yield provider


@pytest.fixture
def registry() -> duro.Registry:
    return duro.Registry()


@pytest.fixture
def client(store: Provider, registry: duro.Registry) -> duro.Client:
    return duro.Client(store, registry=registry)
