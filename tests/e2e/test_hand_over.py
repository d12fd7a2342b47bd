"""Hand-over (decision 0005): work reaches the other pool with the commit that made it due.

On SQLite the commit and the fetch are one transaction, so where each item came from is
deterministic: a turn's activities can only be locked by the commit that inserted them, and
an activity's next turn by the report that enqueued its result (the dispatcher has free slots:
fetch batches of one keep an idle fetch loop from holding them all).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

import duro
from duro.providers import (
    ActivityCommit,
    ActivityWorkItem,
    FetchActivityRequest,
    FetchTurnRequest,
    OrchestrationWorkItem,
    TurnCommit,
)

from ._support import completed, runtime

pytestmark = pytest.mark.anyio


class CountingSqlite(duro.SqliteProvider):
    """Counts the items each kind of fetch returned."""

    def __init__(self, path: Path, *, hand_over: bool) -> None:
        super().__init__(path)
        self.fetches_with_commits = hand_over  # type: ignore[misc]
        self.items: Counter[str] = Counter()
        self.turns: list[OrchestrationWorkItem] = []
        """Every turn handed out, fetched or handed over, in order."""

    async def fetch_turns(self, request: FetchTurnRequest) -> list[OrchestrationWorkItem]:
        turns = await super().fetch_turns(request)
        self.items["fetch_turns"] += len(turns)
        self.turns.extend(turns)
        return turns

    async def fetch_activities(self, request: FetchActivityRequest) -> list[ActivityWorkItem]:
        items = await super().fetch_activities(request)
        self.items["fetch_activities"] += len(items)
        return items

    async def commit_turns_and_fetch_activities(
        self, commits: Sequence[TurnCommit], fetch: FetchActivityRequest
    ) -> tuple[list[duro.ProviderError | None], list[ActivityWorkItem]]:
        results, items = await super().commit_turns_and_fetch_activities(commits, fetch)
        self.items["handed activities"] += len(items)
        return results, items

    async def complete_activities_and_fetch_turns(
        self, commits: Sequence[ActivityCommit], fetch: FetchTurnRequest
    ) -> tuple[list[duro.ProviderError | None], list[OrchestrationWorkItem]]:
        results, turns = await super().complete_activities_and_fetch_turns(commits, fetch)
        self.items["handed turns"] += len(turns)
        self.turns.extend(turns)
        return results, turns


def chain_registry() -> duro.Registry:
    registry = duro.Registry()

    @registry.activity
    async def step(ctx: duro.ActivityContext, value: int) -> int:
        return value + 1

    @registry.orchestration
    async def chain(ctx: duro.OrchestrationContext, steps: int) -> int:
        value = 0
        for _ in range(steps):
            value = await ctx.schedule_activity(step, value)
        return value

    return registry


async def run_chain(store: CountingSqlite, steps: int) -> None:
    registry = chain_registry()
    rt = runtime(
        store, registry, orchestration_concurrency=4, orchestration_fetch_batch=1,
        activity_fetch_batch=1,
    )  # fmt: skip
    async with store, rt:
        client = duro.Client(store)
        await client.start_orchestration("chain-1", "chain", steps)
        assert await completed(client, "chain-1") == steps


async def test_each_chain_step_is_handed_over_instead_of_fetched(tmp_path: Path) -> None:
    store = CountingSqlite(tmp_path / "h.db", hand_over=True)
    await run_chain(store, steps=4)
    assert +store.items == {  # (+ drops kinds that returned nothing)
        "fetch_turns": 1,  # the start: a client's message, not a runtime commit
        "handed activities": 4,
        "handed turns": 4,
    }


async def test_a_store_without_the_flag_is_only_fetched_from(tmp_path: Path) -> None:
    store = CountingSqlite(tmp_path / "h.db", hand_over=False)
    await run_chain(store, steps=4)
    assert +store.items == {"fetch_turns": 5, "fetch_activities": 4}


async def test_a_fan_outs_handed_turns_never_load_the_history_the_runtime_holds(
    tmp_path: Path,
) -> None:
    # A report's hand-over fetches the turn it makes due in the report's round trip, often
    # before the previous turn's task has put its execution back (ExecutionCache.hold).
    registry = duro.Registry()

    @registry.activity
    async def echo(ctx: duro.ActivityContext, value: int) -> int:
        return value

    @registry.orchestration
    async def fan_out(ctx: duro.OrchestrationContext, k: int) -> list[int]:
        return await ctx.join([ctx.schedule_activity(echo, i) for i in range(k)])

    store = CountingSqlite(tmp_path / "fan.db", hand_over=True)
    # The default options: reports come in batches and hand their turns over.
    async with store, duro.Runtime(store, registry):
        client = duro.Client(store)
        await client.start_orchestration("fan", "fan_out", 200)
        assert await completed(client, "fan") == list(range(200))

    later = store.turns[1:]
    assert store.items["handed turns"] > 1
    assert [turn for turn in later if not turn.history_omitted] == []
