"""Contract: instance KV (committed store + the running execution's delta, snapshots, lifetime)."""

from __future__ import annotations

from typing import Final

import pytest

from ..._errors import LockLostError
from ...providers import Provider
from ...providers._types import (
    DeleteRequest,
    ExecutionStatus,
    KvEntry,
    PruneRequest,
    StartRequest,
)
from .._clock import VirtualClock
from ._base import ContractBase
from ._fixtures import (
    continue_as_new,
    continue_as_new_and_lock,
    create_instance,
    idle_commit,
    kv_delete,
    kv_set,
    lock_instance,
    lock_next_turn,
    next_turn,
    payload,
    start_and_lock,
    start_message,
    turn_commit,
)

MAX_KV_KEYS: Final = 100
"""Keys an instance may hold after a turn (the runtime enforces it; stores must hold it)."""
MAX_KV_VALUE_BYTES: Final = 16 * 1024
"""Largest value the runtime lets through."""


async def _snapshot(provider: Provider, instance_id: str) -> dict[str, bytes]:
    """Values of the KV snapshot the next turn of ``instance_id`` gets (that turn commits)."""
    item = await lock_next_turn(provider, instance_id)
    await provider.commit_turn(idle_commit(item))
    return {key: entry.value for key, entry in item.kv_snapshot.items()}


async def _values(provider: Provider, instance_id: str) -> dict[str, bytes]:
    """The merged client view of ``instance_id``'s KV, values only."""
    return {key: entry.value for key, entry in (await provider.get_kv_items(instance_id)).items()}


async def _value(provider: Provider, instance_id: str, key: str) -> bytes | None:
    entry = await provider.get_kv_value(instance_id, key)
    return None if entry is None else entry.value


