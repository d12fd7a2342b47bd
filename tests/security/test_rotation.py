"""Key rotation, removed keys and altered data, end to end through ``duro.Runtime`` on the two
stores that outlive a process (SQLite, Cosmos): each phase opens the store anew with other keys,
as a redeployed worker would.

What must hold: data written under key A reads after B becomes active (A still held); with A
gone, reads fail with ``UnknownKeyError`` naming A, and work written under A is put back for a
worker that holds it (logged, delivery not counted), never failed or lost; altered or moved
ciphertext fails with ``PayloadAuthenticationError``.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

import duro
from duro.providers import Provider
from duro.providers._boundary import UNDECODABLE_DELAY
from duro.testing import VirtualClock
from duro.testing._contract._fixtures import (
    activity_request,
    activity_task,
    create_instance,
    start_message,
    turn_request,
)
from duro_cosmos import CosmosConfig, CosmosProvider
from duro_cosmos._documents import history_doc_id, kv_bucket
from duro_cosmos._rest import ContainerLink
from tests.e2e._support import options, wait_until

pytestmark = pytest.mark.anyio

KEY_A = bytes(range(32))
KEY_B = bytes(range(50, 82))
ONLY_A = duro.AesGcmCodec({"A": KEY_A}, active="A")
ROTATED = duro.AesGcmCodec({"A": KEY_A, "B": KEY_B}, active="B")
ONLY_B = duro.AesGcmCodec({"B": KEY_B}, active="B")

registry = duro.Registry()


@registry.orchestration
async def keeper(ctx: duro.OrchestrationContext, note: str) -> str:
    ctx.kv.set("note", note)
    ctx.set_custom_status(f"waiting:{note}")
    reply = await ctx.wait_for_event("go")
    return f"{note}/{reply}"


Opener = Callable[[duro.Codec | None], Provider]


@pytest.fixture(params=["sqlite", "cosmos"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start_ms=1_700_000_000_000)


@pytest.fixture
def open_store(
    kind: str, clock: VirtualClock, tmp_path: Path, request: pytest.FixtureRequest
) -> Opener:
    """Opens the same store (file or container) with the given codec."""
    if kind == "sqlite":
        return lambda codec: duro.SqliteProvider(tmp_path / "r.db", clock=clock, codec=codec)
    env = request.getfixturevalue("cosmos_env")
    config = CosmosConfig(env.url, env.key, env.database, env.container)
    return lambda codec: CosmosProvider(config, transport=env.transport, clock=clock, codec=codec)


def runtime(store: Provider, clock: VirtualClock) -> duro.Runtime:
    return duro.Runtime(store, registry, options(), clock=clock)


async def finish(client: duro.Client, instance_id: str, reply: str) -> duro.OrchestrationStatus:
    await client.raise_event(instance_id, "go", reply)
    return await client.wait_for_orchestration(instance_id, timeout=30)


async def waiting(client: duro.Client, instance_id: str) -> None:
    async def custom_status_set() -> bool:
        return (await client.get_status(instance_id)).custom_status is not None

    await wait_until(custom_status_set, what=f"{instance_id} waits for its event")


@pytest.fixture
async def written_under_a(open_store: Opener, clock: VirtualClock) -> AsyncIterator[None]:
    """Under key A: ``done`` completed, ``mixed`` waiting for its event."""
    async with open_store(ONLY_A) as store:
        client = duro.Client(store, registry=registry)
        async with runtime(store, clock):
            await client.start_orchestration("done", keeper, "n1")
            assert (await finish(client, "done", "g1")).output == "n1/g1"
            await client.start_orchestration("mixed", keeper, "n2")
            await waiting(client, "mixed")
    yield


async def test_data_under_the_old_key_reads_and_runs_after_the_new_key_becomes_active(
    open_store: Opener, clock: VirtualClock, written_under_a: None, kind: str
) -> None:
    async with open_store(ROTATED) as store:
        client = duro.Client(store, registry=registry)
        done = await client.get_status("done")
        assert (done.output, done.custom_status) == ("n1/g1", "waiting:n1")
        assert await client.get_value("done", "note") == "n1"
        async with runtime(store, clock):
            # Its history holds payloads under A; the event and the rest are written under B.
            assert (await finish(client, "mixed", "g2")).output == "n2/g2"
            await client.start_orchestration("new", keeper, "n3")
            assert (await finish(client, "new", "g3")).output == "n3/g3"
        history = await client.get_history("mixed")
        assert len(history) > 3
    envelopes = await _stored_envelopes(open_store, kind, "mixed")
    assert {key_id for key_id in envelopes} == {"A", "B"}


async def test_without_the_old_key_reads_fail_naming_it_and_its_work_waits_unharmed(
    open_store: Opener,
    clock: VirtualClock,
    written_under_a: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_store(ONLY_A) as store:  # a start queued under A, not yet run
        await duro.Client(store, registry=registry).start_orchestration("queued", keeper, "n4")

    async with open_store(ONLY_B) as store:
        client = duro.Client(store, registry=registry)
        for read in (
            lambda: client.get_status("done"),
            lambda: client.get_value("done", "note"),
            lambda: client.get_history("mixed"),
            lambda: client.list_instances(),
        ):
            with pytest.raises(duro.UnknownKeyError) as caught:
                await read()
            assert caught.value.key_id == "A"
            assert "'A'" in str(caught.value)

        caplog.set_level(logging.ERROR, logger="duro.providers.codec")
        async with runtime(store, clock):
            await client.start_orchestration("fresh", keeper, "n5")  # B alone is fine
            assert (await finish(client, "fresh", "g5")).output == "n5/g5"

            def put_back() -> bool:
                return any("'queued'" in r.getMessage() for r in caplog.records)

            await wait_until(put_back, what="the start under A is put back")
        [record] = {
            r.getMessage(): r for r in caplog.records if "'queued'" in r.getMessage()
        }.values()
        assert record.levelno == logging.ERROR and "'A'" in record.getMessage()
        # Put back, not failed: the start is still pending.
        assert (await client.get_status("queued")).state == duro.State.PENDING

    # A worker that holds A again runs it, once the put-back delay has passed.
    async with open_store(ROTATED) as store:
        client = duro.Client(store, registry=registry)
        async with runtime(store, clock):
            await clock.advance(UNDECODABLE_DELAY + 1)
            status = await finish(client, "queued", "g4")
            assert status.output == "n4/g4"
            assert (await finish(client, "mixed", "g2")).output == "n2/g2"


async def test_altered_or_moved_ciphertext_fails_authentication_and_is_never_run(
    open_store: Opener,
    clock: VirtualClock,
    written_under_a: None,
    kind: str,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    tamper = _SqliteTamper(request) if kind == "sqlite" else _CosmosTamper(request)
    await tamper.flip_output_bit("done")
    await tamper.copy_kv_value("done", "mixed", "note")
    await tamper.flip_started_input("mixed")

    async with open_store(ROTATED) as store:
        client = duro.Client(store, registry=registry)
        with pytest.raises(duro.PayloadAuthenticationError) as caught:
            await client.get_status("done")
        assert (caught.value.key_id, caught.value.instance_id) == ("A", "done")
        with pytest.raises(duro.PayloadAuthenticationError) as moved:
            await client.get_value("mixed", "note")
        assert moved.value.instance_id == "mixed"

        # "mixed" gets its event, but its history no longer authenticates: the turn is put
        # back and logged, the instance is not failed.
        await client.raise_event("mixed", "go", "g2")
        caplog.set_level(logging.ERROR, logger="duro.providers.codec")
        async with runtime(store, clock):

            def put_back() -> bool:
                return any("'mixed'" in r.getMessage() for r in caplog.records)

            await wait_until(put_back, what="the turn of 'mixed' is put back")
        assert "fails authentication" in caplog.text
    async with open_store(None) as plain:  # the record itself holds no payload to decode
        record = await plain.read_instance("mixed")
        assert record is not None and record.state == duro.State.RUNNING


async def test_fetched_work_under_a_missing_key_is_put_back_uncounted_for_a_worker_with_it(
    open_store: Opener, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="duro.providers.codec")
    async with open_store(ONLY_A) as store:
        await create_instance(store, "w1", activity_tasks=[activity_task("w1", 1, input="x")])
        await store.start_orchestration(start_message("s1", input="y"))

    async with open_store(ONLY_B) as store:
        assert await store.fetch_turns(turn_request()) == []
        assert await store.fetch_activities(activity_request()) == []
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and all("key id 'A'" in m for m in messages)
    assert any("turn of 's1'" in m for m in messages)
    assert any("activity of 'w1'" in m for m in messages)

    async with open_store(ROTATED) as store:
        # Invisible for the put-back delay, then back with the delivery not counted.
        assert await store.fetch_turns(turn_request()) == []
        await clock.advance(UNDECODABLE_DELAY)
        turn = await store.fetch_turn(turn_request())
        work = await store.fetch_activity(activity_request())
    assert turn is not None and (turn.instance_id, turn.delivery_count) == ("s1", 1)
    assert bytes(turn.messages[0].input) == b'"y"'  # type: ignore[union-attr]
    assert work is not None and (work.task.instance_id, work.delivery_count) == ("w1", 1)
    assert bytes(work.task.input) == b'"x"'


# -- reaching into the stores ------------------------------------------------------------------


def _flipped(envelope: dict[str, str]) -> dict[str, str]:
    """The envelope with one bit of its authentication tag flipped."""
    key_id, _, token = envelope["$aesgcm"].partition(":")
    blob = bytearray(base64.b64decode(token))
    blob[-1] ^= 0x01
    return {"$aesgcm": f"{key_id}:{base64.b64encode(blob).decode()}"}


def _flip(stored: str) -> str:
    return msgspec.json.encode(_flipped(msgspec.json.decode(stored))).decode()


def _flip_first_input(events: str) -> str:
    """A JSON array of events with the first one's input altered."""
    decoded = msgspec.json.decode(events)
    decoded[0]["input"] = _flipped(decoded[0]["input"])
    return msgspec.json.encode(decoded).decode()


