"""Activities duro runs itself: steps an orchestration records like any activity (so replay
gets the recorded result) but that no one registers. Their names start with the reserved
``duro:`` prefix; every worker runs them."""

from __future__ import annotations

import inspect
from typing import Any, Final

import msgspec

from .._registry import DEFAULT_VERSION, Registered
from .._system_steps import KV_GET_FROM, KvRead
from ._activity_context import ActivityContext


async def _kv_get_from(ctx: ActivityContext, request: KvRead) -> list[msgspec.Raw]:
    """Another instance's committed value of one key: ``[value]``, or ``[]`` if absent."""
    entry = await ctx.client.store.get_kv_value(request.instance_id, request.key)
    return [] if entry is None else [msgspec.Raw(entry.value)]


def _registered(name: str, fn: Any, input_type: Any, output_type: Any) -> Registered:
    return Registered(
        name, DEFAULT_VERSION, fn, input_type, output_type, inspect.iscoroutinefunction(fn), True
    )


SYSTEM_ACTIVITIES: Final[dict[str, Registered]] = {
    KV_GET_FROM: _registered(KV_GET_FROM, _kv_get_from, KvRead, list[msgspec.Raw]),
}