class KvContract(ContractBase):
    """KV writes ride on turn commits; clients read the merged view; turns read the snapshot."""

    # -- writes and client reads --------------------------------------------------------------

    @pytest.mark.anyio
    async def test_kv_set_in_a_commit_is_readable(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(provider, "i1", kv_changes=[kv_set("color", "red", at_ms=now)])

        expected = KvEntry(value=payload("red"), updated_at_ms=now)
        assert await provider.get_kv_value("i1", "color") == expected
        assert await provider.get_kv_items("i1") == {"color": expected}

    @pytest.mark.anyio
    async def test_kv_later_set_overwrites_value_and_timestamp(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1", kv_changes=[kv_set("n", 1, at_ms=clock.now_ms())])
        await clock.advance(5)
        later = clock.now_ms()

        await next_turn(provider, "i1", kv_changes=[kv_set("n", 2, at_ms=later)])

        assert await provider.get_kv_value("i1", "n") == KvEntry(value=b"2", updated_at_ms=later)

    @pytest.mark.anyio
    async def test_kv_entries_keep_the_timestamps_the_commit_carries(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        recorded = clock.now_ms() - 60_000
        await create_instance(provider, "i1", kv_changes=[kv_set("k", 1, at_ms=recorded)])
        await clock.advance(10)

        assert (await provider.get_kv_items("i1"))["k"].updated_at_ms == recorded
        await next_turn(provider, "i1", status=ExecutionStatus.COMPLETED)
        assert (await provider.get_kv_items("i1"))["k"].updated_at_ms == recorded

    @pytest.mark.anyio
    async def test_kv_delete_removes_the_key(self, provider: Provider, clock: VirtualClock) -> None:
        now = clock.now_ms()
        await create_instance(
            provider, "i1", kv_changes=[kv_set("a", 1, at_ms=now), kv_set("b", 2, at_ms=now)]
        )

        await next_turn(provider, "i1", kv_changes=[kv_delete("a", at_ms=now)])

        assert await provider.get_kv_value("i1", "a") is None
        assert await _values(provider, "i1") == {"b": b"2"}

    @pytest.mark.anyio
    async def test_kv_set_and_delete_in_one_commit_apply_in_order(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(
            provider,
            "i1",
            kv_changes=[
                kv_set("a", 1, at_ms=now),
                kv_delete("a", at_ms=now),
                kv_delete("b", at_ms=now),
                kv_set("b", 2, at_ms=now),
            ],
        )

        assert await _values(provider, "i1") == {"b": b"2"}

    @pytest.mark.anyio
    async def test_kv_deleting_a_missing_key_is_harmless(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1", kv_changes=[kv_delete("ghost", at_ms=clock.now_ms())])

        assert await provider.get_kv_items("i1") == {}

    @pytest.mark.anyio
    async def test_kv_clear_all_removes_every_key(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(
            provider, "i1", kv_changes=[kv_set("a", 1, at_ms=now), kv_set("b", 2, at_ms=now)]
        )

        await next_turn(provider, "i1", kv_clear_all=True)

        assert await provider.get_kv_items("i1") == {}
        assert await provider.get_kv_value("i1", "a") is None

    @pytest.mark.anyio
    async def test_kv_clear_all_applies_before_the_commits_changes(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(provider, "i1", kv_changes=[kv_set("old", 1, at_ms=now)])

        await next_turn(provider, "i1", kv_clear_all=True, kv_changes=[kv_set("new", 2, at_ms=now)])

        assert await _values(provider, "i1") == {"new": b"2"}

    @pytest.mark.anyio
    async def test_kv_reads_of_missing_keys_and_unknown_instances_are_empty(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1", kv_changes=[kv_set("a", 1, at_ms=clock.now_ms())])

        assert await provider.get_kv_value("i1", "missing") is None
        assert await provider.get_kv_value("ghost", "a") is None
        assert await provider.get_kv_items("ghost") == {}

    @pytest.mark.anyio
    async def test_kv_is_isolated_per_instance(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(provider, "i1", kv_changes=[kv_set("k", "one", at_ms=now)])
        await create_instance(provider, "i2", kv_changes=[kv_set("k", "two", at_ms=now)])

        await next_turn(provider, "i1", kv_clear_all=True)

        assert await provider.get_kv_items("i1") == {}
        assert await _values(provider, "i2") == {"k": payload("two")}

    @pytest.mark.anyio
    async def test_kv_changes_of_a_rejected_commit_are_not_applied(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1", lock_timeout=self.lock_timeout)
        await clock.advance(self.lock_timeout + 1)
        await lock_instance(provider, "i1")  # takes over the expired lock
        commit = turn_commit(item, kv_changes=[kv_set("k", 1, at_ms=clock.now_ms())])

        with pytest.raises(LockLostError):
            await provider.commit_turn(commit)

        assert await provider.get_kv_items("i1") == {}

    @pytest.mark.anyio
    async def test_kv_round_trips_unusual_keys_and_values(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        odd = {
            "with space": "",
            "ünïcødé/κλειδί": {"nested": [1, None, True]},
            "dots.and/slashes\\": 'line\nbreak "quoted"',
            "'; DROP TABLE kv; --": 0,
        }
        await create_instance(
            provider, "i1", kv_changes=[kv_set(key, value, at_ms=now) for key, value in odd.items()]
        )

        assert await _values(provider, "i1") == {key: payload(v) for key, v in odd.items()}
        assert await _value(provider, "i1", "with space") == b'""'

    @pytest.mark.anyio
    async def test_kv_holds_the_runtime_limits(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        big = "x" * (MAX_KV_VALUE_BYTES - 2)  # the JSON quotes make it exactly the limit
        changes = [kv_set(f"key-{n:03}", big, at_ms=now) for n in range(MAX_KV_KEYS)]
        await create_instance(provider, "i1", kv_changes=changes)

        values = await _values(provider, "i1")
        assert len(values) == MAX_KV_KEYS
        assert all(len(value) == MAX_KV_VALUE_BYTES for value in values.values())
        await next_turn(provider, "i1", status=ExecutionStatus.COMPLETED)
        snapshot = await _snapshot(provider, "i1")
        assert snapshot["key-099"] == payload(big)

    # -- the fetch snapshot ---------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_kv_snapshot_of_a_new_instance_is_empty(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        item = await start_and_lock(provider, "i1")

        assert item.kv_snapshot == {}

    @pytest.mark.anyio
    async def test_kv_snapshot_excludes_the_running_executions_writes(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(provider, "i1", kv_changes=[kv_set("a", 1, at_ms=clock.now_ms())])

        assert await _snapshot(provider, "i1") == {}
        assert await _values(provider, "i1") == {"a": b"1"}

    @pytest.mark.anyio
    async def test_kv_is_merged_into_the_snapshot_when_the_execution_completes(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(
            provider, "i1", kv_changes=[kv_set("a", 1, at_ms=now), kv_set("gone", 0, at_ms=now)]
        )
        await next_turn(
            provider,
            "i1",
            status=ExecutionStatus.COMPLETED,
            kv_changes=[kv_set("b", 2, at_ms=now), kv_delete("gone", at_ms=now)],
        )

        assert await _snapshot(provider, "i1") == {"a": b"1", "b": b"2"}
        assert await _values(provider, "i1") == {"a": b"1", "b": b"2"}

    @pytest.mark.anyio
    async def test_kv_of_a_failed_execution_stays_out_of_the_snapshot_but_reads_as_written(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        # A rewind replays the failed execution from the KV it started with (decision 0009).
        now = clock.now_ms()
        await create_instance(provider, "i1", kv_changes=[kv_set("a", 1, at_ms=now)])
        await continue_as_new(provider, "i1")
        await next_turn(provider, "i1", kv_changes=[kv_set("b", 2, at_ms=now)])
        await next_turn(
            provider,
            "i1",
            status=ExecutionStatus.FAILED,
            kv_changes=[kv_set("a", 9, at_ms=now + 1), kv_set("c", 3, at_ms=now + 1)],
        )

        assert await _values(provider, "i1") == {"a": b"9", "b": b"2", "c": b"3"}
        assert await _snapshot(provider, "i1") == {"a": b"1"}
        # A later turn of the failed execution merges nothing either.
        assert await _snapshot(provider, "i1") == {"a": b"1"}
        assert await _values(provider, "i1") == {"a": b"9", "b": b"2", "c": b"3"}

    @pytest.mark.anyio
    async def test_kv_of_a_failed_execution_is_replaced_by_a_rewinds_clear_and_writes(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(provider, "i1", kv_changes=[kv_set("a", 1, at_ms=now)])
        await continue_as_new(provider, "i1", kv_changes=[kv_set("kept", 0, at_ms=now)])
        await next_turn(
            provider,
            "i1",
            status=ExecutionStatus.FAILED,
            kv_changes=[kv_set("undone", 5, at_ms=now + 1), kv_delete("kept", at_ms=now + 1)],
        )
        # The rewind turn: the execution runs again with the replayed KV as its delta.
        await next_turn(
            provider,
            "i1",
            kv_clear_all=True,
            kv_changes=[kv_set("a", 1, at_ms=now), kv_set("kept", 0, at_ms=now)],
        )
        assert await _values(provider, "i1") == {"a": b"1", "kept": b"0"}

        await next_turn(provider, "i1", status=ExecutionStatus.COMPLETED)

        assert await _snapshot(provider, "i1") == {"a": b"1", "kept": b"0"}
        assert await _values(provider, "i1") == {"a": b"1", "kept": b"0"}

    @pytest.mark.anyio
    async def test_kv_snapshot_read_leaves_out_the_running_or_failed_executions_writes(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(provider, "i1", kv_changes=[kv_set("a", 1, at_ms=now)])
        await continue_as_new(provider, "i1", kv_changes=[kv_set("b", 2, at_ms=now + 1)])
        committed = {"a": KvEntry(value=b"1", updated_at_ms=now)}
        assert await provider.get_kv_snapshot("i1") == committed

        await next_turn(
            provider, "i1", status=ExecutionStatus.FAILED, kv_changes=[kv_set("a", 9, at_ms=now)]
        )
        assert await provider.get_kv_snapshot("i1") == committed
        await create_instance(provider, "i2", kv_changes=[kv_set("c", 3, at_ms=now)])
        await next_turn(provider, "i2", status=ExecutionStatus.COMPLETED)
        assert await provider.get_kv_snapshot("i2") == {"c": KvEntry(value=b"3", updated_at_ms=now)}
        assert await provider.get_kv_snapshot("nobody") == {}

    @pytest.mark.anyio
    @pytest.mark.parametrize("status", [ExecutionStatus.COMPLETED, ExecutionStatus.FAILED])
    async def test_kv_of_a_restarted_instance_starts_empty_for_reads_and_snapshots(
        self, provider: Provider, clock: VirtualClock, status: ExecutionStatus
    ) -> None:
        now = clock.now_ms()
        await create_instance(provider, "i1", kv_changes=[kv_set("old", 1, at_ms=now)])
        await next_turn(provider, "i1", status=status, kv_changes=[kv_set("delta", 2, at_ms=now)])
        await provider.start_instance(
            StartRequest(start=start_message("i1"), if_exists="restart_if_finished")
        )
        item = await lock_instance(provider, "i1")
        # The runtime clears too; the store must not rely on it.
        await provider.commit_turn(turn_commit(item, kv_changes=[kv_set("new", 3, at_ms=now)]))

        assert await _values(provider, "i1") == {"new": b"3"}
        assert await _snapshot(provider, "i1") == {}

    @pytest.mark.anyio
    async def test_kv_is_merged_on_continue_as_new_and_seeds_the_next_snapshot(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(provider, "i1", kv_changes=[kv_set("a", 1, at_ms=now)])

        item = await continue_as_new_and_lock(
            provider, "i1", kv_changes=[kv_set("b", 2, at_ms=now)]
        )

        assert {k: e.value for k, e in item.kv_snapshot.items()} == {"a": b"1", "b": b"2"}
        assert item.kv_snapshot["a"].updated_at_ms == now

    @pytest.mark.anyio
    async def test_kv_client_reads_prefer_the_running_executions_value(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(provider, "i1", kv_changes=[kv_set("a", 1, at_ms=now)])
        await continue_as_new(provider, "i1", kv_changes=[kv_set("a", 2, at_ms=now + 1)])

        assert await provider.get_kv_value("i1", "a") == KvEntry(value=b"2", updated_at_ms=now + 1)
        assert await _snapshot(provider, "i1") == {"a": b"1"}

    @pytest.mark.anyio
    async def test_kv_delete_in_the_running_execution_hides_the_committed_key(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(
            provider, "i1", kv_changes=[kv_set("a", 1, at_ms=now), kv_set("b", 2, at_ms=now)]
        )
        await continue_as_new(provider, "i1", kv_changes=[kv_delete("a", at_ms=now)])

        assert await provider.get_kv_value("i1", "a") is None
        assert await _values(provider, "i1") == {"b": b"2"}
        assert await _snapshot(provider, "i1") == {"a": b"1", "b": b"2"}

        await next_turn(provider, "i1", status=ExecutionStatus.COMPLETED)
        assert await _snapshot(provider, "i1") == {"b": b"2"}

    @pytest.mark.anyio
    async def test_kv_clear_all_in_the_running_execution_hides_committed_keys(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(
            provider, "i1", kv_changes=[kv_set("a", 1, at_ms=now), kv_set("b", 2, at_ms=now)]
        )
        await continue_as_new(provider, "i1")

        await next_turn(provider, "i1", kv_clear_all=True, kv_changes=[kv_set("c", 3, at_ms=now)])

        assert await _values(provider, "i1") == {"c": b"3"}
        assert await _snapshot(provider, "i1") == {"a": b"1", "b": b"2"}
        await next_turn(provider, "i1", status=ExecutionStatus.COMPLETED)
        assert await _snapshot(provider, "i1") == {"c": b"3"}

    @pytest.mark.anyio
    async def test_kv_key_removed_and_set_again_across_executions(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(provider, "i1", kv_changes=[kv_set("a", 1, at_ms=now)])
        await continue_as_new(provider, "i1", kv_changes=[kv_delete("a", at_ms=now)])
        await continue_as_new(provider, "i1", kv_changes=[kv_set("a", 3, at_ms=now)])

        assert await _value(provider, "i1", "a") == b"3"
        await next_turn(provider, "i1", status=ExecutionStatus.COMPLETED)
        assert await _snapshot(provider, "i1") == {"a": b"3"}

    # -- lifetime ---------------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_kv_accumulates_across_continue_as_new(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(provider, "i1", kv_changes=[kv_set("first", 1, at_ms=now)])
        await continue_as_new(provider, "i1", kv_changes=[kv_set("second", 2, at_ms=now)])
        item = await continue_as_new_and_lock(provider, "i1")

        assert set(item.kv_snapshot) == {"first", "second"}
        assert await _values(provider, "i1") == {"first": b"1", "second": b"2"}

    @pytest.mark.anyio
    async def test_kv_survives_pruning_of_the_executions_that_wrote_it(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(
            provider,
            "i1",
            kv_changes=[kv_set("untouched", 1, at_ms=now), kv_set("o", 1, at_ms=now)],
        )
        await continue_as_new(provider, "i1", kv_changes=[kv_set("o", 2, at_ms=now)])
        await continue_as_new(provider, "i1")

        result = await provider.prune_executions(PruneRequest(instance_id="i1", keep_last=1))

        assert result.executions_deleted == 2
        assert await _values(provider, "i1") == {"untouched": b"1", "o": b"2"}
        assert await _snapshot(provider, "i1") == {"untouched": b"1", "o": b"2"}

    @pytest.mark.anyio
    async def test_kv_survives_pruning_of_a_single_execution_instance(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        await create_instance(
            provider,
            "i1",
            status=ExecutionStatus.COMPLETED,
            kv_changes=[kv_set("k", 1, at_ms=clock.now_ms())],
        )

        await provider.prune_executions(PruneRequest(instance_id="i1", keep_last=0))

        assert await _values(provider, "i1") == {"k": b"1"}

    @pytest.mark.anyio
    async def test_kv_is_deleted_with_its_instance(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(provider, "i1", kv_changes=[kv_set("committed", 1, at_ms=now)])
        await continue_as_new(provider, "i1", kv_changes=[kv_set("delta", 2, at_ms=now)])

        await provider.delete_instance(DeleteRequest(instance_id="i1", force=True))

        assert await provider.get_kv_items("i1") == {}
        assert await provider.get_kv_value("i1", "committed") is None
        item = await start_and_lock(provider, "i1")
        assert item.kv_snapshot == {}
        await provider.commit_turn(turn_commit(item))
        assert await provider.get_kv_items("i1") == {}

    @pytest.mark.anyio
    async def test_kv_of_descendants_is_deleted_with_the_root(
        self, provider: Provider, clock: VirtualClock
    ) -> None:
        now = clock.now_ms()
        await create_instance(
            provider,
            "root",
            status=ExecutionStatus.COMPLETED,
            kv_changes=[kv_set("r", 1, at_ms=now)],
        )
        await create_instance(
            provider,
            "child",
            parent="root",
            status=ExecutionStatus.COMPLETED,
            kv_changes=[kv_set("c", 1, at_ms=now)],
        )
        await create_instance(provider, "other", kv_changes=[kv_set("o", 1, at_ms=now)])

        await provider.delete_instance(DeleteRequest(instance_id="root"))

        assert await provider.get_kv_items("root") == {}
        assert await provider.get_kv_items("child") == {}
        assert await _values(provider, "other") == {"o": b"1"}
