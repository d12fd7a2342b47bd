"""Names and payloads of the activities duro runs itself (``duro._runtime._system``), shared
by the engine that schedules them and the worker that runs them."""

from __future__ import annotations

from typing import Final

import msgspec

KV_GET_FROM: Final = "duro:kv.get_from"
"""``ctx.kv.get_from``: reads another instance's committed KV value."""


class KvRead(msgspec.Struct, frozen=True, kw_only=True):
    """The input of :data:`KV_GET_FROM`."""

    instance_id: str
    key: str
