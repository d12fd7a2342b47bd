"""``ActivityContext``: what an activity knows about the step it runs."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from .._client import Client


class ActivityContext:
    """Passed to every activity.

    ``cancelled`` / ``is_cancelled`` report cooperative cancellation (the orchestration dropped
    the step, the instance was cancelled, or the lock was lost): stop early when it fires.
    ``client`` lets an activity start or signal orchestrations.
    """

    def __init__(
        self,
        *,
        instance_id: str,
        execution_id: int,
        activity_name: str,
        attempt: int,
        orchestration_name: str,
        orchestration_version: str,
        session: str | None,
        tag: str | None,
        worker_id: str,
        client: Client,
    ) -> None:
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.activity_name = activity_name
        self.attempt = attempt
        """1 for the first attempt; retries (``RetryPolicy``) and redeliveries count up."""
        self.orchestration_name = orchestration_name
        self.orchestration_version = orchestration_version
        self.session = session
        self.tag = tag
        self.worker_id = worker_id
        self.client = client
        self.logger = logging.LoggerAdapter(
            logging.getLogger(f"duro.activity.{activity_name}"),
            {"instance_id": instance_id, "activity": activity_name, "attempt": attempt},
        )
        self._event = anyio.Event()
        self._flag = threading.Event()  # readable from a plain-def activity's thread
        self.cancel_reason: str | None = None

    @property
    def is_cancelled(self) -> bool:
        """True once cancellation was requested (safe to poll from any thread)."""
        return self._flag.is_set()

    async def wait_cancelled(self) -> None:
        """Return when cancellation is requested."""
        await self._event.wait()

    def cancel(self, reason: str) -> None:
        """Request cooperative cancellation (called by the runtime)."""
        if not self._flag.is_set():
            self.cancel_reason = reason
            self._flag.set()
            self._event.set()

    def __repr__(self) -> str:
        return (
            f"ActivityContext(instance_id={self.instance_id!r}, "
            f"activity_name={self.activity_name!r}, attempt={self.attempt})"
        )
