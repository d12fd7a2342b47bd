"""Request shapes the client sends and how it reads responses (scripted fake server)."""

from __future__ import annotations

import json

import httpx
import pytest

from duro_cosmos._rest import (
    MAX_BATCH_OPERATIONS,
    BatchOperation,
    ContainerLink,
    CosmosBadRequest,
    CosmosBatchFailed,
    CosmosInvalidRequest,
    CosmosRequestTooLarge,
)

from ._fake import FakeServer, error, reply

pytestmark = pytest.mark.anyio

C = ContainerLink("db", "coll")


def body(request: httpx.Request) -> object:
    return json.loads(request.content)


async def test_query_follows_continuation_and_sends_query_headers() -> None:
    server = FakeServer(
        reply(200, {"Documents": [1, 2]}, x_ms_continuation="tok-1"),
        reply(200, {"Documents": []}, x_ms_continuation="tok 2"),
        reply(200, {"Documents": [3]}),
    )
    async with server.client() as client:
        pages = [
            p
            async for p in client.query(
                C, "SELECT * FROM c WHERE c.instanceId = @id", {"id": "i1"},
                partition_key="i1", max_item_count=2,
            )
        ]  # fmt: skip
    assert [p.items for p in pages] == [[1, 2], [], [3]]
    assert [p.continuation for p in pages] == ["tok-1", "tok 2", None]
    first, second, third = server.requests
    assert first.method == "POST" and first.url.path == "/dbs/db/colls/coll/docs"
    assert first.headers["content-type"] == "application/query+json"
    assert first.headers["x-ms-documentdb-isquery"] == "True"
    assert first.headers["x-ms-max-item-count"] == "2"
    assert first.headers["x-ms-documentdb-partitionkey"] == '["i1"]'
    assert "x-ms-documentdb-query-enablecrosspartition" not in first.headers
    assert "x-ms-continuation" not in first.headers
    assert second.headers["x-ms-continuation"] == "tok-1"
    assert third.headers["x-ms-continuation"] == "tok 2"
    assert body(first) == {
        "query": "SELECT * FROM c WHERE c.instanceId = @id",
        "parameters": [{"name": "@id", "value": "i1"}],
    }


async def test_cross_partition_query_sets_the_header_and_surfaces_1004() -> None:
    server = FakeServer(error(400, 1004))
    async with server.client() as client:
        with pytest.raises(CosmosBadRequest) as info:
            await client.query_all(C, "SELECT TOP 1 * FROM c ORDER BY c.t")
    assert info.value.cross_partition_query_not_servable
    (request,) = server.requests
    assert request.headers["x-ms-documentdb-query-enablecrosspartition"] == "True"
    assert "x-ms-documentdb-partitionkey" not in request.headers


async def test_batch_request_shape_and_results() -> None:
    results = [
        {"statusCode": 201, "eTag": '"a"', "requestCharge": 5.0, "resourceBody": {"id": "a"}},
        {"statusCode": 200, "eTag": '"b"'},
        {"statusCode": 204},
    ]
    server = FakeServer(reply(200, results))
    ops = [
        BatchOperation.create({"id": "a", "instanceId": "i1"}),
        BatchOperation.replace("b", {"id": "b", "instanceId": "i1"}, if_match='"b0"'),
        BatchOperation.delete("c"),
    ]
    async with server.client() as client:
        out = await client.batch(C, "i1", ops)
    assert [r.status for r in out] == [201, 200, 204]
    assert out[0].etag == '"a"' and out[0].body == {"id": "a"} and out[0].request_charge == 5.0
    (request,) = server.requests
    assert request.headers["x-ms-cosmos-is-batch-request"] == "True"
    assert request.headers["x-ms-cosmos-batch-atomic"] == "True"
    assert request.headers["x-ms-documentdb-partitionkey"] == '["i1"]'
    assert body(request) == [
        {"operationType": "Create", "id": "a", "resourceBody": {"id": "a", "instanceId": "i1"}},
        {
            "operationType": "Replace",
            "id": "b",
            "resourceBody": {"id": "b", "instanceId": "i1"},
            "ifMatch": '"b0"',
        },
        {"operationType": "Delete", "id": "c"},
    ]


