"""Instance id rules shared by every store (Cosmos ids forbid / \\ ? #; keys must stay short)."""

from __future__ import annotations

import re

from ._errors import InvalidInstanceIdError

MAX_INSTANCE_ID_LENGTH = 200
_ALLOWED = re.compile(r"[A-Za-z0-9_.:@=+\-]+")


def validate_instance_id(instance_id: object) -> str:
    """Return ``instance_id`` if valid, else raise ``InvalidInstanceIdError`` saying why."""
    if not isinstance(instance_id, str):
        raise InvalidInstanceIdError(f"instance id must be a str, not {type(instance_id).__name__}")
    if not instance_id:
        raise InvalidInstanceIdError("instance id must not be empty")
    if len(instance_id) > MAX_INSTANCE_ID_LENGTH:
        raise InvalidInstanceIdError(
            f"instance id is {len(instance_id)} characters; the limit is {MAX_INSTANCE_ID_LENGTH}"
        )
    if not _ALLOWED.fullmatch(instance_id):
        bad = sorted({c for c in instance_id if not _ALLOWED.fullmatch(c)})
        raise InvalidInstanceIdError(
            f"instance id {instance_id!r} contains {''.join(bad)!r}; allowed are letters, "
            "digits and _ . : @ = + -"
        )
    return instance_id
