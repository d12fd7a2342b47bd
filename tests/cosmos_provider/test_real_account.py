"""Opt-in: CosmosProvider against a real Azure Cosmos DB account or the official emulator.

The rest of the suite runs against the local ``@vercel/cosmosdb-server`` through the compat
layer, which cannot show real authentication, indexing, session consistency, RU charges or
partition-key ranges. This module covers that gap when asked to::

    COSMOS_ENDPOINT=https://<account>.documents.azure.com:443/ COSMOS_KEY=<primary key> \\
        .venv/bin/pytest tests/cosmos_provider/test_real_account.py -v

(for the emulator: ``COSMOS_ENDPOINT=https://localhost:8081`` with its public key, the
default, and ``COSMOS_CA_BUNDLE=<exported emulator certificate>``; see
docs/providers/cosmos.md). It creates a database ``duro-test-<random>`` and deletes it at the
end; the key must be allowed to create databases.

Skipping is deliberate and documented: without ``COSMOS_ENDPOINT`` there is nothing to run
against, and an endpoint that answers unsigned requests is the local test server (real Cosmos
and the emulator answer 401), which the compat-layer tests already cover. The skip message
says which case applies.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from duro_cosmos import CosmosConfig, CosmosProvider

from ._smoke import provider_smoke, run_orchestrations

pytestmark = pytest.mark.anyio


def _real_config() -> CosmosConfig:
    """The account under test, or a skip that says why there is none."""
    if not os.environ.get("COSMOS_ENDPOINT", "").strip():
        pytest.skip(
            "opt-in: set COSMOS_ENDPOINT (and COSMOS_KEY) to a real Cosmos DB account or the "
            "official emulator to run these tests (docs/providers/cosmos.md, 'Testing')"
        )
    config = CosmosConfig.from_env(database=f"duro-test-{uuid.uuid4().hex[:10]}")
    with httpx.Client(verify=config.tls_verify, timeout=config.connect_timeout) as probe:
        status = probe.get(config.endpoint.rstrip("/") + "/").status_code  # deliberately unsigned
    if status < 400:
        pytest.skip(
            f"COSMOS_ENDPOINT={config.endpoint} accepts unsigned requests, so it is the local "
            "test server (covered through the compat layer), not Cosmos DB or its emulator"
        )
    return config


@pytest.fixture
async def provider() -> AsyncIterator[CosmosProvider]:
    config = _real_config()
    try:
        async with CosmosProvider(config) as store:
            yield store
    finally:
        async with config.create_client() as client:
            await client.delete_database(config.database)


async def test_provider_contract_smoke_on_a_real_account(provider: CosmosProvider) -> None:
    await provider_smoke(provider)
    assert provider.statistics().total > 0


async def test_orchestrations_on_a_real_account(provider: CosmosProvider) -> None:
    await run_orchestrations(provider, count=3, timeout=120)
