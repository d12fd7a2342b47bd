"""CosmosProvider against the shared provider contract, through the Cosmos compat layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from duro import AesGcmCodec
from duro.providers import Provider
from duro.testing import ProviderContract, VirtualClock
from duro.testing._contract._fixtures import create_instance, kv_set
from duro_cosmos import CosmosConfig, CosmosProvider, TurnTooLargeError
from tests.cosmos.support import CosmosTestEnv


class TestCosmosContract(ProviderContract):
    long_polling = True

    @pytest.fixture(autouse=True)
    def _env(self, cosmos_env: CosmosTestEnv) -> None:
        self.env = cosmos_env

    def create_provider(self, clock: VirtualClock, tmp_path: Path) -> Provider:
        env = self.env
        config = CosmosConfig(env.url, env.key, env.database, env.container)
        return CosmosProvider(config, transport=env.transport, clock=clock)


class TestCosmosContractWithCodec(TestCosmosContract):
    """The same contract with every payload encrypted: the codec changes what the documents
    hold, never how the store behaves."""

    def create_provider(self, clock: VirtualClock, tmp_path: Path) -> Provider:
        env = self.env
        config = CosmosConfig(env.url, env.key, env.database, env.container)
        codec = AesGcmCodec({"k1": bytes(range(32))}, active="k1")
        return CosmosProvider(config, transport=env.transport, clock=clock, codec=codec)

    @pytest.mark.anyio
    async def test_kv_holds_the_runtime_limits(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        # An encrypted value is base64 (4/3 of the plaintext) plus nonce and tag, so one turn
        # writing the runtime's whole KV (100 keys of 16 KB, 1.6 MB) exceeds Cosmos's 2 MB
        # transactional batch: it fails whole, as too large; 100 keys of 12 KB still fit.
        # Documented in docs/reliability.md ("Security").
        now = clock.now_ms()
        full = [kv_set(f"key-{n:03}", "x" * (16 * 1024 - 2), at_ms=now) for n in range(100)]
        with pytest.raises(TurnTooLargeError):
            await create_instance(provider, "i1", kv_changes=full)
        assert await provider.get_kv_items("i1") == {}

        fits = [kv_set(f"key-{n:03}", "x" * (12 * 1024 - 2), at_ms=now) for n in range(100)]
        await create_instance(provider, "i2", kv_changes=fits)
        values = await provider.get_kv_items("i2")
        assert len(values) == 100
        assert all(len(entry.value) == 12 * 1024 for entry in values.values())
