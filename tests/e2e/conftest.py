"""Fixtures for the end-to-end tests: every test runs on asyncio and on trio."""

from __future__ import annotations

import pytest

import duro
from duro.testing import VirtualClock


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start_ms=1_700_000_000_000)


@pytest.fixture
def store(clock: VirtualClock) -> duro.InMemoryProvider:
    return duro.InMemoryProvider(clock=clock)


@pytest.fixture
def registry() -> duro.Registry:
    return duro.Registry()


@pytest.fixture
def client(store: duro.InMemoryProvider, registry: duro.Registry) -> duro.Client:
    return duro.Client(store, registry=registry)