class _SqliteTamper:
    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.path = request.getfixturevalue("tmp_path") / "r.db"

    async def flip_output_bit(self, instance_id: str) -> None:
        with sqlite3.connect(self.path) as conn:
            [output] = conn.execute(
                "SELECT output FROM instances WHERE instance_id = ?", (instance_id,)
            ).fetchone()
            conn.execute(
                "UPDATE instances SET output = ? WHERE instance_id = ?",
                (_flip(bytes(output).decode()).encode(), instance_id),
            )
        conn.close()

    async def flip_started_input(self, instance_id: str) -> None:
        where = "WHERE instance_id = ? AND execution_id = 1 AND event_id = 1"
        with sqlite3.connect(self.path) as conn:
            [data] = conn.execute(f"SELECT data FROM history {where}", (instance_id,)).fetchone()
            event = _flip_first_input("[" + bytes(data).decode() + "]")[1:-1]
            conn.execute(f"UPDATE history SET data = ? {where}", (event.encode(), instance_id))
        conn.close()

    async def copy_kv_value(self, source: str, target: str, key: str) -> None:
        with sqlite3.connect(self.path) as conn:
            [value] = conn.execute(
                "SELECT value FROM kv_store WHERE instance_id = ? AND key = ?", (source, key)
            ).fetchone()
            changed = conn.execute(
                "UPDATE kv_delta SET value = ? WHERE instance_id = ? AND key = ?",
                (value, target, key),
            ).rowcount
            assert changed == 1
        conn.close()


