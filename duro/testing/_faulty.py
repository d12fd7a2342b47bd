"""``FaultyProvider``: any provider, with failures injected where a test says.

A store fails in a handful of ways the runtime must survive: it refuses a call it could have
served later (throttling, a busy file), refuses one for good, answers slowly, stops answering
for a while, or does the work and loses the answer. Each is a rule::

    store = FaultyProvider(SqliteProvider(path), seed=7)
    store.inject(Fault.retryable(), "commit_turns", probability=0.2)
    store.inject(Fault.lost_response(), "complete_activities", times=3)
    store.inject(Fault.latency(0.05))                    # every operation
    store.inject(Fault.stall(), "fetch_activities")      # until store.resume()

Rules apply in the order added; each call meets at most one failure (delays add up).
``store.injected`` counts what was injected, by operation and kind; ``store.clear()`` removes
every rule and resumes stalled calls. Randomness comes from ``seed``, so a failing run can be
replayed.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

import anyio

from .._errors import ProviderError
from .._history import HistoryEvent
from .._messages import StartOrchestrationMessage
from ..providers import (
    AbandonRequest,
    ActivityCommit,
    ActivityWorkItem,
    DeleteRequest,
    DeleteResult,
    ExecutionRecord,
    FetchActivityRequest,
    FetchTurnRequest,
    InstanceCountQuery,
    InstanceCounts,
    InstanceNotice,
    InstancePage,
    InstanceQuery,
    InstanceRecord,
    KvEntry,
    OrchestrationWorkItem,
    Provider,
    PruneRequest,
    PruneResult,
    QueueDepths,
    RenewRequest,
    ScheduledMessage,
    SessionRenewal,
    StartOutcome,
    StartRequest,
    TurnCommit,
)

T = TypeVar("T")


class FaultKind(Enum):
    """How an injected fault fails a call."""

    RETRYABLE = "retryable"
    """The call fails with a retryable ``ProviderError`` and does nothing."""
    PERMANENT = "permanent"
    """The call fails with a permanent ``ProviderError`` and does nothing."""
    LATENCY = "latency"
    """The call waits ``seconds`` first, then runs."""
    STALL = "stall"
    """The call waits until ``FaultyProvider.resume()`` (or ``clear()``), then runs."""
    LOST_RESPONSE = "lost_response"
    """The call runs, then fails with a retryable error: the caller cannot tell it worked."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One way to fail a store call; build it with the class methods."""

    kind: FaultKind
    seconds: float = 0.0

    @classmethod
    def retryable(cls) -> Fault:
        """Fail with a retryable ``ProviderError`` (throttling, a busy file); do nothing."""
        return cls(FaultKind.RETRYABLE)

    @classmethod
    def permanent(cls) -> Fault:
        """Fail with a permanent ``ProviderError``; do nothing."""
        return cls(FaultKind.PERMANENT)

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        """Wait ``seconds``, then run the call."""
        if not seconds >= 0:
            raise ValueError(f"latency must be a non-negative number of seconds, got {seconds}")
        return cls(FaultKind.LATENCY, seconds)

    @classmethod
    def stall(cls) -> Fault:
        """Hang until ``FaultyProvider.resume()``, then run the call."""
        return cls(FaultKind.STALL)

    @classmethod
    def lost_response(cls) -> Fault:
        """Run the call, then fail with a retryable error as if its answer was lost."""
        return cls(FaultKind.LOST_RESPONSE)


@dataclass(slots=True)
class _Rule:
    fault: Fault
    operations: frozenset[str] | None
    probability: float
    remaining: int | None

    def matches(self, operation: str) -> bool:
        return self.operations is None or operation in self.operations


OPERATIONS = frozenset(
    {
        "start_orchestration", "start_instance", "enqueue_orchestrator_message", "fetch_turns",
        "commit_turns", "abandon_turn", "renew_turn_lock", "fetch_activities",
        "complete_activities", "abandon_activity", "renew_activity_lock", "renew_sessions",
        "cleanup_orphaned_sessions", "read_instance", "read_history", "list_executions",
        "read_executions", "get_kv_value", "get_kv_items", "get_kv_snapshot", "list_instances",
        "count_instances", "list_children",
        "delete_instance", "prune_executions", "queue_depths", "maintain",
    }
)  # fmt: skip
"""Operations a rule can name: every store call the runtime and the client make."""


