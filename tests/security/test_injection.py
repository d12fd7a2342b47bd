"""User strings reach SQLite and Cosmos queries only as parameters.

Instance ids, orchestration and activity names, event and queue names, KV keys, tags and
session ids made of SQL (SQLite's and Cosmos's dialect alike) round-trip exactly, match only
themselves in filtered listings, and leave every other instance, and the schema, as it was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import duro
from duro.providers import DeleteRequest, InstanceQuery, Provider
from duro.testing import VirtualClock
from duro.testing._contract._fixtures import (
    activity_request,
    activity_task,
    create_instance,
    kv_set,
    payload,
)
from duro_cosmos import CosmosConfig, CosmosProvider
from tests.e2e._support import options

pytestmark = pytest.mark.anyio

INJECTIONS = [
    "'",
    '"',
    "--",
    ";",
    "' OR 1=1 --",
    "x' OR '1'='1",
    '" OR ""="',
    "'; DROP TABLE instances; --",
    "'); DELETE FROM kv_store; --",
    "x' OR c.instanceId != '",
    "% _ [a-z] *",
    "@pk @name ?1 :name $1",
    "\\' \\\" \\\\",
]
"""Quotes of both kinds, comments, statement ends, tautologies, LIKE wildcards and
placeholder syntax of every driver. Cosmos ids forbid only / \\ ? # (and instance ids take
none of these through the client)."""


@pytest.fixture(params=["sqlite", "cosmos"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, Provider]]:
    clock = VirtualClock(start_ms=1_700_000_000_000)
    provider: Provider
    if request.param == "sqlite":
        provider = duro.SqliteProvider(tmp_path / "inj.db", clock=clock)
    else:
        env = request.getfixturevalue("cosmos_env")
        config = CosmosConfig(env.url, env.key, env.database, env.container)
        provider = CosmosProvider(config, transport=env.transport, clock=clock)
    async with provider:
        yield request.param, provider


async def _snapshot(provider: Provider, instance_id: str) -> tuple[Any, ...]:
    record = await provider.read_instance(instance_id)
    kv = await provider.get_kv_items(instance_id)
    return record, kv, await provider.read_history(instance_id)


def _tables(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT type, name FROM sqlite_master").fetchall())
    finally:
        conn.close()


async def test_injection_strings_in_every_stored_field_round_trip_and_touch_nothing_else(
    store: tuple[str, Provider], tmp_path: Path
) -> None:
    kind, provider = store
    await create_instance(
        provider, "bystander", name="plain", kv_changes=[kv_set("k", "v", at_ms=1)]
    )
    before = await _snapshot(provider, "bystander")
    tables = _tables(tmp_path / "inj.db") if kind == "sqlite" else []

    for n, text in enumerate(INJECTIONS):
        instance_id = f"i{n}{text}" if not any(c in text for c in "/\\?#") else f"i{n}"
        await create_instance(
            provider,
            instance_id,
            name=text,
            kv_changes=[kv_set(text, text, at_ms=1)],
            activity_tasks=[activity_task(instance_id, 1, name=text, tag=text, input=text)],
        )
        record = await provider.read_instance(instance_id)
        assert record is not None and (record.instance_id, record.name) == (instance_id, text)
        entry = await provider.get_kv_value(instance_id, text)
        assert entry is not None and entry.value == payload(text)
        assert await provider.get_kv_value(instance_id, "k") is None
        assert set(await provider.get_kv_items(instance_id)) == {text}
        page = await provider.list_instances(InstanceQuery(name=text))
        assert [r.instance_id for r in page.instances] == [instance_id]
        assert await provider.list_children(instance_id) == []
        tagged = duro.TagFilter(tags=frozenset({text}), include_untagged=False)
        work = await provider.fetch_activity(activity_request(tag_filter=tagged))
        assert work is not None and (work.task.name, work.task.tag) == (text, text)
        assert bytes(work.task.input) == payload(text)

    # A filter made of SQL matches nothing; deleting one instance deletes only it.
    page = await provider.list_instances(InstanceQuery(name="' OR 1=1 --x"))
    assert page.instances == []
    everyone = await provider.list_instances(InstanceQuery(limit=1000))
    assert len(everyone.instances) == len(INJECTIONS) + 1
    deleted = await provider.delete_instance(
        DeleteRequest(instance_id="i7'; DROP TABLE instances; --", force=True)
    )
    assert deleted.instances_deleted == 1
    remaining = await provider.list_instances(InstanceQuery(limit=1000))
    assert len(remaining.instances) == len(INJECTIONS)
    assert await _snapshot(provider, "bystander") == before
    if kind == "sqlite":
        assert _tables(tmp_path / "inj.db") == tables


async def test_a_workflow_named_and_signalled_with_injection_strings_runs_end_to_end(
    store: tuple[str, Provider],
) -> None:
    _, provider = store
    registry = duro.Registry()
    name, activity, event, queue = INJECTIONS[7], INJECTIONS[4], INJECTIONS[5], INJECTIONS[8]
    session = INJECTIONS[9]

    @registry.activity(name=activity)
    async def echo(ctx: duro.ActivityContext, text: str) -> str:
        return text

    @registry.orchestration(name=name)
    async def nasty(ctx: duro.OrchestrationContext, text: str) -> dict[str, Any]:
        for key in INJECTIONS:
            ctx.kv.set(key, key)
        ctx.kv.delete(INJECTIONS[0])
        echoed = await ctx.schedule_activity(activity, text, session=session)
        raised = await ctx.wait_for_event(event)
        queued = await ctx.dequeue_event(queue)
        return {"echoed": echoed, "raised": raised, "queued": queued}

    @registry.orchestration
    async def plain(ctx: duro.OrchestrationContext, text: str) -> str:
        ctx.kv.set("k", text)
        return text

    client = duro.Client(provider, registry=registry)
    for bad_id in ("x'", 'x"', "x;", "x OR 1=1", "x/y", ""):
        with pytest.raises(duro.InvalidInstanceIdError):
            await client.start_orchestration(bad_id, nasty, "input")
    assert (await provider.queue_depths()).orchestrator == 0

    async with duro.Runtime(provider, registry, options(max_sessions=4)):
        await client.start_orchestration("plain-1", plain, "kept")
        await client.start_orchestration("i--1=1:OR@x", nasty, INJECTIONS[3])
        await client.raise_event("i--1=1:OR@x", event, INJECTIONS[1])
        await client.enqueue_event("i--1=1:OR@x", queue, INJECTIONS[2])
        status = await client.wait_for_orchestration("i--1=1:OR@x", timeout=30)
        plain_status = await client.wait_for_orchestration("plain-1", timeout=30)

    assert status.output == {"echoed": ";", "raised": '"', "queued": "--"}
    assert status.name == name
    values = await client.get_values("i--1=1:OR@x")
    assert values == {key: key for key in INJECTIONS[1:]}
    assert plain_status.output == "kept"
    assert await client.get_values("plain-1") == {"k": "kept"}
    listed = await client.list_instances(name=name)
    assert [s.instance_id for s in listed] == ["i--1=1:OR@x"]
