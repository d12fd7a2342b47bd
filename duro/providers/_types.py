"""Input and output objects of the provider contract (one input object per operation)."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .._history import HistoryEvent
from .._messages import (
    ActivityTask,
    AnyOrchestratorMessage,
    ScheduledMessage,
    StartOrchestrationMessage,
)
from .._records import InstanceRecord, KvChange, KvEntry, TurnChanges
from .._status import ExecutionStatus, State

IfExists = Literal["fail", "use_existing", "restart_if_finished"]
"""What a start does when its instance exists (pending, running or finished):

* ``"fail"``: raise ``InstanceAlreadyExistsError``, enqueue nothing;
* ``"use_existing"``: leave the instance as it is (its messages are still enqueued);
* ``"restart_if_finished"``: a COMPLETED or FAILED instance starts again as its next execution
  (history of the earlier ones kept, KV and custom status cleared); a pending or running one
  raises ``InstanceAlreadyExistsError``.
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartRequest:
    """Start an instance, atomically with messages for it (``Provider.start_instance``)."""

    start: StartOrchestrationMessage
    if_exists: IfExists = "fail"
    messages: Sequence[AnyOrchestratorMessage] = ()
    """Messages for the same instance, enqueued (visible now) right after the start, in this
    order, whether the start was enqueued or the instance existed; nothing is enqueued when
    the call raises."""


class StartOutcome(enum.Enum):
    """What ``Provider.start_instance`` did."""

    STARTED = "started"
    """The instance did not exist: its start is queued (it reads as PENDING)."""
    EXISTING = "existing"
    """It existed and was left as it is (``if_exists="use_existing"``)."""
    RESTARTED = "restarted"
    """It had finished; its next execution's start is queued (it reads as PENDING, with the
    finished execution's id, until that start is processed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchTurnRequest:
    lock_timeout: float
    """Seconds the instance lock lasts unless renewed."""
    poll_timeout: float = 0.0
    """Seconds a long-polling store may wait for work before returning None."""
    owner_id: str = ""
    """Who takes the lock (for diagnostics)."""
    max_items: int = 1
    """``fetch_turns`` locks up to this many instances in one round trip."""
    cached_histories: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Instances whose history the caller holds in memory: ``(execution_id, event count)``.
    When the locked instance's current execution and count match, the store may skip loading
    history and KV and set ``OrchestrationWorkItem.history_omitted`` (optional optimisation)."""
    skip_instances: Collection[str] = ()
    """Instances the caller leaves to other workers for now (it lacks their code, during a
    rolling deployment): the store locks none of them, so the others get them first. Read at
    every fetch; usually empty."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationWorkItem:
    """One locked batch for one instance: its current history plus every visible message."""

    instance_id: str
    lock_token: str
    execution_id: int
    """Current execution (0 when the instance has no committed turn yet)."""
    instance: InstanceRecord | None
    """None until the instance's first commit."""
    history: list[HistoryEvent]
    messages: list[AnyOrchestratorMessage]
    """Visible messages at fetch time, in the order they became visible (visible-at time,
    then enqueue order)."""
    delivery_count: int
    """Highest delivery count over ``messages`` (1 on the first delivery)."""
    kv_snapshot: dict[str, KvEntry] = field(default_factory=dict)
    """KV as of the end of the previous execution (this execution's writes replay on top)."""
    history_error: str | None = None
    """Set (with an empty history) when stored events could not be decoded."""
    history_omitted: bool = False
    """True when ``history`` and ``kv_snapshot`` were left empty because the caller's cached
    copy (``FetchTurnRequest.cached_histories``) matched the stored execution and count."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnCommit:
    """One turn to commit: the engine's changes, under the lock its batch was fetched with."""

    lock_token: str
    changes: TurnChanges


