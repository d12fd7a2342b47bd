"""Where a provider applies its payload codec: the contract's objects, encoded on the way in
and decoded on the way out, in one place for every store.

Each provider calls a :class:`CodecBoundary` in its public methods only: messages, turn
commits and activity results are encoded before the store sees them; records, histories, KV
entries and fetched work are decoded before the caller sees them. Everything inside a provider
(tables, rows, documents, in-process indexes) therefore holds the encoded form only, and the
engine, the runtime and the client see plaintext only. Ids, names, timestamps, errors and
every other field stay as they are. Without a codec every method returns its argument.

A fetched turn or work item whose payloads cannot be decoded (a key this worker lacks, or data
that fails authentication) is not returned: it is put back for :data:`UNDECODABLE_DELAY`
seconds without counting the delivery, and logged at ERROR with the key id. Failing it
instead would be irreversible, and a missing key is usually a deployment in progress (a new
key active on some workers before others hold it). Reads raise the ``CodecError``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import msgspec

from .._codec import Codec, CodecContext
from .._errors import CodecError, ProviderError
from .._history import CarriedEvent, HistoryEvent
from .._messages import ActivityTask, OrchestratorMessage, ScheduledMessage
from .._records import InstanceRecord, KvEntry, TurnChanges
from ._types import (
    AbandonRequest,
    ActivityCommit,
    ActivityWorkItem,
    InstancePage,
    OrchestrationWorkItem,
    RenewRequest,
    StartRequest,
    TurnCommit,
)

log = logging.getLogger("duro.providers.codec")

UNDECODABLE_DELAY: Final = 5.0
"""Seconds a fetched item whose payloads cannot be decoded stays invisible after it is put
back (long enough not to flood the log, short enough for a worker with the key to take it)."""

S = TypeVar("S", bound=msgspec.Struct)
M = TypeVar("M", bound=OrchestratorMessage | ActivityTask)
Transform = Callable[[bytes], bytes]
Abandon = Callable[[AbandonRequest], Awaitable[None]]


@functools.cache
def payload_fields(struct_type: type[msgspec.Struct]) -> tuple[tuple[str, ...], bool]:
    """The payload fields of a history event, queue message or work item type: the names of
    its ``msgspec.Raw`` fields, and whether it carries ``carried_events`` (whose ``data`` are
    payloads too). Read from the type, so a new payload field is covered without a change
    here (``tests/providers/test_codec_boundary.py`` checks nothing else can hold one)."""
    fields = msgspec.structs.fields(struct_type)
    raw = tuple(f.name for f in fields if f.type is msgspec.Raw)
    carried = any(f.name == "carried_events" and f.type == list[CarriedEvent] for f in fields)
    return raw, carried


def _map_payloads(struct: S, transform: Transform) -> S:
    raw, carried = payload_fields(type(struct))
    if not raw and not carried:
        return struct
    changes: dict[str, Any] = {
        name: msgspec.Raw(transform(bytes(getattr(struct, name)))) for name in raw
    }
    if carried:
        changes["carried_events"] = [
            msgspec.structs.replace(c, data=msgspec.Raw(transform(bytes(c.data))))
            for c in getattr(struct, "carried_events")  # noqa: B009 - typed by payload_fields
        ]
    return msgspec.structs.replace(struct, **changes)


class CodecBoundary:
    """A provider's codec, applied to the objects of the provider contract."""

    __slots__ = ("_codec",)

    def __init__(self, codec: Codec | None) -> None:
        self._codec = codec

    @property
    def codec(self) -> Codec | None:
        return self._codec

    # -- into the store ----------------------------------------------------------------------

    def encode_message(self, message: M) -> M:
        """A queue message or work item, its payloads encoded for the instance it targets."""
        if self._codec is None:
            return message
        return _map_payloads(message, _encoder(self._codec, message.instance_id))

    def encode_scheduled(self, scheduled: ScheduledMessage) -> ScheduledMessage:
        if self._codec is None:
            return scheduled
        return dataclasses.replace(scheduled, message=self.encode_message(scheduled.message))

    def encode_start(self, request: StartRequest) -> StartRequest:
        """A start and the messages that go with it, their payloads encoded."""
        if self._codec is None:
            return request
        return dataclasses.replace(
            request,
            start=self.encode_message(request.start),
            messages=[self.encode_message(m) for m in request.messages],
        )

    def encode_renewal(self, request: RenewRequest) -> RenewRequest:
        """A lock renewal's heartbeat details, encoded for the work item's instance."""
        if self._codec is None or request.heartbeat_details is None:
            return request
        encode = _encoder(self._codec, request.instance_id)
        return dataclasses.replace(request, heartbeat_details=encode(request.heartbeat_details))

    def encode_turn_commits(self, commits: Sequence[TurnCommit]) -> Sequence[TurnCommit]:
        if self._codec is None:
            return commits
        return [
            dataclasses.replace(commit, changes=self._encode_changes(self._codec, commit.changes))
            for commit in commits
        ]

    def _encode_changes(self, codec: Codec, changes: TurnChanges) -> TurnChanges:
        encode = _encoder(codec, changes.instance_id)
        return dataclasses.replace(
            changes,
            output=_optional(encode, changes.output),
            custom_status=_optional(encode, changes.custom_status),
            new_events=[_map_payloads(event, encode) for event in changes.new_events],
            kv_changes={
                key: dataclasses.replace(change, value=_optional(encode, change.value))
                for key, change in changes.kv_changes.items()
            },
            activity_tasks=[self.encode_message(task) for task in changes.activity_tasks],
            orchestrator_messages=[self.encode_scheduled(m) for m in changes.orchestrator_messages],
        )

    def encode_activity_commits(
        self, commits: Sequence[ActivityCommit]
    ) -> Sequence[ActivityCommit]:
        if self._codec is None:
            return commits
        return [
            commit
            if commit.result is None
            else dataclasses.replace(commit, result=self.encode_scheduled(commit.result))
            for commit in commits
        ]

    # -- out of the store: reads raise CodecError ----------------------------------------------

    def decode_record(self, record: InstanceRecord | None) -> InstanceRecord | None:
        if self._codec is None or record is None:
            return record
        if record.output is None and record.custom_status is None:
            return record
        decode = _decoder(self._codec, record.instance_id)
        return dataclasses.replace(
            record,
            output=_optional(decode, record.output),
            custom_status=_optional(decode, record.custom_status),
        )

    def decode_page(self, page: InstancePage) -> InstancePage:
        if self._codec is None:
            return page
        records = [self.decode_record(record) for record in page.instances]
        return dataclasses.replace(page, instances=[r for r in records if r is not None])

    def decode_history(self, instance_id: str, events: list[HistoryEvent]) -> list[HistoryEvent]:
        if self._codec is None:
            return events
        decode = _decoder(self._codec, instance_id)
        return [_map_payloads(event, decode) for event in events]

    def decode_kv_entry(self, instance_id: str, entry: KvEntry | None) -> KvEntry | None:
        if self._codec is None or entry is None:
            return entry
        return dataclasses.replace(entry, value=_decoder(self._codec, instance_id)(entry.value))

    def decode_kv(self, instance_id: str, entries: dict[str, KvEntry]) -> dict[str, KvEntry]:
        if self._codec is None:
            return entries
        decode = _decoder(self._codec, instance_id)
        return {
            key: dataclasses.replace(entry, value=decode(entry.value))
            for key, entry in entries.items()
        }

    # -- fetched work: put back what cannot be decoded -----------------------------------------

    async def decode_turns(
        self, items: list[OrchestrationWorkItem], abandon: Abandon
    ) -> list[OrchestrationWorkItem]:
        """``items`` decoded; an item that cannot be is abandoned through ``abandon`` (the
        provider's ``abandon_turn``) and left out."""
        if self._codec is None:
            return items
        decoded: list[OrchestrationWorkItem] = []
        for item in items:
            try:
                decoded.append(self._decode_turn(self._codec, item))
            except CodecError as exc:
                await _put_back("turn", item.instance_id, item.lock_token, exc, abandon)
        return decoded

    def _decode_turn(self, codec: Codec, item: OrchestrationWorkItem) -> OrchestrationWorkItem:
        return dataclasses.replace(
            item,
            instance=self.decode_record(item.instance),
            history=self.decode_history(item.instance_id, item.history),
            messages=[_map_payloads(m, _decoder(codec, m.instance_id)) for m in item.messages],
            kv_snapshot=self.decode_kv(item.instance_id, item.kv_snapshot),
        )

    async def decode_activities(
        self, items: list[ActivityWorkItem], abandon: Abandon
    ) -> list[ActivityWorkItem]:
        """``items`` decoded; an item that cannot be is abandoned through ``abandon`` (the
        provider's ``abandon_activity``) and left out."""
        if self._codec is None:
            return items
        decoded: list[ActivityWorkItem] = []
        for item in items:
            task = item.task
            try:
                decode = _decoder(self._codec, task.instance_id)
                decoded.append(dataclasses.replace(item, task=_map_payloads(task, decode)))
            except CodecError as exc:
                await _put_back("activity", task.instance_id, item.lock_token, exc, abandon)
        return decoded


def _encoder(codec: Codec, instance_id: str) -> Transform:
    return functools.partial(codec.encode, context=CodecContext(instance_id))


def _decoder(codec: Codec, instance_id: str) -> Transform:
    return functools.partial(codec.decode, context=CodecContext(instance_id))


def _optional(transform: Transform, payload: bytes | None) -> bytes | None:
    return None if payload is None else transform(payload)


async def _put_back(
    what: str, instance_id: str, lock_token: str, error: CodecError, abandon: Abandon
) -> None:
    log.error(
        "cannot decode the payloads of a fetched %s of %r, putting it back for %s s "
        "(delivery not counted): %s",
        what,
        instance_id,
        UNDECODABLE_DELAY,
        error,
    )
    request = AbandonRequest(
        lock_token=lock_token, delay=UNDECODABLE_DELAY, undo_delivery_count=True
    )
    try:
        await abandon(request)
    except ProviderError as exc:  # the lock expires on its own
        log.warning("putting back the %s of %r failed: %s", what, instance_id, exc)


__all__ = ["UNDECODABLE_DELAY", "CodecBoundary", "payload_fields"]
