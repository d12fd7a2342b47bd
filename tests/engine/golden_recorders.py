"""How each golden history was recorded: the real engine, driven turn by turn.

Every turn rebuilds the execution by replaying the history so far (no cached execution), so
recording already replays each prefix once. Instances talk to each other only through the
messages their turns return (``Instance.sent_to``), as they would through a store. Activity
results, timer firings, events and the clock are played by the recorders.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from duro import Registry
from duro._engine import Commit, TurnDecision, TurnInput, run_turn, terminate
from duro._history import HistoryEvent, TimerCreated
from duro._messages import (
    ActivityResultMessage,
    AnyOrchestratorMessage,
    RewindOrchestrationMessage,
)
from duro._status import ErrorCategory, ErrorInfo, ExecutionStatus

from . import golden_orchestrations as orchestrations
from .golden_format import HISTORIES, GoldenHistory
from .histories import T0, completed, enqueued, error_info, event, failed, start, timer_fired

SECOND = 1000
DAY = 86_400 * SECOND


class Instance:
    """One orchestration instance, moved on one turn at a time as the runtime would."""

    def __init__(self, instance_id: str, registry: Registry = orchestrations.registry) -> None:
        self.id = instance_id
        self.registry = registry
        self.execution_id = 0
        self.status: ExecutionStatus | None = None
        self.history: list[HistoryEvent] = []
        self.executions: dict[int, GoldenHistory] = {}
        self.sent: list[AnyOrchestratorMessage] = []

    def turn(self, *messages: AnyOrchestratorMessage, at: int) -> TurnDecision:
        return self._commit(run_turn(self.registry, self._work(messages, at)), "replay")

    def terminate(self, error: ErrorInfo, *messages: AnyOrchestratorMessage, at: int) -> None:
        """What the runtime does to a poison message or a corrupt history."""
        self._commit(terminate(self._work(messages, at), error), "terminate")

    def fire(self, seq: int) -> TurnDecision:
        """The turn in which timer ``seq`` fires, at the time it was set for."""
        fire_at = next(
            e.fire_at for e in self.history if isinstance(e, TimerCreated) and e.seq == seq
        )
        message = timer_fired(seq, fire_at, execution_id=self.execution_id, instance_id=self.id)
        return self.turn(message, at=fire_at)

    def completed(self, seq: int, result: Any) -> ActivityResultMessage:
        return completed(seq, result, self.execution_id, instance_id=self.id)

    def failed(self, seq: int, error: ErrorInfo) -> ActivityResultMessage:
        return failed(seq, execution_id=self.execution_id, instance_id=self.id, info=error)

    def sent_to(self, other: Instance) -> list[AnyOrchestratorMessage]:
        """What the last turn sent to ``other`` (a child start, a result, a cancellation)."""
        return [m for m in self.sent if m.instance_id == other.id]

    def execution(self, execution_id: int = 1) -> GoldenHistory:
        return self.executions[execution_id]

    def _work(self, messages: tuple[AnyOrchestratorMessage, ...], at: int) -> TurnInput:
        return TurnInput(
            instance_id=self.id,
            execution_id=self.execution_id,
            execution_status=self.status,
            history=self.history,
            messages=list(messages),
            now_ms=at,
            final_delivery=True,  # an orchestration nobody has fails, as on its last delivery
        )

    def _commit(self, decision: TurnDecision, ended_by: str) -> TurnDecision:
        assert isinstance(decision, Commit), decision
        if decision.changes.execution_id != self.execution_id:
            self.execution_id, self.history = decision.changes.execution_id, []
        self.history = [*self.history, *decision.changes.new_events]
        self.status = decision.changes.execution_status
        self.sent = [scheduled.message for scheduled in decision.changes.orchestrator_messages]
        self.executions[self.execution_id] = GoldenHistory(
            orchestration=decision.changes.name,
            instance_id=self.id,
            execution_id=self.execution_id,
            status=self.status,
            ended_by=ended_by if self.status.is_terminal else None,
            events=self.history,
        )
        return decision


# -- the first two: a running chain and a running fan-out --------------------------------------


def _golden_chain() -> GoldenHistory:
    chain = Instance("inst")
    chain.turn(start("golden_chain", 1), at=T0)
    for seq, value in ((1, 2), (2, 3)):
        chain.turn(chain.completed(seq, value), at=T0)
    return chain.execution()


def _golden_fan_out() -> GoldenHistory:
    fan_out = Instance("inst")
    fan_out.turn(start("golden_fan_out"), at=T0)
    fan_out.turn(timer_fired(2, 0), timer_fired(1, 0), at=T0)
    fan_out.turn(fan_out.completed(3, 3), fan_out.completed(4, 2), at=T0)
    return fan_out.execution()


# -- failures: application, infrastructure, configuration --------------------------------------

TRIP = {"id": 7, "flight": "LH400", "hotel": "Adlon", "amount": 1890}
GATEWAY_TIMEOUT = (
    "Traceback (most recent call last):\n"
    '  File "payments/gateway.py", line 88, in charge\n'
    "    raise TimeoutError(f'no answer in {limit} s')\n"
    "TimeoutError: no answer in 30 s\n"
)


def _trip_saga() -> GoldenHistory:
    """Charging times out, is retried after back-off, is declined; both bookings are undone."""
    trip = Instance("trip-7")
    trip.turn(start("trip_saga", TRIP, instance_id=trip.id), at=T0)
    trip.turn(trip.completed(1, "FL-LH400-QX7"), at=T0 + 2 * SECOND)
    trip.turn(trip.completed(2, "HT-ADLON-118"), at=T0 + 3 * SECOND)
    timeout = error_info("TimeoutError", "no answer in 30 s", details=GATEWAY_TIMEOUT)
    trip.turn(trip.failed(3, timeout), at=T0 + 33 * SECOND)
    trip.fire(4)
    declined = error_info("CardDeclined", "insufficient funds")
    trip.turn(trip.failed(5, declined), at=T0 + 39 * SECOND)
    trip.turn(trip.completed(6, None), trip.completed(7, None), at=T0 + 41 * SECOND)
    return trip.execution()


def _nightly_report() -> GoldenHistory:
    """The render result's turn keeps failing to commit; the runtime gives up on it."""
    report = Instance("report-2026-11-30")
    report.turn(start("nightly_report", "2026-11-30", instance_id=report.id), at=T0)
    report.turn(report.completed(1, 48_210), at=T0 + 60 * SECOND)
    # As the orchestrator words it once a message exceeds RuntimeOptions.max_attempts.
    poison = ErrorInfo(
        category=ErrorCategory.INFRASTRUCTURE,
        error_type="PoisonMessage",
        message=(
            "a message for this instance was delivered 6 times (limit 5); the turn keeps failing"
        ),
        retryable=False,
    )
    rendered = report.completed(2, "s3://reports/2026-11-30.pdf")
    report.terminate(poison, rendered, at=T0 + 600 * SECOND)
    return report.execution()


