"""Listing and counting on SQLite stay index walks as long as a page, whatever the file holds.

``duro ui`` polls both; with 100,000 instances an unfiltered page took 111 ms when it scanned
and sorted every row, under 1 ms as an index walk. The query plans prove the walk without
having to fill a file: every run of rows comes from an index in order, and the only sorts are
the merge of those runs (at most ``limit + 1`` rows each).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from duro import InMemoryProvider
from duro._status import State
from duro.providers import (
    InstanceCountQuery,
    InstanceQuery,
    Provider,
    _sqlite_manage,
)
from duro.providers._sqlite_manage import count_instances_txn, list_instances_txn
from duro.providers._sqlite_schema import migrate
from duro.providers._types import ExecutionStatus
from duro.testing._contract._fixtures import create_instance


class _Recorder:
    """A connection that keeps the statements it runs, to explain them afterwards."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.statements: list[tuple[str, Any]] = []

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self.statements.append((sql, params))
        return self.conn.execute(sql, params)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "plans.db", isolation_level=None)
    migrate(connection, "plans.db")
    yield connection
    connection.close()


def _plan(conn: sqlite3.Connection, sql: str, params: Any) -> list[str]:
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


def _assert_index_walks(plan: list[str]) -> None:
    for i, line in enumerate(plan):
        if line.startswith("SCAN ") and not line.startswith("SCAN (subquery"):
            assert "USING INDEX" in line or "USING COVERING INDEX" in line, plan
        if line.startswith("USE TEMP B-TREE"):
            assert plan[i - 1].startswith("SCAN (subquery"), f"a sort of more than a run: {plan}"


QUERIES = {
    "newest first": InstanceQuery(limit=50),
    "one state": InstanceQuery(states=frozenset({State.FAILED}), limit=50),
    "running (two statuses)": InstanceQuery(states=frozenset({State.RUNNING}), limit=50),
    "pending only": InstanceQuery(states=frozenset({State.PENDING}), limit=50),
    "a name": InstanceQuery(name="order", limit=50),
    "a name and a state": InstanceQuery(name="order", states=frozenset({State.COMPLETED})),
    "created window": InstanceQuery(created_after_ms=10, created_before_ms=10_000),
    "next page": InstanceQuery(states=frozenset({State.COMPLETED}), continuation="1000.7"),
}


@pytest.mark.parametrize("label", list(QUERIES))
def test_every_listing_reads_indexes_in_order(conn: sqlite3.Connection, label: str) -> None:
    recorder = _Recorder(conn)
    list_instances_txn(recorder, QUERIES[label])  # type: ignore[arg-type]

    sql, params = recorder.statements[-1]
    _assert_index_walks(_plan(conn, sql, params))


def test_a_narrow_id_prefix_is_read_by_id_and_a_broad_one_walks_newest_first(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    narrow = _Recorder(conn)
    list_instances_txn(narrow, InstanceQuery(instance_id_prefix="order-7"))  # type: ignore[arg-type]
    plan = _plan(conn, *narrow.statements[-1])
    assert any("USING INDEX sqlite_autoindex_instances_1 (instance_id>? AND" in p for p in plan)

    monkeypatch.setattr(_sqlite_manage, "_PREFIX_PROBE", 0)  # as if it matched thousands
    broad = _Recorder(conn)
    list_instances_txn(broad, InstanceQuery(instance_id_prefix="order-"))  # type: ignore[arg-type]
    _assert_index_walks(_plan(conn, *broad.statements[-1]))


def test_counting_reads_index_entries_only(conn: sqlite3.Connection) -> None:
    recorder = _Recorder(conn)
    count_instances_txn(recorder, InstanceCountQuery(at_most=100))  # type: ignore[arg-type]

    for sql, params in recorder.statements:
        plan = _plan(conn, sql, params)
        assert any("COVERING INDEX" in line or "USING INDEX" in line for line in plan), plan
        assert not any(line in ("SCAN instances", "SCAN q") for line in plan), plan


class _ListingOnly(InMemoryProvider):
    """A store that leaves counting to the interface's default."""

    count_instances = Provider.count_instances


@pytest.mark.anyio
async def test_the_default_count_pages_through_listings_up_to_at_most() -> None:
    store = _ListingOnly()
    for n in range(5):
        await create_instance(store, f"done-{n}", status=ExecutionStatus.COMPLETED)
    await create_instance(store, "busy")

    exact = await store.count_instances(InstanceCountQuery())
    capped = await store.count_instances(InstanceCountQuery(at_most=3))

    assert dict(exact.counts) == {
        State.PENDING: 0,
        State.RUNNING: 1,
        State.COMPLETED: 5,
        State.FAILED: 0,
    }
    assert exact.capped == frozenset()
    assert capped.counts[State.COMPLETED] == 3
    assert capped.capped == frozenset({State.COMPLETED})
