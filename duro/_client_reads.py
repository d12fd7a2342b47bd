"""``InstanceReads``: the ``Client`` methods that read an instance's state, wait for it to
change, and list instances (none of them writes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import UnionType
from typing import Any, Literal, TypeVar, overload

import msgspec

from ._bulk import children_of
from ._errors import InstanceNotFoundError, ProviderError, WaitTimeoutError
from ._history import HistoryEvent
from ._history_file import ExportedKv, HistoryFile
from ._ids import validate_instance_id
from ._limits import check_name
from ._serde import decode
from ._status import ExecutionInfo, InstanceTree, KvValue, OrchestrationStatus, State
from ._watch import watch_for
from .providers import InstanceQuery, InstanceRecord, Provider

T = TypeVar("T")

_POLL_START = 0.005
_POLL_MAX = 0.05
_POLL_SHARE = 0.1
"""Past ``_POLL_MAX``, a wait polls no more often than every tenth of the time it has waited:
each poll is a read the store may bill (a Cosmos DB point read is 1 RU), and a wait for a
workflow that takes minutes would otherwise read 20 times a second throughout."""
_POLL_LONGEST = 1.0


def _next_poll(delay: float, began: float) -> float:
    """The pause before the poll after one that waited ``delay``, in a wait begun at
    ``began`` (``time.monotonic``)."""
    if delay < _POLL_MAX:
        return min(delay * 2, _POLL_MAX)
    return min(max((time.monotonic() - began) * _POLL_SHARE, _POLL_MAX), _POLL_LONGEST)


def _to_datetime(ms: int | None) -> datetime | None:
    return None if not ms else datetime.fromtimestamp(ms / 1000, UTC)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _status_of(
    instance_id: str, record: InstanceRecord | None, output_type: Any = Any
) -> OrchestrationStatus[Any]:
    if record is None:
        return OrchestrationStatus(
            instance_id=instance_id, state=State.NOT_FOUND, output_type=output_type
        )
    return OrchestrationStatus(
        instance_id=instance_id,
        state=record.state,
        name=record.name,
        version=record.version,
        execution_id=record.execution_id,
        output_json=record.output,
        error=record.error,
        custom_status_json=record.custom_status,
        custom_status_version=record.custom_status_version,
        parent_instance_id=record.parent_instance_id,
        created_at=_to_datetime(record.created_at_ms),
        updated_at=_to_datetime(record.updated_at_ms),
        output_type=output_type,
    )


def epoch_ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


class InstanceReads:
    """Reading, waiting for and listing instances; ``Client`` is built on it."""

    store: Provider

    async def _require(self, instance_id: str) -> InstanceRecord:
        """The instance's record; ``InstanceNotFoundError`` if the store does not know it."""
        validate_instance_id(instance_id)
        record = await self.store.read_instance(instance_id)
        if record is None:
            raise InstanceNotFoundError(instance_id)
        return record

    # -- reading state --------------------------------------------------------------------------

    @overload
    async def get_status(
        self, instance_id: str, *, output_type: type[T]
    ) -> OrchestrationStatus[T]: ...
    @overload
    async def get_status(
        self, instance_id: str, *, output_type: UnionType
    ) -> OrchestrationStatus[Any]: ...
    @overload
    async def get_status(self, instance_id: str) -> OrchestrationStatus[Any]: ...

    async def get_status(
        self, instance_id: str, *, output_type: Any = Any
    ) -> OrchestrationStatus[Any]:
        """Current status; ``State.NOT_FOUND`` for unknown ids. ``output`` decodes as
        ``output_type`` (builtins by default)."""
        validate_instance_id(instance_id)
        record = await self.store.read_instance(instance_id)
        return _status_of(instance_id, record, output_type)

    @overload
    async def wait_for_orchestration(
        self, instance_id: str, timeout: float | timedelta = 30.0, *, output_type: type[T]
    ) -> OrchestrationStatus[T]: ...
    @overload
    async def wait_for_orchestration(
        self, instance_id: str, timeout: float | timedelta = 30.0, *, output_type: UnionType
    ) -> OrchestrationStatus[Any]: ...
    @overload
    async def wait_for_orchestration(
        self, instance_id: str, timeout: float | timedelta = 30.0
    ) -> OrchestrationStatus[Any]: ...

    async def wait_for_orchestration(
        self, instance_id: str, timeout: float | timedelta = 30.0, *, output_type: Any = Any
    ) -> OrchestrationStatus[Any]:
        """Wait until the instance completes or fails; ``WaitTimeoutError`` after ``timeout``
        (real seconds), ``InstanceNotFoundError`` at once for an id the store does not know.

        ``output_type`` types and decodes ``status.output``:
        ``await client.wait_for_orchestration(id, output_type=Receipt)`` is an
        ``OrchestrationStatus[Receipt]``.
        """
        return await self._wait(
            instance_id,
            timeout,
            lambda s: s.state.is_terminal,
            "to finish",
            ending_only=True,
            output_type=output_type,
        )

    @overload
    async def wait_for_status_change(
        self,
        instance_id: str,
        last_seen: OrchestrationStatus[Any] | None = None,
        timeout: float | timedelta = 30.0,
        *,
        output_type: type[T],
    ) -> OrchestrationStatus[T]: ...
    @overload
    async def wait_for_status_change(
        self,
        instance_id: str,
        last_seen: OrchestrationStatus[Any] | None = None,
        timeout: float | timedelta = 30.0,
        *,
        output_type: UnionType,
    ) -> OrchestrationStatus[Any]: ...
    @overload
    async def wait_for_status_change(
        self,
        instance_id: str,
        last_seen: OrchestrationStatus[Any] | None = None,
        timeout: float | timedelta = 30.0,
    ) -> OrchestrationStatus[Any]: ...

    async def wait_for_status_change(
        self,
        instance_id: str,
        last_seen: OrchestrationStatus[Any] | None = None,
        timeout: float | timedelta = 30.0,
        *,
        output_type: Any = Any,
    ) -> OrchestrationStatus[Any]:
        """Wait until the state or custom status differs from ``last_seen`` (or it ends).

        Same errors as ``wait_for_orchestration``; ``output_type`` as there.
        """
        seen_state = last_seen.state if last_seen else State.NOT_FOUND
        seen_version = last_seen.custom_status_version if last_seen else 0
        return await self._wait(
            instance_id,
            timeout,
            lambda s: (
                s.state is not seen_state
                or s.custom_status_version != seen_version
                or s.state.is_terminal
            ),
            "to change status",
            output_type=output_type,
        )

    async def _wait(
        self,
        instance_id: str,
        timeout: float | timedelta,
        done: Callable[[OrchestrationStatus[Any]], bool],
        what: str,
        *,
        ending_only: bool = False,
        output_type: Any = Any,
    ) -> OrchestrationStatus[Any]:
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        began = time.monotonic()
        deadline = began + seconds
        delay = _POLL_START
        watch = watch_for(self.store)
        state = "unknown"
        while True:
            changed = watch.event(instance_id, ending_only=ending_only)  # before reading
            try:
                status = await self.get_status(instance_id, output_type=output_type)
            except ProviderError as exc:
                # One poll of many: a store that is briefly busy or throttling only delays it.
                if not exc.retryable or time.monotonic() >= deadline:
                    raise
            else:
                if status.state is State.NOT_FOUND:
                    # Nothing will ever start it on its own: waiting out the timeout helps
                    # nobody.
                    raise InstanceNotFoundError(instance_id)
                if done(status):
                    return status
                state = status.state.value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(
                    f"instance {instance_id!r} did not {what.removeprefix('to ')} within "
                    f"{seconds} s (state: {state})"
                )
            # A runtime here or (through the store) elsewhere wakes us at once; polling covers
            # every other writer.
            await watch.wait(changed, min(delay, remaining), self.store)
            delay = _next_poll(delay, began)

    @overload
    async def get_value(self, instance_id: str, key: str, *, type: type[T]) -> T | None: ...
    @overload
    async def get_value(self, instance_id: str, key: str, default: T, *, type: type[T]) -> T: ...
    @overload
    async def get_value(
        self, instance_id: str, key: str, default: Any = None, *, type: UnionType
    ) -> Any: ...
    @overload
    async def get_value(self, instance_id: str, key: str, default: Any = None) -> Any: ...

    async def get_value(
        self, instance_id: str, key: str, default: Any = None, *, type: Any = Any
    ) -> Any:
        """One value of the instance's durable KV (``ctx.kv``) decoded as ``type`` (builtins
        by default); ``default`` (None) if absent."""
        validate_instance_id(instance_id)
        entry = await self.store.get_kv_value(instance_id, key)
        if entry is None:
            return default
        return decode(entry.value, type, what=f"KV value {key!r}")

    @overload
    async def get_values(
        self, instance_id: str, *, with_updated_at: Literal[False] = False
    ) -> dict[str, Any]: ...
    @overload
    async def get_values(
        self, instance_id: str, *, with_updated_at: Literal[True]
    ) -> dict[str, KvValue]: ...

    async def get_values(
        self, instance_id: str, *, with_updated_at: bool = False
    ) -> dict[str, Any] | dict[str, KvValue]:
        """Every KV entry of the instance, decoded; with ``with_updated_at=True`` each as a
        ``KvValue`` that also says when it was last set."""
        validate_instance_id(instance_id)
        entries = await self.store.get_kv_items(instance_id)
        if not with_updated_at:
            return {k: decode(v.value, what=f"KV value {k!r}") for k, v in entries.items()}
        return {
            k: KvValue(
                value=decode(v.value, what=f"KV value {k!r}"), updated_at=_at(v.updated_at_ms)
            )
            for k, v in entries.items()
        }

    @overload
    async def wait_for_value(
        self, instance_id: str, key: str, *, timeout: float | timedelta = 30.0, type: type[T]
    ) -> T: ...
    @overload
    async def wait_for_value(
        self, instance_id: str, key: str, *, timeout: float | timedelta = 30.0, type: UnionType
    ) -> Any: ...
    @overload
    async def wait_for_value(
        self, instance_id: str, key: str, *, timeout: float | timedelta = 30.0
    ) -> Any: ...

    async def wait_for_value(
        self,
        instance_id: str,
        key: str,
        *,
        timeout: float | timedelta = 30.0,
        type: Any = Any,
    ) -> Any:
        """Wait until the instance's KV holds ``key`` and return its value, decoded as
        ``type``; ``WaitTimeoutError`` after ``timeout`` (real seconds).

        Waits for an instance that does not exist yet too (another party may start it): a
        wrong id shows as the timeout, whose message says whether the instance exists.
        """
        validate_instance_id(instance_id)
        check_name(key, "a KV key")
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        began = time.monotonic()
        deadline = began + seconds
        delay = _POLL_START
        watch = watch_for(self.store)
        while True:
            changed = watch.event(instance_id)  # before reading
            try:
                entry = await self.store.get_kv_value(instance_id, key)
            except ProviderError as exc:
                if not exc.retryable or time.monotonic() >= deadline:
                    raise
            else:
                if entry is not None:
                    return decode(entry.value, type, what=f"KV value {key!r}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                state = (await self.get_status(instance_id)).state.value
                raise WaitTimeoutError(
                    f"instance {instance_id!r} set no KV value {key!r} within {seconds} s "
                    f"(state: {state})"
                )
            await watch.wait(changed, min(delay, remaining), self.store)
            delay = _next_poll(delay, began)

    async def get_history(
        self, instance_id: str, execution_id: int | None = None
    ) -> list[HistoryEvent]:
        """Recorded events of one execution (default: the current one)."""
        validate_instance_id(instance_id)
        return await self.store.read_history(instance_id, execution_id)

    async def export_history(
        self, instance_id: str, execution_id: int | None = None
    ) -> HistoryFile:
        """One execution's history (default: the current one) with the instance's durable
        map, ready to ``write`` as a versioned JSON file for ``duro.testing.replay``.

        ``InstanceNotFoundError`` for an id the store does not know.
        """
        record = await self._require(instance_id)
        execution = execution_id or record.execution_id
        events = await self.store.read_history(instance_id, execution)
        kv = await self.store.get_kv_snapshot(instance_id)
        return HistoryFile(
            instance_id=instance_id,
            execution_id=execution,
            exported_at=datetime.now(UTC),
            kv={
                key: ExportedKv(value=msgspec.Raw(entry.value), updated_at_ms=entry.updated_at_ms)
                for key, entry in kv.items()
            },
            events=events,
        )

    # -- management -------------------------------------------------------------------------------

    async def list_instances(
        self,
        *,
        states: set[State] | None = None,
        name: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
    ) -> list[OrchestrationStatus[Any]]:
        """Instances matching the filters, newest first (all pages, up to ``limit``)."""
        results: list[OrchestrationStatus[Any]] = []
        continuation: str | None = None
        while len(results) < limit:
            page = await self.store.list_instances(
                InstanceQuery(
                    states=frozenset(states) if states else None,
                    name=name,
                    created_after_ms=epoch_ms(created_after),
                    created_before_ms=epoch_ms(created_before),
                    limit=limit - len(results),
                    continuation=continuation,
                )
            )
            results.extend(_status_of(r.instance_id, r) for r in page.instances)
            continuation = page.continuation
            if continuation is None:
                break
        return results

    async def list_executions(self, instance_id: str) -> list[ExecutionInfo]:
        """Every stored execution of the instance, oldest first, with its status: the first
        one, then one per ``continue_as_new`` or restart (pruned ones are gone).
        ``InstanceNotFoundError`` for an id the store does not know."""
        await self._require(instance_id)
        return [
            ExecutionInfo(
                execution_id=record.execution_id,
                status=record.status,
                started_at=_at(record.started_at_ms),
                completed_at=_to_datetime(record.completed_at_ms),
                event_count=record.event_count,
            )
            for record in await self.store.read_executions(instance_id)
        ]

    async def get_instance_tree(self, instance_id: str) -> InstanceTree:
        """The instance with its sub-orchestrations, recursively, each with its status.
        ``InstanceNotFoundError`` for an id the store does not know."""
        record = await self._require(instance_id)
        return await self._tree(record, {instance_id})

    async def _tree(self, record: InstanceRecord, seen: set[str]) -> InstanceTree:
        children = []
        for child in await children_of(self.store, record.instance_id):
            if child.instance_id not in seen:  # parent links never loop; be sure anyway
                seen.add(child.instance_id)
                children.append(await self._tree(child, seen))
        return InstanceTree(status=_status_of(record.instance_id, record), children=children)