def _shipping() -> GoldenHistory:
    """Two turns on the old code, then a deployment edits the code without a new version."""
    order = Instance("ship-A-1001", orchestrations.previous_deployment)
    order.turn(start("shipping", "A-1001", instance_id=order.id), at=T0)
    order.turn(order.completed(1, "held"), at=T0 + SECOND)
    order.registry = orchestrations.registry
    order.turn(order.completed(2, "1Z999"), at=T0 + DAY)
    return order.execution()


# -- approval, KV and a mailbox that continues as new ------------------------------------------

EXPENSE = {"id": "EXP-311", "amount": 420, "approver": "dana"}


def _expense_approval() -> GoldenHistory:
    """No answer for a day, a reminder; the approval arrives while the reminder is sent."""
    expense = Instance("expense-311")
    expense.turn(start("expense_approval", EXPENSE, instance_id=expense.id), at=T0)
    expense.turn(expense.completed(2, None), at=T0 + SECOND)
    expense.fire(3)
    decision = event("decision", {"approved": True}, instance_id=expense.id)
    expense.turn(decision, at=T0 + DAY + 40 * SECOND)
    expense.turn(expense.completed(5, None), at=T0 + DAY + 50 * SECOND)
    return expense.execution()


def _inventory() -> GoldenHistory:
    ledger = Instance("ledger-berlin")

    def command(op: str, sku: str = "", qty: int = 0) -> AnyOrchestratorMessage:
        return event("command", {"op": op, "sku": sku, "qty": qty}, instance_id=ledger.id)

    ledger.turn(start("inventory", instance_id=ledger.id), at=T0)
    ledger.turn(command("add", "apple", 5), command("add", "pear", 2), at=T0 + SECOND)
    ledger.turn(command("add", "apple", 3), command("drop", "pear"), at=T0 + 2 * SECOND)
    ledger.turn(command("reset"), at=T0 + 3 * SECOND)
    ledger.turn(command("add", "plum", 4), command("add", "plum", 3), at=T0 + 4 * SECOND)
    ledger.turn(command("close"), at=T0 + 5 * SECOND)
    return ledger.execution()


MAILBOX = "orders-eu"
LATE_ARRIVALS: list[AnyOrchestratorMessage] = [
    enqueued("orders", {"order": 5}, instance_id=MAILBOX),
    event("stop", "drain and stop", instance_id=MAILBOX),
]
"""Reach the continuing turn after the code has continued as new: carried, never recorded."""


