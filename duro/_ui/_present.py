"""How values look on a page: payloads, times and history events as short text."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec

from .._history import ActivityScheduled, HistoryEvent, TimerCreated
from .._status import ErrorInfo
from ._timeline import duration

PAYLOAD_LIMIT = 20_000
"""Characters of one payload shown on a page; the rest is cut (with a note)."""
SHORT_LIMIT = 80


def payload(raw: bytes | None) -> str:
    """A stored JSON payload, indented for reading; cut past ``PAYLOAD_LIMIT`` characters."""
    if raw is None:
        return "null"
    try:
        text = json.dumps(msgspec.json.decode(raw), indent=2, ensure_ascii=False)
    except msgspec.DecodeError:
        text = bytes(raw).decode("utf-8", "replace")
    if len(text) > PAYLOAD_LIMIT:
        return f"{text[:PAYLOAD_LIMIT]}\n… ({len(text) - PAYLOAD_LIMIT:,} more characters)"
    return text


def short(raw: bytes | None, limit: int = SHORT_LIMIT) -> str:
    """A payload on one line, cut to ``limit`` characters."""
    if raw is None:
        return ""
    try:
        text = json.dumps(msgspec.json.decode(raw), ensure_ascii=False, separators=(",", ":"))
    except msgspec.DecodeError:
        text = bytes(raw).decode("utf-8", "replace")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def local_time(value: datetime | int | None) -> str:
    """Local time of the machine serving the page, to the second; blank when unknown."""
    if value is None or value == 0:
        return ""
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1000, UTC)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def iso(value: datetime | int | None) -> str:
    if value is None or value == 0:
        return ""
    if isinstance(value, int):
        value = datetime.fromtimestamp(value / 1000, UTC)
    return value.isoformat()


def ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return ""
    return f"{duration(int((now - value).total_seconds() * 1000))} ago"


_SUMMARY_FIELDS = ("name", "queue", "instance_id", "key", "reason", "target")
_PAYLOAD_FIELDS = ("input", "result", "output", "data", "value")


def event_summary(event: HistoryEvent) -> str:
    """The fields that tell one event from another, on one line."""
    parts: list[str] = []
    seq = getattr(event, "seq", None)
    if seq is not None:
        parts.append(f"step {seq}")
    for name in _SUMMARY_FIELDS:
        value = getattr(event, name, None)
        if value is not None:
            parts.append(f"{name}={value}")
    if isinstance(event, ActivityScheduled):
        if event.attempt != 1:
            parts.append(f"attempt {event.attempt}")
        if event.tag:
            parts.append(f"tag={event.tag}")
        if event.session:
            parts.append(f"session={event.session}")
    if isinstance(event, TimerCreated):
        parts.append(f"fires after {duration(event.fire_at - event.ts)}")
    error: ErrorInfo | None = getattr(event, "error", None)
    if error is not None:
        parts.append(f"{error.error_type}: {error.message}")
    return " · ".join(parts)


def event_payloads(event: HistoryEvent) -> list[tuple[str, str]]:
    """The event's payloads (and an error's details), each as ``(label, text)``."""
    found: list[tuple[str, str]] = []
    for name in _PAYLOAD_FIELDS:
        raw = getattr(event, name, None)
        if isinstance(raw, msgspec.Raw) and bytes(raw) != b"null":
            found.append((name, payload(bytes(raw))))
    error: ErrorInfo | None = getattr(event, "error", None)
    if error is not None and error.details:
        found.append(("details", error.details))
    return found


def error_fields(error: ErrorInfo) -> list[tuple[str, str]]:
    return [
        ("category", error.category.value),
        ("type", error.error_type),
        ("message", error.message),
        ("retryable", "yes" if error.retryable else "no"),
    ]


def decoded(raw: bytes | None) -> Any:
    return None if raw is None else msgspec.json.decode(raw)
