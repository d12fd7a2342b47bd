"""Orchestrations signalling each other (``ctx.raise_event``, ``ctx.enqueue_event``) and
reading back their own custom status, end to end."""

from __future__ import annotations

import pytest

import duro
from duro.history import EventQueued, EventRaised, EventSent
from duro.providers import Provider
from duro.testing import VirtualClock

from ._support import completed, of_type, runtime, wait_until

pytestmark = pytest.mark.anyio


def _register(registry: duro.Registry) -> None:
    @registry.orchestration
    async def pinger(ctx: duro.OrchestrationContext, rounds: int) -> list[int]:
        seen: list[int] = []
        for n in range(rounds):
            ctx.raise_event(f"{ctx.instance_id}-pong", "ping", n)
            seen.append(await ctx.wait_for_event("pong", type=int))
        ctx.enqueue_event(f"{ctx.instance_id}-pong", "control", "stop")
        return seen

    @registry.orchestration
    async def ponger(ctx: duro.OrchestrationContext, partner: str) -> int:
        answered = 0
        while True:
            index, value = await ctx.select(
                ctx.wait_for_event("ping", type=int), ctx.dequeue_event("control")
            )
            if index == 1:
                return answered
            ctx.raise_event(partner, "pong", value * 10)
            answered += 1

    @registry.orchestration
    async def progress(ctx: duro.OrchestrationContext, step: int) -> object:
        done = ctx.get_custom_status(type=list[int]) or []
        await ctx.schedule_timer(1)
        ctx.set_custom_status([*done, step])
        if step < 3:
            ctx.continue_as_new(step + 1)
        return ctx.get_custom_status()


async def test_two_orchestrations_play_ping_pong_through_events(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("game-pong", "ponger", "game")
        await client.start_orchestration("game", "pinger", 3)
        assert await completed(client, "game") == [0, 10, 20]
        assert await completed(client, "game-pong") == 3
    pinger_history = await client.get_history("game")
    ponger_history = await client.get_history("game-pong")
    # exactly once per recorded step: every send arrived once, nothing more
    assert len(of_type(pinger_history, EventSent)) == 4
    assert [bytes(e.data) for e in of_type(ponger_history, EventRaised)] == [b"0", b"1", b"2"]
    assert [bytes(e.data) for e in of_type(ponger_history, EventQueued)] == [b'"stop"']
    assert len(of_type(pinger_history, EventRaised)) == 3


async def test_an_event_sent_before_its_target_starts_waits_for_it(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("early", "pinger", 1)
        await wait_until(
            lambda: _sent(client, "early"), what="the ping was sent before its target exists"
        )
        await client.start_orchestration("early-pong", "ponger", "early")
        assert await completed(client, "early") == [0]


async def _sent(client: duro.Client, instance_id: str) -> bool:
    return bool(of_type(await client.get_history(instance_id), EventSent))


async def test_custom_status_is_read_back_and_carried_across_continue_as_new(
    store: Provider, registry: duro.Registry, client: duro.Client, clock: VirtualClock
) -> None:
    _register(registry)
    async with runtime(store, registry, clock):
        await client.start_orchestration("prog", "progress", 1)
        for _ in range(3):
            await wait_until(lambda: _has_timer(store, clock), what="a timer to fire")
            await clock.advance(1)
        assert await completed(client, "prog") == [1, 2, 3]
    status = await client.get_status("prog")
    assert status.custom_status == [1, 2, 3] and status.execution_id == 3


async def _has_timer(store: Provider, clock: VirtualClock) -> bool:
    return (await store.queue_depths()).timers > 0
