"""The execution cache while a turn commits (``ExecutionCache.hold`` / ``settle``).

A store that reports activities and fetches the turns they make due in one round trip can
run that fetch before the committing turn's task resumes. The execution stays indexed and
available meanwhile, so the next turn neither loads the history nor replays it (the whole
runtime: ``tests/e2e/test_hand_over.py``).
"""

from __future__ import annotations

from typing import Any, cast

from duro._engine import Execution
from duro._runtime._orchestrator import ExecutionCache


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
