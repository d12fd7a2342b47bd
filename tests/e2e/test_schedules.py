"""Schedules end to end: due times on the virtual clock, overlap policies, control requests,
downtime and several runtimes, on every store and backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import duro
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import completed, runtime, wait_until

pytestmark = pytest.mark.anyio

START = datetime.fromtimestamp(1_700_000_000, UTC)  # the clock fixture's start
"""2023-11-14 22:13:20 UTC."""
HOUR = timedelta(hours=1)


def _at(clock: VirtualClock) -> datetime:
    return datetime.fromtimestamp(clock.now_ms() / 1000, UTC)


async def _advance_to(clock: VirtualClock, moment: datetime) -> None:
    await clock.advance((moment - _at(clock)).total_seconds())


async def _next_run(client: duro.Client, schedule_id: str, after: datetime) -> datetime:
    """Wait until the schedule has set its timer for a due time later than ``after``."""
    found: datetime | None = None

    async def armed() -> bool:
        nonlocal found
        info = await client.get_schedule(schedule_id)
        found = info.next_run_at
        return found is not None and found > after

    await wait_until(armed, what=f"schedule {schedule_id} armed after {after}")
    assert found is not None
    return found


async def _exists(client: duro.Client, instance_id: str) -> None:
    async def started() -> bool:
        return (await client.get_status(instance_id)).state is not duro.State.NOT_FOUND

    await wait_until(started, what=f"{instance_id} started")


async def _settled(client: duro.Client, schedule_id: str, **expected: object) -> duro.ScheduleInfo:
    """Wait until the schedule reports the ``expected`` field values, and return it."""
    info: duro.ScheduleInfo | None = None

    async def check() -> bool:
        nonlocal info
        info = await client.get_schedule(schedule_id)
        return all(getattr(info, k) == v for k, v in expected.items())

    try:
        await wait_until(check, what=f"schedule {schedule_id} with {expected}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {info}") from None
    assert info is not None
    return info


async def _completed(client: duro.Client, run_id: str) -> object:
    """The output of run ``run_id``, once the schedule has started it and it completed."""
    await _exists(client, run_id)
    return await completed(client, run_id)


def _register(registry: duro.Registry) -> None:
    @registry.orchestration
    async def report(ctx: duro.OrchestrationContext, label: str) -> str:
        return f"{label} at {ctx.utc_now():%H:%M}"

    @registry.orchestration
    async def hold(ctx: duro.OrchestrationContext, _: None) -> str:
        return str(await ctx.wait_for_event("go"))


async def _runs(client: duro.Client, schedule_id: str) -> list[str]:
    return sorted(
        s.instance_id
        for s in await client.list_instances(limit=1000)
        if s.instance_id.startswith(f"{schedule_id}@")
    )


async def test_every_schedule_starts_one_run_per_due_time_with_a_predictable_id(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.create_schedule("hourly", "report", "tick", every=HOUR)
        first = await _next_run(client, "hourly", START)
        assert first == datetime(2023, 11, 14, 23, 0, tzinfo=UTC)  # aligned to the epoch
        await _advance_to(clock, first)
        assert await _completed(client, "hourly@20231114T230000Z") == "tick at 23:00"
        await _settled(client, "hourly", running_run_id=None)  # else "skip" skips the next
        second = await _next_run(client, "hourly", first)
        assert second == first + HOUR
        await _advance_to(clock, second)
        assert await _completed(client, "hourly@20231115T000000Z") == "tick at 00:00"
        info = await _settled(client, "hourly", runs_started=2, running_run_id=None)
    assert info.status == "active"
    assert info.orchestration == "report"
    assert info.every == HOUR
    assert info.last_run_id == "hourly@20231115T000000Z"
    assert await _runs(client, "hourly") == ["hourly@20231114T230000Z", "hourly@20231115T000000Z"]


async def test_cron_schedule_runs_at_the_times_the_expression_names(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        # 09:30 on weekdays; 2023-11-14 is a Tuesday, so the next is Wednesday the 15th.
        await client.create_schedule("standup", "report", "standup", cron="30 9 * * mon-fri")
        due = await _next_run(client, "standup", START)
        assert due == datetime(2023, 11, 15, 9, 30, tzinfo=UTC)
        await _advance_to(clock, due)
        assert await _completed(client, "standup@20231115T093000Z") == "standup at 09:30"
        # Friday 17th, then Monday 20th: the weekend is skipped.
        assert await _next_run(client, "standup", due) == datetime(2023, 11, 16, 9, 30, tzinfo=UTC)


async def test_downtime_catches_up_once_for_the_latest_missed_due_time(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.create_schedule("catchup", "report", "late", every=HOUR)
        first = await _next_run(client, "catchup", START)
    # Every runtime is down for five due times; then one comes back.
    await _advance_to(clock, first + 4 * HOUR + timedelta(minutes=10))
    async with runtime(store, registry, clock):
        assert await _completed(client, "catchup@20231115T030000Z") == "late at 03:10"
        assert await _next_run(client, "catchup", first) == first + 5 * HOUR
        await _settled(client, "catchup", runs_started=1)
    assert await _runs(client, "catchup") == ["catchup@20231115T030000Z"]


async def test_two_runtimes_start_each_due_run_once(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock), runtime(store, registry, clock):
        await client.create_schedule("shared", "report", "x", every=HOUR)
        due = START
        for started in range(1, 4):
            due = await _next_run(client, "shared", due)
            await _advance_to(clock, due)
            await _settled(client, "shared", runs_started=started, running_run_id=None)
    assert await _runs(client, "shared") == [
        "shared@20231114T230000Z",
        "shared@20231115T000000Z",
        "shared@20231115T010000Z",
    ]


async def test_skip_starts_no_run_while_the_previous_one_runs(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.create_schedule("skipper", "hold", every=HOUR, overlap="skip")
        first = await _next_run(client, "skipper", START)
        await _advance_to(clock, first)
        await _exists(client, "skipper@20231114T230000Z")
        second = await _next_run(client, "skipper", first)
        await _advance_to(clock, second)
        await _settled(client, "skipper", runs_skipped=1)
        await client.raise_event("skipper@20231114T230000Z", "go", "done")
        await _settled(client, "skipper", running_run_id=None)
        third = await _next_run(client, "skipper", second)
        await _advance_to(clock, third)
        await _exists(client, "skipper@20231115T010000Z")
    assert await _runs(client, "skipper") == [
        "skipper@20231114T230000Z",
        "skipper@20231115T010000Z",
    ]


async def test_buffer_one_starts_the_latest_waiting_run_when_the_running_one_ends(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.create_schedule("buffered", "hold", every=HOUR, overlap="buffer_one")
        due = await _next_run(client, "buffered", START)
        await _advance_to(clock, due)
        await _exists(client, "buffered@20231114T230000Z")
        for _ in range(2):  # two due times while it runs: the second replaces the first
            due = await _next_run(client, "buffered", due)
            await _advance_to(clock, due)
        await _settled(client, "buffered", buffered_run_id="buffered@20231115T010000Z")
        await client.raise_event("buffered@20231114T230000Z", "go", 1)
        await _exists(client, "buffered@20231115T010000Z")
        info = await _settled(client, "buffered", running_run_id="buffered@20231115T010000Z")
    assert info.buffered_run_id is None
    assert info.runs_skipped == 1
    assert await _runs(client, "buffered") == [
        "buffered@20231114T230000Z",
        "buffered@20231115T010000Z",
    ]


async def test_allow_starts_runs_that_overlap(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.create_schedule("parallel", "hold", every=HOUR, overlap="allow")
        due = START
        for _ in range(2):
            due = await _next_run(client, "parallel", due)
            await _advance_to(clock, due)
        await _exists(client, "parallel@20231115T000000Z")
        assert (await client.get_status("parallel@20231114T230000Z")).state is duro.State.RUNNING


async def test_pause_resume_trigger_and_delete(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.create_schedule("ctl", "report", "run", every=HOUR)
        first = await _next_run(client, "ctl", START)
        await client.pause_schedule("ctl")
        await _settled(client, "ctl", status="paused", next_run_at=None)
        await _advance_to(clock, first + 2 * HOUR)  # due times pass while paused
        run_id = await client.trigger_schedule("ctl", run_id="ctl-manual")
        assert await _completed(client, run_id) == "run at 01:00"
        await client.resume_schedule("ctl")
        resumed = await _settled(client, "ctl", status="active")
        assert resumed.next_run_at == first + 3 * HOUR  # nothing made up for the pause
        assert resumed.runs_started == 1
        await client.delete_schedule("ctl")
        with pytest.raises(duro.ScheduleNotFoundError):
            await client.get_schedule("ctl")
        with pytest.raises(duro.ScheduleNotFoundError):
            await client.pause_schedule("ctl")
    assert (await client.get_status("ctl-manual")).state is duro.State.COMPLETED  # runs stay


async def test_end_at_ends_the_schedule_and_list_shows_every_schedule(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    first = datetime(2023, 11, 14, 23, 0, tzinfo=UTC)
    async with runtime(store, registry, clock):
        await client.create_schedule(
            "window", "report", "w", every=HOUR, start_at=first, end_at=first + HOUR
        )
        await client.create_schedule("other", "report", "o", cron="@daily")
        assert await _next_run(client, "window", START) == first
        await _advance_to(clock, first)
        await _settled(client, "window", runs_started=1, running_run_id=None)
        assert await _next_run(client, "window", first) == first + HOUR
        await _advance_to(clock, first + HOUR)
        await _exists(client, "window@20231115T000000Z")
        info = await _settled(client, "window", status="ended", runs_started=2)
        assert info.next_run_at is None
        await _settled(client, "other", status="active")
        listed = await client.list_schedules()
    assert [s.schedule_id for s in listed] == ["other", "window"]
    assert listed[0].cron == "@daily"


async def test_a_schedule_survives_continue_as_new_over_many_rounds(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.create_schedule("long", "report", "l", every=timedelta(minutes=1))
        due = START
        for started in range(1, 21):
            due = await _next_run(client, "long", due)
            await _advance_to(clock, due)
            info = await _settled(client, "long", runs_started=started, running_run_id=None)
    assert info.status == "active"
    executions = await client.list_executions("duro:schedule:long")
    assert len(executions) > 1
