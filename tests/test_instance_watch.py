"""The in-process watch that wakes client waits when this process's runtime commits a turn."""

from __future__ import annotations

import anyio
import pytest

from duro import InMemoryProvider
from duro._watch import InstanceWatch
from duro.providers import InstanceNotice


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


# -- relaying a store's notices from other processes ------------------------------------------


class NoticeSource(InMemoryProvider):
    """A store whose word from other processes the test sends through ``send`` (a context
    manager: it closes the streams)."""

    def __init__(self) -> None:
        super().__init__()
        self.send, self._receive = anyio.create_memory_object_stream[list[InstanceNotice]](10)
        self.callers = 0
        self.most_callers = 0
        self.calls = 0

    async def instance_notices(self) -> list[InstanceNotice]:
        self.calls += 1
        self.callers += 1
        self.most_callers = max(self.most_callers, self.callers)
        try:
            return await self._receive.receive()
        finally:
            self.callers -= 1

    def __enter__(self) -> NoticeSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.send.close()
        self._receive.close()


class BrokenNotices(InMemoryProvider):
    async def instance_notices(self) -> list[InstanceNotice]:
        raise OSError("no socket")


async def wait_for_ending(watch: InstanceWatch, store: InMemoryProvider, instance_id: str) -> bool:
    """True if the end of ``instance_id`` woke the wait (False: it timed out)."""
    event = watch.event(instance_id, ending_only=True)
    await watch.wait(event, 10.0, store)
    return event.is_set()


@pytest.mark.anyio
async def test_one_wait_at_a_time_relays_and_the_next_takes_over_when_it_leaves() -> None:
    watch = InstanceWatch()
    woken: dict[str, bool] = {}

    async def waiter(instance_id: str) -> None:
        woken[instance_id] = await wait_for_ending(watch, store, instance_id)

    with NoticeSource() as store, anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for instance_id in ("a", "b", "c"):
                tg.start_soon(waiter, instance_id)
            for instance_id in ("b", "a", "c"):  # the relay changes hands after each
                while store.callers == 0:  # noqa: ASYNC110 - until a wait relays
                    await anyio.sleep(0.001)
                await store.send.send([InstanceNotice(instance_id, ended=True)])
                while instance_id not in woken:  # noqa: ASYNC110 - until it returned
                    await anyio.sleep(0.001)

    assert woken == {"a": True, "b": True, "c": True}
    assert store.most_callers == 1


@pytest.mark.anyio
async def test_a_queued_wait_that_leaves_does_not_keep_the_next_from_relaying() -> None:
    watch = InstanceWatch()
    with NoticeSource() as store, anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_ending, watch, store, "relaying")
            queued = anyio.CancelScope()

            async def queued_wait() -> None:
                with queued:
                    await wait_for_ending(watch, store, "queued")

            tg.start_soon(queued_wait)
            while not watch._relay_queue:  # noqa: ASYNC110 - until it queues behind the relay
                await anyio.sleep(0.001)
            queued.cancel()
            await store.send.send([InstanceNotice("relaying", ended=True)])
        calls = store.calls
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_ending, watch, store, "later")
            while store.calls == calls:  # noqa: ASYNC110 - until the later wait relays
                await anyio.sleep(0.001)
            await store.send.send([InstanceNotice("later", ended=True)])


@pytest.mark.anyio
async def test_a_store_that_fails_to_give_notices_leaves_the_wait_to_its_timeout() -> None:
    watch = InstanceWatch()
    event = watch.event("a")
    with anyio.fail_after(5):
        await watch.wait(event, 0.05, BrokenNotices())
    assert not event.is_set()
