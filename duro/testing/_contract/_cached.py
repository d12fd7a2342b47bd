"""Contract: skipping history the caller already holds (``cached_histories``) is safe."""

from __future__ import annotations

import dataclasses

import pytest

from ...providers import Provider
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import create_instance, external_event, turn_request


class CachedHistoryContract(ContractBase):
    """Omitting history is optional; when a store does it, it must only do it when safe."""

    async def _history_length(self, provider: Provider, instance_id: str) -> int:
        return len(await provider.read_history(instance_id))

    @pytest.mark.anyio
    async def test_history_is_omitted_only_when_the_cached_copy_matches(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "c1")
        length = await self._history_length(provider, "c1")
        await provider.enqueue_orchestrator_message(external_event("c1"))
        request = dataclasses.replace(
            turn_request(self.lock_timeout), cached_histories={"c1": (1, length)}
        )

        item = await provider.fetch_turn(request)

        assert item is not None and item.instance_id == "c1"
        if item.history_omitted:
            assert item.history == [] and item.kv_snapshot == {}
        else:
            assert len(item.history) == length
        assert len(item.messages) == 1

    @pytest.mark.anyio
    @pytest.mark.parametrize("stale", ["fewer-events", "other-execution"])
    async def test_history_is_loaded_when_the_cached_copy_is_stale(
        self, provider: Provider, clock: VirtualClock, stale: str
    ) -> None:
        await create_instance(provider, "c2")
        length = await self._history_length(provider, "c2")
        await provider.enqueue_orchestrator_message(external_event("c2"))
        cached = (1, length - 1) if stale == "fewer-events" else (2, length)
        request = dataclasses.replace(
            turn_request(self.lock_timeout), cached_histories={"c2": cached}
        )

        item = await provider.fetch_turn(request)

        assert item is not None
        assert not item.history_omitted
        assert len(item.history) == length
