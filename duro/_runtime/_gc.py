"""Garbage-collector thresholds for a process that runs duro: rare, short collection pauses.

CPython's cycle collector runs a full collection (every generation) after enough
allocations; with thousands of live executions, histories and coroutines that pause is
40-90 ms, and every turn and activity in the process waits through it. While at least one
runtime runs (with ``RuntimeOptions.tune_gc``), the thresholds are raised: young
collections are rarer and full ones about a hundred times rarer. Cyclic garbage lives a
little longer; reference counting still frees everything else at once.

``gc.freeze()`` would shorten full collections further, but it hides frozen objects from
``gc.get_referrers``, which other libraries rely on (Hypothesis does), so it is left to hosts.
A host that has set its own thresholds keeps them: only CPython's defaults are replaced, and
they come back when the last runtime stops.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

PYTHON_DEFAULTS = (700, 10, 10)
TUNED = (10_000, 50, 100)

_lock = threading.Lock()
_runtimes = 0
_replaced = False


@contextmanager
def tuned_gc() -> Iterator[None]:
    """Raise the collector's thresholds while the block runs (uses are counted)."""
    global _runtimes, _replaced
    with _lock:
        _runtimes += 1
        if _runtimes == 1 and gc.get_threshold() == PYTHON_DEFAULTS:
            gc.set_threshold(*TUNED)
            _replaced = True
    try:
        yield
    finally:
        with _lock:
            _runtimes -= 1
            if _runtimes == 0 and _replaced:
                if gc.get_threshold() == TUNED:  # unless the host changed them meanwhile
                    gc.set_threshold(*PYTHON_DEFAULTS)
                _replaced = False
