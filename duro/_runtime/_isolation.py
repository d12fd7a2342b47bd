"""Suspect work runs alone, so a message that kills its process is not blamed on others.

Work delivered before without finishing (``delivery_count > 1``) may be what killed the last
process that ran it. Every item a process holds when it dies counts a delivery (running, or
fetched in the same batch and not started yet), so a message that crashes its worker every
time would drag the items beside it to the delivery limit too, and they would fail as poison
with it. A suspect therefore runs with nothing else held beside it: while one is held, the
worker's pool takes no new items (other workers may), the items of the suspect's own batch
are given back uncounted, and it starts once every other item has finished or gone back.
The crash that follows, if any, is its own; an innocent item runs alone on its next delivery
and completes, and the worker takes work again at once.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel

from ._pool import WorkPool


class SuspectIsolation:
    def __init__(self, pool: WorkPool[Any]) -> None:
        """``pool``: the worker's, which holds the items it runs."""
        self._pool = pool
        self._suspect_held = False

    def admit(self, suspect: bool) -> bool:
        """Whether an item may run now; False: give it back uncounted (a suspect is held)."""
        if self._suspect_held:
            return False
        if suspect:
            self._suspect_held = True
            self._pool.hold_back()
        return True

    async def alone(self) -> None:
        """For an admitted suspect: wait until it is the only item held. Items of its own
        batch get to start (and go back) first; then those running beside it finish."""
        await anyio.lowlevel.checkpoint()
        while self._pool.active > 1:  # noqa: ASYNC110 - rare (suspects only); no event for it
            await anyio.sleep(0.005)

    def done(self, suspect: bool) -> None:
        if suspect:
            self._suspect_held = False
            self._pool.go_on()
