"""Injected faults, the request log, and the server process itself."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from ._rest import Rest
from .compat import CompatTransport
from .server import CosmosServer, CosmosServerError, cli_path
from .support import CosmosTestEnv, fresh_database

pytestmark = pytest.mark.anyio


async def test_throttling_fires_the_programmed_number_of_times(
    rest: Rest, cosmos_env: CosmosTestEnv
) -> None:
    rule = cosmos_env.faults.add(kind="create", status=429, retry_after_ms=50, times=2)
    statuses = []
    for _ in range(3):
        r = await rest.create({"id": "d1", "pk": "p1"})
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert r.headers["x-ms-retry-after-ms"] == "50"
            assert r.headers["x-ms-substatus"] == "3200"
            assert r.json()["code"] == "TooManyRequests"
    assert statuses == [429, 429, 201]
    assert (rule.hits, rule.exhausted) == (2, True)
    assert cosmos_env.log.count("create") == 3
    assert cosmos_env.log.count("create", status=429) == 2


@pytest.mark.parametrize(
    ("status", "substatus"), [(449, None), (503, None), (408, None), (410, "1002")]
)
async def test_transient_statuses_are_answered_without_touching_the_server(
    rest: Rest, cosmos_env: CosmosTestEnv, status: int, substatus: str | None
) -> None:
    cosmos_env.faults.add(kind="create", status=status)
    r = await rest.create({"id": "d1", "pk": "p1"})
    assert r.status_code == status
    assert r.headers.get("x-ms-substatus") == substatus
    assert (await rest.read("d1", "p1")).status_code == 404


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.ConnectError])
async def test_network_error_before_sending_applies_nothing(
    rest: Rest, cosmos_env: CosmosTestEnv, error: type[httpx.RequestError]
) -> None:
    cosmos_env.faults.add(kind="create", error=error)
    with pytest.raises(error):
        await rest.create({"id": "d1", "pk": "p1"})
    assert (await rest.read("d1", "p1")).status_code == 404
    assert (cosmos_env.log.entries[0].fault, cosmos_env.log.entries[0].error) == (
        "error",
        error.__name__,
    )


async def test_lost_response_on_create_is_applied_and_a_retry_conflicts(
    rest: Rest, cosmos_env: CosmosTestEnv
) -> None:
    cosmos_env.faults.add(kind="create", lose_response=httpx.ReadTimeout)
    with pytest.raises(httpx.ReadTimeout):
        await rest.create({"id": "d1", "pk": "p1"})
    assert (await rest.read("d1", "p1")).status_code == 200
    assert (await rest.create({"id": "d1", "pk": "p1"})).status_code == 409
    assert cosmos_env.log.entries[0].fault == "lose_response"


async def test_lost_response_on_guarded_replace_makes_the_retry_412(
    rest: Rest, cosmos_env: CosmosTestEnv
) -> None:
    etag = (await rest.create({"id": "d1", "pk": "p1", "v": 1})).headers["etag"]
    cosmos_env.faults.add(kind="replace", lose_response=httpx.RemoteProtocolError)
    body = {"id": "d1", "pk": "p1", "v": 2}
    hdrs = {"if-match": etag}
    with pytest.raises(httpx.RemoteProtocolError):
        await rest.request("PUT", rest.doc("d1"), pk="p1", body=body, headers=hdrs)
    retry = await rest.request("PUT", rest.doc("d1"), pk="p1", body=body, headers=hdrs)
    assert retry.status_code == 412
    assert (await rest.read("d1", "p1")).json()["v"] == 2


async def test_lost_response_on_batch_is_applied(rest: Rest, cosmos_env: CosmosTestEnv) -> None:
    cosmos_env.faults.add(kind="batch", lose_response=httpx.ReadTimeout)
    ops = [
        {"operationType": "Create", "resourceBody": {"id": f"d{i}", "pk": "p1"}} for i in range(3)
    ]
    with pytest.raises(httpx.ReadTimeout):
        await rest.batch("p1", ops)
    for i in range(3):
        assert (await rest.read(f"d{i}", "p1")).status_code == 200


async def test_throttled_batch_is_refused_whole(rest: Rest, cosmos_env: CosmosTestEnv) -> None:
    cosmos_env.faults.add(kind="batch", status=429, retry_after_ms=5)
    ops = [{"operationType": "Create", "resourceBody": {"id": "d1", "pk": "p1"}}]
    r = await rest.batch("p1", ops)
    assert r.status_code == 429
    assert (await rest.read("d1", "p1")).status_code == 404


async def test_matchers_skip_and_delay(rest: Rest, cosmos_env: CosmosTestEnv) -> None:
    for i in range(3):
        await rest.create({"id": f"d{i}", "pk": "p1"})
    cosmos_env.faults.add(kind="read", doc_id="d2", status=503, skip=1, times=None)
    cosmos_env.faults.add(
        match=lambda r: r.partition_key == "p1" and r.kind == "read", delay=0.2, times=None
    )
    started = time.monotonic()
    assert (await rest.read("d2", "p1")).status_code == 200  # skipped once, so delayed
    assert time.monotonic() - started >= 0.2
    assert (await rest.read("d2", "p1")).status_code == 503
    assert (await rest.read("d2", "p1")).status_code == 503
    started = time.monotonic()
    assert (await rest.read("d1", "p1")).status_code == 200
    assert time.monotonic() - started >= 0.2


async def test_probability_is_seeded(rest: Rest, cosmos_env: CosmosTestEnv) -> None:
    await rest.create({"id": "d1", "pk": "p1"})
    rule = cosmos_env.faults.add(kind="read", status=503, probability=0.5, times=None)
    results = [(await rest.read("d1", "p1")).status_code for _ in range(20)]
    assert 0 < results.count(503) < 20
    assert rule.hits == results.count(503) and rule.seen == 20


async def test_request_log_counts_by_kind_and_path(rest: Rest, cosmos_env: CosmosTestEnv) -> None:
    await rest.create({"id": "d1", "pk": "p1"})
    await rest.read("d1", "p1")
    await rest.read("d1", "p1")
    await rest.query("SELECT * FROM c", pk="p1")
    log = cosmos_env.log
    assert log.by_kind() == {"create": 1, "read": 2, "query": 1}
    assert log.by_method_path()[("GET", f"/dbs/{rest.db}/colls/{rest.coll}/docs/d1")] == 2
    assert log.count(method="POST") == 2
    assert log.count(path=r"/docs/d1$") == 2


def test_fault_plan_rejects_ambiguous_rules() -> None:
    plan = CompatTransport("http://127.0.0.1:1").faults
    with pytest.raises(ValueError):
        plan.add(status=429, error=httpx.ReadTimeout)
    with pytest.raises(ValueError):
        plan.add(kind="read")


# -- the server process ----------------------------------------------------------------------


def test_missing_install_names_the_npm_command(tmp_path: Path) -> None:
    with pytest.raises(CosmosServerError, match="npm ci --prefix"):
        cli_path(tmp_path)


def test_http_server_is_running(cosmos_server: CosmosServer) -> None:
    assert cosmos_server.url.startswith("http://127.0.0.1:")
    assert cosmos_server.process.poll() is None
    assert any("Ready to accept HTTP connections" in line for line in cosmos_server.output)


async def test_https_server_through_the_compat_transport(cosmos_https_server: CosmosServer) -> None:
    assert cosmos_https_server.url.startswith("https://")
    transport = CompatTransport(cosmos_https_server.url)
    with fresh_database(cosmos_https_server.url, "tls") as database:
        async with httpx.AsyncClient(transport=transport, base_url=cosmos_https_server.url) as c:
            api = Rest(c, transport.key or "", database, "c")
            await api.setup()
            assert (await api.create({"id": "d1", "pk": "p1"})).status_code == 201
            assert (await api.read("d1", "p1")).json()["id"] == "d1"
