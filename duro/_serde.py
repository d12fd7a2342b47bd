"""Payload serialisation: every input, output, event payload and KV value is msgspec JSON."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from ._errors import PayloadError
from ._status import decode_payload

MAX_PAYLOAD_BYTES = 256 * 1024
"""Largest encoded payload accepted (inputs, outputs, event data, KV values)."""

_encoder = msgspec.json.Encoder()


def encode(value: Any, *, what: str = "value", limit: int = MAX_PAYLOAD_BYTES) -> msgspec.Raw:
    """Encode ``value`` to raw JSON, or raise ``PayloadError`` naming ``what``."""
    if isinstance(value, msgspec.Raw):
        data = bytes(value)
    else:
        try:
            data = _encoder.encode(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise PayloadError(
                f"{what} of type {type(value).__name__} cannot be serialised to JSON: {exc}. "
                "Use JSON-compatible values, msgspec.Struct or dataclass instances."
            ) from exc
    if len(data) > limit:
        raise PayloadError(f"{what} is {len(data)} bytes encoded; the limit is {limit} bytes")
    # JSON has no NaN or infinity: msgspec writes them as null, which would silently change
    # the value. A null in the output is the only sign, so only then look for them.
    if b"null" in data and not isinstance(value, msgspec.Raw) and _has_non_finite(value):
        raise PayloadError(
            f"{what} holds NaN or an infinity, which JSON cannot carry; "
            "send it as a string or None instead"
        )
    return msgspec.Raw(data)


def _has_non_finite(value: Any) -> bool:
    try:
        stack = [msgspec.to_builtins(value, builtin_types=(bytes, bytearray, memoryview))]
    except (TypeError, ValueError):
        return False  # encoded by a custom hook: nothing here can tell
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def decode(raw: msgspec.Raw | bytes | None, type_: Any = Any, *, what: str = "value") -> Any:
    """Decode raw JSON as ``type_``, or raise ``PayloadError`` naming ``what``."""
    if raw is None:
        return None
    try:
        return decode_payload(bytes(raw), type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PayloadError(f"{what} cannot be decoded as {_type_name(type_)}: {exc}") from exc


def _type_name(type_: Any) -> str:
    return getattr(type_, "__name__", None) or repr(type_)
