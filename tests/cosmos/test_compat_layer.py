"""The compat layer makes the local server answer like Cosmos DB: auth, point ops, batch."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import anyio
import pytest

from ._rest import Rest, http_date
from .compat_auth import string_to_sign, verify_authorization
from .support import CosmosTestEnv

pytestmark = pytest.mark.anyio

WRONG_KEY = (
    "dsZQi3KtZmCv1ljt3VNWNm7sQUF1y5rJfC6kv5JiwvW0EndXdDku/dkKBp8/ufDToSxLzR4y+O/0H/t4bQtVNw=="
)


def doc(doc_id: str, pk: str = "p1", **fields: Any) -> dict[str, Any]:
    return {"id": doc_id, "pk": pk, **fields}


# -- auth ----------------------------------------------------------------------------------


def test_verifier_matches_the_documented_example_signature() -> None:
    # The worked example of the REST "access control" page: GET dbs/ToDoList.
    date = "Thu, 27 Apr 2017 00:51:12 GMT"
    expected = (
        "type%3Dmaster%26ver%3D1.0%26sig%3Dc09PEVJrgp2uQRkr934kFbTqhByc7TVr3OHyqlu%2Bc%2Bc%3D"
    )
    assert string_to_sign("GET", "dbs", "dbs/ToDoList", date) == (
        "get\ndbs\ndbs/ToDoList\nthu, 27 apr 2017 00:51:12 gmt\n\n"
    )
    failure = verify_authorization(
        key=WRONG_KEY,  # the example page's key
        method="GET",
        path="/dbs/ToDoList",
        headers={"authorization": expected, "x-ms-date": date},
        now=dt.datetime(2017, 4, 27, 0, 55, tzinfo=dt.UTC),
    )
    assert failure is None


async def test_signed_request_is_accepted(rest: Rest) -> None:
    r = await rest.request("GET", rest.coll_path)
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("case", "status"),
    [("wrong-key", 401), ("unsigned", 401), ("signed-for-other-resource", 401)],
)
async def test_bad_signature_is_refused_with_401(rest: Rest, case: str, status: int) -> None:
    await rest.create(doc("d1"))
    if case == "wrong-key":
        r = await rest.request("GET", rest.doc("d1"), pk="p1", key=WRONG_KEY)
    elif case == "unsigned":
        r = await rest.request("GET", rest.doc("d1"), pk="p1", signed=False)
    else:
        date = http_date()
        from ._rest import sign

        r = await rest.request(
            "GET",
            rest.doc("d1"),
            pk="p1",
            signed=False,
            headers={"authorization": sign(rest.key, "GET", rest.doc("d2"), date)},
            date=date,
        )
    assert r.status_code == status
    assert r.json()["code"] == "Unauthorized"


async def test_date_outside_fifteen_minutes_is_refused(rest: Rest) -> None:
    now = dt.datetime.now(dt.UTC)
    old = await rest.request("GET", rest.coll_path, date=http_date(now - dt.timedelta(minutes=16)))
    ahead = await rest.request(
        "GET", rest.coll_path, date=http_date(now + dt.timedelta(minutes=16))
    )
    ok = await rest.request("GET", rest.coll_path, date=http_date(now - dt.timedelta(minutes=10)))
    assert (old.status_code, ahead.status_code, ok.status_code) == (401, 401, 200)
    assert "not valid at the current time" in old.json()["message"]


async def test_ids_are_signed_unescaped(rest: Rest) -> None:
    assert (await rest.create(doc("a b:ü"))).status_code == 201
    r = await rest.read("a b:ü", "p1")
    assert r.status_code == 200
    assert r.json()["id"] == "a b:ü"


# -- point operations and etags ------------------------------------------------------------


async def test_missing_document_is_404_not_500(rest: Rest) -> None:
    await rest.create(doc("d1", pk="p1"))
    missing = await rest.read("nope", "p1")
    wrong_partition = await rest.read("d1", "p2")
    assert (missing.status_code, wrong_partition.status_code) == (404, 404)


async def test_write_into_missing_container_is_404(rest: Rest) -> None:
    path = f"/dbs/{rest.db}/colls/nope/docs"
    r = await rest.request("POST", path, pk="p1", body=doc("d1"))
    assert r.status_code == 404


async def test_partition_key_header_is_required_and_must_match_the_body(rest: Rest) -> None:
    no_header = await rest.request("POST", rest.doc(), body=doc("d1"))
    mismatch = await rest.request("POST", rest.doc(), pk="other", body=doc("d1"))
    assert no_header.status_code == 400
    assert mismatch.status_code == 400
    assert mismatch.headers["x-ms-substatus"] == "1001"
    assert (await rest.read("d1", "p1")).status_code == 404


async def test_replace_with_another_id_in_the_body_is_400_and_changes_nothing(
    rest: Rest,
) -> None:
    await rest.create(doc("d1", v=1))
    await rest.create(doc("other", v=1))
    r = await rest.request("PUT", rest.doc("d1"), pk="p1", body=doc("other", v=2))
    assert r.status_code == 400
    assert (await rest.read("other", "p1")).json()["v"] == 1


async def test_malformed_json_is_400(rest: Rest) -> None:
    r = await rest.request("POST", rest.doc(), pk="p1", content=b"{bad")
    assert r.status_code == 400


async def test_etags_are_quoted_and_if_match_accepts_them(rest: Rest) -> None:
    created = await rest.create(doc("d1", v=1))
    etag = created.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert created.json()["_etag"] == etag
    ok = await rest.request(
        "PUT", rest.doc("d1"), pk="p1", body=doc("d1", v=2), headers={"if-match": etag}
    )
    stale = await rest.request(
        "PUT", rest.doc("d1"), pk="p1", body=doc("d1", v=3), headers={"if-match": etag}
    )
    assert (ok.status_code, stale.status_code) == (200, 412)
    assert ok.headers["etag"] != etag


async def test_account_document_advertises_the_endpoint_used(
    rest: Rest, cosmos_env: CosmosTestEnv
) -> None:
    r = await rest.request("GET", "/")
    assert r.status_code == 200
    endpoints = {loc["databaseAccountEndpoint"] for loc in r.json()["writableLocations"]}
    assert endpoints == {cosmos_env.url + "/"}


# -- transactional batch -------------------------------------------------------------------


async def test_batch_without_per_op_partition_keys_succeeds(rest: Rest) -> None:
    await rest.create(doc("r", v=1))
    await rest.create(doc("gone", v=1))
    lock = (await rest.create(doc("lock", v=1))).json()["_etag"]
    r = await rest.batch(
        "p1",
        [
            {"operationType": "Create", "resourceBody": doc("n1")},
            {"operationType": "Upsert", "resourceBody": doc("n2")},
            {"operationType": "Read", "id": "r"},
            {
                "operationType": "Replace",
                "id": "lock",
                "resourceBody": doc("lock", v=2),
                "ifMatch": lock,
            },
            {"operationType": "Delete", "id": "gone"},
            {
                "operationType": "Patch",
                "id": "r",
                "resourceBody": {"operations": [{"op": "incr", "path": "/v", "value": 5}]},
            },
        ],
    )
    assert r.status_code == 200, r.text
    results = r.json()
    assert [x["statusCode"] for x in results] == [201, 201, 200, 200, 204, 200]
    assert results[3]["eTag"].startswith('"') and results[3]["eTag"] != lock
    assert results[5]["resourceBody"]["v"] == 6
    assert (await rest.read("gone", "p1")).status_code == 404
    assert (await rest.read("n1", "p1")).status_code == 200


async def test_failed_batch_answers_207_with_424_and_applies_nothing(rest: Rest) -> None:
    before = (await rest.create(doc("lock", v=1))).json()
    await rest.create(doc("dup"))
    r = await rest.batch(
        "p1",
        [
            {"operationType": "Create", "resourceBody": doc("a")},
            {"operationType": "Replace", "id": "lock", "resourceBody": doc("lock", v=2)},
            {"operationType": "Create", "resourceBody": doc("dup")},
            {"operationType": "Create", "resourceBody": doc("b")},
        ],
    )
    assert r.status_code == 207
    assert [x["statusCode"] for x in r.json()] == [424, 424, 409, 424]
    assert (await rest.read("a", "p1")).status_code == 404
    assert (await rest.read("b", "p1")).status_code == 404
    after = (await rest.read("lock", "p1")).json()
    assert (after["v"], after["_etag"]) == (1, before["_etag"])  # not even touched


@pytest.mark.parametrize(
    ("op", "status"),
    [
        (
            {
                "operationType": "Replace",
                "id": "lock",
                "resourceBody": doc("lock", v=9),
                "ifMatch": '"stale"',
            },
            412,
        ),
        ({"operationType": "Delete", "id": "lock", "ifMatch": '"stale"'}, 412),
        ({"operationType": "Replace", "id": "nope", "resourceBody": doc("nope")}, 404),
        ({"operationType": "Read", "id": "nope"}, 404),
        ({"operationType": "Create", "resourceBody": doc("x", pk="p2")}, 400),
    ],
)
async def test_failing_operation_keeps_its_status(
    rest: Rest, op: dict[str, Any], status: int
) -> None:
    await rest.create(doc("lock", v=1))
    r = await rest.batch("p1", [{"operationType": "Create", "resourceBody": doc("a")}, op])
    assert r.status_code == 207
    assert [x["statusCode"] for x in r.json()] == [424, status]
    assert (await rest.read("a", "p1")).status_code == 404


async def test_failure_found_only_while_applying_is_compensated(rest: Rest) -> None:
    await rest.create(doc("keep", v=1))
    r = await rest.batch(
        "p1",
        [
            {"operationType": "Create", "resourceBody": doc("a")},
            {"operationType": "Replace", "id": "keep", "resourceBody": doc("keep", v=2)},
            {
                "operationType": "Patch",
                "id": "keep",
                "resourceBody": {
                    "operations": [{"op": "set", "path": "/z", "value": 1}],
                    "condition": "FROM c WHERE c.v = 100",
                },
            },
        ],
    )
    assert r.status_code == 207
    assert [x["statusCode"] for x in r.json()] == [424, 424, 412]
    assert (await rest.read("a", "p1")).status_code == 404
    kept = (await rest.read("keep", "p1")).json()
    assert kept["v"] == 1 and "z" not in kept


async def test_batch_limits(rest: Rest) -> None:
    ops = [{"operationType": "Create", "resourceBody": doc(f"d{i}")} for i in range(101)]
    too_many = await rest.batch("p1", ops)
    big = [{"operationType": "Create", "resourceBody": doc("big", blob="x" * (2 * 1024 * 1024))}]
    too_big = await rest.batch("p1", big)
    exactly_100 = await rest.batch("p1", ops[:100])
    assert too_many.status_code == 400
    assert too_big.status_code == 413
    assert exactly_100.status_code == 200
    assert (await rest.read("d100", "p1")).status_code == 404


async def test_batch_op_partition_key_must_match_the_header(rest: Rest) -> None:
    op = {"operationType": "Create", "resourceBody": doc("a"), "partitionKey": json.dumps(["p2"])}
    r = await rest.batch("p1", [op])
    assert r.status_code == 400


async def test_concurrent_guarded_batches_have_exactly_one_winner(rest: Rest) -> None:
    etag = (await rest.create(doc("lock", owner=None))).json()["_etag"]
    statuses: list[int] = []

    async def contender(n: int) -> None:
        r = await rest.batch(
            "p1",
            [
                {
                    "operationType": "Replace",
                    "id": "lock",
                    "resourceBody": doc("lock", owner=n),
                    "ifMatch": etag,
                },
                {"operationType": "Create", "resourceBody": doc(f"hist-{n}")},
            ],
        )
        statuses.append(r.status_code)

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(contender, n)
    assert sorted(statuses) == [200] + [207] * 7
    winner = (await rest.read("lock", "p1")).json()["owner"]
    hist = await rest.query("SELECT VALUE c.id FROM c WHERE STARTSWITH(c.id, 'hist-')", pk="p1")
    assert hist.json()["Documents"] == [f"hist-{winner}"]


async def test_bulk_batch_gets_partition_keys_injected(rest: Rest) -> None:
    await rest.create(doc("r"))
    r = await rest.batch("p1", [{"operationType": "Read", "id": "r"}], atomic=False)
    assert r.status_code == 200
    assert r.json()[0]["statusCode"] == 200
