"""Retry timing and classification, driven through the client by a scripted fake server."""

from __future__ import annotations

import httpx
import pytest

from duro_cosmos._rest import (
    BatchOperation,
    ContainerLink,
    CosmosAmbiguousWrite,
    CosmosConflict,
    CosmosNotFound,
    CosmosPreconditionFailed,
    CosmosThrottled,
    CosmosUnavailable,
    HttpRetryPolicy,
)

from ._fake import FakeServer, error, reply

pytestmark = pytest.mark.anyio

C = ContainerLink("db", "coll")
DOC = {"id": "d1", "instanceId": "i1"}
OK_DOC = {"id": "d1", "instanceId": "i1", "_etag": '"e2"'}


def throttled(ms: str | None = "25") -> httpx.Response:
    extra = {"x_ms_retry_after_ms": ms} if ms is not None else {}
    return error(429, 3200, **extra)


async def test_429_waits_exactly_the_retry_after_header() -> None:
    server = FakeServer(throttled("25"), throttled("40"), reply(200, OK_DOC))
    async with server.client() as client:
        result = await client.read_document(C, "d1", "i1")
        stats = client.statistics()
    assert result.body == OK_DOC
    assert server.sleeps == [0.025, 0.040]
    assert (stats.total, stats.retries, stats.throttled) == (3, 2, 2)
    assert stats.by_kind["read"] == 3


async def test_429_is_retried_even_for_creates_and_batches() -> None:
    server = FakeServer(
        throttled(), reply(201, OK_DOC), throttled(), reply(200, [{"statusCode": 201}])
    )
    async with server.client() as client:
        await client.create_document(C, DOC, "i1")
        await client.batch(C, "i1", [BatchOperation.create(DOC)])
    assert len(server.requests) == 4


async def test_429_without_header_uses_backoff() -> None:
    server = FakeServer(throttled(None), reply(200, OK_DOC))
    async with server.client(retry=server.policy(base_delay=0.2)) as client:
        await client.read_document(C, "d1", "i1")
    assert server.sleeps == [0.2]


async def test_429_gives_up_after_max_throttle_attempts() -> None:
    server = FakeServer(*(throttled() for _ in range(3)))
    async with server.client(retry=server.policy(max_throttle_attempts=3)) as client:
        with pytest.raises(CosmosThrottled) as info:
            await client.read_document(C, "d1", "i1")
    assert len(server.requests) == 3
    assert info.value.retryable


async def test_429_gives_up_when_cumulative_wait_would_exceed_cap() -> None:
    server = FakeServer(throttled("600"), throttled("600"), reply(200, OK_DOC))
    async with server.client(retry=server.policy(max_throttle_wait=1.0)) as client:
        with pytest.raises(CosmosThrottled):
            await client.read_document(C, "d1", "i1")
    assert server.sleeps == [0.6]
    assert len(server.requests) == 2


async def test_503_backs_off_exponentially_with_cap() -> None:
    server = FakeServer(*(error(503) for _ in range(5)), reply(200, OK_DOC))
    policy = server.policy(base_delay=0.1, max_delay=0.5, max_attempts=10)
    async with server.client(retry=policy) as client:
        await client.read_document(C, "d1", "i1")
    assert server.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_jitter_reduces_delay_within_bounds() -> None:
    low = HttpRetryPolicy(base_delay=1.0, jitter=0.5, rng=lambda: 1.0)
    high = HttpRetryPolicy(base_delay=1.0, jitter=0.5, rng=lambda: 0.0)
    assert low.backoff(1) == pytest.approx(0.5)
    assert high.backoff(1) == pytest.approx(1.0)
    assert high.backoff(3) == pytest.approx(4.0)


@pytest.mark.parametrize("status", [449, 503, 408, 500, 410])
async def test_transient_statuses_retry_reads(status: int) -> None:
    server = FakeServer(error(status), reply(200, OK_DOC))
    async with server.client() as client:
        await client.read_document(C, "d1", "i1")
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [449, 503, 410])
async def test_not_processed_statuses_retry_creates(status: int) -> None:
    server = FakeServer(error(status), reply(201, OK_DOC))
    async with server.client() as client:
        await client.create_document(C, DOC, "i1")
    assert len(server.requests) == 2


async def test_connect_error_retries_a_create_because_nothing_was_sent() -> None:
    server = FakeServer(httpx.ConnectError("refused"), reply(201, OK_DOC))
    async with server.client() as client:
        await client.create_document(C, DOC, "i1")
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "fault",
    [
        httpx.ReadTimeout("lost"),
        httpx.RemoteProtocolError("server disconnected"),
        error(408),
        error(500),
        httpx.Response(201, content=b'{"id": "d1", "trunc'),
    ],
    ids=["read-timeout", "disconnect", "408", "500", "truncated-body"],
)
async def test_ambiguous_failure_of_create_is_never_repeated(fault: object) -> None:
    server = FakeServer(fault)  # type: ignore[arg-type]
    async with server.client() as client:
        with pytest.raises(CosmosAmbiguousWrite) as info:
            await client.create_document(C, DOC, "i1")
        stats = client.statistics()
    assert len(server.requests) == 1
    assert not info.value.retryable
    assert isinstance(info.value.cause, CosmosUnavailable)
    assert stats.ambiguous_writes == 1


