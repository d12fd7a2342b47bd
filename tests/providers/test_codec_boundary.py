"""``CodecBoundary``: which fields are payloads, for which instance each is encoded, and that a
codec of one's own plugs into any provider."""

from __future__ import annotations

import base64
import dataclasses
import typing
import zlib
from typing import Any

import msgspec
import pytest

import duro
from duro import CodecContext
from duro._history import CarriedEvent, HistoryEvent, ParentRef
from duro._messages import ActivityTask, AnyOrchestratorMessage
from duro._records import InstanceRecord, KvChange, KvEntry, TurnChanges
from duro._status import ErrorCategory, ErrorInfo, State
from duro.providers import (
    AbandonRequest,
    ActivityWorkItem,
    OrchestrationWorkItem,
    ScheduledMessage,
    TurnCommit,
)
from duro.providers._boundary import CodecBoundary, payload_fields

SECRET = b'"plaintext-payload"'
EVENT_TYPES: tuple[type[msgspec.Struct], ...] = typing.get_args(HistoryEvent)
MESSAGE_TYPES: tuple[type[msgspec.Struct], ...] = typing.get_args(AnyOrchestratorMessage)


def _contains_raw(tp: Any) -> bool:
    if tp is msgspec.Raw:
        return True
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return any(_contains_raw(f.type) for f in msgspec.structs.fields(tp))
    return any(_contains_raw(arg) for arg in typing.get_args(tp))


@pytest.mark.parametrize("struct_type", [*EVENT_TYPES, *MESSAGE_TYPES, ActivityTask])
def test_every_field_that_can_hold_a_payload_is_a_payload_field(
    struct_type: type[msgspec.Struct],
) -> None:
    raw, carried = payload_fields(struct_type)
    for f in msgspec.structs.fields(struct_type):
        if f.type is msgspec.Raw:
            assert f.name in raw
        elif _contains_raw(f.type):
            # The only nested payloads: arrivals carried over by continue-as-new.
            assert (f.name, f.type, carried) == ("carried_events", list[CarriedEvent], True)
    assert [f.name for f in msgspec.structs.fields(CarriedEvent) if _contains_raw(f.type)] == [
        "data"
    ]


@pytest.mark.parametrize(
    ("record_type", "payloads"),
    [
        (TurnChanges, {"output", "custom_status"}),
        (InstanceRecord, {"output", "custom_status"}),
        (KvEntry, {"value"}),
        (KvChange, {"value"}),
    ],
)
def test_the_byte_fields_of_records_are_the_payloads_the_boundary_encodes(
    record_type: type, payloads: set[str]
) -> None:
    hints = typing.get_type_hints(record_type)
    byte_fields = {
        f.name
        for f in dataclasses.fields(record_type)
        if bytes in (hints[f.name], *typing.get_args(hints[f.name]))
    }
    assert byte_fields == payloads


class Tagging:
    """Encodes a payload as a JSON string naming the instance it was encoded for."""

    def encode(self, payload: bytes, context: CodecContext) -> bytes:
        return msgspec.json.encode(f"{context.instance_id}|{base64.b64encode(payload).decode()}")

    def decode(self, stored: bytes, context: CodecContext) -> bytes:
        owner, _, data = msgspec.json.decode(stored).partition("|")
        if owner != context.instance_id:
            raise duro.PayloadAuthenticationError(
                f"encoded for {owner}", instance_id=context.instance_id
            )
        return base64.b64decode(data)


def _sample(struct_type: type[msgspec.Struct], instance_id: str) -> Any:
    """An instance of ``struct_type`` with ``SECRET`` in every payload field."""
    values: dict[str, Any] = {}
    for f in msgspec.structs.fields(struct_type):
        if f.type is msgspec.Raw:
            values[f.name] = msgspec.Raw(SECRET)
        elif f.name == "carried_events":
            values[f.name] = [CarriedEvent(queue="q", data=msgspec.Raw(SECRET))]
        elif f.name == "instance_id":
            values[f.name] = instance_id
        elif f.required:
            values[f.name] = {
                int: 1,
                str: "s",
                ErrorInfo: ErrorInfo(
                    category=ErrorCategory.APPLICATION, error_type="E", message="m"
                ),
                ParentRef: ParentRef(instance_id="p", execution_id=1, seq=1),
            }[f.type]
    return struct_type(**values)


def _changes() -> TurnChanges:
    return TurnChanges(
        instance_id="parent",
        execution_id=1,
        name="o",
        version="1",
        output=SECRET,
        custom_status_changed=True,
        custom_status=SECRET,
        new_events=[_sample(t, "parent") for t in EVENT_TYPES],
        kv_changes={"k": KvChange(key="k", value=SECRET, updated_at_ms=1)},
        activity_tasks=[_sample(ActivityTask, "parent")],
        orchestrator_messages=[
            ScheduledMessage(message=_sample(t, "child")) for t in MESSAGE_TYPES
        ],
    )


