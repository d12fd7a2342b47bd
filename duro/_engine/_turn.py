"""One turn, start to finish: pick or rebuild the execution, feed it, and collect the changes.

``run_turn`` is the engine's single entry point: ``(history, messages, now) -> TurnDecision``.
It never raises for user errors; those become a failed outcome in the changes it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._errors import InstanceAlreadyExistsError, NondeterminismError, UnregisteredError
from .._history import (
    NULL,
    ExecutionRewound,
    HistoryEvent,
    OrchestrationCompleted,
    OrchestrationFailed,
    OrchestrationStarted,
    ParentRef,
    undone_event_ids,
)
from .._messages import (
    AnyOrchestratorMessage,
    ContinueAsNewMessage,
    RewindOrchestrationMessage,
    ScheduledMessage,
    StartOrchestrationMessage,
    SubOrchestrationResultMessage,
)
from .._records import InstanceRecord, KvEntry, TurnChanges
from .._registry import Registered, Registry
from .._status import ErrorInfo, ExecutionStatus
from ._decision import Commit, Defer, DeferReason, TurnDecision
from ._ending import report_end, report_result
from ._execution import Execution
from ._outcomes import DEFAULT_MAX_HISTORY_EVENTS, configuration_error, corrupt_history_error


@dataclass(slots=True, kw_only=True)
class TurnInput:
    instance_id: str
    execution_id: int
    """Current execution id (0: no turn committed yet)."""
    execution_status: ExecutionStatus | None
    history: list[HistoryEvent]
    messages: list[AnyOrchestratorMessage]
    now_ms: int
    kv_snapshot: dict[str, KvEntry] = field(default_factory=dict)
    record: InstanceRecord | None = None
    """The stored record: a turn that changes nothing repeats its name, version and result."""
    final_delivery: bool = False
    """No later delivery will come (the messages used up their deliveries): an orchestration
    this worker does not have fails the instance instead of being deferred for another."""
    max_history_events: int = DEFAULT_MAX_HISTORY_EVENTS
    """An execution whose history grows past this fails (``HistoryLimitExceeded``)."""


def run_turn(registry: Registry, work: TurnInput, cached: Execution | None = None) -> TurnDecision:
    """Process one locked batch of messages for one instance."""
    status = work.execution_status
    history = work.history
    if work.execution_id == 0 or status is None:
        # No execution, or a finished one being restarted (the store queued a start and shows
        # the record as pending): the start opens the next execution.
        start = next((m for m in work.messages if isinstance(m, StartOrchestrationMessage)), None)
        if start is None:
            return Defer(
                DeferReason.NOT_STARTED, "no start message for an instance that does not exist"
            )
        return _new_execution(
            registry, work, work.execution_id + 1, start, start.parent, [], start.version
        )
    if status.is_terminal:
        rewind = next((m for m in work.messages if isinstance(m, RewindOrchestrationMessage)), None)
        if rewind is not None and status is ExecutionStatus.FAILED:
            return _rewind(registry, work, rewind)
        if status is ExecutionStatus.CONTINUED_AS_NEW:
            cont = next(
                (
                    m
                    for m in work.messages
                    if isinstance(m, ContinueAsNewMessage)
                    and m.execution_id == work.execution_id + 1
                ),
                None,
            )
            if cont is not None:
                return _new_execution(
                    registry,
                    work,
                    cont.execution_id,
                    cont,
                    cont.parent,
                    list(cont.carried_events),
                    cont.version,
                )
        return _finished(work, history)
    return _continue(registry, work, cached)


def _resolve(
    registry: Registry, name: str, version: str | None, *, final: bool
) -> tuple[Registered | None, ErrorInfo | Defer | None]:
    """The orchestration to run, or why there is none: a reason to defer, or (on the
    ``final`` delivery) a failure."""
    orchestration = registry.get_orchestration(name, version)
    if orchestration is not None:
        return orchestration, None
    if final:
        return None, configuration_error(UnregisteredError("orchestration", name, version))
    # During a rolling deployment another worker may have it (a newer name or version).
    what = f"version {version!r} of {name!r}" if registry.has_orchestration(name) else repr(name)
    return None, Defer(DeferReason.NOT_REGISTERED, f"orchestration {what} is not registered here")


def _new_execution(
    registry: Registry,
    work: TurnInput,
    execution_id: int,
    start: StartOrchestrationMessage | ContinueAsNewMessage,
    parent: ParentRef | None,
    carried: list[object],
    version: str | None,
) -> TurnDecision:
    orchestration, problem = _resolve(registry, start.name, version, final=work.final_delivery)
    if isinstance(problem, Defer):
        return problem
    started = OrchestrationStarted(
        event_id=0,
        ts=0,
        name=start.name,
        version=orchestration.version if orchestration else (version or ""),
        input=start.input,
        parent=parent,
        carried_events=carried,  # type: ignore[arg-type]
        traceparent=start.traceparent,
        custom_status=start.custom_status if isinstance(start, ContinueAsNewMessage) else NULL,
        notify=start.notify,
    )
    restart = execution_id > 1 and isinstance(start, StartOrchestrationMessage)
    if orchestration is None:
        failed = _fail_new(work, execution_id, started, problem)  # type: ignore[arg-type]
        if restart:
            _start_afresh(failed.changes)
        return failed
    execution = Execution(
        registry=registry,
        orchestration=orchestration,
        instance_id=work.instance_id,
        execution_id=execution_id,
        kv_snapshot={} if restart else work.kv_snapshot,
        max_history_events=work.max_history_events,
    )
    execution.begin_turn(work.now_ms)
    execution.start(started)
    if restart:
        _start_afresh(execution.pending_changes())
    _apply(execution, work.messages, start)
    return _commit(execution)


def _start_afresh(changes: TurnChanges) -> None:
    """A restarted instance keeps none of its earlier executions' KV or custom status (a
    value the code sets in this very turn still applies: stores clear before they write)."""
    changes.kv_clear_all = True
    if not changes.custom_status_changed:
        changes.custom_status_changed = True
        changes.custom_status = None


def _fail_new(
    work: TurnInput, execution_id: int, started: OrchestrationStarted, error: ErrorInfo
) -> Commit:
    """Record a start and an immediate failure (unregistered name, poison on first turn)."""
    changes = TurnChanges(
        instance_id=work.instance_id,
        execution_id=execution_id,
        name=started.name,
        version=started.version,
        parent_instance_id=started.parent.instance_id if started.parent else None,
        execution_status=ExecutionStatus.FAILED,
        error=error,
        new_events=[
            OrchestrationStarted(
                event_id=1,
                ts=work.now_ms,
                name=started.name,
                version=started.version,
                input=started.input,
                parent=started.parent,
                traceparent=started.traceparent,
                notify=started.notify,
            ),
            OrchestrationFailed(event_id=2, ts=work.now_ms, error=error),
        ],
    )
    report_end(changes, started.notify, work.instance_id)
    _notify_parent(changes, started.parent, work.instance_id, error)
    return Commit(changes)


def _notify_parent(
    changes: TurnChanges, parent: ParentRef | None, instance_id: str, error: ErrorInfo
) -> None:
    if parent is not None:
        changes.orchestrator_messages.append(
            ScheduledMessage(
                message=SubOrchestrationResultMessage(
                    instance_id=parent.instance_id,
                    execution_id=parent.execution_id,
                    seq=parent.seq,
                    child_instance_id=instance_id,
                    error=error,
                )
            )
        )


def _continue(registry: Registry, work: TurnInput, cached: Execution | None) -> TurnDecision:
    history = work.history
    started = history[0] if history else None
    if not isinstance(started, OrchestrationStarted):
        return terminate(
            work, corrupt_history_error("history does not begin with OrchestrationStarted")
        )
    replayed = 0
    if (
        cached is not None
        and cached.execution_id == work.execution_id
        and len(cached.history) == len(history)
        and not cached.is_terminal
    ):
        execution = cached
        execution.begin_turn(work.now_ms)
    else:
        replayed = len(history)
        orchestration, problem = _resolve(
            registry, started.name, started.version, final=work.final_delivery
        )
        if orchestration is None:
            if isinstance(problem, Defer):
                return problem
            return terminate(work, problem)  # type: ignore[arg-type]
        execution = Execution(
            registry=registry,
            orchestration=orchestration,
            instance_id=work.instance_id,
            execution_id=work.execution_id,
            kv_snapshot=work.kv_snapshot,
            max_history_events=work.max_history_events,
        )
        try:
            execution.replay_history(history)
            execution.end_replay(work.now_ms)
        except NondeterminismError as exc:
            execution.abort_replay(history, configuration_error(exc), work.now_ms)
            return _commit(execution, replayed=replayed)
    _apply(execution, work.messages, None)
    return _commit(execution, replayed=replayed)


def _rewind(
    registry: Registry, work: TurnInput, message: RewindOrchestrationMessage
) -> TurnDecision:
    """Take a FAILED execution back to before the event that made its code fail (decision
    0009): that event through the end are undone, the execution runs on from there in this
    turn, and the steps open at that point run again. A failure the code did not cause
    (poison, a history limit) undoes the ending alone."""
    history = work.history
    started = history[0] if history else None
    ending = history[-1] if history else None
    if not isinstance(started, OrchestrationStarted) or not isinstance(ending, OrchestrationFailed):
        return _finished(work, history)
    orchestration, problem = _resolve(
        registry, started.name, started.version, final=work.final_delivery
    )
    if isinstance(problem, Defer):
        return problem
    if orchestration is None:
        return _finished(work, history)  # nothing can run it: the instance stays failed
    first = _failing_event(registry, orchestration, work, history[:-1]) or ending.event_id
    undone = frozenset(range(first, ending.event_id + 1))
    execution = Execution(
        registry=registry,
        orchestration=orchestration,
        instance_id=work.instance_id,
        execution_id=work.execution_id,
        kv_snapshot=work.kv_snapshot,
        max_history_events=work.max_history_events,
    )
    try:
        execution.replay_history(history, undone)
        execution.end_replay(work.now_ms)
    except NondeterminismError as exc:
        execution.abort_replay(history, configuration_error(exc), work.now_ms)
        return _commit(execution, replayed=len(history))
    execution.reopen(
        ExecutionRewound(
            event_id=0,
            ts=0,
            undone_from=first,
            undone_through=ending.event_id,
            reason=message.reason,
        )
    )
    _apply(execution, [m for m in work.messages if m is not message], None)
    return _commit(execution, replayed=len(history))


def _failing_event(
    registry: Registry, orchestration: Registered, work: TurnInput, body: list[HistoryEvent]
) -> int | None:
    """The id of the event at which the code fails (or diverges) when ``body`` replays, or
    None if it never does there (the failure was imposed). Never the start: there is
    nothing before it to keep."""
    trial = Execution(
        registry=registry,
        orchestration=orchestration,
        instance_id=work.instance_id,
        execution_id=work.execution_id,
        kv_snapshot=work.kv_snapshot,
    )
    skipped = undone_event_ids(body)
    try:
        for event in body:
            if event.event_id in skipped or isinstance(event, ExecutionRewound):
                trial.replay_history([event], frozenset({event.event_id}))
                continue
            try:
                trial.replay_event(event)
            except NondeterminismError:
                return event.event_id if event.event_id > 1 else None
            if trial.is_terminal:
                return event.event_id if event.event_id > 1 else None
        return None
    finally:
        trial.discard()


def _apply(
    execution: Execution,
    messages: list[AnyOrchestratorMessage],
    start: StartOrchestrationMessage | ContinueAsNewMessage | None,
) -> None:
    for message in messages:
        if message is start or isinstance(message, ContinueAsNewMessage):
            continue
        if isinstance(message, StartOrchestrationMessage):
            _reject_duplicate_start(
                execution.instance_id, message, execution.parent, execution.pending_changes()
            )
            continue
        execution.apply_message(message)


def _reject_duplicate_start(
    instance_id: str,
    message: StartOrchestrationMessage,
    own_parent: ParentRef | None,
    changes: TurnChanges,
) -> None:
    """A parent that tries to start an existing id as its child hears back, not silence."""
    if message.parent is None or message.parent == own_parent:
        return
    error = configuration_error(InstanceAlreadyExistsError(instance_id))
    _notify_parent(changes, message.parent, instance_id, error)


def _commit(execution: Execution, *, replayed: int = 0) -> Commit:
    changes = execution.finish_turn()
    return Commit(
        changes,
        execution=None if execution.is_terminal else execution,
        replayed_events=replayed,
        attempts=execution.attempts.take(),
    )


def _finished(work: TurnInput, history: list[HistoryEvent]) -> Commit:
    """Messages for a finished execution are consumed without effect."""
    started = history[0] if history and isinstance(history[0], OrchestrationStarted) else None
    record = work.record
    changes = TurnChanges(
        instance_id=work.instance_id,
        execution_id=work.execution_id,
        name=started.name if started else (record.name if record else ""),
        version=started.version if started else ((record.version or "") if record else ""),
        parent_instance_id=started.parent.instance_id if started and started.parent else None,
        execution_status=work.execution_status or ExecutionStatus.COMPLETED,
        output=record.output if record else None,
        error=record.error if record else None,
    )
    for message in work.messages:
        if isinstance(message, StartOrchestrationMessage):
            _reject_duplicate_start(
                work.instance_id, message, started.parent if started else None, changes
            )
    rewound = any(isinstance(m, RewindOrchestrationMessage) for m in work.messages)
    if rewound and started is not None and started.parent is not None:
        # A rewound parent waits for this child again: tell it how the child ended.
        ending = history[-1] if history else None
        if isinstance(ending, OrchestrationCompleted | OrchestrationFailed):
            report_result(changes, ending, started.parent, work.instance_id)
    return Commit(changes)


def terminate(work: TurnInput, error: ErrorInfo) -> Commit:
    """End the instance with ``error`` without running user code (poison, corrupt history)."""
    history = work.history
    started = history[0] if history and isinstance(history[0], OrchestrationStarted) else None
    if started is None or work.execution_status is None:
        start = next(
            (
                m
                for m in work.messages
                if isinstance(m, StartOrchestrationMessage | ContinueAsNewMessage)
            ),
            None,
        )
        name = start.name if start else "unknown"
        placeholder = OrchestrationStarted(
            event_id=0,
            ts=0,
            name=name,
            version=(start.version if start else None) or "",
            input=start.input if start else NULL,
            parent=start.parent if start else None,
            traceparent=start.traceparent if start else None,
            notify=start.notify if start else None,
        )
        execution_id = work.execution_id + 1 if work.execution_id else 1
        return _fail_new(work, execution_id, placeholder, error)
    if work.execution_status is not None and work.execution_status.is_terminal:
        return _finished(work, history)
    next_id = (history[-1].event_id if history else 0) + 1
    changes = TurnChanges(
        instance_id=work.instance_id,
        execution_id=work.execution_id,
        name=started.name,
        version=started.version,
        parent_instance_id=started.parent.instance_id if started.parent else None,
        execution_status=ExecutionStatus.FAILED,
        error=error,
        new_events=[OrchestrationFailed(event_id=next_id, ts=work.now_ms, error=error)],
    )
    report_end(changes, started.notify, work.instance_id)
    _notify_parent(changes, started.parent, work.instance_id, error)
    return Commit(changes)


__all__ = ["TurnInput", "run_turn", "terminate"]