async def test_batch_207_raises_with_the_failing_index() -> None:
    server = FakeServer(reply(207, [{"statusCode": 424}, {"statusCode": 412}, {"statusCode": 424}]))
    ops = [BatchOperation.read(x) for x in "abc"]
    async with server.client() as client:
        with pytest.raises(CosmosBatchFailed) as info:
            await client.batch(C, "i1", ops)
    assert (info.value.failed_index, info.value.failed_status) == (1, 412)
    assert len(server.requests) == 1


async def test_batch_with_failed_op_but_200_still_raises() -> None:
    # A lenient server may answer 200 although an operation failed: read per-op statuses.
    server = FakeServer(reply(200, [{"statusCode": 201}, {"statusCode": 409}]))
    ops = [BatchOperation.create({"id": x}) for x in "ab"]
    async with server.client() as client:
        with pytest.raises(CosmosBatchFailed) as info:
            await client.batch(C, "i1", ops)
    assert info.value.failed_index == 1


async def test_batch_limits_are_checked_before_sending() -> None:
    server = FakeServer()
    async with server.client() as client:
        too_many = [BatchOperation.read(f"d{i}") for i in range(MAX_BATCH_OPERATIONS + 1)]
        with pytest.raises(CosmosRequestTooLarge):
            await client.batch(C, "i1", too_many)
        big = [BatchOperation.create({"id": f"d{i}", "pad": "x" * 30_000}) for i in range(80)]
        with pytest.raises(CosmosRequestTooLarge):
            await client.batch(C, "i1", big)
        with pytest.raises(CosmosInvalidRequest):
            await client.batch(C, "i1", [])
    assert server.requests == []


async def test_batch_partition_key_per_operation_is_opt_in() -> None:
    server = FakeServer(reply(200, [{"statusCode": 204}]))
    async with server.client(batch_partition_key=True) as client:
        await client.batch(C, "i1", [BatchOperation.delete("x")])
    assert body(server.requests[0]) == [
        {"operationType": "Delete", "id": "x", "partitionKey": '["i1"]'}
    ]


async def test_patch_batch_operation_shape() -> None:
    op = BatchOperation.patch("d", [{"op": "set", "path": "/a", "value": 1}], condition="FROM c")
    assert op.to_json() == {
        "operationType": "Patch",
        "id": "d",
        "resourceBody": {"operations": [{"op": "set", "path": "/a", "value": 1}],
                         "condition": "FROM c"},
    }  # fmt: skip


async def test_point_operation_headers() -> None:
    doc = {"id": "d1", "instanceId": "i1"}
    ok = reply(200, {**doc, "_etag": '"e"'}, etag='"e"')
    server = FakeServer(ok, ok, ok, reply(204), ok)
    async with server.client() as client:
        up = await client.upsert_document(C, doc, "i1")
        await client.replace_document(C, "d1", doc, "i1", if_match='"e0"')
        await client.create_document(C, doc, "i1")
        deleted = await client.delete_document(C, "d1", "i1", if_match='"e"')
        await client.patch_document(C, "d1", "i1", [{"op": "incr", "path": "/n", "value": 1}])
    assert up.etag == '"e"' and up.body is not None
    assert deleted.body is None and deleted.status == 204
    upsert, replace, create, delete, patch = server.requests
    assert upsert.headers["x-ms-documentdb-is-upsert"] == "True"
    assert (replace.method, replace.headers["if-match"]) == ("PUT", '"e0"')
    assert "x-ms-documentdb-is-upsert" not in create.headers
    assert (delete.method, delete.headers["if-match"]) == ("DELETE", '"e"')
    assert patch.method == "PATCH"
    assert patch.headers["content-type"] == "application/json_patch+json"
    assert body(patch) == {"operations": [{"op": "incr", "path": "/n", "value": 1}]}


