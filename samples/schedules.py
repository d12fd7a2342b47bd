"""Schedules: run an orchestration every second, then pause, trigger and delete it.

``Client.create_schedule`` makes a durable schedule (here ``every`` second; ``cron=`` takes a
five-field UTC expression). Each run is an ordinary instance whose id says when it was due,
``digest@<YYYYMMDDTHHMMSSZ>``, so it can be awaited, inspected or looked up later. A cron
expression that does not parse is refused at creation, naming the field at fault. Run it with
``python -m samples.schedules``.
"""

from __future__ import annotations

from datetime import timedelta

import anyio

import duro

registry = duro.Registry()


@registry.orchestration
async def send_digest(ctx: duro.OrchestrationContext, team: str) -> str:
    return f"digest for {team}"


async def _wait_for_run(client: duro.Client, after: str | None) -> str:
    """The id of the next run the schedule starts after run ``after``, once it completed."""
    with anyio.fail_after(10):
        while True:
            info = await client.get_schedule("digest")
            if info.last_run_id is not None and info.last_run_id != after:
                break
            await anyio.sleep(0.05)
        run_id = info.last_run_id
        await client.wait_for_orchestration(run_id, timeout=10)
    return run_id


async def main() -> None:
    store = duro.InMemoryProvider()
    client = duro.Client(store, registry=registry)
    try:
        await client.create_schedule("typo", send_digest, "ops", cron="0 25 * * *")
    except duro.CronSyntaxError as exc:
        print(f"refused: {exc.field}: {exc.problem}")

    async with duro.Runtime(store, registry):
        await client.create_schedule("digest", send_digest, "ops", every=timedelta(seconds=1))
        first = await _wait_for_run(client, None)
        second = await _wait_for_run(client, first)
        print(f"scheduled runs: {first}, {second}")

        await client.pause_schedule("digest")
        manual = await client.trigger_schedule("digest", run_id="digest-now")
        # The schedule starts the run at its next turn: until then the id is unknown.
        with anyio.fail_after(10):
            while (await client.get_status(manual)).state is duro.State.NOT_FOUND:  # noqa: ASYNC110 - a store, not an in-process event
                await anyio.sleep(0.01)
        output = (await client.wait_for_orchestration(manual, timeout=10)).output
        info = await client.get_schedule("digest")
        print(f"{info.schedule_id}: {info.status}; {manual} -> {output!r}")
        await client.delete_schedule("digest")
        print(f"schedules left: {await client.list_schedules()}")


if __name__ == "__main__":
    anyio.run(main)
