"""Queries through the compat layer: partition scoping and the gateway's cross-partition rules."""

from __future__ import annotations

import pytest

from ._rest import Rest
from .compat_query import QueryRewriteError, cross_partition_blocker, scope_to_partition

pytestmark = pytest.mark.anyio


async def _seed(rest: Rest) -> None:
    for pk in ("p1", "p2"):
        for n in range(5):
            r = await rest.create({"id": f"{pk}-{n}", "pk": pk, "n": n, "kind": "x"})
            assert r.status_code == 201


async def test_partition_key_header_scopes_the_query(rest: Rest) -> None:
    await _seed(rest)
    # Range-only WHERE: the bare server returns both partitions' documents here.
    r = await rest.query("SELECT VALUE c.id FROM c WHERE c.n >= 3", pk="p1")
    assert r.status_code == 200
    assert sorted(r.json()["Documents"]) == ["p1-3", "p1-4"]


async def test_scoped_query_without_where_order_and_count(rest: Rest) -> None:
    await _seed(rest)
    everything = await rest.query("SELECT * FROM c", pk="p2")
    ordered = await rest.query("SELECT VALUE c.n FROM c ORDER BY c.n DESC", pk="p2")
    count = await rest.query(
        "SELECT VALUE COUNT(1) FROM c WHERE c.kind = @k", [{"name": "@k", "value": "x"}], pk="p2"
    )
    assert {d["pk"] for d in everything.json()["Documents"]} == {"p2"}
    assert all(d["_etag"].startswith('"') for d in everything.json()["Documents"])
    assert ordered.json()["Documents"] == [4, 3, 2, 1, 0]
    assert count.json()["Documents"] == [5]


async def test_scoped_query_pages_within_the_partition(rest: Rest) -> None:
    await _seed(rest)
    seen: list[str] = []
    headers = {"x-ms-max-item-count": "2"}
    while True:
        r = await rest.query("SELECT VALUE c.id FROM c", pk="p1", headers=headers)
        assert r.status_code == 200
        seen += r.json()["Documents"]
        token = r.headers.get("x-ms-continuation")
        if not token:
            break
        headers = {"x-ms-max-item-count": "2", "x-ms-continuation": token}
    assert sorted(seen) == [f"p1-{n}" for n in range(5)]


async def test_plain_cross_partition_filter_is_served(rest: Rest) -> None:
    await _seed(rest)
    r = await rest.query("SELECT VALUE c.id FROM c WHERE c.n = 1", cross_partition=True)
    assert r.status_code == 200
    assert sorted(r.json()["Documents"]) == ["p1-1", "p2-1"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM c ORDER BY c.n",
        "SELECT TOP 1 * FROM c",
        "SELECT VALUE COUNT(1) FROM c",
        "SELECT VALUE MAX(c.n) FROM c",
        "SELECT DISTINCT VALUE c.kind FROM c",
        "SELECT c.kind FROM c GROUP BY c.kind",
        "SELECT * FROM c OFFSET 1 LIMIT 2",
    ],
)
async def test_cross_partition_query_needing_a_plan_is_rejected_with_1004(
    rest: Rest, sql: str
) -> None:
    await _seed(rest)
    r = await rest.query(sql, cross_partition=True)
    assert r.status_code == 400
    assert r.headers["x-ms-substatus"] == "1004"


async def test_query_without_partition_key_or_cross_partition_header_is_400(rest: Rest) -> None:
    await _seed(rest)
    r = await rest.query("SELECT * FROM c WHERE c.pk = 'p1'")
    assert r.status_code == 400


async def test_quoted_etag_parameter_matches_the_stored_etag(rest: Rest) -> None:
    etag = (await rest.create({"id": "d", "pk": "p1"})).headers["etag"]
    r = await rest.query(
        "SELECT VALUE c.id FROM c WHERE c._etag = @e", [{"name": "@e", "value": etag}], pk="p1"
    )
    assert r.json()["Documents"] == ["d"]


@pytest.mark.parametrize(
    ("sql", "blocker"),
    [
        ("SELECT * FROM c WHERE c.a = 1", None),
        ("SELECT c.top, c.order FROM c WHERE c['count'] = 1", None),
        ("SELECT * FROM c WHERE EXISTS(SELECT VALUE t FROM t IN c.tags ORDER BY t)", None),
        ("SELECT c.id, ARRAY(SELECT VALUE COUNT(1) FROM t IN c.tags) AS n FROM c", None),
        ("select top 3 * from c", "TOP"),
        ("SELECT {'n': COUNT(1)} FROM c", "aggregate COUNT"),
        ("SELECT AVG(c.n) FROM c", "aggregate AVG"),
        ("SELECT * FROM c ORDER BY c.n", "ORDER BY"),
    ],
)
def test_cross_partition_blocker(sql: str, blocker: str | None) -> None:
    assert cross_partition_blocker(sql) == blocker


@pytest.mark.parametrize(
    ("sql", "scoped"),
    [
        ("SELECT * FROM c", 'SELECT * FROM c WHERE c["pk"] = @duroCompatPk'),
        (
            "SELECT * FROM root r WHERE r.a = 1 OR r.b = 2 ORDER BY r.n",
            'SELECT * FROM root r WHERE (r["pk"] = @duroCompatPk) AND (r.a = 1 OR r.b = 2) '
            "ORDER BY r.n",
        ),
        (
            "SELECT t FROM c JOIN t IN c.tags OFFSET 0 LIMIT 5",
            'SELECT t FROM c JOIN t IN c.tags WHERE c["pk"] = @duroCompatPk OFFSET 0 LIMIT 5',
        ),
    ],
)
def test_scope_to_partition_rewrites_the_where_clause(sql: str, scoped: str) -> None:
    assert scope_to_partition(sql, "/pk") == scoped


def test_scope_to_partition_refuses_what_it_cannot_parse() -> None:
    with pytest.raises(QueryRewriteError):
        scope_to_partition("SELECT * FROM t IN c.tags", "/pk")
    with pytest.raises(QueryRewriteError):
        scope_to_partition("SELECT (1 FROM c", "/pk")