@dataclass(frozen=True, slots=True, kw_only=True)
class AbandonRequest:
    lock_token: str
    delay: float | None = None
    """Seconds before the messages become visible again."""
    undo_delivery_count: bool = False
    """Undo this delivery's attempt increment (it was not the message's fault)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewRequest:
    lock_token: str
    extend_for: float
    heartbeat_details: bytes | None = None
    """Activity locks only: JSON the activity last passed to ``heartbeat``, to keep in the work
    item's ``task.heartbeat_details`` for its next delivery (None: leave it as it is)."""
    instance_id: str = ""
    """The work item's instance, for a store's payload codec (set with ``heartbeat_details``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TagFilter:
    """Which activity tags a worker runs. The default runs untagged activities only."""

    tags: frozenset[str] = frozenset()
    include_untagged: bool = True
    any_tag: bool = False

    def accepts(self, tag: str | None) -> bool:
        """Whether a worker with this filter runs an activity tagged ``tag`` (None: untagged)."""
        if self.any_tag:
            return True
        if tag is None:
            return self.include_untagged
        return tag in self.tags

    @classmethod
    def any(cls) -> TagFilter:
        """A filter that accepts every tag, and untagged activities."""
        return cls(any_tag=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchActivityRequest:
    lock_timeout: float
    poll_timeout: float = 0.0
    owner_id: str = ""
    """Who takes the locks (diagnostics; a store may release them when that owner restarts,
    see ``Provider.runtime_started``)."""
    tag_filter: TagFilter = TagFilter()
    session_owner: str | None = None
    """None: only activities without a session. Otherwise also sessions owned by this owner
    or with no live owner (claimed atomically for ``session_lock_timeout``)."""
    session_lock_timeout: float = 30.0
    max_items: int = 1
    """``fetch_activities`` locks up to this many items in one round trip."""
    skip_activities: Collection[tuple[str, int, int]] = ()
    """Activities the caller leaves to other workers for now (it lacks their code), as
    ``(instance_id, execution_id, seq)``: the store locks none of them. Read at every fetch;
    usually empty."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityWorkItem:
    lock_token: str
    task: ActivityTask
    delivery_count: int
    """Delivery count of this work item (1 on first delivery)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityCommit:
    lock_token: str
    result: ScheduledMessage | None
    """The completion to enqueue for the orchestration, or None to drop the item."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRenewal:
    owner_ids: Sequence[str]
    extend_for: float
    idle_timeout: float


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceQuery:
    states: frozenset[State] | None = None
    name: str | None = None
    parent_instance_id: str | None = None
    created_after_ms: int | None = None
    created_before_ms: int | None = None
    instance_id_prefix: str | None = None
    """Only instances whose id starts with this text (case-sensitive)."""
    completed_before_ms: int | None = None
    """Only instances that finished (completed or failed) before this time."""
    min_execution_id: int | None = None
    """Only instances whose current execution id is at least this (2: instances that
    continued as new or were restarted at least once)."""
    limit: int = 100
    continuation: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionRecord:
    """One stored execution of an instance (``Provider.read_executions``)."""

    execution_id: int
    status: ExecutionStatus
    started_at_ms: int
    """When its first turn committed."""
    completed_at_ms: int | None = None
    """When it ended (completed, failed or continued as new); None while it runs."""
    event_count: int = 0
    """Events in its history."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstancePage:
    instances: list[InstanceRecord]
    continuation: str | None = None
    """Pass back in ``InstanceQuery.continuation`` for the next page; None when done."""


LISTED_STATES = (State.PENDING, State.RUNNING, State.COMPLETED, State.FAILED)
"""Every state an instance in a store can be in (``NOT_FOUND`` is no instance)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceCountQuery:
    """What ``Provider.count_instances`` counts: every instance, by state."""

    at_most: int = 10_000
    """Count each state up to this many and no further: a count that would pass it reads
    ``at_most`` and the state is in ``InstanceCounts.capped``. It bounds what a count costs in a
    store of any size; a store that counts exactly at no extra cost may ignore it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceCounts:
    """How many instances a store holds in each state (``Provider.count_instances``)."""

    counts: Mapping[State, int]
    """Instances per state, for every state but ``NOT_FOUND``."""
    capped: frozenset[State] = frozenset()
    """States that hold more instances than their count says (``InstanceCountQuery.at_most``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRequest:
    instance_id: str
    force: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteResult:
    instances_deleted: int = 0
    executions_deleted: int = 0
    events_deleted: int = 0
    messages_deleted: int = 0
    """Orchestrator-queue messages plus worker-queue items."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneRequest:
    instance_id: str
    keep_last: int = 1
    """Executions to keep, counting the current one (always kept)."""
    completed_before_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneResult:
    executions_deleted: int = 0
    events_deleted: int = 0


ANY_INSTANCE = "*"
"""An ``InstanceNotice.instance_id`` that stands for every instance (never a valid id)."""


@dataclass(frozen=True, slots=True)
class InstanceNotice:
    """Word that a turn of ``instance_id`` committed in another process (see
    ``Provider.instance_notices``); ``ended``: it completed or failed the instance.

    ``instance_id`` ``"*"`` (``ANY_INSTANCE``): word about some instances was lost, so every
    waiter should read its instance again."""

    instance_id: str
    ended: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueDepths:
    orchestrator: int = 0
    """Visible, unlocked orchestrator-queue messages."""
    timers: int = 0
    """Orchestrator-queue messages not yet visible (timers, delayed retries)."""
    worker: int = 0
    """Visible, unlocked worker-queue items."""
    locked: int = 0
    """Messages and items currently locked by a turn or an activity."""
    next_due_ms: int | None = None
    """When the earliest message or item that is not visible yet (a timer, a delayed retry)
    becomes visible, in the store's clock; None when there is none, or when the store does not
    compute it (optional: ``duro.testing.WorkflowEnvironment`` needs it to skip time)."""


__all__ = [
    "AbandonRequest",
    "ActivityCommit",
    "ActivityWorkItem",
    "DeleteRequest",
    "DeleteResult",
    "ExecutionRecord",
    "ExecutionStatus",
    "FetchActivityRequest",
    "FetchTurnRequest",
    "IfExists",
    "InstanceCountQuery",
    "InstanceCounts",
    "InstancePage",
    "InstanceQuery",
    "InstanceRecord",
    "KvChange",
    "KvEntry",
    "OrchestrationWorkItem",
    "PruneRequest",
    "PruneResult",
    "QueueDepths",
    "RenewRequest",
    "ScheduledMessage",
    "SessionRenewal",
    "StartOrchestrationMessage",
    "StartOutcome",
    "StartRequest",
    "TagFilter",
    "TurnChanges",
    "TurnCommit",
]