async def test_ambiguous_failure_of_batch_is_never_repeated() -> None:
    server = FakeServer(httpx.ReadTimeout("lost"))
    async with server.client() as client:
        with pytest.raises(CosmosAmbiguousWrite):
            await client.batch(C, "i1", [BatchOperation.create(DOC)])
    assert len(server.requests) == 1


async def test_patch_is_ambiguous_without_if_match_and_retried_with_it() -> None:
    ops = [{"op": "incr", "path": "/n", "value": 1}]
    server = FakeServer(httpx.ReadTimeout("lost"))
    async with server.client() as client:
        with pytest.raises(CosmosAmbiguousWrite):
            await client.patch_document(C, "d1", "i1", ops)
        server.add(httpx.ReadTimeout("lost"), reply(200, OK_DOC))
        await client.patch_document(C, "d1", "i1", ops, if_match='"e1"')
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    "call",
    ["read", "upsert", "replace", "delete", "query"],
)
async def test_idempotent_operations_retry_after_a_lost_response(call: str) -> None:
    ok = reply(200, {"Documents": [], "_count": 0}) if call == "query" else reply(200, OK_DOC)
    server = FakeServer(httpx.ReadTimeout("lost"), ok)
    async with server.client() as client:
        if call == "read":
            await client.read_document(C, "d1", "i1")
        elif call == "upsert":
            await client.upsert_document(C, DOC, "i1")
        elif call == "replace":
            await client.replace_document(C, "d1", DOC, "i1", if_match='"e1"')
        elif call == "delete":
            await client.delete_document(C, "d1", "i1", if_match='"e1"')
        else:
            await client.query_all(C, "SELECT * FROM c", partition_key="i1")
    assert len(server.requests) == 2


async def test_412_after_a_lost_replace_is_flagged_as_maybe_ours() -> None:
    server = FakeServer(httpx.ReadTimeout("lost"), error(412))
    async with server.client() as client:
        with pytest.raises(CosmosPreconditionFailed) as info:
            await client.replace_document(C, "d1", DOC, "i1", if_match='"e1"')
    assert info.value.after_ambiguous_failure


async def test_404_after_a_lost_delete_is_flagged_as_maybe_ours() -> None:
    server = FakeServer(httpx.ReadError("reset"), error(404))
    async with server.client() as client:
        with pytest.raises(CosmosNotFound) as info:
            await client.delete_document(C, "d1", "i1")
    assert info.value.after_ambiguous_failure


@pytest.mark.parametrize("status", [400, 401, 404, 409, 412, 413])
async def test_permanent_errors_are_not_retried(status: int) -> None:
    server = FakeServer(error(status))
    async with server.client() as client:
        with pytest.raises(Exception) as info:
            await client.upsert_document(C, DOC, "i1")
    assert len(server.requests) == 1
    assert not getattr(info.value, "retryable", True)
    assert not getattr(info.value, "after_ambiguous_failure", True)


async def test_transient_retries_stop_at_max_attempts_with_the_last_error() -> None:
    server = FakeServer(*(error(503) for _ in range(3)))
    async with server.client(retry=server.policy(max_attempts=3)) as client:
        with pytest.raises(CosmosUnavailable) as info:
            await client.read_document(C, "d1", "i1")
    assert len(server.requests) == 3
    assert info.value.retryable and info.value.status == 503


async def test_total_time_cap_stops_retrying() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    server = FakeServer()

    def slow_503(request: httpx.Request) -> httpx.Response:
        now[0] += 4.0
        return error(503)

    async def sleep(seconds: float) -> None:
        server.sleeps.append(seconds)
        now[0] += seconds

    server.add(slow_503, slow_503, slow_503, reply(200, OK_DOC))
    policy = server.policy(
        clock=clock, sleep=sleep, max_total_time=10.0, base_delay=1.0, max_attempts=10
    )
    async with server.client(retry=policy) as client:
        with pytest.raises(CosmosUnavailable):
            await client.read_document(C, "d1", "i1")
    # 4 s + 1 s wait + 4 s, then a 2 s wait would end at 11 s: stop after two attempts.
    assert len(server.requests) == 2
    assert server.sleeps == [1.0]


async def test_never_policy_makes_one_attempt() -> None:
    server = FakeServer(error(503))
    async with server.client(retry=HttpRetryPolicy.never()) as client:
        with pytest.raises(CosmosUnavailable):
            await client.read_document(C, "d1", "i1")
    assert len(server.requests) == 1


async def test_conflict_on_create_is_not_ambiguous() -> None:
    server = FakeServer(error(409))
    async with server.client() as client:
        with pytest.raises(CosmosConflict) as info:
            await client.create_document(C, DOC, "i1")
    assert not info.value.after_ambiguous_failure


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        HttpRetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        HttpRetryPolicy(jitter=2.0)
