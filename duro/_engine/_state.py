"""The durable state code reads and writes besides history: KV, custom status, GUID counter.

Callers record each change as an action (``KvSet``, ``CustomStatusSet``, ...) before they apply
it here, so replay rebuilds the same state from the same calls.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._records import KvEntry


class DurableState:
    """State an orchestration keeps across turns without awaiting anything."""

    def __init__(self, kv_snapshot: Mapping[str, KvEntry] | None = None) -> None:
        # The instance's KV as code sees it: the snapshot the turn started from, plus this
        # execution's writes (replayed or new) in the order they were made.
        self._kv: dict[str, KvEntry] = dict(kv_snapshot or {})
        # The last value code set, JSON-encoded; None when cleared or never set. The store
        # learns of changes from the recorded CustomStatusSet, not from here.
        self._custom_status: bytes | None = None
        # GUIDs handed out so far in this execution: new_guid names the next one by it.
        self._guids = 0

    @property
    def kv(self) -> Mapping[str, KvEntry]:
        return self._kv

    def set_kv(self, key: str, value: bytes, updated_at_ms: int) -> None:
        self._kv[key] = KvEntry(value=value, updated_at_ms=updated_at_ms)

    def delete_kv(self, key: str) -> None:
        self._kv.pop(key, None)

    def clear_kv(self) -> None:
        self._kv.clear()

    @property
    def custom_status(self) -> bytes | None:
        return self._custom_status

    def set_custom_status(self, value: bytes | None) -> None:
        self._custom_status = value

    def next_guid_number(self) -> int:
        """1 for the first GUID of the execution, then 2, 3, ..."""
        self._guids += 1
        return self._guids
