"""Runtime tuning knobs."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from .._engine import DEFAULT_MAX_HISTORY_EVENTS
from ..providers import TagFilter


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeOptions:
    """How a ``Runtime`` runs. All durations are seconds."""

    orchestration_concurrency: int = 16
    """Turns processed at once. Each is short CPU work plus one commit; turns waiting on the
    store do not use the CPU, and more of them make bigger group commits."""
    activity_concurrency: int = 16
    """Activities run at once (plain ``def`` activities use worker threads)."""
    orchestration_fetch_batch: int = 16
    """Most instances locked in one fetch (never more than free turn slots)."""
    orchestration_lock_timeout: float = 5.0
    """A turn's lock is renewed every third of this while the turn runs. After a crash,
    another runtime takes the work over within this (plus a poll)."""
    activity_lock_timeout: float = 5.0
    """An activity's lock is renewed every third of this while it runs, so it may run
    longer; after a crash, another runtime takes the item over within this."""
    activity_fetch_batch: int = 32
    """Most work items taken from the store in one fetch (never more than free slots)."""
    poll_timeout: float = 1.0
    """How long one fetch may long-poll; wake-ups within the process are immediate."""
    idle_backoff_min: float = 0.01
    idle_backoff_max: float = 1.0
    """Back-off between empty polls of a store that does not long-poll."""
    max_deliveries: int = 10
    """Deliveries of one message before it is treated as poison and the instance fails."""
    shutdown_grace_period: float = 10.0
    """On exit, how long in-flight turns and activities may finish before they are cancelled."""
    activity_cancellation_grace: float = 5.0
    """After signalling cancellation, how long an async activity may run before it is cancelled."""
    execution_cache_size: int = 10_000
    """Live executions kept between turns so a turn does not replay history (0: none)."""
    idle_execution_cache_size: int = 100
    """Of those, how many may be idle: waiting only for an event, a mailbox message or a
    timer more than a minute away. An idle instance may wait for days; dropped from memory,
    it is replayed from its history when it wakes. This bounds memory however many
    instances wait (each cached one costs several KB)."""
    commit_retries: int = 5
    tune_gc: bool = True
    """While the runtime runs, raise the garbage collector's thresholds so full collections
    (40-90 ms pauses with many live executions) become rare. Only CPython's defaults are
    replaced (a host's own settings are left alone), and they come back when the last
    runtime in the process stops."""
    max_history_events: int = DEFAULT_MAX_HISTORY_EVENTS
    """Events one execution may record (50,000 by default). A turn that takes an execution
    past it ends the execution as FAILED (``error_type`` "HistoryLimitExceeded", naming the
    limit), committed whole; an execution that grows without end should ``continue_as_new``."""
    worker_id: str = field(default_factory=_default_worker_id)
    """Identity used for locks and session ownership; unique among live processes. A stable
    one (a pod or host name, say) lets a restarted process take back its crashed
    predecessor's work at once instead of after the locks expire."""
    tag_filter: TagFilter = field(default_factory=TagFilter)
    session_lock_timeout: float = 30.0
    session_idle_timeout: float = 300.0
    max_sessions: int = 10
    tracer_provider: TracerProvider | None = field(default=None, compare=False)
    """Where spans go; None: OpenTelemetry's global provider, looked up on every turn and
    activity, so one installed after the runtime started is used (none installed: no spans)."""
    meter_provider: MeterProvider | None = field(default=None, compare=False)
    """Where the ``duro`` meter's measurements go; None: the global provider, as above."""
    queue_depth_interval: float = 15.0
    """How often the runtime reads the store's queue depths for the ``duro.queue.depth``
    gauge, while a meter provider is installed (0: never; each read is a few queries)."""

    def __post_init__(self) -> None:
        if self.orchestration_concurrency < 0 or self.activity_concurrency < 0:
            raise ValueError("concurrency cannot be negative")
        if self.orchestration_lock_timeout <= 0 or self.activity_lock_timeout <= 0:
            raise ValueError("lock timeouts must be positive")
        if self.max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        if self.execution_cache_size < 0 or self.idle_execution_cache_size < 0:
            raise ValueError("cache sizes cannot be negative")
        if self.max_history_events < 10:
            raise ValueError(
                f"max_history_events must be at least 10, got {self.max_history_events}"
            )
        if self.queue_depth_interval < 0:
            raise ValueError("queue_depth_interval cannot be negative")
