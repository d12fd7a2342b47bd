"""Independent requests of one batch, in flight together.

A turn's instance is its own partition, so the commits of a batch of turns (and the locks a
fetch takes on several instances, and a batch of activity completions) are separate
requests that need not wait for each other. Sent one after another, ten of them cost ten
round trips: with about 80 ms each through the test server, a runtime that took over a dead
member's instances spent most of its fail-over committing them in a row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

T = TypeVar("T")
R = TypeVar("R")

IN_FLIGHT = 8
"""Requests one batch keeps in flight at most (each is one HTTP request, or a few)."""


async def each_concurrently(
    call: Callable[[T], Awaitable[R]], items: Sequence[T], *, limit: int = IN_FLIGHT
) -> list[R]:
    """``[await call(item) for item in items]``, up to ``limit`` at a time, results in order.

    Every call runs to its end; if any raised, the first one's exception (by position) is
    raised then, as the loop would have raised it (and not as an exception group)."""
    if len(items) <= 1:
        return [await call(item) for item in items]
    results: list[R | None] = [None] * len(items)
    errors: dict[int, Exception] = {}
    in_flight = anyio.Semaphore(limit)

    async def run(index: int, item: T) -> None:
        async with in_flight:
            try:
                results[index] = await call(item)
            except Exception as exc:
                errors[index] = exc

    async with anyio.create_task_group() as tg:
        for index, item in enumerate(items):
            tg.start_soon(run, index, item)
    if errors:
        raise errors[min(errors)]
    return results  # type: ignore[return-value]  # every slot was filled
