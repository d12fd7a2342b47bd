"""The compat proxy: one CompatTransport shared over HTTP by several processes.

The unit-level checks make sure the proxy hands requests and answers through unchanged (auth,
404, quoted etags, partition scoping, 207/424, faults, lost responses). The race test runs two
client *processes* that fight over one document with transactional batches through the proxy:
exactly one batch wins each round, a losing batch leaves nothing behind, and no concurrent
reader ever sees half a batch -- what a per-process transport cannot promise across processes.

This module is also the race client: ``python -m tests.cosmos.test_proxy race ...``.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from ._rest import Rest
from .proxy import CompatProxy, ProxyEnv

REPO_ROOT = Path(__file__).resolve().parents[2]
WRONG_KEY = (
    "dsZQi3KtZmCv1ljt3VNWNm7sQUF1y5rJfC6kv5JiwvW0EndXdDku/dkKBp8/ufDToSxLzR4y+O/0H/t4bQtVNw=="
)
RACE_ROUNDS = 25


async def _rest(env: ProxyEnv, client: httpx.AsyncClient, *, setup: bool) -> Rest:
    api = Rest(client, env.key, env.database, env.container)
    if setup:
        await api.setup()
    return api


@pytest.mark.anyio
async def test_proxy_serves_cosmos_semantics(cosmos_proxy_env: ProxyEnv) -> None:
    env = cosmos_proxy_env
    async with httpx.AsyncClient(base_url=env.url, timeout=10) as client:
        rest = await _rest(env, client, setup=True)
        created = await rest.create({"id": "d1", "pk": "p1", "n": 1})
        assert created.status_code == 201
        etag = created.headers["etag"]
        assert etag.startswith('"') and created.json()["_etag"] == etag  # quoted, like Cosmos

        missing = await rest.read("nope", "p1")
        assert missing.status_code == 404  # the server alone answers 500

        bad = await rest.request("GET", rest.doc("d1"), pk="p1", key=WRONG_KEY)
        assert bad.status_code == 401

        await rest.create({"id": "d2", "pk": "p2", "n": 2})
        scoped = await rest.query("SELECT * FROM c", pk="p1")
        assert [d["id"] for d in scoped.json()["Documents"]] == ["d1"]
        blocked = await rest.query("SELECT * FROM c ORDER BY c.n", cross_partition=True)
        assert blocked.status_code == 400 and blocked.headers["x-ms-substatus"] == "1004"

        # Atomic batch: the failing replace (stale If-Match) rolls the create back.
        ops = [
            {"operationType": "Create", "resourceBody": {"id": "d3", "pk": "p1"}},
            {
                "operationType": "Replace",
                "id": "d1",
                "resourceBody": {"id": "d1", "pk": "p1", "n": 9},
                "ifMatch": '"stale"',
            },
        ]
        batch = await rest.batch("p1", ops)
        assert batch.status_code == 207
        assert [r["statusCode"] for r in batch.json()] == [424, 412]
        assert (await rest.read("d3", "p1")).status_code == 404
        ops[1]["ifMatch"] = etag
        assert (await rest.batch("p1", ops)).status_code == 200
        assert (await rest.read("d3", "p1")).status_code == 200

    assert env.log.count("batch", status=207) == 1
    assert env.log.count("read", status=404) == 2  # "nope" and the rolled-back d3
    assert not env.proxy.internal_errors


@pytest.mark.anyio
async def test_proxy_faults_reach_the_client(cosmos_proxy_env: ProxyEnv) -> None:
    env = cosmos_proxy_env
    async with httpx.AsyncClient(base_url=env.url, timeout=10) as client:
        rest = await _rest(env, client, setup=True)
        env.faults.add(kind="read", status=429, retry_after_ms=37, times=1)
        await rest.create({"id": "d1", "pk": "p1"})
        throttled = await rest.read("d1", "p1")
        assert throttled.status_code == 429
        assert throttled.headers["x-ms-retry-after-ms"] == "37"
        assert throttled.headers["x-ms-substatus"] == "3200"
        env.faults.add(kind="upsert", status=449, times=1)
        env.faults.add(kind="query", status=503, times=1)
        upsert = await rest.request(
            "POST",
            rest.doc(),
            pk="p1",
            body={"id": "d1", "pk": "p1"},
            headers={"x-ms-documentdb-is-upsert": "True"},
        )
        assert upsert.status_code == 449
        assert (await rest.query("SELECT * FROM c", pk="p1")).status_code == 503

        # A lost response: the create IS applied, the client only sees the connection drop.
        env.faults.add(kind="create", lose_response=httpx.ReadTimeout, times=1)
        with pytest.raises(httpx.TransportError):
            await rest.create({"id": "d2", "pk": "p1"})
        assert (await rest.read("d2", "p1")).status_code == 200
        # An error before sending: nothing applied.
        env.faults.add(kind="create", error=httpx.ConnectError, times=1)
        with pytest.raises(httpx.TransportError):
            await rest.create({"id": "d3", "pk": "p1"})
        assert (await rest.read("d3", "p1")).status_code == 404

    counts = env.log.by_status()
    assert counts[429] == 1 and counts[449] == 1 and counts[503] == 1
    assert sum(1 for e in env.log.entries if e.fault == "lose_response") == 1
    assert not env.proxy.internal_errors


@pytest.mark.anyio
async def test_a_timeout_fault_stalls_until_the_client_times_out(
    cosmos_server_url: str, cosmos_key: str
) -> None:
    with CompatProxy(cosmos_server_url, key=cosmos_key, timeout_stall=1.0) as proxy:
        proxy.faults.add(kind="account", error=httpx.ReadTimeout, times=1)
        async with httpx.AsyncClient(base_url=proxy.url, timeout=0.3) as client:
            api = Rest(client, cosmos_key, "unused", "unused")
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await api.request("GET", "/")
            assert time.monotonic() - started < 0.9
            assert (await api.request("GET", "/")).status_code == 200  # a fresh connection


# -- two processes racing with batches ----------------------------------------------------------


def _race_client(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--container", required=True)
    parser.add_argument("--me", required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--start-at", type=float, required=True, help="time.time() to begin")
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--direct", help="bypass the proxy: a private CompatTransport to this server URL"
    )
    args = parser.parse_args(argv)
    result = anyio.run(_race, args)
    Path(args.out).write_text(json.dumps(result))


async def _race(args: argparse.Namespace) -> dict[str, Any]:
    """Win ``rounds`` increments of the shared counter; check isolation after every attempt."""
    wins: list[int] = []
    losses = 0
    violations: list[str] = []
    bad_answers: list[Any] = []
    transport = None
    if args.direct:  # for comparison: each process then has its own batch lock
        from .compat import CompatTransport

        transport = CompatTransport(args.direct, key=args.key)
    async with httpx.AsyncClient(base_url=args.url, timeout=30, transport=transport) as client:
        rest = Rest(client, args.key, args.database, args.container)
        await anyio.sleep(max(0.0, args.start_at - time.time()))
        while len(wins) < args.rounds:
            current = await rest.read("counter", "p")
            assert current.status_code == 200, current.text
            value = current.json()["value"]
            ops = [
                # The create comes first: without atomicity a lost race would leave it behind.
                {
                    "operationType": "Create",
                    "resourceBody": {
                        "id": f"claim-{args.me}-{value + 1}",
                        "pk": "p",
                        "kind": "claim",
                        "value": value + 1,
                        "by": args.me,
                    },
                },
                {
                    "operationType": "Replace",
                    "id": "counter",
                    "resourceBody": {"id": "counter", "pk": "p", "value": value + 1},
                    "ifMatch": current.headers["etag"],
                },
            ]
            answer = await rest.batch("p", ops)
            statuses = [r.get("statusCode") for r in answer.json()]
            if answer.status_code == 200 and statuses == [201, 200]:
                wins.append(value + 1)
            elif answer.status_code == 207 and statuses == [424, 412]:
                losses += 1
            else:
                bad_answers.append([answer.status_code, statuses])
                break
            # A reader must never see half a batch: claims == counter, always.
            docs = (await rest.query("SELECT * FROM c", pk="p")).json()["Documents"]
            counter = next(d for d in docs if d["id"] == "counter")["value"]
            claims = sum(1 for d in docs if d.get("kind") == "claim")
            if counter != claims:
                violations.append(f"counter {counter} but {claims} claims")
    return {"wins": wins, "losses": losses, "violations": violations, "bad": bad_answers}


@pytest.mark.anyio
async def test_two_processes_race_batches_through_one_proxy(
    cosmos_proxy_env: ProxyEnv, tmp_path: Path
) -> None:
    env = cosmos_proxy_env
    async with httpx.AsyncClient(base_url=env.url, timeout=10) as client:
        rest = await _rest(env, client, setup=True)
        assert (await rest.create({"id": "counter", "pk": "p", "value": 0})).status_code == 201

    start_at = time.time() + 1.5  # both interpreters are up by then
    procs = {}
    for me in ("a", "b"):
        procs[me] = subprocess.Popen(  # noqa: ASYNC220 (spawning does not block)
            [
                sys.executable, "-m", "tests.cosmos.test_proxy", "race",
                "--url", env.url, "--key", env.key, "--database", env.database,
                "--container", env.container, "--me", me, "--rounds", str(RACE_ROUNDS),
                "--start-at", str(start_at), "--out", str(tmp_path / f"{me}.json"),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    results = {}
    for me, proc in procs.items():
        out, _ = await anyio.to_thread.run_sync(functools.partial(proc.communicate, timeout=60))
        assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
        results[me] = json.loads((tmp_path / f"{me}.json").read_text())

    for me, result in results.items():
        assert result["bad"] == [], f"{me}: unexpected batch answers {result['bad']}"
        assert result["violations"] == [], f"{me} saw half-applied batches: {result['violations']}"
        assert len(result["wins"]) == RACE_ROUNDS
    won = sorted(results["a"]["wins"] + results["b"]["wins"])
    assert won == list(range(1, 2 * RACE_ROUNDS + 1)), "an increment was won twice or lost"
    losses = results["a"]["losses"] + results["b"]["losses"]
    assert losses > 0, "the processes never actually raced (no lost batch)"

    async with httpx.AsyncClient(base_url=env.url, timeout=10) as client:
        rest = await _rest(env, client, setup=False)
        docs = (await rest.query("SELECT * FROM c", pk="p")).json()["Documents"]
    counter = next(d for d in docs if d["id"] == "counter")
    claims = {d["id"]: d for d in docs if d.get("kind") == "claim"}
    assert counter["value"] == 2 * RACE_ROUNDS
    expected = {f"claim-{me}-{v}" for me in ("a", "b") for v in results[me]["wins"]}
    assert set(claims) == expected, "a losing batch left its create behind"
    assert env.log.count("batch", status=200) == 2 * RACE_ROUNDS
    assert env.log.count("batch", status=207) == losses
    assert env.proxy.connections >= 2
    assert not env.proxy.internal_errors
    print(f"race: {2 * RACE_ROUNDS} wins, {losses} lost batches")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "race":
        _race_client(sys.argv[2:])
    else:
        sys.exit("usage: python -m tests.cosmos.test_proxy race --url ... (see _race_client)")
