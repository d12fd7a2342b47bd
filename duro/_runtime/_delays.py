"""How long work the runtime puts back waits before it is offered again, in seconds.

One place for these, so the policy reads as a whole. A put-back that is not the work's fault
(a deferral, a shutdown) does not count as a delivery; the others do, so work that keeps
failing ends as poison after ``RuntimeOptions.max_deliveries``.
"""

from __future__ import annotations

from .._engine import DeferReason

DEFERRED: dict[DeferReason, float] = {
    DeferReason.NOT_STARTED: 5.0,
    # Fetch again at once, this time with the history.
    DeferReason.CACHE_EVICTED: 0.0,
}
"""A batch the engine deferred, by reason (no delivery counted); ``NOT_REGISTERED`` waits
:func:`not_registered` instead."""


def not_registered(deliveries: int) -> float:
    """Work whose code this worker lacks (a rolling deployment): how long this worker leaves
    it to others (see ``_handoff``), 1 s doubling to a minute per look, so a workflow nobody
    can run fails after ``max_deliveries`` looks (about four minutes with the default 10)."""
    return float(min(60, 2 ** max(0, deliveries - 1)))


HANDED_OFF = 0.0
"""Work whose code this worker lacks goes back visible at once (no delivery counted): the
workers that have the code may take it while this one skips it."""


ISOLATED = 0.0
"""Work given back because a suspect item runs alone (see ``_isolation``), no delivery
counted: offered at once, to other workers, since this one takes nothing new meanwhile."""

UNSTARTED = 0.0
"""Work fetched as shutdown began, released for another runtime (no delivery counted)."""

REFETCHED_AFTER_LOCK_LOST = 0.0
"""An activity run cancelled for a lost lock that this worker then fetched again: offered
again at once (the refetch counted the delivery)."""

ENGINE_CRASHED = 5.0
"""A turn whose engine run raised (a duro bug): retried later, counted."""

COMMIT_FAILED = 1.0
"""A turn whose commit failed for good after its retries, counted."""

REPORT_FAILED = 1.0
"""An activity whose result could not be reported after its retries, counted."""

STORE_OUTAGE_FIRST = 0.1
STORE_OUTAGE_MAX = 5.0
"""A finished turn or activity result the store keeps refusing with a retryable error (a
full disk, throttling, an outage) is kept and offered again after this back-off, doubling
from the first value to the second, for as long as the runtime runs: it is never dropped
to be computed again."""
