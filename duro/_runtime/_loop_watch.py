"""Notices a blocked event loop: lock renewals, fetches and heartbeats all run on it.

Blocking calls in ``async def`` code (``time.sleep``, a synchronous HTTP client, heavy CPU)
stop every task of the runtime. Work is never lost for it (a lock nobody took over still
completes), but other workers may take the work over, so the stall is reported with advice.
"""

from __future__ import annotations

import logging
import time

import anyio

log = logging.getLogger("duro.runtime")

CHECK_EVERY = 0.25
REPORT_OVER = 1.0
"""A stall longer than this (seconds) is logged."""


async def watch_event_loop(stopping: anyio.Event) -> None:
    while not stopping.is_set():
        before = time.monotonic()
        with anyio.move_on_after(CHECK_EVERY):
            await stopping.wait()
        stalled = time.monotonic() - before - CHECK_EVERY
        if stalled > REPORT_OVER:
            log.warning(
                "the event loop was blocked for %.1f s: locks are renewed on it, so other "
                "workers may take work over. Run blocking code in a plain def activity (it "
                "gets a thread) or await anyio.to_thread.run_sync(...)",
                stalled,
            )
