"""Histories recorded by earlier releases must keep replaying unchanged.

Each ``tests/histories/*.json`` is one execution of one instance: the orchestration, its
recorded events and the status replay must reach (format: ``golden_format``; how each was
recorded: ``golden_recorders``; the code they replay against: ``golden_orchestrations``).

A running history must replay to exactly where it was: no new events, no error. A terminal
history must have its ending reproduced by the engine from the events before it: the same
output, the same error, the same continue-as-new input. Together the files cover every history
event type and every error category, which the meta-tests below enforce.

Regenerate only for a deliberate, versioned engine change:
``python -m tests.engine.test_golden_histories``.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import msgspec
import pytest

from duro._engine import Execution, TurnDecision, TurnInput, run_turn, terminate
from duro._engine._matching import describe
from duro._history import (
    ActivityScheduled,
    CancelRequested,
    ContinuedAsNew,
    HistoryEvent,
    OrchestrationCompleted,
    OrchestrationFailed,
    OrchestrationStarted,
    SubOrchestrationFailed,
    SubOrchestrationScheduled,
    TaskCancelled,
)
from duro._messages import AnyOrchestratorMessage, ContinueAsNewMessage
from duro._status import ErrorCategory, ErrorInfo, ExecutionStatus

from .golden_format import GoldenHistory, golden_names
from .golden_orchestrations import registry
from .golden_recorders import LATE_ARRIVALS, MAILBOX, RECORDERS, regenerate
from .histories import completed, event

NAMES = golden_names()
ENDINGS: dict[type[HistoryEvent], ExecutionStatus] = {
    OrchestrationCompleted: ExecutionStatus.COMPLETED,
    OrchestrationFailed: ExecutionStatus.FAILED,
    ContinuedAsNew: ExecutionStatus.CONTINUED_AS_NEW,
}


def _work(
    golden: GoldenHistory,
    history: list[HistoryEvent],
    messages: list[AnyOrchestratorMessage],
    *,
    now: int,
    status: ExecutionStatus = ExecutionStatus.RUNNING,
) -> TurnInput:
    return TurnInput(
        instance_id=golden.instance_id,
        execution_id=golden.execution_id,
        execution_status=status,
        history=history,
        messages=messages,
        now_ms=now,
        # Endings are reproduced as on a message's last delivery, where an orchestration no
        # worker has fails instead of waiting for one (insure_order_unregistered).
        final_delivery=True,
    )


def _step(event: HistoryEvent | None, otherwise: str = "nothing") -> str:
    """A replay step in words, for failure messages."""
    if event is None:
        return otherwise
    if isinstance(event, OrchestrationCompleted):
        return f"OrchestrationCompleted with output {bytes(event.output).decode()}"
    if isinstance(event, OrchestrationFailed):
        error = event.error
        return f"OrchestrationFailed ({error.category.value}) {error.error_type}: {error.message}"
    if isinstance(event, ContinuedAsNew):
        input = bytes(event.input).decode()
        return f"ContinuedAsNew with input {input} and version {event.version!r}"
    return describe(event)


def _comparable(event: HistoryEvent) -> HistoryEvent:
    """Tracebacks name source lines that move with every edit; the rest must match."""
    error = getattr(event, "error", None)
    if isinstance(error, ErrorInfo) and (error.details or "").startswith("Traceback"):
        return msgspec.structs.replace(event, error=msgspec.structs.replace(error, details=None))
    return event


def _nondeterminism(event: HistoryEvent | None) -> dict[str, Any] | None:
    """Where replay diverged, if ``event`` is the failure the engine records for that."""
    if not isinstance(event, OrchestrationFailed) or event.error.details is None:
        return None
    if event.error.error_type != "NondeterminismError":
        return None
    where: dict[str, Any] = json.loads(event.error.details)
    return where


def _divergence(file: str, golden: GoldenHistory) -> str | None:
    """None when the engine reproduces ``golden``; otherwise where and how replay diverged."""
    work = _work(golden, golden.before_terminal, [], now=golden.events[-1].ts)
    produced = run_turn(registry, work).changes.new_events
    terminal = golden.terminal
    expected = [terminal] if terminal is not None and golden.ended_by == "replay" else []
    if [_comparable(e) for e in produced] == [_comparable(e) for e in expected]:
        return _termination_divergence(file, golden, work)
    position, recorded, reproduced = _first_difference(golden, produced, expected)
    return (
        f"{file}: replay diverged at event_id {position}: "
        f"recorded {recorded}, reproduced {reproduced}"
    )


def _first_difference(
    golden: GoldenHistory, produced: list[HistoryEvent], expected: list[HistoryEvent]
) -> tuple[int, str, str]:
    """(event_id, recorded step, reproduced step) where replay first parted from history."""
    where = _nondeterminism(produced[0] if produced else None)
    if where is not None and _nondeterminism(golden.terminal) is None:
        # Replay broke inside the recorded events: point there, not at the failure it caused.
        position, reproduced = where["position"], where["requested"]
        if reproduced.startswith("nothing (the code already ended"):
            reproduced += f": {_ending_before(golden, position)}"
        if reproduced == where["recorded"]:
            recorded_event = msgspec.json.encode(golden.events[position - 1]).decode()
            reproduced += (
                f" (differing in a field the description omits; recorded {recorded_event})"
            )
        return position, where["recorded"], reproduced
    i = next(
        i
        for i in range(max(len(produced), len(expected)))
        if i >= len(produced)
        or i >= len(expected)
        or _comparable(produced[i]) != _comparable(expected[i])
    )
    recorded = expected[i] if i < len(expected) else None
    replayed = produced[i] if i < len(produced) else None
    position = (recorded or replayed or golden.events[-1]).event_id
    return (
        position,
        _step(recorded, "the end of the history"),
        _step(replayed, "nothing more (the code is still waiting)"),
    )


def _ending_before(golden: GoldenHistory, position: int) -> str:
    """How the code ended when replay reached ``position`` (the engine reports only that it
    had ended, and a raise inside the code is the usual reason)."""
    started = golden.events[0]
    assert isinstance(started, OrchestrationStarted)
    orchestration = registry.get_orchestration(started.name, started.version)
    assert orchestration is not None
    execution = Execution(
        registry=registry,
        orchestration=orchestration,
        instance_id=golden.instance_id,
        execution_id=golden.execution_id,
    )
    for recorded in golden.events[: position - 1]:
        execution.replay_event(recorded)
    return _step(execution.outcome, "still running")


def _termination_divergence(file: str, golden: GoldenHistory, work: TurnInput) -> str | None:
    """A poison-message ending is not the code's doing, but must land after the history."""
    terminal = golden.terminal
    if golden.ended_by != "terminate" or not isinstance(terminal, OrchestrationFailed):
        return None
    ending = terminate(work, terminal.error).changes.new_events
    if ending == [terminal]:
        return None
    appended = f"{_step(ending[0])} at event_id {ending[0].event_id}" if ending else "nothing"
    return (
        f"{file}: terminate diverged at event_id {terminal.event_id}: "
        f"recorded {_step(terminal)} at event_id {terminal.event_id}, reproduced {appended}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_golden_history_replays_to_its_recorded_state(name: str) -> None:
    golden, file = GoldenHistory.load(name), f"tests/histories/{name}.json"
    ending = ENDINGS.get(type(golden.events[-1]), ExecutionStatus.RUNNING)
    assert ending is golden.status, f"{file}: status {golden.status.value}, but ends {ending.value}"
    assert (golden.ended_by is None) is (ending is ExecutionStatus.RUNNING), file
    problem = _divergence(file, golden)
    if problem is not None:
        pytest.fail(problem, pytrace=False)


def test_golden_histories_exist_for_every_recorder() -> None:
    assert set(NAMES) == set(RECORDERS)


# -- coverage: a new event type or error category needs a golden history ---------------------


def _all_goldens() -> list[GoldenHistory]:
    return [GoldenHistory.load(name) for name in NAMES]


def test_golden_histories_cover_every_history_event_type() -> None:
    covered = {type(e) for golden in _all_goldens() for e in golden.events}
    every = set(typing.get_args(HistoryEvent))
    missing = sorted(cls.__name__ for cls in every - covered)
    assert not missing, f"no golden history records {missing}"
    assert covered == every


def test_golden_histories_record_every_error_category() -> None:
    # Any event with an ErrorInfo counts, so a new kind of failure event is included at once.
    errors = [
        error
        for golden in _all_goldens()
        for e in golden.events
        if isinstance(error := getattr(e, "error", None), ErrorInfo)
    ]
    missing = sorted(c.value for c in set(ErrorCategory) - {e.category for e in errors})
    assert not missing, f"no golden history records an error of category {missing}"


def _variants(golden: GoldenHistory) -> set[str]:
    """The field values replay treats specially, as found in one history."""
    found: set[str] = set()
    steps = {
        e.seq: type(e).__name__
        for e in golden.events
        if isinstance(e, ActivityScheduled | SubOrchestrationScheduled)
    }
    for e in golden.events:
        if isinstance(e, OrchestrationStarted):
            found |= {"started with parent"} if e.parent else set()
            found |= {f"carried {c.kind}" for c in e.carried_events}
        elif isinstance(e, ContinuedAsNew) and bytes(e.input) != b"null" and e.version:
            found.add("continued with input and version")
        elif isinstance(e, ActivityScheduled):
            found |= {"retried attempt"} if e.attempt > 1 else set()
            found |= {"tagged activity"} if e.tag else set()
            found |= {"activity in a session"} if e.session else set()
        elif isinstance(e, TaskCancelled):
            found.add(f"cancelled {steps[e.target]}")
    return found


def test_golden_histories_cover_the_variants_replay_treats_specially() -> None:
    found = set().union(*(_variants(g) for g in _all_goldens()))
    missing = {
        "started with parent",
        "carried queue",
        "carried event",
        "continued with input and version",
        "retried attempt",
        "tagged activity",
        "activity in a session",
        "cancelled ActivityScheduled",
        "cancelled SubOrchestrationScheduled",
    } - found
    assert not missing, f"no golden history has {sorted(missing)}"


# -- finishing the running histories from where they were recorded -----------------------------


def _finish(name: str, *messages: AnyOrchestratorMessage) -> TurnDecision:
    golden = GoldenHistory.load(name)
    return run_turn(
        registry, _work(golden, golden.events, list(messages), now=golden.events[-1].ts)
    )


def _output(decision: TurnDecision) -> Any:
    assert decision.changes.execution_status is ExecutionStatus.COMPLETED, decision.changes.error
    return msgspec.json.decode(decision.changes.output or b"")


def test_golden_chain_finishes_from_its_recorded_history() -> None:
    assert _output(_finish("golden_chain", completed(3, 4))) == 4


def test_golden_fan_out_finishes_from_its_recorded_history() -> None:
    assert _output(_finish("golden_fan_out", event("go", "now"))) == [[2, 3], 0, "now"]


def test_expense_approval_files_the_expense_once_approved() -> None:
    done = completed(8, "filed as FIN-9", instance_id="expense-311")
    assert _output(_finish("expense_approval_reminded", done)) == "filed as FIN-9"


def test_order_mailbox_stops_once_the_carried_orders_are_handled() -> None:
    # The carried "stop" waited behind both carried orders, then ended the consumer.
    done = completed(2, "ok", execution_id=2, instance_id=MAILBOX)
    assert _output(_finish("order_mailbox_2", done)) == 5


# -- histories that belong together ------------------------------------------------------------


def test_order_mailbox_execution_2_starts_with_what_execution_1_carried_over() -> None:
    first, second = GoldenHistory.load("order_mailbox_1"), GoldenHistory.load("order_mailbox_2")
    # Order 5 and the stop reached the continuing turn after the code had ended, so no event
    # records them: hand them in again, as they came, with the events before ContinuedAsNew.
    now = first.events[-1].ts
    ending = run_turn(registry, _work(first, first.before_terminal, LATE_ARRIVALS, now=now))
    assert ending.changes.new_events == [first.terminal]
    [message] = [
        s.message
        for s in ending.changes.orchestrator_messages
        if isinstance(s.message, ContinueAsNewMessage)
    ]
    after = _work(
        first,
        first.events,
        [message],
        now=second.events[0].ts,
        status=ExecutionStatus.CONTINUED_AS_NEW,
    )
    started = run_turn(registry, after)
    assert started.changes.execution_id == second.execution_id
    produced = started.changes.new_events
    assert produced, "execution 2 did not start"
    assert produced == second.events[: len(produced)]


def test_fulfilment_children_report_to_the_recorded_parent_steps() -> None:
    parent = GoldenHistory.load("fulfilment_parent")
    scheduled = {
        e.instance_id: e.seq for e in parent.events if isinstance(e, SubOrchestrationScheduled)
    }
    for name in ("insure_order_unregistered", "carrier_quote_cancelled"):
        child = GoldenHistory.load(name)
        started = child.events[0]
        assert isinstance(started, OrchestrationStarted) and started.parent is not None
        assert started.parent.instance_id == parent.instance_id
        assert started.parent.seq == scheduled[child.instance_id]
    [child_failure] = [e for e in parent.events if isinstance(e, SubOrchestrationFailed)]
    insure_end = GoldenHistory.load("insure_order_unregistered").events[-1]
    assert isinstance(insure_end, OrchestrationFailed) and child_failure.error == insure_end.error
    [dropped] = [e for e in parent.events if isinstance(e, TaskCancelled)]
    quote = GoldenHistory.load("carrier_quote_cancelled")
    assert dropped.target == scheduled[quote.instance_id]
    assert any(isinstance(e, CancelRequested) for e in quote.events)


if __name__ == "__main__":
    regenerate()
