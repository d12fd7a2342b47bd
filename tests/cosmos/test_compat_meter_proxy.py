"""The meter behind the multi-process proxy: every process's requests land on one meter.

A child process and the test process each send signed requests through one
:class:`CompatProxy`, tagged with their own meter source, and add up the
``x-ms-request-charge`` headers they received. The proxy's meter, read over its JSON endpoint,
must hold exactly those requests and charges, per source and in total.

This module is also the child: ``python -m tests.cosmos.test_compat_meter_proxy URL DB COLL``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from ._rest import Rest
from .compat import EMULATOR_KEY
from .compat_meter import METER_SOURCE_HEADER, fetch_meter, reset_meter
from .proxy import CompatProxy
from .support import drop_database, unique_name

REPO_ROOT = Path(__file__).resolve().parents[2]


async def _traffic(
    url: str, database: str, container: str, source: str, n: int
) -> dict[str, float]:
    """Creates, reads, a query and a cross-partition query; what the client saw."""
    seen = {"requests": 0, "ru": 0.0}
    async with httpx.AsyncClient(
        base_url=url, timeout=30, headers={METER_SOURCE_HEADER: source}
    ) as client:
        rest = Rest(client, EMULATOR_KEY, database, container)
        for i in range(n):
            for response in (
                await rest.create({"id": f"{source}-{i}", "pk": f"{source}-{i % 3}", "n": i}),
                await rest.read(f"{source}-{i}", f"{source}-{i % 3}"),
            ):
                seen["requests"] += 1
                seen["ru"] += float(response.headers["x-ms-request-charge"])
        for response in (
            await rest.query("SELECT * FROM c", pk=f"{source}-0"),
            await rest.query("SELECT c.id FROM c WHERE c.n >= 0", cross_partition=True),
        ):
            assert response.status_code == 200, response.text
            seen["requests"] += 1
            seen["ru"] += float(response.headers["x-ms-request-charge"])
    return seen


@pytest.mark.anyio
async def test_meter_in_the_proxy_adds_up_two_processes(cosmos_server_url: str) -> None:
    database, container = unique_name("meter"), unique_name("c")
    try:
        with CompatProxy(cosmos_server_url, key=EMULATOR_KEY, partitions=5) as proxy:
            async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
                await Rest(client, EMULATOR_KEY, database, container).setup()
                ranges = await Rest(client, EMULATOR_KEY, database, container).request(
                    "GET", f"/dbs/{database}/colls/{container}/pkranges"
                )
                assert ranges.json()["_count"] == 5
            reset_meter(proxy.url)
            assert fetch_meter(proxy.url).total().requests == 0

            child = await anyio.run_process(
                [sys.executable, "-m", __name__, proxy.url, database, container],
                cwd=REPO_ROOT,
            )
            child_seen = json.loads(child.stdout.decode().strip().splitlines()[-1])
            parent_seen = await _traffic(proxy.url, database, container, "parent", 4)

            meter = fetch_meter(proxy.url)
            assert meter.partitions == 5
            for source, seen in (("child", child_seen), ("parent", parent_seen)):
                mine = meter.select(source).total()
                assert mine.requests == seen["requests"]
                assert mine.ru == pytest.approx(seen["ru"], abs=0.01 * seen["requests"])
            total = meter.total()
            assert total.requests == child_seen["requests"] + parent_seen["requests"]
            # Each process ran one cross-partition query: 5 partitions' worth each.
            cross = meter.tally("cross_partition_query")
            assert cross.requests == 2 and cross.ru >= 2 * 5 * 2.5
            assert proxy.meter.snapshot() == meter  # the owning process sees the same meter
    finally:
        drop_database(cosmos_server_url, database)


def main() -> None:
    url, database, container = sys.argv[1:4]
    seen = anyio.run(_traffic, url, database, container, "child", 5)
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