class _CosmosTamper:
    def __init__(self, request: pytest.FixtureRequest) -> None:
        env = request.getfixturevalue("cosmos_env")
        self.config = CosmosConfig(env.url, env.key, env.database, env.container)
        self.transport = env.transport
        self.link = ContainerLink(env.database, env.container)

    async def _edit(
        self, instance_id: str, doc_id: str, change: Callable[[dict[str, Any]], None]
    ) -> None:
        async with self.config.create_client(transport=self.transport) as client:
            body = (await client.read_document(self.link, doc_id, instance_id)).body
            assert body is not None
            change(body)
            await client.upsert_document(self.link, body, instance_id)

    async def flip_output_bit(self, instance_id: str) -> None:
        await self._edit(instance_id, "instance", lambda d: d.update(output=_flip(d["output"])))

    async def flip_started_input(self, instance_id: str) -> None:
        first_page = history_doc_id(1, 1)
        await self._edit(
            instance_id, first_page, lambda d: d.update(events=_flip_first_input(d["events"]))
        )

    async def copy_kv_value(self, source: str, target: str, key: str) -> None:

        bucket = kv_bucket(key)
        async with self.config.create_client(transport=self.transport) as client:
            source_doc = (await client.read_document(self.link, bucket, source)).body
        assert source_doc is not None
        value = source_doc["entries"][key]["cv"]

        def replace(doc: dict[str, Any]) -> None:
            doc["entries"][key]["dv"] = value

        await self._edit(target, bucket, replace)


async def _stored_envelopes(open_store: Opener, kind: str, instance_id: str) -> set[str]:
    """The key ids of every encrypted payload of ``instance_id``'s history, read through a
    provider without a codec (which hands stored payloads back as they are)."""
    async with open_store(None) as plain:
        history = await plain.read_history(instance_id)
    key_ids = set()
    for event in history:
        for name in ("input", "output", "result", "data", "value"):
            payload = getattr(event, name, None)
            if payload is not None:
                key_ids.add(msgspec.json.decode(bytes(payload))["$aesgcm"].split(":")[0])
    return key_ids