class InjectedFault(ProviderError):
    """A failure ``FaultyProvider`` made up (``retryable`` as the rule said)."""


class FaultyProvider(Provider):
    """Wraps ``inner``; every operation passes through the injected rules first.

    Commits and fetches always go separately (``fetches_with_commits`` is off), so each can
    fail on its own."""

    def __init__(self, inner: Provider, *, seed: int = 0) -> None:
        self.inner = inner
        self.name = f"faulty({inner.name})"
        self.injected: Counter[tuple[str, FaultKind]] = Counter()
        self._rules: list[_Rule] = []
        self._random = random.Random(seed)
        self._resumed = anyio.Event()

    def inject(
        self,
        fault: Fault,
        *operations: str,
        probability: float = 1.0,
        times: int | None = None,
    ) -> None:
        """Apply ``fault`` to ``operations`` (all if none) with ``probability``, at most
        ``times`` times (forever if None)."""
        unknown = set(operations) - OPERATIONS
        if unknown:
            raise ValueError(f"unknown provider operation(s): {', '.join(sorted(unknown))}")
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {probability}")
        if times is not None and times < 0:
            raise ValueError(f"times cannot be negative, got {times}")
        scope = frozenset(operations) if operations else None
        self._rules.append(_Rule(fault, scope, probability, times))

    def resume(self) -> None:
        """Remove every stall rule and let the stalled calls through."""
        self._rules = [rule for rule in self._rules if rule.fault.kind is not FaultKind.STALL]
        self._resumed.set()
        self._resumed = anyio.Event()

    def clear(self) -> None:
        """Remove every rule and resume stalled calls."""
        self._rules.clear()
        self.resume()

    # -- the gate every operation passes ----------------------------------------------------

    def _draw(self, operation: str) -> list[Fault]:
        faults: list[Fault] = []
        for rule in self._rules:
            if not rule.matches(operation) or rule.remaining == 0:
                continue
            if self._random.random() >= rule.probability:
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
            faults.append(rule.fault)
            self.injected[(operation, rule.fault.kind)] += 1
            if rule.fault.kind not in (FaultKind.LATENCY, FaultKind.STALL):
                break  # one failure per call
        return faults

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        lose_response = False
        for fault in self._draw(operation):
            match fault.kind:
                case FaultKind.LATENCY:
                    await anyio.sleep(fault.seconds)
                case FaultKind.STALL:
                    await self._resumed.wait()
                case FaultKind.RETRYABLE | FaultKind.PERMANENT:
                    retryable = fault.kind is FaultKind.RETRYABLE
                    raise InjectedFault(operation, "injected failure", retryable=retryable)
                case FaultKind.LOST_RESPONSE:
                    lose_response = True
        result = await call()
        if lose_response:
            raise InjectedFault(
                operation, "injected lost response (it was applied)", retryable=True
            )
        return result

    # -- lifecycle (never faulted: a test sets up and tears down through them) ---------------

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def runtime_started(self, worker_id: str) -> None:
        await self.inner.runtime_started(worker_id)

    async def runtime_stopped(self, worker_id: str) -> None:
        await self.inner.runtime_stopped(worker_id)

    async def maintain(self) -> float | None:
        return await self._call("maintain", self.inner.maintain)

    async def instance_notices(self) -> list[InstanceNotice]:
        return await self.inner.instance_notices()  # a hint: faults would only delay waits

    # -- every other operation --------------------------------------------------------------

    async def start_orchestration(self, start: StartOrchestrationMessage) -> None:
        await self._call("start_orchestration", lambda: self.inner.start_orchestration(start))

    async def start_instance(self, request: StartRequest) -> StartOutcome:
        return await self._call("start_instance", lambda: self.inner.start_instance(request))

    async def enqueue_orchestrator_message(self, message: ScheduledMessage) -> None:
        await self._call(
            "enqueue_orchestrator_message",
            lambda: self.inner.enqueue_orchestrator_message(message),
        )

    async def fetch_turns(self, request: FetchTurnRequest) -> list[OrchestrationWorkItem]:
        return await self._call("fetch_turns", lambda: self.inner.fetch_turns(request))

    async def commit_turns(self, commits: Sequence[TurnCommit]) -> list[ProviderError | None]:
        return await self._call("commit_turns", lambda: self.inner.commit_turns(commits))

    async def abandon_turn(self, request: AbandonRequest) -> None:
        await self._call("abandon_turn", lambda: self.inner.abandon_turn(request))

    async def renew_turn_lock(self, request: RenewRequest) -> None:
        await self._call("renew_turn_lock", lambda: self.inner.renew_turn_lock(request))

    async def fetch_activities(self, request: FetchActivityRequest) -> list[ActivityWorkItem]:
        return await self._call("fetch_activities", lambda: self.inner.fetch_activities(request))

    async def complete_activities(
        self, commits: Sequence[ActivityCommit]
    ) -> list[ProviderError | None]:
        return await self._call(
            "complete_activities", lambda: self.inner.complete_activities(commits)
        )

    async def abandon_activity(self, request: AbandonRequest) -> None:
        await self._call("abandon_activity", lambda: self.inner.abandon_activity(request))

    async def renew_activity_lock(self, request: RenewRequest) -> None:
        await self._call("renew_activity_lock", lambda: self.inner.renew_activity_lock(request))

    async def renew_sessions(self, request: SessionRenewal) -> int:
        return await self._call("renew_sessions", lambda: self.inner.renew_sessions(request))

    async def cleanup_orphaned_sessions(self, idle_timeout: float) -> int:
        return await self._call(
            "cleanup_orphaned_sessions", lambda: self.inner.cleanup_orphaned_sessions(idle_timeout)
        )

    async def read_instance(self, instance_id: str) -> InstanceRecord | None:
        return await self._call("read_instance", lambda: self.inner.read_instance(instance_id))

    async def read_history(
        self, instance_id: str, execution_id: int | None = None
    ) -> list[HistoryEvent]:
        return await self._call(
            "read_history", lambda: self.inner.read_history(instance_id, execution_id)
        )

    async def list_executions(self, instance_id: str) -> list[int]:
        return await self._call("list_executions", lambda: self.inner.list_executions(instance_id))

    async def read_executions(self, instance_id: str) -> list[ExecutionRecord]:
        return await self._call("read_executions", lambda: self.inner.read_executions(instance_id))

    async def get_kv_value(self, instance_id: str, key: str) -> KvEntry | None:
        return await self._call("get_kv_value", lambda: self.inner.get_kv_value(instance_id, key))

    async def get_kv_items(self, instance_id: str) -> dict[str, KvEntry]:
        return await self._call("get_kv_items", lambda: self.inner.get_kv_items(instance_id))

    async def get_kv_snapshot(self, instance_id: str) -> dict[str, KvEntry]:
        return await self._call("get_kv_snapshot", lambda: self.inner.get_kv_snapshot(instance_id))

    async def list_instances(self, query: InstanceQuery) -> InstancePage:
        return await self._call("list_instances", lambda: self.inner.list_instances(query))

    async def count_instances(self, query: InstanceCountQuery) -> InstanceCounts:
        return await self._call("count_instances", lambda: self.inner.count_instances(query))

    async def list_children(self, instance_id: str) -> list[str]:
        return await self._call("list_children", lambda: self.inner.list_children(instance_id))

    async def delete_instance(self, request: DeleteRequest) -> DeleteResult:
        return await self._call("delete_instance", lambda: self.inner.delete_instance(request))

    async def prune_executions(self, request: PruneRequest) -> PruneResult:
        return await self._call("prune_executions", lambda: self.inner.prune_executions(request))

    async def queue_depths(self) -> QueueDepths:
        return await self._call("queue_depths", self.inner.queue_depths)
