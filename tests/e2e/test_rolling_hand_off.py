"""A rolling deployment in one process: work an old worker lacks the code for goes to a new
worker at once, not after the old worker's back-off, however often the old one saw it first.

The virtual clock never moves in these tests, so a hand-off that waited out a back-off (even
the first, 1 s) would never complete. Memory and SQLite only: on Cosmos only the member that
owns an instance's dispatch slot runs its work, so there is no other worker to hand it to.
"""

from __future__ import annotations

import logging

import pytest

import duro
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import completed, runtime, wait_until

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("store", ["memory", "sqlite"], indirect=True),
]


def _left(caplog: pytest.LogCaptureFixture, what: str) -> bool:
    return any(what in record.getMessage() for record in caplog.records)


async def test_a_turn_an_old_worker_left_runs_on_a_new_worker_without_the_clock_moving(
    store: Provider, client: duro.Client, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="duro")
    new = duro.Registry()

    @new.orchestration
    async def onboard(ctx: duro.OrchestrationContext, name: str) -> str:
        return f"welcome {name}"

    started_at = clock.now_ms()
    async with runtime(store, duro.Registry(), clock, worker_id="old"):
        await client.start_orchestration("o-1", "onboard", "ada")
        await wait_until(lambda: _left(caplog, "leaving the turn of o-1"), what="old left it")
        async with runtime(store, new, clock, worker_id="new"):
            assert await completed(client, "o-1") == "welcome ada"
    assert clock.now_ms() == started_at


async def test_an_activity_an_old_worker_left_runs_on_a_new_worker_without_the_clock_moving(
    store: Provider, client: duro.Client, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="duro")
    turns, new = duro.Registry(), duro.Registry()

    async def send_welcome(ctx: duro.ActivityContext, name: str) -> str:
        return f"mail for {name}"

    turns.activity(send_welcome)
    new.activity(send_welcome)

    @turns.orchestration
    async def onboard(ctx: duro.OrchestrationContext, name: str) -> str:
        mail: str = await ctx.schedule_activity(send_welcome, name)
        return mail

    started_at = clock.now_ms()
    async with (
        runtime(store, turns, clock, worker_id="turns", activity_concurrency=0),
        runtime(store, duro.Registry(), clock, worker_id="old", orchestration_concurrency=0),
    ):
        await client.start_orchestration("o-2", onboard, "cy")
        await wait_until(lambda: _left(caplog, "leaving activity send_welcome"), what="old left it")
        async with runtime(store, new, clock, worker_id="new", orchestration_concurrency=0):
            assert await completed(client, "o-2") == "mail for cy"
    assert clock.now_ms() == started_at
