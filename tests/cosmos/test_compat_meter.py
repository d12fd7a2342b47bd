"""The RU meter: charges per request kind follow the price list, and the meter adds them up."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from ._rest import Rest
from .compat import EMULATOR_KEY, CompatTransport
from .compat_indexing import DEFAULT_POLICY, IndexPolicy
from .compat_meter import METER_SOURCE_HEADER, MeterSnapshot
from .compat_ru import DEFAULT_RU_TABLE
from .support import CosmosTestEnv, fresh_database, unique_name

pytestmark = pytest.mark.anyio

RestFactory = Callable[..., AbstractAsyncContextManager[tuple[Rest, CompatTransport]]]


@pytest.fixture
def make_rest(cosmos_server_url: str) -> RestFactory:
    """``async with make_rest(partitions=P) as (rest, transport)``: a fresh transport, database
    and container."""

    @asynccontextmanager
    async def factory(partitions: int = 1) -> AsyncIterator[tuple[Rest, CompatTransport]]:
        transport = CompatTransport(cosmos_server_url, key=EMULATOR_KEY, partitions=partitions)
        with fresh_database(cosmos_server_url, "meter") as database:
            async with httpx.AsyncClient(
                transport=transport, base_url=cosmos_server_url, timeout=30
            ) as client:
                api = Rest(client, EMULATOR_KEY, database, unique_name("c"))
                await api.setup()
                transport.meter.reset()
                yield api, transport

    return factory


def charge(response: httpx.Response) -> float:
    return float(response.headers["x-ms-request-charge"])


def fields(n: int, width: int = 40) -> dict[str, str]:
    """``n`` string properties of ``width`` characters: size and indexed terms grow together."""
    return {f"f{i:03d}": "x" * width for i in range(n)}


# -- point operations ------------------------------------------------------------------------


async def test_a_4kb_create_costs_about_4x_a_1kb_create(rest: Rest) -> None:
    small = {"id": "small", "pk": "p", **fields(18)}
    large = {"id": "large", "pk": "p", **fields(4 * 18)}
    assert 0.9 * 1024 < len(json.dumps(small)) < 1.1 * 1024
    c1, c4 = charge(await rest.create(small)), charge(await rest.create(large))
    assert 4.5 <= c1 <= 7.0  # ~5-6 RU for a 1 KB item under default indexing
    assert 3.6 <= c4 / c1 <= 4.4


async def test_small_items_cost_the_1kb_minimum(rest: Rest) -> None:
    tiny = charge(await rest.create({"id": "a", "pk": "p"}))
    assert tiny == pytest.approx(DEFAULT_RU_TABLE.create(1024, 2), abs=0.01)


async def test_replace_costs_about_twice_a_create_and_delete_about_one(rest: Rest) -> None:
    body = {"id": "d", "pk": "p", **fields(20)}
    created = charge(await rest.create(body))
    replaced = charge(await rest.request("PUT", rest.doc("d"), pk="p", body=body))
    deleted = charge(await rest.request("DELETE", rest.doc("d"), pk="p"))
    assert 1.8 <= replaced / created <= 2.2
    # The deleted document as stored carries system properties: a little larger.
    assert 0.95 <= deleted / created <= 1.25


async def test_patch_costs_like_a_replace(rest: Rest) -> None:
    body = {"id": "d", "pk": "p", "n": 1, **fields(20)}
    await rest.create(body)
    replaced = charge(await rest.request("PUT", rest.doc("d"), pk="p", body=body))
    patched = await rest.request(
        "PATCH",
        rest.doc("d"),
        pk="p",
        body={"operations": [{"op": "incr", "path": "/n", "value": 1}]},
    )
    assert patched.status_code == 200
    assert 0.9 <= charge(patched) / replaced <= 1.3


async def test_point_reads_cost_one_ru_per_kb_returned(rest: Rest) -> None:
    await rest.create({"id": "s", "pk": "p"})
    await rest.create({"id": "big", "pk": "p", "blob": "y" * 10 * 1024})
    assert charge(await rest.read("s", "p")) == 1.0
    assert 9.9 <= charge(await rest.read("big", "p")) <= 10.5


async def test_failures_cost_about_one_ru_and_throttling_is_free(
    rest: Rest, cosmos_env: CosmosTestEnv
) -> None:
    etag = (await rest.create({"id": "d", "pk": "p"})).headers["etag"]
    await rest.request("PUT", rest.doc("d"), pk="p", body={"id": "d", "pk": "p", "v": 2})
    stale = await rest.request(
        "PUT", rest.doc("d"), pk="p", body={"id": "d", "pk": "p"}, headers={"if-match": etag}
    )
    conflict = await rest.create({"id": "d", "pk": "p"})
    missing = await rest.read("nope", "p")
    cosmos_env.faults.add(kind="read", status=429, retry_after_ms=5)
    throttled = await rest.read("d", "p")
    assert [r.status_code for r in (stale, conflict, missing, throttled)] == [412, 409, 404, 429]
    assert [charge(r) for r in (stale, conflict, missing, throttled)] == [1.0, 1.0, 1.0, 0.0]
    meter = cosmos_env.transport.meter.snapshot()
    assert meter.tally("point_read", status=429).requests == 1
    assert meter.tally("point_read", status=429).ru == 0.0
    assert meter.lock_writes() == (1, 1)  # the If-Match replace that failed


# -- transactional batch -----------------------------------------------------------------------


async def test_batch_costs_the_sum_of_its_operations(rest: Rest, cosmos_env: CosmosTestEnv) -> None:
    docs = [{"id": f"d{i}", "pk": "b", **fields(5 * i + 1)} for i in range(3)]
    singles = [charge(await rest.create({**d, "pk": "single"})) for d in docs]
    batch = await rest.batch("b", [{"operationType": "Create", "resourceBody": d} for d in docs])
    assert batch.status_code == 200
    per_op = [r["requestCharge"] for r in batch.json()]
    assert per_op == pytest.approx(singles, rel=0.02)
    assert charge(batch) == pytest.approx(sum(per_op), abs=0.01)
    meter = cosmos_env.transport.meter.snapshot()
    assert meter.batch_ops()["create"].requests == 3
    assert meter.tally("batch").ru == pytest.approx(sum(singles), rel=0.02)


async def test_batch_failing_on_its_lock_costs_about_one_ru(
    rest: Rest, cosmos_env: CosmosTestEnv
) -> None:
    await rest.create({"id": "instance", "pk": "b"})
    ops = [
        {
            "operationType": "Replace",
            "id": "instance",
            "resourceBody": {"id": "instance", "pk": "b"},
            "ifMatch": '"not-the-etag"',
        },
        {"operationType": "Create", "resourceBody": {"id": "h1", "pk": "b", **fields(30)}},
    ]
    failed = await rest.batch("b", ops)
    assert failed.status_code == 207
    assert [r["statusCode"] for r in failed.json()] == [412, 424]
    assert charge(failed) == 1.0
    assert cosmos_env.transport.meter.snapshot().lock_writes() == (1, 1)


# -- indexing ----------------------------------------------------------------------------------


def test_index_terms_follow_the_policy_paths_and_precedence() -> None:
    doc = {"id": "a", "pk": "p", "msg": "x", "task": {"a": 1, "b": [1, 2]}, "_etag": "e"}
    assert DEFAULT_POLICY.terms(doc) == 6  # id, pk, msg, task.a, task.b[] x2; _etag skipped
    narrow = IndexPolicy.from_json(
        {"includedPaths": [{"path": "/*"}], "excludedPaths": [{"path": "/task/*"}]}
    )
    assert narrow.terms(doc) == 3
    only_pk = IndexPolicy.from_json(
        {"includedPaths": [{"path": "/pk/?"}], "excludedPaths": [{"path": "/*"}]}
    )
    assert only_pk.terms(doc) == 1
    assert IndexPolicy.from_json({"indexingMode": "none"}).terms(doc) == 0


async def test_excluding_paths_from_the_index_makes_writes_cheaper(rest: Rest) -> None:
    policy = {
        "indexingMode": "consistent",
        "includedPaths": [{"path": "/*"}],
        "excludedPaths": [{"path": "/payload/*"}],
    }
    lean = await rest.request(
        "POST",
        f"/dbs/{quote(rest.db, safe='')}/colls",
        body={
            "id": "lean",
            "partitionKey": {"paths": ["/pk"], "kind": "Hash"},
            "indexingPolicy": policy,
        },
    )
    assert lean.status_code == 201
    doc = {"id": "d", "pk": "p", "payload": {f"k{i}": i for i in range(60)}}
    default = charge(await rest.create(doc))
    lean_path = f"/dbs/{quote(rest.db, safe='')}/colls/lean/docs"
    cheaper = charge(await rest.request("POST", lean_path, pk="p", body=doc))
    assert default - cheaper == pytest.approx(60 * DEFAULT_RU_TABLE.write_per_indexed_term)


# -- queries and physical partitions -------------------------------------------------------------


async def test_single_partition_query_costs_2_5_plus_1_per_kb(rest: Rest) -> None:
    for i in range(8):
        await rest.create({"id": f"d{i}", "pk": "p", **fields(20)})
    empty = await rest.query("SELECT * FROM c WHERE c.id = 'none'", pk="p")
    full = await rest.query("SELECT * FROM c", pk="p")
    assert charge(empty) == pytest.approx(2.5, abs=0.1)
    returned_kb = len(full.content) / 1024
    assert returned_kb > 7
    assert charge(full) == pytest.approx(2.5 + returned_kb, abs=0.05)


async def test_cross_partition_query_costs_once_per_physical_partition(
    make_rest: RestFactory,
) -> None:
    charges = {}
    for partitions in (1, 30):
        async with make_rest(partitions=partitions) as (rest, _):
            for i in range(10):
                await rest.create({"id": f"d{i}", "pk": f"p{i}", "n": i})
            miss = await rest.query(
                "SELECT c.id FROM c WHERE c.n > @n", [{"name": "@n", "value": 100}],
                cross_partition=True,
            )  # fmt: skip
            hit = await rest.query("SELECT * FROM c WHERE c.n >= 0", cross_partition=True)
            one = await rest.query("SELECT * FROM c WHERE c.n >= 0", pk="p3")
            assert len(hit.json()["Documents"]) == 10
            charges[partitions] = (charge(miss), charge(hit), charge(one))
    assert charges[30][0] / charges[1][0] == pytest.approx(30, rel=0.02)
    # Every partition runs the query; the documents come back once.
    assert charges[30][1] - charges[1][1] == pytest.approx(29 * 2.5, abs=0.05)
    # A single-partition query does not fan out, whatever the partition count.
    assert charges[30][2] == pytest.approx(charges[1][2], abs=0.01)


async def test_pkranges_lists_p_ranges_splitting_the_hash_space(make_rest: RestFactory) -> None:
    async with make_rest(partitions=30) as (rest, _):
        r = await rest.request("GET", rest.coll_path + "/pkranges")
    assert r.status_code == 200
    body = r.json()
    ranges = body["PartitionKeyRanges"]
    assert r.headers["x-ms-item-count"] == "30" and body["_count"] == 30
    assert [x["id"] for x in ranges] == [str(i) for i in range(30)]
    assert ranges[0]["minInclusive"] == "" and ranges[-1]["maxExclusive"] == "FF"
    for low, high in itertools.pairwise(ranges):
        assert low["maxExclusive"] == high["minInclusive"]
    inner = [int(x["minInclusive"], 16) for x in ranges[1:]]
    assert inner == sorted(inner)
    widths = [b - a for a, b in zip([0, *inner], [*inner, 1 << 128], strict=True)]
    assert max(widths) - min(widths) <= 1  # an even split
    for x in ranges:
        assert x["status"] == "online" and x["parents"] == [] and "_rid" in x and "_etag" in x


async def test_pkranges_of_a_missing_container_is_404(rest: Rest) -> None:
    r = await rest.request("GET", f"/dbs/{quote(rest.db, safe='')}/colls/nope/pkranges")
    assert r.status_code == 404


async def _query_range(rest: Rest, sql: str, range_id: str, page: int = 3) -> list[Any]:
    out: list[Any] = []
    headers = {"x-ms-documentdb-partitionkeyrangeid": range_id, "x-ms-max-item-count": str(page)}
    while True:
        r = await rest.query(sql, headers=headers)
        assert r.status_code == 200, r.text
        out += r.json()["Documents"]
        token = r.headers.get("x-ms-continuation")
        if not token:
            return out
        headers = {**headers, "x-ms-continuation": token}


async def test_range_scoped_queries_partition_the_container(make_rest: RestFactory) -> None:
    async with make_rest(partitions=4) as (rest, transport):
        for i in range(24):
            await rest.create({"id": f"d{i}", "pk": f"key-{i % 12}", "n": i})
        everything = await rest.query("SELECT c.id, c.pk FROM c", cross_partition=True)
        all_docs = {d["id"]: d["pk"] for d in everything.json()["Documents"]}
        seen: dict[str, str] = {}
        for range_id in ("0", "1", "2", "3"):
            docs = await _query_range(rest, "SELECT c.id, c.pk FROM c", range_id)
            expected = {
                i for i, pk in all_docs.items() if transport.layout.range_of(pk) == int(range_id)
            }
            assert {d["id"] for d in docs} == expected
            assert not expected & seen.keys()  # ranges are disjoint
            seen.update({d["id"]: d["pk"] for d in docs})
        assert seen == all_docs and len(seen) == 24
        assert len({transport.layout.range_of(pk) for pk in all_docs.values()}) > 1
        meter = transport.meter.snapshot()
        page = meter.tally("range_query")
        assert page.requests >= 8  # paged: 24 documents, 3 per page, over 4 ranges
        assert page.ru < 4 * page.requests  # one partition's charge per page, not four


async def test_order_by_across_partitions_needs_a_range_id(make_rest: RestFactory) -> None:
    async with make_rest(partitions=3) as (rest, _):
        for i in range(9):
            await rest.create({"id": f"d{i}", "pk": f"k{i}", "n": (i * 5) % 9})
        refused = await rest.query("SELECT VALUE c.n FROM c ORDER BY c.n", cross_partition=True)
        assert refused.status_code == 400 and refused.headers["x-ms-substatus"] == "1004"
        merged: list[int] = []
        for range_id in ("0", "1", "2"):
            values = await _query_range(rest, "SELECT VALUE c.n FROM c ORDER BY c.n", range_id)
            assert values == sorted(values)
            merged += values
            top = await rest.query(
                "SELECT TOP 1 VALUE c.n FROM c ORDER BY c.n DESC",
                headers={"x-ms-documentdb-partitionkeyrangeid": range_id},
            )
            assert top.status_code == 200
            assert top.json()["Documents"] == ([max(values)] if values else [])
        assert sorted(merged) == sorted((i * 5) % 9 for i in range(9))


async def test_a_range_id_that_does_not_exist_is_gone(make_rest: RestFactory) -> None:
    async with make_rest(partitions=2) as (rest, _):
        r = await rest.query(
            "SELECT * FROM c", headers={"x-ms-documentdb-partitionkeyrangeid": "2"}
        )
    assert r.status_code == 410 and r.headers["x-ms-substatus"] == "1002"


# -- the meter itself --------------------------------------------------------------------------


async def test_meter_counts_by_source_and_subtracts_snapshots(
    rest: Rest, cosmos_env: CosmosTestEnv
) -> None:
    meter = cosmos_env.transport.meter
    await rest.create({"id": "a", "pk": "p"})
    before = meter.snapshot()
    tagged = {METER_SOURCE_HEADER: "runtime-1"}
    await rest.request("GET", rest.doc("a"), pk="p", headers=tagged)
    await rest.request("GET", rest.doc("a"), pk="p", headers=tagged)
    await rest.read("a", "p")
    delta = meter.snapshot().minus(before)
    assert delta.total().requests == 3
    assert delta.select("runtime-1").tally("point_read").requests == 2
    assert delta.select("").by_kind().keys() == {"point_read"}
    assert MeterSnapshot.from_json(json.loads(json.dumps(delta.to_json()))) == delta
    meter.reset()
    assert meter.snapshot().total().requests == 0
