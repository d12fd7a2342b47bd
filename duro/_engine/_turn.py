"""One turn, start to finish: pick or rebuild the execution, feed it, and collect the result.

``run_turn`` is the engine's single entry point: ``(history, messages, now) -> TurnDecision``.
It never raises for user errors; those become a failed outcome in the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._errors import InstanceAlreadyExistsError, NondeterminismError, UnregisteredError
from .._history import (
    NULL,
    HistoryEvent,
    OrchestrationFailed,
    OrchestrationStarted,
    ParentRef,
)
from .._messages import (
    AnyOrchestratorMessage,
    ContinueAsNewMessage,
    StartOrchestrationMessage,
    SubOrchestrationResultMessage,
)
from .._registry import Registered, Registry
from .._status import ErrorCategory, ErrorInfo, ExecutionStatus
from ._execution import Execution
from ._outcomes import KvState, TurnResult, configuration_error


@dataclass(slots=True, kw_only=True)
class TurnInput:
    instance_id: str
    execution_id: int
    """Current execution id (0: no turn committed yet)."""
    execution_status: ExecutionStatus | None
    history: list[HistoryEvent]
    messages: list[AnyOrchestratorMessage]
    now_ms: int
    kv_snapshot: dict[str, KvState] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class TurnDecision:
    """Commit ``result`` as execution ``execution_id`` — or abandon when ``abandon_delay``."""

    result: TurnResult
    execution_id: int
    name: str = ""
    version: str = ""
    parent_instance_id: str | None = None
    execution: Execution | None = None
    """The live execution, worth caching when it is still running."""
    abandon_delay: float | None = None
    abandon_reason: str = ""


def _parent_of(history: list[HistoryEvent]) -> ParentRef | None:
    first = history[0] if history else None
    return first.parent if isinstance(first, OrchestrationStarted) else None


def run_turn(registry: Registry, work: TurnInput, cached: Execution | None = None) -> TurnDecision:
    """Process one locked batch of messages for one instance."""
    status = work.execution_status
    history = work.history
    if work.execution_id == 0 or status is None:
        start = next((m for m in work.messages if isinstance(m, StartOrchestrationMessage)), None)
        if start is None:
            return _drop_all(work, reason="no start message for an instance that does not exist")
        return _new_execution(registry, work, 1, start, start.parent, [], start.version)
    if status.is_terminal:
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
    registry: Registry, name: str, version: str | None
) -> tuple[Registered | None, ErrorInfo | None, bool]:
    """(orchestration, configuration error, should-abandon)."""
    orchestration = registry.get_orchestration(name, version)
    if orchestration is not None:
        return orchestration, None, False
    if registry.has_orchestration(name):
        # Known name, unknown version: another worker (newer deployment) may have it.
        return None, None, True
    return None, configuration_error(UnregisteredError("orchestration", name, version)), False


def _new_execution(
    registry: Registry,
    work: TurnInput,
    execution_id: int,
    start: StartOrchestrationMessage | ContinueAsNewMessage,
    parent: ParentRef | None,
    carried: list[object],
    version: str | None,
) -> TurnDecision:
    orchestration, error, abandon = _resolve(registry, start.name, version)
    if abandon:
        return TurnDecision(
            result=TurnResult(),
            execution_id=work.execution_id,
            abandon_delay=1.0,
            abandon_reason=f"orchestration {start.name!r} version {version!r} is not registered",
        )
    started = OrchestrationStarted(
        event_id=0,
        ts=0,
        name=start.name,
        version=orchestration.version if orchestration else (version or ""),
        input=start.input,
        parent=parent,
        carried_events=carried,  # type: ignore[arg-type]
    )
    if orchestration is None:
        return _fail_new(work, execution_id, started, error)  # type: ignore[arg-type]
    execution = Execution(
        registry=registry,
        orchestration=orchestration,
        instance_id=work.instance_id,
        execution_id=execution_id,
        kv_snapshot=work.kv_snapshot,
    )
    execution.begin_turn(work.now_ms)
    execution.start(started)
    _apply(execution, work.messages, start)
    return _decision(execution)


def _fail_new(
    work: TurnInput, execution_id: int, started: OrchestrationStarted, error: ErrorInfo
) -> TurnDecision:
    """Record a start and an immediate failure (unregistered name, poison on first turn)."""
    result = TurnResult(status=ExecutionStatus.FAILED, error=error)
    result.new_events = [
        OrchestrationStarted(
            event_id=1,
            ts=work.now_ms,
            name=started.name,
            version=started.version,
            input=started.input,
            parent=started.parent,
        ),
        OrchestrationFailed(event_id=2, ts=work.now_ms, error=error),
    ]
    _notify_parent(result, started.parent, work.instance_id, error)
    return TurnDecision(
        result=result,
        execution_id=execution_id,
        name=started.name,
        version=started.version,
        parent_instance_id=started.parent.instance_id if started.parent else None,
    )


def _notify_parent(
    result: TurnResult, parent: ParentRef | None, instance_id: str, error: ErrorInfo
) -> None:
    if parent is not None:
        result.messages.append(
            (
                SubOrchestrationResultMessage(
                    instance_id=parent.instance_id,
                    execution_id=parent.execution_id,
                    seq=parent.seq,
                    child_instance_id=instance_id,
                    error=error,
                ),
                None,
            )
        )


def _continue(registry: Registry, work: TurnInput, cached: Execution | None) -> TurnDecision:
    history = work.history
    started = history[0] if history else None
    if not isinstance(started, OrchestrationStarted):
        error = ErrorInfo(
            category=ErrorCategory.INFRASTRUCTURE,
            error_type="CorruptHistory",
            message="history does not begin with OrchestrationStarted",
            retryable=False,
        )
        return terminate(work, error)
    if (
        cached is not None
        and cached.execution_id == work.execution_id
        and len(cached.history) == len(history)
        and not cached.is_terminal
    ):
        execution = cached
        execution.begin_turn(work.now_ms)
    else:
        orchestration, unregistered, abandon = _resolve(registry, started.name, started.version)
        if abandon or orchestration is None:
            if unregistered is not None:
                return terminate(work, unregistered)
            return TurnDecision(
                result=TurnResult(),
                execution_id=work.execution_id,
                abandon_delay=1.0,
                abandon_reason=(
                    f"orchestration {started.name!r} version {started.version!r} is not registered"
                ),
            )
        execution = Execution(
            registry=registry,
            orchestration=orchestration,
            instance_id=work.instance_id,
            execution_id=work.execution_id,
            kv_snapshot=work.kv_snapshot,
        )
        try:
            for event in history:
                execution.replay_event(event)
            execution.end_replay(work.now_ms)
        except NondeterminismError as exc:
            execution.abort_replay(history, configuration_error(exc), work.now_ms)
            return _decision(execution)
    _apply(execution, work.messages, None)
    return _decision(execution)


def _apply(
    execution: Execution,
    messages: list[AnyOrchestratorMessage],
    start: StartOrchestrationMessage | ContinueAsNewMessage | None,
) -> None:
    for message in messages:
        if message is start or isinstance(message, ContinueAsNewMessage):
            continue
        if isinstance(message, StartOrchestrationMessage):
            _reject_duplicate_start(execution.instance_id, message, execution.parent, execution)
            continue
        execution.apply_message(message)


def _reject_duplicate_start(
    instance_id: str,
    message: StartOrchestrationMessage,
    own_parent: ParentRef | None,
    execution: Execution | None,
    result: TurnResult | None = None,
) -> None:
    """A parent that tries to start an existing id as its child hears back, not silence."""
    if message.parent is None or message.parent == own_parent:
        return
    error = configuration_error(InstanceAlreadyExistsError(instance_id))
    target = result if result is not None else (execution.pending_result() if execution else None)
    if target is not None:
        _notify_parent(target, message.parent, instance_id, error)


def _decision(execution: Execution) -> TurnDecision:
    result = execution.finish_turn()
    parent = execution.parent
    return TurnDecision(
        result=result,
        execution_id=execution.execution_id,
        name=execution.orchestration.name,
        version=execution.orchestration.version,
        parent_instance_id=parent.instance_id if parent else None,
        execution=None if execution.is_terminal else execution,
    )


def _finished(work: TurnInput, history: list[HistoryEvent]) -> TurnDecision:
    """Messages for a finished execution are consumed without effect."""
    result = TurnResult(status=work.execution_status or ExecutionStatus.COMPLETED)
    started = history[0] if history and isinstance(history[0], OrchestrationStarted) else None
    for message in work.messages:
        if isinstance(message, StartOrchestrationMessage):
            _reject_duplicate_start(
                work.instance_id, message, started.parent if started else None, None, result
            )
    return TurnDecision(
        result=result,
        execution_id=work.execution_id,
        name=started.name if started else "",
        version=started.version if started else "",
        parent_instance_id=started.parent.instance_id if started and started.parent else None,
    )


def _drop_all(work: TurnInput, *, reason: str) -> TurnDecision:
    return TurnDecision(
        result=TurnResult(),
        execution_id=work.execution_id,
        abandon_delay=5.0,
        abandon_reason=reason,
    )


def terminate(work: TurnInput, error: ErrorInfo) -> TurnDecision:
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
        )
        execution_id = work.execution_id + 1 if work.execution_id else 1
        return _fail_new(work, execution_id, placeholder, error)
    if work.execution_status is not None and work.execution_status.is_terminal:
        return _finished(work, history)
    next_id = (history[-1].event_id if history else 0) + 1
    result = TurnResult(status=ExecutionStatus.FAILED, error=error)
    result.new_events = [OrchestrationFailed(event_id=next_id, ts=work.now_ms, error=error)]
    _notify_parent(result, started.parent, work.instance_id, error)
    return TurnDecision(
        result=result,
        execution_id=work.execution_id,
        name=started.name,
        version=started.version,
        parent_instance_id=started.parent.instance_id if started.parent else None,
    )


__all__ = ["TurnDecision", "TurnInput", "run_turn", "terminate"]
