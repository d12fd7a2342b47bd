"""``HandOffs``: how a worker gives back work it lacks the code for, and when it looks again."""

from __future__ import annotations

import pytest

from duro._runtime._handoff import FORGET_AFTER_MS, HandOffs
from duro.testing import VirtualClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start_ms=1_700_000_000_000)


async def test_left_work_goes_back_uncounted_and_stays_out_of_fetches_for_a_doubling_backoff(
    clock: VirtualClock,
) -> None:
    handoffs = HandOffs[str](clock)

    first = handoffs.leave("i1", handoffs.look("i1"), deliveries=1)
    assert (first.delay, first.undo_delivery_count, first.here_again_in) == (0.0, True, 1.0)
    assert "i1" in handoffs and list(handoffs) == ["i1"] and len(handoffs) == 1

    await clock.advance(1.0)
    assert "i1" not in handoffs and list(handoffs) == [] and len(handoffs) == 0
    assert handoffs.look("i1") == 2
    second = handoffs.leave("i1", handoffs.look("i1"), deliveries=1)
    assert (second.delay, second.here_again_in) == (0.0, 2.0)
    assert handoffs.look("i1") == 3


async def test_work_fetched_again_within_its_backoff_goes_back_counted_for_everyone(
    clock: VirtualClock,
) -> None:
    """The store ignored the skip: fall back to delaying it for every worker."""
    handoffs = HandOffs[str](clock)
    handoffs.leave("i1", 1, deliveries=1)

    again = handoffs.leave("i1", handoffs.look("i1"), deliveries=3)

    assert (again.delay, again.undo_delivery_count, again.here_again_in) == (4.0, False, 4.0)


async def test_beyond_capacity_work_goes_back_counted_until_old_entries_are_forgotten(
    clock: VirtualClock,
) -> None:
    handoffs = HandOffs[str](clock, capacity=2)
    handoffs.leave("a", 1, deliveries=1)
    handoffs.leave("b", 1, deliveries=1)

    full = handoffs.leave("c", 1, deliveries=2)
    assert (full.delay, full.undo_delivery_count) == (2.0, False)
    assert "c" not in handoffs

    await clock.advance(1.0 + FORGET_AFTER_MS / 1000)
    room = handoffs.leave("c", 1, deliveries=2)
    assert (room.delay, room.undo_delivery_count) == (0.0, True)
    assert handoffs.look("a") == 1  # forgotten: another worker took it long ago