async def test_invalid_requests_are_refused_before_sending() -> None:
    server = FakeServer()
    async with server.client() as client:
        with pytest.raises(CosmosInvalidRequest):
            await client.read_document(C, "a/b", "i1")
        with pytest.raises(CosmosInvalidRequest):
            await client.create_document(C, {"no": "id"}, "i1")
        with pytest.raises(CosmosInvalidRequest):
            await client.replace_document(C, "a", {"id": "b"}, "i1")
        with pytest.raises(CosmosRequestTooLarge):
            await client.upsert_document(C, {"id": "a", "x": "y" * (2 * 1024 * 1024)}, "i1")
        with pytest.raises(CosmosInvalidRequest):
            await client.patch_document(C, "a", "i1", [{"op": "set"}] * 11)
    with pytest.raises(CosmosInvalidRequest):
        ContainerLink("db", "")
    assert server.requests == []


async def test_create_container_sends_partition_key_and_indexing_policy() -> None:
    policy = {"indexingMode": "consistent", "compositeIndexes": [[{"path": "/a"}, {"path": "/b"}]]}
    server = FakeServer(error(404), reply(201, {"id": "coll"}))
    async with server.client() as client:
        created = await client.create_container_if_missing(
            C, partition_key_path="/instanceId", indexing_policy=policy
        )
    assert created
    read, create = server.requests
    assert (read.method, read.url.path) == ("GET", "/dbs/db/colls/coll")
    assert (create.method, create.url.path) == ("POST", "/dbs/db/colls")
    assert body(create) == {
        "id": "coll",
        "partitionKey": {"paths": ["/instanceId"], "kind": "Hash", "version": 2},
        "indexingPolicy": policy,
    }


async def test_existing_container_with_other_partition_key_is_refused() -> None:
    server = FakeServer(reply(200, {"id": "coll", "partitionKey": {"paths": ["/other"]}}))
    async with server.client() as client:
        with pytest.raises(CosmosInvalidRequest, match="/other"):
            await client.create_container_if_missing(C, partition_key_path="/instanceId")


async def test_create_database_if_missing() -> None:
    server = FakeServer(reply(200, {"id": "db"}), error(404), reply(201, {"id": "db"}), error(404),
                        error(409))  # fmt: skip
    async with server.client() as client:
        assert not await client.create_database_if_missing("db")
        assert await client.create_database_if_missing("db")
        assert not await client.create_database_if_missing("db")  # lost a creation race
    assert body(server.requests[2]) == {"id": "db"}


async def test_session_token_is_echoed_on_reads_of_the_same_container() -> None:
    doc = {"id": "d1", "instanceId": "i1"}
    server = FakeServer(
        reply(201, doc, x_ms_session_token="0:1#10#3=5"),
        reply(200, doc, x_ms_session_token="0:1#9#3=4"),  # older: not taken
        reply(200, doc),
    )
    async with server.client() as client:
        await client.create_document(C, doc, "i1")
        await client.read_document(C, "d1", "i1")
        await client.read_document(C, "d1", "i1")
    create, read1, read2 = server.requests
    assert "x-ms-session-token" not in create.headers
    assert read1.headers["x-ms-session-token"] == "0:1#10#3=5"
    assert read2.headers["x-ms-session-token"] == "0:1#10#3=5"


async def test_statistics_count_requests_per_kind_and_charge() -> None:
    doc = {"id": "d1", "instanceId": "i1"}
    server = FakeServer(
        reply(201, doc, x_ms_request_charge="5.5"),
        reply(200, doc, x_ms_request_charge="1"),
        reply(200, {"Documents": []}),
    )
    async with server.client() as client:
        await client.create_document(C, doc, "i1")
        await client.read_document(C, "d1", "i1")
        await client.query_all(C, "SELECT * FROM c")
        stats = client.statistics()
        client.reset_statistics()
        assert client.statistics().total == 0
    assert stats.total == 3
    assert dict(stats.by_kind) == {"create": 1, "read": 1, "query": 1}
    assert stats.request_charge == pytest.approx(6.5)


async def test_endpoint_is_used_as_given_without_discovery() -> None:
    server = FakeServer(reply(200, {"id": "db"}))
    async with server.client() as client:
        await client.create_database_if_missing("db")
    (request,) = server.requests
    assert str(request.url) == "http://cosmos.test:8081/dbs/db"
