"""The execution cache while a turn commits (``ExecutionCache.hold`` / ``settle``).

A store that reports activities and fetches the turns they make due in one round trip can
run that fetch before the committing turn's task resumes. The execution stays indexed and
available meanwhile, so the next turn neither loads the history nor replays it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

import duro
from duro import ProviderError
from duro._engine import Execution
from duro._runtime._orchestrator import ExecutionCache
from duro.providers import ActivityCommit, FetchTurnRequest, OrchestrationWorkItem

pytestmark = pytest.mark.anyio


class FakeExecution:
    def __init__(self, execution_id: int, events: int) -> None:
        self.execution_id = execution_id
        self.history = [object()] * events
        self.discarded = False

    def expects_completion_by(self, deadline_ms: int) -> bool:
        return True

    def discard(self) -> None:
        self.discarded = True


def fake(execution_id: int = 1, events: int = 4) -> Any:
    return cast(Execution, FakeExecution(execution_id, events))


def test_an_execution_is_indexed_as_committed_while_its_turn_commits() -> None:
    cache = ExecutionCache(capacity=10, idle_capacity=10)
    execution = fake(events=6)

    cache.hold("i1", "turn-1", execution)

    assert cache.index == {"i1": (1, 6)}
    assert cache.peek("i1") is execution


def test_a_committed_turn_caches_its_execution() -> None:
    cache = ExecutionCache(capacity=10, idle_capacity=10)
    execution = fake()
    cache.hold("i1", "turn-1", execution)

    cache.settle("i1", "turn-1", committed=True, now_ms=0)

    assert cache.take("i1") is execution and not execution.discarded


def test_a_turn_that_did_not_commit_drops_its_execution_and_index_entry() -> None:
    cache = ExecutionCache(capacity=10, idle_capacity=10)
    execution = fake()
    cache.hold("i1", "turn-1", execution)

    cache.settle("i1", "turn-1", committed=False, now_ms=0)

    assert execution.discarded
    assert cache.peek("i1") is None and cache.index == {}


def test_the_next_turn_takes_the_execution_and_the_settling_turn_leaves_it_alone() -> None:
    cache = ExecutionCache(capacity=10, idle_capacity=10)
    execution = fake()
    cache.hold("i1", "turn-1", execution)
    assert cache.take("i1") is execution  # the next turn, fetched before turn-1's task resumed
    cache.hold("i1", "turn-2", execution)

    cache.settle("i1", "turn-1", committed=False, now_ms=0)

    assert not execution.discarded
    assert cache.index == {"i1": (1, 4)}
    cache.settle("i1", "turn-2", committed=True, now_ms=0)
    assert cache.take("i1") is execution


class RecordingStore(duro.SqliteProvider):
    """Keeps every turn it hands out."""

    turns: list[OrchestrationWorkItem]

    async def fetch_turns(self, request: FetchTurnRequest) -> list[OrchestrationWorkItem]:
        items = await super().fetch_turns(request)
        self.turns.extend(items)
        return items

    async def complete_activities_and_fetch_turns(
        self, commits: Sequence[ActivityCommit], fetch: FetchTurnRequest
    ) -> tuple[list[ProviderError | None], list[OrchestrationWorkItem]]:
        results, items = await super().complete_activities_and_fetch_turns(commits, fetch)
        self.turns.extend(items)
        return results, items


registry = duro.Registry()


@registry.activity
async def echo(ctx: duro.ActivityContext, x: int) -> int:
    return x


@registry.orchestration
async def fan_out(ctx: duro.OrchestrationContext, k: int) -> list[int]:
    return await ctx.join([ctx.schedule_activity(echo, i) for i in range(k)])


async def test_a_fan_outs_later_turns_never_load_the_history_the_runtime_holds(
    tmp_path: Path,
) -> None:
    store = RecordingStore(tmp_path / "fan.db")
    store.turns = []
    async with store, duro.Runtime(store, registry) as runtime:
        await runtime.client.start_orchestration("fan", fan_out, 200)
        status = await runtime.client.wait_for_orchestration("fan", timeout=60)

    assert status.output == list(range(200))
    later = store.turns[1:]
    assert len(later) > 1
    assert [turn for turn in later if not turn.history_omitted] == []
