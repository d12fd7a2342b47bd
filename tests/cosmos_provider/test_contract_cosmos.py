"""CosmosProvider against the shared provider contract, through the Cosmos compat layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from duro.providers import Provider
from duro.testing import ProviderContract, VirtualClock
from duro_cosmos import CosmosConfig, CosmosProvider
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
