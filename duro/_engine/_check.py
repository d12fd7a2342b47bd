"""Replay checking: does the current code still replay a recorded history?

The same replay a worker does when it rebuilds an execution (``_turn._continue``), run on a
history alone and reported rather than recorded: ``check_replay`` raises where a worker would
fail the instance, and returns what the code would do next where a worker would carry on.

What counts as a divergence, beyond the engine's own matching (``_matching``):

* the code ends in failure before the end of the history (history goes on), or right at the
  end of a running history (the instance would fail on its next turn);
* a finished history ended by the code itself (completed, failed in the code, continued as
  new, cancelled) must be reproduced: the code must end there too, the same way, without new
  durable calls. Endings the engine or runtime imposed from outside (a configuration failure
  such as an earlier nondeterminism, a poison message, a corrupt history) are not replayed.

New durable calls after the end of a running history are not a divergence: they are the next
turn's work, as for a worker (see ``docs/determinism.md``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .._errors import NondeterminismError, UnregisteredError
from .._history import (
    ACTION_EVENTS,
    TERMINAL_EVENTS,
    ContinuedAsNew,
    HistoryEvent,
    OrchestrationCompleted,
    OrchestrationFailed,
    OrchestrationStarted,
)
from .._records import KvEntry
from .._registry import Registry
from .._status import ErrorCategory
from ._execution import ALREADY_ENDED, Execution
from ._matching import describe, preview

_IMPOSED = (ErrorCategory.CONFIGURATION, ErrorCategory.INFRASTRUCTURE)
"""Failure categories a history can end with that the code did not decide."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayCheck:
    """A history the code replays: what it holds and what the code would do after it."""

    name: str
    version: str
    events: int
    """How many recorded events were replayed."""
    next_steps: list[HistoryEvent] = field(default_factory=list)
    """Durable calls and the ending the code makes after the history's last event (a running
    history only: new work for the next turn)."""


def check_replay(
    registry: Registry,
    history: list[HistoryEvent],
    *,
    instance_id: str = "replay",
    execution_id: int = 1,
    kv_snapshot: dict[str, KvEntry] | None = None,
) -> ReplayCheck:
    """Replay ``history`` through the registered code; ``NondeterminismError`` where it
    diverges, ``UnregisteredError`` when its orchestration and version are not registered,
    ``ValueError`` when it does not begin with ``OrchestrationStarted``."""
    started = history[0] if history else None
    if not isinstance(started, OrchestrationStarted):
        raise ValueError("a history begins with OrchestrationStarted")
    orchestration = registry.get_orchestration(started.name, started.version)
    if orchestration is None:
        raise UnregisteredError("orchestration", started.name, started.version)
    terminal = history[-1] if isinstance(history[-1], TERMINAL_EVENTS) else None
    body = history[:-1] if terminal is not None else history
    execution = Execution(
        registry=registry,
        orchestration=orchestration,
        instance_id=instance_id,
        execution_id=execution_id,
        kv_snapshot=kv_snapshot,
    )
    try:
        new = _replay(execution, body)
    finally:
        execution.discard()  # close suspended coroutines now, not in the garbage collector
    check = ReplayCheck(
        name=started.name, version=orchestration.version, events=len(history), next_steps=new
    )
    ending = next((e for e in new if isinstance(e, TERMINAL_EVENTS)), None)
    _raise_recorded_nondeterminism(instance_id, ending)
    if terminal is None:
        if isinstance(ending, OrchestrationFailed):
            raise NondeterminismError(
                instance_id,
                body[-1].event_id + 1,
                "nothing further (the instance was waiting)",
                _ending(ending),
            )
        return check
    if isinstance(terminal, OrchestrationFailed) and terminal.error.category in _IMPOSED:
        return check
    actions = [e for e in new if isinstance(e, ACTION_EVENTS)]
    if actions:
        requested = describe(actions[0])
    elif ending is None:
        requested = "nothing (the code is still waiting)"
    elif type(ending) is not type(terminal):
        requested = _ending(ending)
    else:
        return ReplayCheck(name=check.name, version=check.version, events=check.events)
    raise NondeterminismError(instance_id, terminal.event_id, _ending(terminal), requested)


def _replay(execution: Execution, body: list[HistoryEvent]) -> list[HistoryEvent]:
    """Feed the recorded events, then let the code run on: what it records afterwards."""
    try:
        execution.replay_history(body)
    except NondeterminismError as exc:
        raise _explained(exc, execution) from None
    execution.end_replay(body[-1].ts)
    return execution.finish_turn().new_events


def _explained(exc: NondeterminismError, execution: Execution) -> NondeterminismError:
    """Say how the code ended when history goes on after it (the engine only says it did)."""
    outcome = execution.outcome
    if outcome is None or exc.requested != ALREADY_ENDED:
        return exc
    requested = f"nothing more, after {_ending(outcome)}"
    return NondeterminismError(exc.instance_id, exc.position, exc.recorded, requested)


def _raise_recorded_nondeterminism(instance_id: str, ending: HistoryEvent | None) -> None:
    """A divergence found while the code ran (not while matching) ends it with a failure
    whose details say where: raise it as the exception it was."""
    if not isinstance(ending, OrchestrationFailed):
        return
    error = ending.error
    if error.error_type != "NondeterminismError" or error.details is None:
        return
    where = json.loads(error.details)
    raise NondeterminismError(instance_id, where["position"], where["recorded"], where["requested"])


def _ending(event: HistoryEvent) -> str:
    if isinstance(event, OrchestrationCompleted):
        return f"the end of the code (completed with {preview(event.output)})"
    if isinstance(event, OrchestrationFailed):
        return f"the end of the code (failed with {event.error})"
    if isinstance(event, ContinuedAsNew):
        return "the end of the code (continue_as_new)"
    return describe(event)
