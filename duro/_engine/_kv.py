"""``DurableKV``: the instance's key-value map, as orchestration code reads and writes it."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import UnionType
from typing import Any, TypeVar, overload

from .._errors import PayloadError
from .._history import KvCleared, KvDeleted, KvSet
from .._ids import validate_instance_id
from .._limits import check_name
from .._serde import decode, encode
from ._futures import DurableFuture
from ._recorder import Recorder
from ._state import DurableState

T = TypeVar("T")

MAX_KV_KEYS = 100
MAX_KV_VALUE_BYTES = 16 * 1024
"""Keeps a turn that writes every key (100 x 16 KiB) inside one 2 MB Cosmos batch."""


class DurableKV:
    """The instance's durable key-value map: reads are local, writes are recorded in history.

    Survives ``continue_as_new`` and execution pruning; clients read it with
    ``Client.get_value``; other orchestrations with ``get_from``. Limits: ``MAX_KV_KEYS``
    keys, ``MAX_KV_VALUE_BYTES`` per value.
    """

    def __init__(
        self,
        recorder: Recorder,
        state: DurableState,
        read_from: Callable[[str, str, Any, Any], DurableFuture[Any]],
    ) -> None:
        self._recorder = recorder
        self._state = state
        # Weak: ``read_from`` is a method of the context that owns this map, and a cycle
        # would keep a discarded execution alive until a full garbage collection.
        self._read_from = weakref.WeakMethod(read_from)

    @overload
    def get(self, key: str, *, type: type[T]) -> T | None: ...
    @overload
    def get(self, key: str, default: T, *, type: type[T]) -> T: ...
    @overload
    def get(self, key: str, default: Any = None, *, type: UnionType) -> Any: ...
    @overload
    def get(self, key: str, default: Any = None) -> Any: ...

    def get(self, key: str, default: Any = None, *, type: Any = Any) -> Any:
        """The value of ``key`` decoded as ``type`` (builtins by default); ``default`` (None)
        if absent. ``get(key, type=int)`` is ``int | None``; ``get(key, 0, type=int)`` ``int``.
        """
        entry = self._state.kv.get(key)
        if entry is None:
            return default
        return decode(entry.value, type, what=f"KV value {key!r}")

    @overload
    def get_from(self, instance_id: str, key: str, *, type: type[T]) -> DurableFuture[T | None]: ...
    @overload
    def get_from(
        self, instance_id: str, key: str, default: T, *, type: type[T]
    ) -> DurableFuture[T]: ...
    @overload
    def get_from(
        self, instance_id: str, key: str, default: Any = None, *, type: UnionType
    ) -> DurableFuture[Any]: ...
    @overload
    def get_from(self, instance_id: str, key: str, default: Any = None) -> DurableFuture[Any]: ...

    def get_from(
        self, instance_id: str, key: str, default: Any = None, *, type: Any = Any
    ) -> DurableFuture[Any]:
        """Another instance's committed value of ``key``, decoded as ``type``; ``default``
        (None) if that instance or key does not exist. Await the returned future.

        The read runs on a worker (a duro system activity) and its result is recorded, so
        replay gets the same value; it sees what the other instance had committed when it ran.
        """
        validate_instance_id(instance_id)
        check_name(key, "a KV key")
        read_from = self._read_from()
        assert read_from is not None  # the context lives as long as its code runs
        return read_from(instance_id, key, default, type)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON, at most ``MAX_KV_VALUE_BYTES``) under ``key``; recorded."""
        check_name(key, "a KV key")
        raw = encode(value, what=f"KV value {key!r}", limit=MAX_KV_VALUE_BYTES)
        kv = self._state.kv
        if key not in kv and len(kv) >= MAX_KV_KEYS:
            raise PayloadError(f"KV holds {len(kv)} keys; the limit is {MAX_KV_KEYS}")
        self._recorder.emit(KvSet(event_id=0, ts=0, seq=0, key=key, value=raw))
        self._state.set_kv(key, bytes(raw), self._recorder.now_ms)

    def delete(self, key: str) -> None:
        """Remove ``key`` (nothing happens if it is absent); recorded."""
        self._recorder.emit(KvDeleted(event_id=0, ts=0, seq=0, key=key))
        self._state.delete_kv(key)

    def clear(self) -> None:
        """Remove every key; recorded."""
        self._recorder.emit(KvCleared(event_id=0, ts=0, seq=0))
        self._state.clear_kv()

    def prune(self, *, updated_before: datetime) -> int:
        """Delete every key last set before ``updated_before`` (an aware datetime); each
        deletion is recorded. Returns how many keys went. Deterministic: the times compared
        are the recorded times of the turns that set the keys."""
        if not isinstance(updated_before, datetime) or updated_before.tzinfo is None:
            raise TypeError(
                "ctx.kv.prune(updated_before=...) takes a timezone-aware datetime, "
                f"got {updated_before!r}"
            )
        cutoff_ms = updated_before.timestamp() * 1000
        stale = [key for key, entry in self._state.kv.items() if entry.updated_at_ms < cutoff_ms]
        for key in stale:
            self.delete(key)
        return len(stale)

    def items(self) -> dict[str, Any]:
        """A decoded copy of every entry."""
        return {k: decode(v.value, what=f"KV value {k!r}") for k, v in self._state.kv.items()}

    def keys(self) -> list[str]:
        """Every key, in insertion order."""
        return list(self._state.kv)

    def updated_at(self, key: str) -> datetime | None:
        """When ``key`` was last set (the turn's time), or None if absent."""
        entry = self._state.kv.get(key)
        return None if entry is None else datetime.fromtimestamp(entry.updated_at_ms / 1000, UTC)

    def __contains__(self, key: object) -> bool:
        return key in self._state.kv

    def __len__(self) -> int:
        return len(self._state.kv)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._state.kv))
