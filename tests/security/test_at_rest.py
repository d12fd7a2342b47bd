"""Payload encryption at rest, end to end on every store: a workload that puts a secret in
every kind of payload runs through ``duro.Runtime``, then the store is read directly (the
SQLite file and its WAL, the Cosmos documents over REST, the in-memory tables) while queue
messages, work items, histories, records, KV and custom status all hold data.

Each case also runs without a codec, where the same scan must find the secret: proof that the
scan reaches every place the payloads are kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import duro
from duro.history import ActivityScheduled
from duro.providers import Provider
from duro_cosmos import CosmosConfig, CosmosProvider
from tests.cosmos.support import CosmosTestEnv
from tests.e2e._support import history_has, options

from . import _scan
from ._workload import (
    PARKED_TAG,
    SECRET,
    expected_vault_output,
    registry,
    send_vault_inputs,
)

pytestmark = pytest.mark.anyio

KEYS = {"2025-a": bytes(range(32))}


COMBOS = [("asyncio", "memory"), ("trio", "memory"), ("asyncio", "sqlite"), ("trio", "sqlite")]
COMBOS.append(("asyncio", "cosmos"))  # a network store: asyncio only, as in tests/e2e


@pytest.fixture(params=COMBOS, ids=[f"{backend}-{kind}" for backend, kind in COMBOS])
def combo(request: pytest.FixtureRequest) -> tuple[str, str]:
    backend, kind = request.param
    return backend, kind


@pytest.fixture
def anyio_backend(combo: tuple[str, str]) -> str:
    return combo[0]


@pytest.fixture
def kind(combo: tuple[str, str]) -> str:
    return combo[1]


@pytest.fixture(params=[True, False], ids=["codec", "plain"])
def encrypted(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


class Store:
    """The provider under test and a way to read everything it stored, bypassing it."""

    def __init__(self, kind: str, encrypted: bool, tmp_path: Path, request: pytest.FixtureRequest):
        codec = duro.AesGcmCodec(KEYS, active="2025-a") if encrypted else None
        self.kind = kind
        self.provider: Provider
        if kind == "memory":
            self.provider = duro.InMemoryProvider(codec=codec)
        elif kind == "sqlite":
            self.path = tmp_path / "store.db"
            self.provider = duro.SqliteProvider(self.path, codec=codec)
        else:
            self.env: CosmosTestEnv = request.getfixturevalue("cosmos_env")
            config = CosmosConfig(self.env.url, self.env.key, self.env.database, self.env.container)
            self.provider = CosmosProvider(config, transport=self.env.transport, codec=codec)

    async def dump(self) -> dict[str, bytes]:
        """What the store holds, by place: tables, files, document types."""
        if self.kind == "memory":
            tables = self.provider._tables  # type: ignore[attr-defined]
            return {
                "instances": _scan.reachable_bytes(tables.instances),
                "orchestrator queue": _scan.reachable_bytes(tables.queue),
                "worker queue": _scan.reachable_bytes(tables.work),
            }
        if self.kind == "sqlite":
            return _scan.sqlite_dump(self.path)
        return _scan.cosmos_dump(await _scan.cosmos_documents(self.env))


PLACES = {
    "memory": {"instances", "orchestrator queue", "worker queue"},
    "sqlite": {
        "files",
        "instances",
        "executions",
        "history",
        "orchestrator_queue",
        "worker_queue",
        "kv_store",
    },
    "cosmos": {"instance", "history", "orch_queue", "worker_queue", "kv"},
}
"""Where the workload leaves payloads by the time of the first scan, per store: each must
hold the secret without a codec (so the scan is known to reach it) and none with one."""


@pytest.fixture
async def store(
    kind: str, encrypted: bool, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Store]:
    store = Store(kind, encrypted, tmp_path, request)
    async with store.provider:
        yield store


async def test_no_payload_is_stored_in_clear_and_the_workload_still_completes(
    store: Store, encrypted: bool
) -> None:
    provider = store.provider
    client = duro.Client(provider, registry=registry)

    # A runtime that serves only untagged work: "parked" leaves its work item queued.
    async with duro.Runtime(provider, registry, options()):
        await send_vault_inputs(client, "v1")
        await client.start_orchestration("parked-1", "parked", f"{SECRET}-parked-input")
        status = await client.wait_for_orchestration("v1", timeout=30)
        assert status.output == expected_vault_output("v1")
        assert (await client.wait_for_orchestration("v1.chained", timeout=30)).output == (
            f"{SECRET}-chained-input|{SECRET}-child-output"
        )
        await history_has(client, "parked-1", ActivityScheduled)
    # No runtime: a pending start and its event stay queued as messages.
    await send_vault_inputs(client, "pending-1")

    dump = await store.dump()
    everything = b"\n".join(dump.values())
    # Ids and names stay in clear so stores can route and list.
    for clear in (b"v1", b"parked-1", b"pending-1", b"vault", b"annotate", b"approve"):
        assert clear in everything
    leaks = {place: _scan.found(data, SECRET.encode()) for place, data in dump.items()}
    if encrypted:
        assert {place: forms for place, forms in leaks.items() if forms} == {}
        for place in PLACES[store.kind]:
            assert b"$aesgcm" in dump[place], place
    else:
        assert {place for place in PLACES[store.kind] if not leaks[place]} == set()

    # Readers see plaintext: status, custom status, KV, history.
    status = await client.get_status("v1")
    assert status.custom_status == f"{SECRET}-status"
    assert await client.get_value("v1", "note") == f"{SECRET}-kv"
    history = await client.get_history("parked-1")
    scheduled = [e for e in history if isinstance(e, ActivityScheduled)]
    assert bytes(scheduled[0].input) == f'"{SECRET}-parked-input"'.encode()

    # A second runtime serving the parked tag finishes everything that was left queued.
    serve_all = duro.TagFilter(tags=frozenset({PARKED_TAG}), include_untagged=True)
    async with duro.Runtime(provider, registry, options(tag_filter=serve_all)):
        parked = await client.wait_for_orchestration("parked-1", timeout=30)
        pending = await client.wait_for_orchestration("pending-1", timeout=30)
    assert parked.output == f"{SECRET}-parked-input|{SECRET}-remote-result"
    assert pending.output == expected_vault_output("pending-1")

    if encrypted:
        final = await store.dump()
        assert {p: f for p, d in final.items() if (f := _scan.found(d, SECRET.encode()))} == {}