@functools.cache
def _order_mailbox() -> Instance:
    """Execution 1 handles three orders and continues as new; order 4 was buffered, order 5
    and a "stop" arrive in the continuing turn: all three are carried into execution 2."""
    mailbox = Instance(MAILBOX)

    def order(n: int) -> AnyOrchestratorMessage:
        return enqueued("orders", {"order": n}, instance_id=mailbox.id)

    mailbox.turn(start("order_mailbox", {"handled": 0}, instance_id=mailbox.id), at=T0)
    mailbox.turn(order(1), order(2), order(3), order(4), at=T0 + SECOND)
    mailbox.turn(mailbox.completed(1, "ok"), at=T0 + 2 * SECOND)
    mailbox.turn(mailbox.completed(2, "ok"), at=T0 + 3 * SECOND)
    mailbox.turn(mailbox.completed(3, "ok"), *LATE_ARRIVALS, at=T0 + 4 * SECOND)
    # Execution 2 starts from the message the continuing turn sent, as in the runtime.
    mailbox.turn(*mailbox.sent, at=T0 + 5 * SECOND)
    mailbox.turn(mailbox.completed(1, "ok"), at=T0 + 6 * SECOND)
    return mailbox


# -- a parent with three children: one completes, one is not registered, one is cancelled -------

ORDER = {"id": 7, "items": ["lamp", "desk"], "value": 640, "carrier": "ups"}


@functools.cache
def _fulfilment() -> dict[str, Instance]:
    parent = Instance("order-7")
    parent.turn(start("fulfilment", ORDER, instance_id=parent.id), at=T0)
    pack, insure = Instance("order-7:1:2"), Instance("order-7:1:3")
    pack.turn(*parent.sent_to(pack), at=T0 + 100)
    insure.turn(*parent.sent_to(insure), at=T0 + 100)
    parent.turn(*insure.sent_to(parent), at=T0 + 200)
    pack.turn(pack.completed(1, 2), at=T0 + 5 * SECOND)
    parent.turn(*pack.sent_to(parent), at=T0 + 5 * SECOND + 100)
    quote = Instance("order-7:1:4")
    quote.turn(*parent.sent_to(quote), at=T0 + 5 * SECOND + 200)
    quote.fire(2)  # the carrier API is slow: fall back to the rate card
    parent.fire(5)  # the rate card is slow too: ship at the flat rate, drop the quote
    quote.turn(*parent.sent_to(quote), at=T0 + 20 * SECOND + 300)
    return {"parent": parent, "insure": insure, "quote": quote}


@functools.cache
def _dispatcher() -> Instance:
    """Forwards two requests per execution to other instances; the second execution starts
    with the custom status the first left."""
    hub = Instance("dispatch-hub")

    def request(to: str, body: str) -> AnyOrchestratorMessage:
        return enqueued("requests", {"to": to, "body": body}, instance_id=hub.id)

    hub.turn(start("dispatcher", 2, instance_id=hub.id), at=T0)
    hub.turn(request("worker-a", "resize"), at=T0 + SECOND)
    hub.turn(request("worker-b", "encode"), at=T0 + 2 * SECOND)
    hub.turn(*hub.sent_to(hub), at=T0 + 3 * SECOND)
    hub.turn(request("worker-a", "thumbnail"), request("worker-b", "upload"), at=T0 + 4 * SECOND)
    return hub


def _nightly_report_rewound() -> GoldenHistory:
    """Rendering fails; an operator fixes the renderer and rewinds: the export keeps its
    result, the render runs again and completes."""
    report = Instance("report-2026-12-01")
    report.turn(start("nightly_report", "2026-12-01", instance_id=report.id), at=T0)
    report.turn(report.completed(1, 51_002), at=T0 + 60 * SECOND)
    broken = error_info("FontNotFound", "no font 'Inter' on the render host")
    report.turn(report.failed(2, broken), at=T0 + 90 * SECOND)
    rewind = RewindOrchestrationMessage(instance_id=report.id, reason="font installed")
    report.turn(rewind, at=T0 + DAY)
    report.turn(report.completed(2, "s3://reports/2026-12-01.pdf"), at=T0 + DAY + 30 * SECOND)
    return report.execution()


RECORDERS: dict[str, Callable[[], GoldenHistory]] = {
    "golden_chain": _golden_chain,
    "golden_fan_out": _golden_fan_out,
    "trip_saga_compensated": _trip_saga,
    "expense_approval_reminded": _expense_approval,
    "inventory_kv": _inventory,
    "order_mailbox_1": lambda: _order_mailbox().execution(1),
    "order_mailbox_2": lambda: _order_mailbox().execution(2),
    "fulfilment_parent": lambda: _fulfilment()["parent"].execution(),
    "insure_order_unregistered": lambda: _fulfilment()["insure"].execution(),
    "carrier_quote_cancelled": lambda: _fulfilment()["quote"].execution(),
    "shipping_nondeterminism": _shipping,
    "nightly_report_poisoned": _nightly_report,
    "nightly_report_rewound": _nightly_report_rewound,
    "dispatcher_events_1": lambda: _dispatcher().execution(1),
    "dispatcher_events_2": lambda: _dispatcher().execution(2),
}


def regenerate() -> None:
    """Rewrite every golden file. Only for a deliberate, versioned engine change."""
    HISTORIES.mkdir(exist_ok=True)
    for name, record in RECORDERS.items():
        (HISTORIES / f"{name}.json").write_text(record().to_json())
