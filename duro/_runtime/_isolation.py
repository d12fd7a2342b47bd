"""Suspect work runs alone, so a message that kills its process is not blamed on others.

Work delivered before without finishing (``delivery_count > 1``) may be what killed the last
process that ran it. Every item a process holds when it dies counts a delivery (running, or
fetched in the same batch and not started yet), so a message that crashes its worker every
time would drag the items beside it to the delivery limit too, and they would fail as poison
with it. A suspect therefore runs with nothing else held beside it: while one is held, other
items this worker gets are given back uncounted, and it starts once every other item has
finished or gone back. The crash that follows, if any, is its own; an innocent item runs
alone on its next delivery and completes.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel


class SuspectIsolation:
    def __init__(self, held: Callable[[], int]) -> None:
        """``held``: how many items the worker holds now (started and not finished)."""
        self._held = held
        self._suspect_held = False

    def admit(self, suspect: bool) -> bool:
        """Whether an item may run now; False: give it back uncounted (a suspect is held)."""
        if self._suspect_held:
            return False
        self._suspect_held = suspect
        return True

    async def alone(self) -> None:
        """For an admitted suspect: wait until it is the only item held. Items of its own
        batch get to start (and go back) first; then those running beside it finish."""
        await anyio.lowlevel.checkpoint()
        while self._held() > 1:  # noqa: ASYNC110 - rare (suspects only); the pool has no event
            await anyio.sleep(0.005)

    def done(self, suspect: bool) -> None:
        if suspect:
            self._suspect_held = False
