"""Both shipped stores skip loading a history the runtime already holds (W4's flat turn cost)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import duro
from duro.providers import Provider
from duro.testing import VirtualClock
from duro.testing._contract._fixtures import create_instance, external_event, turn_request


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Provider]:
    clock = VirtualClock(start_ms=1_700_000_000_000)
    provider: Provider = (
        duro.InMemoryProvider(clock=clock)
        if request.param == "memory"
        else duro.SqliteProvider(tmp_path / "skip.db", clock=clock)
    )
    async with provider:
        yield provider


@pytest.mark.anyio
async def test_fetch_skips_history_and_kv_the_caller_holds(store: Provider) -> None:
    await create_instance(store, "h1")
    length = len(await store.read_history("h1"))
    await store.enqueue_orchestrator_message(external_event("h1"))
    request = dataclasses.replace(turn_request(), cached_histories={"h1": (1, length)})

    item = await store.fetch_turn(request)

    assert item is not None
    assert item.history_omitted
    assert item.history == [] and item.kv_snapshot == {}
