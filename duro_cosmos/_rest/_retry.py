"""When to repeat a failed Cosmos DB request, and how long to wait.

Rules, in order, for a failed attempt:

1. **Ambiguous non-idempotent write.** If the failure may have applied the request (read
   timeout, dropped connection, unreadable response, 408, 5xx other than 503) and the
   request is not idempotent (create, batch, patch without If-Match), stop at once and raise
   :class:`CosmosAmbiguousWrite`. The caller resolves it by re-reading; repeating it blindly
   could apply it twice.
2. **Permanent failures** (``retryable`` false: 400, 401/403, 404, 409, 412, 413, ...) are
   raised unchanged.
3. **Throttling** (429, or a batch rolled back because an operation was throttled) waits
   exactly the server's ``x-ms-retry-after-ms`` (backoff if absent), up to
   ``max_throttle_attempts`` attempts and ``max_throttle_wait`` seconds of waiting in total.
4. **Other transient failures** (503, 449, 410, 404/1002, 403/3, connection refused, and —
   for idempotent requests only — 408, 500 and timeouts) wait an exponential backoff with
   jitter: ``min(max_delay, base_delay * 2**(n-1))``, reduced by up to ``jitter`` of itself,
   up to ``max_attempts`` attempts.

No retry starts if it would end after ``max_total_time`` seconds from the first attempt.
When the retries run out the last error is raised (still ``retryable``, so a caller further
up may try again later).

Reads, queries, upserts, replaces and deletes (with or without If-Match) are idempotent in
effect: repeating one that was applied yields the same state, or a 412/404 that the caller
must treat as "maybe mine" — such errors carry ``after_ambiguous_failure``.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio

from ._errors import CosmosAmbiguousWrite, CosmosBatchFailed, CosmosError, CosmosThrottled

__all__ = ["HttpRetryPolicy"]

T = TypeVar("T")


def _default_sleep(seconds: float) -> Awaitable[None]:
    return anyio.sleep(seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRetryPolicy:
    """Retry limits and timing; see the module docstring for the rules.

    ``sleep``, ``rng`` and ``clock`` are injectable so tests can drive the policy
    without waiting.
    """

    max_attempts: int = 6
    """Attempts (the first included) when failures are transient but not throttling."""
    max_throttle_attempts: int = 10
    """Attempts (the first included) while the service answers 429."""
    base_delay: float = 0.1
    max_delay: float = 5.0
    jitter: float = 0.5
    """Fraction of each backoff delay that is randomised away (0 = none, 1 = full jitter)."""
    max_throttle_wait: float = 30.0
    """Cumulative seconds spent waiting on 429s before giving up."""
    max_total_time: float = 60.0
    """No retry starts if it would end later than this many seconds after the first attempt."""
    sleep: Callable[[float], Awaitable[None]] = field(
        default=_default_sleep, compare=False, repr=False
    )
    rng: Callable[[], float] = field(default=_random.random, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_throttle_attempts < 1:
            raise ValueError("max_attempts and max_throttle_attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.max_throttle_wait, self.max_total_time) < 0:
            raise ValueError("delays and time caps cannot be negative")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")

    @classmethod
    def never(cls) -> HttpRetryPolicy:
        """One attempt only (ambiguous writes are still reported as such)."""
        return cls(max_attempts=1, max_throttle_attempts=1)

    def backoff(self, retry_number: int) -> float:
        """Delay before retry ``retry_number`` (1-based), jitter applied."""
        delay = min(self.max_delay, self.base_delay * 2.0 ** max(retry_number - 1, 0))
        return delay * (1.0 - self.jitter * self.rng())

    async def run(
        self,
        operation: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        idempotent: bool,
        on_retry: Callable[[CosmosError, float], None] | None = None,
    ) -> T:
        """Call ``attempt`` until it succeeds or the rules say stop.

        ``attempt`` performs one request and raises only :class:`CosmosError`.
        """
        start = self.clock()
        transient = 0
        throttled = 0
        throttle_wait = 0.0
        ambiguous_seen = False
        while True:
            try:
                return await attempt()
            except CosmosError as exc:
                if ambiguous_seen:
                    exc.after_ambiguous_failure = True
                if exc.may_have_applied and not idempotent:
                    ambiguous = CosmosAmbiguousWrite(operation, exc)
                    ambiguous.after_ambiguous_failure = ambiguous_seen
                    raise ambiguous from exc
                if not exc.retryable:
                    raise
                if _is_throttle(exc):
                    throttled += 1
                    if throttled >= self.max_throttle_attempts:
                        raise
                    hint = getattr(exc, "retry_after", None)
                    delay = hint if hint is not None else self.backoff(throttled)
                    if throttle_wait + delay > self.max_throttle_wait:
                        raise
                    throttle_wait += delay
                else:
                    transient += 1
                    if transient >= self.max_attempts:
                        raise
                    delay = self.backoff(transient)
                if self.clock() - start + delay > self.max_total_time:
                    raise
                ambiguous_seen = ambiguous_seen or exc.may_have_applied
                if on_retry is not None:
                    on_retry(exc, delay)
                await self.sleep(delay)


def _is_throttle(exc: CosmosError) -> bool:
    if isinstance(exc, CosmosThrottled):
        return True
    return isinstance(exc, CosmosBatchFailed) and exc.failed_status == 429
