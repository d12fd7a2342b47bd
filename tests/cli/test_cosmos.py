"""The ``duro`` console script against Cosmos DB: the local test server behind the compat proxy,
configured only through ``COSMOS_*`` variables, while a runtime in the test process serves the
same container."""

from __future__ import annotations

import functools
import json

import anyio
import anyio.to_thread
import pytest

import duro
from duro_cosmos import CosmosConfig, CosmosProvider
from tests.cosmos.proxy import ProxyEnv
from tests.e2e._support import wait_until

from .conftest import Cli

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

registry = duro.Registry()


@registry.activity
async def shout(ctx: duro.ActivityContext, text: str) -> str:
    return text.upper()


@registry.orchestration
async def greeter(ctx: duro.OrchestrationContext, name: str) -> str:
    greeting: str = await ctx.schedule_activity(shout, f"hello {name}")
    ctx.set_custom_status("greeted")
    answer: str = await ctx.wait_for_event("reply")
    return f"{greeting} / {answer}"


async def test_commands_read_and_signal_a_workflow_on_cosmos(
    cli: Cli, cosmos_proxy_env: ProxyEnv
) -> None:
    env = cosmos_proxy_env
    variables = {
        "COSMOS_ENDPOINT": env.url,
        "COSMOS_KEY": env.key,
        "COSMOS_DATABASE": env.database,
        "COSMOS_CONTAINER": env.container,
    }

    async def run(*args: str) -> tuple[int, str, str]:
        result = await anyio.to_thread.run_sync(
            functools.partial(cli, *args, "--cosmos", env=variables)
        )
        return result.code, result.out, result.err

    store = CosmosProvider(CosmosConfig(env.url, env.key, env.database, env.container))
    options = duro.RuntimeOptions(idle_backoff_max=0.05, max_sessions=0)
    async with store, duro.Runtime(store, registry, options):
        client = duro.Client(store)
        await client.start_orchestration("cosmic", greeter, "cosmos")

        async def greeted() -> bool:
            return (await client.get_status("cosmic")).custom_status == "greeted"

        await wait_until(greeted, what="the greeting")

        code, out, err = await run("list", "--json")
        assert code == 0, err
        [listed] = json.loads(out)["instances"]
        assert (listed["instance_id"], listed["state"]) == ("cosmic", "running")

        code, out, err = await run("history", "cosmic")
        assert code == 0, err
        assert "ActivityCompleted" in out and "HELLO COSMOS" in out

        code, out, err = await run("queues", "--json")
        assert code == 0, err
        assert set(json.loads(out)) == {"orchestrator", "timers", "worker", "locked"}

        code, out, err = await run("raise-event", "cosmic", "reply", "--data", '"hi"')
        assert (code, out) == (0, "raised event 'reply' on cosmic\n"), err
        status = await client.wait_for_orchestration("cosmic", timeout=30)
        assert status.output == "HELLO COSMOS / hi"

        code, out, err = await run("status", "cosmic", "--json")
        assert code == 0, err
        assert json.loads(out)["output"] == "HELLO COSMOS / hi"

        code, out, err = await run("status", "nobody")
        assert (code, err) == (2, "duro: error: no instance 'nobody' in this store\n")

        code, out, err = await run("delete", "cosmic", "--json")
        assert code == 0, err
        assert await client.get_status("cosmic") == duro.OrchestrationStatus(
            instance_id="cosmic", state=duro.State.NOT_FOUND
        )
