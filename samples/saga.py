"""A saga: book a trip step by step and, when a step fails, undo the steps already done.

Each booking that succeeds pushes its compensation; a failure runs them in reverse order and
re-raises. Compensations are activities like any other, so they are durable too: a crash in the
middle of undoing resumes the undo. Run it with ``python -m samples.saga``: one trip books, the
other fails at the car and is rolled back.
"""

from __future__ import annotations

import anyio
import msgspec

import duro

registry = duro.Registry()


class Trip(msgspec.Struct):
    traveller: str
    car: bool = True


class NoCarsLeft(Exception):
    """The rental company has nothing: retrying will not help."""


@registry.activity
async def book_flight(ctx: duro.ActivityContext, trip: Trip) -> str:
    return f"FL-{trip.traveller}"


@registry.activity
async def book_hotel(ctx: duro.ActivityContext, trip: Trip) -> str:
    return f"HO-{trip.traveller}"


@registry.activity
async def book_car(ctx: duro.ActivityContext, trip: Trip) -> str:
    if trip.traveller == "bob":
        raise NoCarsLeft("no cars left at the airport")
    return f"CA-{trip.traveller}"


@registry.activity
async def cancel_booking(ctx: duro.ActivityContext, reference: str) -> str:
    print(f"    [compensate] cancelled {reference}")
    return reference


@registry.orchestration
async def book_trip(ctx: duro.OrchestrationContext, trip: Trip) -> list[str]:
    booked: list[str] = []
    try:
        for step in (book_flight, book_hotel, book_car):
            booked.append(await ctx.schedule_activity(step, trip))
    except duro.ActivityFailedError:
        for reference in reversed(booked):
            await ctx.schedule_activity(cancel_booking, reference)
        raise
    return booked


async def main() -> None:
    store = duro.SqliteProvider.in_memory()
    async with duro.Runtime(store, registry):
        client = duro.Client(store)
        await client.start_orchestration("trip-ada", book_trip, Trip("ada"))
        await client.start_orchestration("trip-bob", book_trip, Trip("bob"))
        ada = await client.wait_for_orchestration("trip-ada", timeout=10, output_type=list[str])
        bob = await client.wait_for_orchestration("trip-bob", timeout=10)
    print(f"trip-ada: {ada.state.value} -> {ada.output}")
    print(f"trip-bob: {bob.state.value} -> {bob.error}")
    if ada.output != ["FL-ada", "HO-ada", "CA-ada"] or bob.error is None:
        raise SystemExit("the saga did not end as expected")
    if "NoCarsLeft" not in bob.error.message:
        raise SystemExit(f"unexpected error: {bob.error}")


if __name__ == "__main__":
    anyio.run(main)
