"""Retention: a finished instance's documents expire together through Cosmos's time to live."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import anyio
import pytest

import duro
from duro import ProviderError
from duro_cosmos import CosmosConfig, CosmosProvider, HttpRetryPolicy
from duro_cosmos._rest import ContainerLink
from tests.cosmos.compat_ttl import expire_documents
from tests.cosmos.support import CosmosTestEnv

pytestmark = pytest.mark.anyio

FAST_RETRY = HttpRetryPolicy(base_delay=0.001, max_delay=0.05)

registry = duro.Registry()


@registry.activity
async def note(ctx: duro.ActivityContext, text: str) -> str:
    return text.upper()


@registry.orchestration
async def finishes(ctx: duro.OrchestrationContext, text: str) -> str:
    ctx.kv.set("seen", text)
    first: str = await ctx.schedule_activity(note, text)
    second: str = await ctx.schedule_activity(note, first + "!")
    return second


@registry.orchestration
async def waits(ctx: duro.OrchestrationContext, _: None) -> Any:
    return await ctx.wait_for_event("never")


def make(env: CosmosTestEnv, **kwargs: Any) -> CosmosProvider:
    config = CosmosConfig(env.url, env.key, env.database, env.container)
    return CosmosProvider(config, transport=env.transport, retry=FAST_RETRY, **kwargs)


async def partition(env: CosmosTestEnv, instance_id: str) -> list[dict[str, Any]]:
    """Every document of ``instance_id``'s partition, read past the provider."""
    collection = f"dbs/{env.database}/colls/{env.container}"
    reply = await env.transport.backend.call(
        "POST",
        "/" + "/".join(quote(p, safe="") for p in collection.split("/")) + "/docs",
        pk=instance_id,
        headers={"content-type": "application/query+json", "x-ms-documentdb-isquery": "True"},
        body={
            "query": "SELECT * FROM c WHERE c.instanceId = @pk",
            "parameters": [{"name": "@pk", "value": instance_id}],
        },
    )
    assert isinstance(reply.data, dict)
    documents: list[dict[str, Any]] = reply.data["Documents"]
    return documents


async def test_a_finished_instance_expires_with_every_document_and_a_running_one_stays(
    cosmos_env: CosmosTestEnv,
) -> None:
    async with make(cosmos_env, retention=1) as store:
        options = duro.RuntimeOptions(poll_timeout=0.2, max_sessions=0)
        async with duro.Runtime(store, registry, options):
            client = duro.Client(store)
            await client.start_orchestration("runs", waits)
            await client.start_orchestration("ends", finishes, "hi")
            status = await client.wait_for_orchestration("ends", timeout=30)
            assert status.output == "HI!"
            with anyio.fail_after(30):  # the rest of the partition gets its ttl right after
                while any("ttl" not in d for d in await partition(cosmos_env, "ends")):  # noqa: ASYNC110
                    await anyio.sleep(0.05)

        ended = await partition(cosmos_env, "ends")
        assert {d["type"] for d in ended} >= {"instance", "history", "kv"}
        assert all(d["ttl"] == 1 for d in ended)
        assert all("ttl" not in d for d in await partition(cosmos_env, "runs"))

        await anyio.sleep(2.1)  # past the ttl by the server's one-second clock
        await expire_documents(cosmos_env.transport, cosmos_env.database, cosmos_env.container)

        assert await partition(cosmos_env, "ends") == []
        assert await store.read_instance("ends") is None
        running = await store.read_instance("runs")
        assert running is not None and running.state is duro.State.RUNNING
        listed = await client.list_instances()
        assert [status.instance_id for status in listed] == ["runs"]


async def test_retention_refuses_a_container_whose_time_to_live_is_off(
    cosmos_env: CosmosTestEnv,
) -> None:
    config = CosmosConfig(cosmos_env.url, cosmos_env.key, cosmos_env.database, cosmos_env.container)
    async with config.create_client(transport=cosmos_env.transport) as client:
        await client.create_database_if_missing(cosmos_env.database)
        await client.create_container_if_missing(
            ContainerLink(cosmos_env.database, cosmos_env.container),
            partition_key_path="/instanceId",
        )
    with pytest.raises(ProviderError, match="defaultTtl") as caught:
        async with make(cosmos_env, retention=timedelta(days=30)) as store:
            await store.open()
    assert not caught.value.retryable


@pytest.mark.parametrize("retention", [0, 0.5, -3, math.nan, timedelta(0)])
def test_retention_shorter_than_a_second_is_refused(retention: float | timedelta) -> None:
    with pytest.raises(ValueError, match="retention"):
        CosmosProvider(CosmosConfig("http://localhost:1", "a2V5", "d", "c"), retention=retention)
