"""Outcomes of activity runs whose report found the lock gone, kept for a refetch here."""

from __future__ import annotations

import time

import msgspec
import pytest

from duro._runtime._activity_context import ActivityContext
from duro._runtime._unreported import UnreportedOutcomes


def context() -> ActivityContext:
    return ActivityContext(
        instance_id="i1",
        execution_id=1,
        activity_name="a",
        attempt=1,
        orchestration_name="o",
        orchestration_version="",
        session=None,
        tag=None,
        worker_id="w1",
        client=None,  # type: ignore[arg-type]  # never used here
        heartbeat_details=None,
    )


def test_a_kept_outcome_is_taken_once() -> None:
    outcomes = UnreportedOutcomes(keep_for=30)
    outcomes.keep(("i1", 1, 0), context(), msgspec.Raw(b'"done"'), None)
    kept = outcomes.take(("i1", 1, 0))
    assert kept is not None and bytes(kept.result or b"") == b'"done"'
    assert outcomes.take(("i1", 1, 0)) is None
    assert outcomes.take(("i1", 1, 1)) is None


def test_an_outcome_nobody_asks_for_is_forgotten_after_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outcomes = UnreportedOutcomes(keep_for=1)
    outcomes.keep(("i1", 1, 0), context(), None, None)
    later = time.monotonic() + 1.5
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert outcomes.take(("i1", 1, 0)) is None


def test_at_most_capacity_outcomes_are_kept_the_oldest_going_first() -> None:
    outcomes = UnreportedOutcomes(keep_for=30, capacity=2)
    for seq in range(3):
        outcomes.keep(("i1", 1, seq), context(), None, None)
    assert outcomes.take(("i1", 1, 0)) is None
    assert outcomes.take(("i1", 1, 1)) is not None
    assert outcomes.take(("i1", 1, 2)) is not None
