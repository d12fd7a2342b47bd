"""Hand-over: work one side's commits make due goes straight to the other side's pool.

A batch of turn commits that schedules activities brings those activities back, locked, in
the same store round trip, for the activity pool's free slots; a batch of activity reports
brings back the turns it made due, for the turn pool's. A chain step then costs two store
transactions instead of four, and nothing waits for a wake-up. Only worth it for a store that
does the commit and the fetch in one transaction (``Provider.fetches_with_commits``); with any
other store both methods are plain commits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from .._errors import ProviderError
from ..providers import (
    ActivityCommit,
    ActivityWorkItem,
    FetchActivityRequest,
    FetchTurnRequest,
    OrchestrationWorkItem,
    Provider,
    TurnCommit,
)
from ._pool import WorkPool

C = TypeVar("C", TurnCommit, ActivityCommit)
R = TypeVar("R", FetchTurnRequest, FetchActivityRequest)
T = TypeVar("T", OrchestrationWorkItem, ActivityWorkItem)

Results = list[ProviderError | None]


class HandOver:
    """Commits for the turn dispatcher and the activity worker, with hand-over of the work
    they make due when the store supports it."""

    def __init__(
        self,
        provider: Provider,
        *,
        turns: WorkPool[OrchestrationWorkItem],
        activities: WorkPool[ActivityWorkItem],
        turn_request: FetchTurnRequest,
        activity_request: FetchActivityRequest,
    ) -> None:
        """``turn_request`` and ``activity_request`` are the receiving pools' own fetch
        requests; their ``max_items`` bounds one hand-over."""
        self._provider = provider
        self._turns = turns
        self._activities = activities
        self._turn_request = turn_request
        self._activity_request = activity_request
        self.enabled = provider.fetches_with_commits

    async def commit_turns(self, commits: Sequence[TurnCommit]) -> Results:
        """Commit turns; the activities they schedule start in the activity pool."""
        provider = self._provider
        if not self.enabled:
            return await provider.commit_turns(commits)
        return await _commit_and_hand_over(
            commits,
            self._activities,
            self._activity_request,
            provider.commit_turns,
            provider.commit_turns_and_fetch_activities,
        )

    async def complete_activities(self, commits: Sequence[ActivityCommit]) -> Results:
        """Report activities; the turns their results make due start in the turn pool."""
        provider = self._provider
        if not self.enabled:
            return await provider.complete_activities(commits)
        return await _commit_and_hand_over(
            commits,
            self._turns,
            self._turn_request,
            provider.complete_activities,
            provider.complete_activities_and_fetch_turns,
        )


async def _commit_and_hand_over(
    commits: Sequence[C],
    pool: WorkPool[T],
    request: R,
    plain: Callable[[Sequence[C]], Awaitable[Results]],
    combined: Callable[[Sequence[C], R], Awaitable[tuple[Results, list[T]]]],
) -> Results:
    """``combined`` when ``pool`` has free slots (its items start there), else ``plain``."""
    slots = pool.try_reserve(request.max_items)
    if slots == 0:
        return await plain(commits)
    try:
        results, items = await combined(
            commits, dataclasses.replace(request, max_items=slots, poll_timeout=0.0)
        )
    except BaseException:
        pool.release(slots, lent=True)
        raise
    for item in items:
        pool.start(item, lent=True)
    pool.release(slots - len(items), lent=True)
    return results
