"""``activity_context``: an ``ActivityContext`` for unit tests of activities."""

from __future__ import annotations

from typing import Any

from .._client import Client
from .._runtime import ActivityContext
from .._serde import encode
from ..providers._memory import InMemoryProvider


def activity_context(
    *,
    instance_id: str = "test-instance",
    execution_id: int = 1,
    activity_name: str = "test-activity",
    attempt: int = 1,
    orchestration_name: str = "test-orchestration",
    orchestration_version: str = "1.0.0",
    session: str | None = None,
    tag: str | None = None,
    worker_id: str = "test-worker",
    client: Client | None = None,
    last_heartbeat_details: Any = None,
) -> ActivityContext:
    """An ``ActivityContext`` to call an activity with directly: ``await charge(ctx, 12)``.

    Every field has a default; set the ones the activity reads (``attempt=3`` to test a
    retry path, ``last_heartbeat_details={"page": 7}`` to test resuming). ``client``
    defaults to a ``Client`` on an empty in-memory store.
    ``ctx.cancel("reason")`` requests cancellation, as the runtime would.
    """
    return ActivityContext(
        instance_id=instance_id,
        execution_id=execution_id,
        activity_name=activity_name,
        attempt=attempt,
        orchestration_name=orchestration_name,
        orchestration_version=orchestration_version,
        session=session,
        tag=tag,
        worker_id=worker_id,
        client=client if client is not None else Client(InMemoryProvider()),
        heartbeat_details=None
        if last_heartbeat_details is None
        else bytes(encode(last_heartbeat_details, what="heartbeat details")),
    )
