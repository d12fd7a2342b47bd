"""What ``Client.create_schedule`` refuses, and the due-time arithmetic, without a runtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import duro
from duro._schedules._spec import ScheduleSpec, latest_due, next_due, run_id_of

pytestmark = pytest.mark.anyio

HOUR_MS = 3_600_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client() -> Any:
    registry = duro.Registry()

    @registry.orchestration
    async def job(ctx: duro.OrchestrationContext, _: None) -> None:
        return None

    async with duro.InMemoryProvider() as store:
        yield duro.Client(store, registry=registry)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({}, "exactly one of every= and cron="),
        ({"every": timedelta(hours=1), "cron": "* * * * *"}, "exactly one"),
        ({"every": timedelta(0)}, "at least one second"),
        ({"every": timedelta(seconds=-5)}, "at least one second"),
        ({"every": 60}, "must be a timedelta"),
        (
            {
                "every": timedelta(hours=1),
                "start_at": datetime(2030, 1, 2, tzinfo=UTC),
                "end_at": datetime(2030, 1, 1, tzinfo=UTC),
            },
            "end_at",
        ),
        ({"every": timedelta(hours=1), "start_at": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"every": timedelta(hours=1), "overlap": "queue"}, "overlap must be one of"),
    ],
)
async def test_a_spec_that_cannot_work_is_refused_naming_the_problem(
    client: duro.Client, kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(duro.InvalidScheduleError) as caught:
        await client.create_schedule("s", "job", **kwargs)
    assert says in caught.value.problem
    assert caught.value.schedule_id == "s"
    assert await client.list_schedules() == []


async def test_an_invalid_cron_expression_is_a_cron_syntax_error_at_creation(
    client: duro.Client,
) -> None:
    with pytest.raises(duro.CronSyntaxError) as caught:
        await client.create_schedule("s", "job", cron="61 * * * *")
    assert caught.value.field == "minute"
    assert caught.value.schedule_id == "s"
    assert "61 is outside 0-59" in str(caught.value)


async def test_an_orchestration_the_registry_does_not_know_is_refused(
    client: duro.Client,
) -> None:
    with pytest.raises(duro.InvalidScheduleError, match="'nope' is not registered"):
        await client.create_schedule("s", "nope", every=timedelta(hours=1))
    with pytest.raises(duro.InvalidScheduleError, match="no version '9'"):
        await client.create_schedule("s", "job", every=timedelta(hours=1), version="9")
    with pytest.raises(duro.InvalidScheduleError, match="not an orchestration name"):
        await client.create_schedule("s", "duro:schedule", every=timedelta(hours=1))


async def test_bad_ids_and_unknown_schedules(client: duro.Client) -> None:
    with pytest.raises(duro.InvalidInstanceIdError):
        await client.create_schedule("a/b", "job", every=timedelta(hours=1))
    with pytest.raises(duro.InvalidScheduleError, match="the limit is 150"):
        await client.create_schedule("x" * 151, "job", every=timedelta(hours=1))
    for call in (
        client.get_schedule,
        client.pause_schedule,
        client.resume_schedule,
        client.trigger_schedule,
        client.delete_schedule,
    ):
        with pytest.raises(duro.ScheduleNotFoundError):
            await call("missing")


async def test_a_new_schedule_is_pending_until_a_runtime_runs_it(client: duro.Client) -> None:
    assert await client.create_schedule("s", "job", every=timedelta(hours=1)) == "s"
    info = await client.get_schedule("s")
    assert info.status == "pending"
    assert [s.schedule_id for s in await client.list_schedules()] == ["s"]
    with pytest.raises(duro.InstanceAlreadyExistsError):
        await client.create_schedule("s", "job", every=timedelta(hours=2))


def _spec(**fields: Any) -> ScheduleSpec:
    return ScheduleSpec(schedule_id="s", orchestration="job", **fields)


def test_every_is_aligned_to_the_epoch_or_to_start_at() -> None:
    assert next_due(_spec(every_ms=HOUR_MS), 10 * HOUR_MS + 5) == 11 * HOUR_MS
    assert next_due(_spec(every_ms=HOUR_MS), 10 * HOUR_MS) == 11 * HOUR_MS
    start = 10 * HOUR_MS + 60_000
    assert next_due(_spec(every_ms=HOUR_MS, start_at_ms=start), 0) == start
    assert next_due(_spec(every_ms=HOUR_MS, start_at_ms=start), start) == start + HOUR_MS


def test_no_due_time_after_end_at() -> None:
    spec = _spec(every_ms=HOUR_MS, end_at_ms=2 * HOUR_MS)
    assert next_due(spec, HOUR_MS) == 2 * HOUR_MS
    assert next_due(spec, 2 * HOUR_MS) is None


def test_a_late_timer_catches_up_once_for_the_latest_missed_due_time() -> None:
    every = _spec(every_ms=HOUR_MS)
    assert latest_due(every, HOUR_MS, 5 * HOUR_MS + 10) == 5 * HOUR_MS
    assert latest_due(every, HOUR_MS, HOUR_MS) == HOUR_MS
    ended = _spec(every_ms=HOUR_MS, end_at_ms=3 * HOUR_MS)
    assert latest_due(ended, HOUR_MS, 9 * HOUR_MS) == 3 * HOUR_MS
    cron = _spec(cron="0 */6 * * *")
    assert latest_due(cron, 0, 20 * HOUR_MS) == 18 * HOUR_MS


def test_run_ids_carry_the_due_time_in_utc() -> None:
    due = int(datetime(2026, 3, 1, 9, 30, tzinfo=UTC).timestamp() * 1000)
    assert run_id_of("nightly", due) == "nightly@20260301T093000Z"


async def test_a_cron_expression_that_never_matches_is_refused(client: duro.Client) -> None:
    with pytest.raises(duro.CronSyntaxError, match="day 30 never occurs"):
        await client.create_schedule("s", "job", cron="0 0 30 feb */2")
