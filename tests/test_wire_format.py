"""Every stored struct decodes from exactly what its encoder wrote."""

from __future__ import annotations

import msgspec
import pytest

from duro._history import (
    ActivityCompleted,
    CarriedEvent,
    CustomStatusSet,
    EventSent,
    ExecutionRewound,
    OrchestrationStarted,
    decode_event,
    encode_event,
)
from duro._messages import (
    ActivityResultMessage,
    ActivityTask,
    ContinueAsNewMessage,
    SubOrchestrationResultMessage,
    decode_message,
    decode_task,
    encode_message,
)
from duro._status import ErrorCategory, ErrorInfo

RAW = msgspec.Raw(b'{"a":[1,2]}')
ERROR = ErrorInfo(category=ErrorCategory.APPLICATION, error_type="E", message="m")


@pytest.mark.parametrize(
    "message",
    [
        ActivityResultMessage(instance_id="i", execution_id=1, seq=2, result=RAW),
        ActivityResultMessage(instance_id="i", execution_id=1, seq=2, error=ERROR),
        SubOrchestrationResultMessage(
            instance_id="p", execution_id=1, seq=3, child_instance_id="c", result=RAW
        ),
        ContinueAsNewMessage(
            instance_id="i",
            execution_id=2,
            name="n",
            input=RAW,
            carried_events=[
                CarriedEvent(queue="q", data=RAW),
                CarriedEvent(queue="e", data=RAW, kind="event"),
            ],
            custom_status=RAW,
        ),
    ],
)
def test_messages_round_trip(message: object) -> None:
    data = encode_message(message)  # type: ignore[arg-type]
    assert encode_message(decode_message(data)) == data


@pytest.mark.parametrize(
    "event",
    [
        CustomStatusSet(event_id=2, ts=1, seq=1, value=RAW),
        CustomStatusSet(event_id=2, ts=1, seq=1),
        ActivityCompleted(event_id=3, ts=1, seq=1, result=RAW),
        EventSent(event_id=4, ts=1, seq=2, instance_id="other", name="go", data=RAW),
        EventSent(event_id=4, ts=1, seq=2, instance_id="other", name="q", mailbox=True),
        OrchestrationStarted(event_id=1, ts=1, name="n", version="1", custom_status=RAW),
        OrchestrationStarted(event_id=1, ts=1, name="n", version="1", input=RAW),
        ExecutionRewound(event_id=9, ts=1, undone_from=7, undone_through=8, reason="fixed"),
    ],
)
def test_events_round_trip(event: object) -> None:
    data = encode_event(event)  # type: ignore[arg-type]
    assert encode_event(decode_event(data)) == data


def test_activity_tasks_round_trip() -> None:
    task = ActivityTask(instance_id="i", execution_id=1, seq=1, name="a", input=RAW, tag="t")
    data = encode_message(task)
    assert encode_message(decode_task(data)) == data
