"""The in-process watch that wakes client waits when this process's runtime commits a turn."""

from __future__ import annotations

from duro._watch import InstanceWatch


def test_a_change_wakes_change_waiters_but_not_ending_waiters() -> None:
    watch = InstanceWatch()
    change = watch.event("a")
    ending = watch.event("a", ending_only=True)
    watch.notify("a", ended=False)
    assert change.is_set()
    assert not ending.is_set()


def test_the_ending_turn_wakes_both_kinds_of_waiter() -> None:
    watch = InstanceWatch()
    change = watch.event("a")
    ending = watch.event("a", ending_only=True)
    watch.notify("a", ended=True)
    assert change.is_set()
    assert ending.is_set()


def test_a_notice_for_one_instance_leaves_the_others_waiting() -> None:
    watch = InstanceWatch()
    other = watch.event("b")
    watch.notify("a", ended=True)
    assert not other.is_set()


def test_a_waiter_after_a_notice_gets_a_fresh_event() -> None:
    watch = InstanceWatch()
    first = watch.event("a")
    watch.notify("a", ended=False)
    assert watch.event("a") is not first
    assert not watch.event("a").is_set()