async def _never(request: AbandonRequest) -> None:
    raise AssertionError("nothing should be put back")


def _without_payloads(changes: TurnChanges) -> TurnChanges:
    return dataclasses.replace(
        changes,
        output=None,
        custom_status=None,
        new_events=[],
        kv_changes={},
        activity_tasks=[],
        orchestrator_messages=[],
    )


@pytest.mark.anyio
async def test_every_payload_of_a_turn_is_encoded_for_the_instance_that_will_store_it() -> None:
    boundary = CodecBoundary(Tagging())
    changes = _changes()
    [commit] = boundary.encode_turn_commits([TurnCommit(lock_token="t", changes=changes)])
    stored = commit.changes

    messages = [m.message for m in stored.orchestrator_messages]
    everything = msgspec.json.encode([stored.new_events, stored.activity_tasks, messages])
    assert SECRET not in everything
    assert SECRET not in (stored.output, stored.custom_status, stored.kv_changes["k"].value)
    # Messages to another instance are encoded for it: the sender's id does not open them.
    for message in messages:
        for name in payload_fields(type(message))[0]:
            with pytest.raises(duro.PayloadAuthenticationError):
                Tagging().decode(bytes(getattr(message, name)), CodecContext("parent"))

    # Decoding gives back exactly what the engine produced; nothing else was touched.
    assert boundary.decode_history("parent", stored.new_events) == changes.new_events
    tasks = [
        ActivityWorkItem(lock_token="t", task=t, delivery_count=1) for t in stored.activity_tasks
    ]
    assert [
        i.task for i in await boundary.decode_activities(tasks, _never)
    ] == changes.activity_tasks
    turn = OrchestrationWorkItem(
        instance_id="child", lock_token="t", execution_id=1, instance=None, history=[],
        messages=messages, delivery_count=1,
    )  # fmt: skip
    [opened] = await boundary.decode_turns([turn], _never)
    assert opened.messages == [m.message for m in changes.orchestrator_messages]
    assert _without_payloads(stored) == _without_payloads(changes)
    assert stored.custom_status_changed and stored.kv_changes["k"].updated_at_ms == 1


def test_records_kv_and_pages_are_decoded_and_absent_payloads_stay_absent() -> None:
    boundary = CodecBoundary(Tagging())
    encoded = Tagging().encode(SECRET, CodecContext("i1"))
    record = InstanceRecord(instance_id="i1", state=State.COMPLETED, name="o", output=encoded)

    decoded = boundary.decode_record(record)
    assert decoded == dataclasses.replace(record, output=SECRET)
    assert boundary.decode_record(None) is None
    pending = InstanceRecord(instance_id="i2", state=State.PENDING, name="o")
    assert boundary.decode_record(pending) is pending
    assert boundary.decode_kv("i1", {"k": KvEntry(value=encoded, updated_at_ms=5)}) == {
        "k": KvEntry(value=SECRET, updated_at_ms=5)
    }
    assert boundary.decode_kv_entry("i1", None) is None
    page = duro.providers.InstancePage(instances=[record, pending], continuation="c")
    assert boundary.decode_page(page).instances == [decoded, pending]


def test_without_a_codec_the_boundary_hands_back_the_very_same_objects() -> None:
    boundary = CodecBoundary(None)
    commits = [TurnCommit(lock_token="t", changes=_changes())]
    events = list(commits[0].changes.new_events)

    assert boundary.encode_turn_commits(commits) is commits
    assert boundary.decode_history("parent", events) is events
    message = _sample(MESSAGE_TYPES[0], "x")
    assert boundary.encode_message(message) is message


class Compressing:
    """A codec of one's own: zlib, stored as a JSON string of base64."""

    def encode(self, payload: bytes, context: CodecContext) -> bytes:
        return msgspec.json.encode(base64.b64encode(zlib.compress(payload)).decode())

    def decode(self, stored: bytes, context: CodecContext) -> bytes:
        return zlib.decompress(base64.b64decode(msgspec.json.decode(stored)))


@pytest.mark.anyio
async def test_a_codec_of_ones_own_plugs_into_a_provider_end_to_end() -> None:
    registry = duro.Registry()

    @registry.activity
    async def shout(ctx: duro.ActivityContext, text: str) -> str:
        return text.upper()

    @registry.orchestration
    async def loud(ctx: duro.OrchestrationContext, text: str) -> str:
        ctx.kv.set("last", text)
        return str(await ctx.schedule_activity(shout, text * 50))

    store = duro.InMemoryProvider(codec=Compressing())
    client = duro.Client(store, registry=registry)
    async with duro.Runtime(store, registry):
        await client.start_orchestration("c1", loud, "abc")
        status = await client.wait_for_orchestration("c1", timeout=10)
    assert status.output == "ABC" * 50
    assert await client.get_value("c1", "last") == "abc"
    stored = store._tables.instances["c1"].output
    assert stored is not None and b"ABC" not in stored
