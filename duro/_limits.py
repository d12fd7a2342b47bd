"""Size limits on the strings users hand to duro, which every store keeps as they are.

Payloads (inputs, outputs, event data, KV values, custom status) have their byte limits in
``_serde`` and ``_engine._kv``; instance ids theirs in ``_ids``. These are the rest.
"""

from __future__ import annotations

from ._errors import PayloadError

MAX_NAME_LENGTH = 256
"""Characters in an event name, a mailbox queue name or a KV key."""
MAX_REASON_LENGTH = 1024
"""Characters in a cancellation reason."""


def check_name(value: object, what: str) -> str:
    """``value`` if it is a usable event name, queue name or KV key, else ``PayloadError``."""
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > MAX_NAME_LENGTH:
        raise PayloadError(
            f"{what} is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    return value


def check_reason(value: object) -> str:
    """A cancellation reason, or ``PayloadError`` (it becomes the instance's error message)."""
    if not isinstance(value, str):
        raise PayloadError(f"a cancellation reason must be a string, got {value!r}")
    if len(value) > MAX_REASON_LENGTH:
        raise PayloadError(
            f"the cancellation reason is {len(value)} characters long; "
            f"the limit is {MAX_REASON_LENGTH}"
        )
    return value
