"""``ActivityContext``: what an activity knows about the step it runs."""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import anyio

from .._serde import decode, encode

if TYPE_CHECKING:
    from .._client import Client


class ActivityContext:
    """Passed to every activity.

    ``is_cancelled`` / ``wait_cancelled()`` report cooperative cancellation (the orchestration
    dropped the step, the instance was cancelled, the lock was lost, or the activity missed
    its heartbeat timeout): stop early when it fires.
    ``heartbeat(details)`` says the activity is alive (see ``schedule_activity(...,
    heartbeat_timeout=...)``) and records how far it got; the next attempt reads that back
    from ``last_heartbeat_details``.
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
        heartbeat_details: bytes | None = None,
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
        self.cancel_reason: str | None = None
        # Made on first use: most activities never log or wait for cancellation, and these
        # objects were a fifth of a no-op activity's cost.
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None
        self._cancelled_event: anyio.Event | None = None
        self._cancelled = False  # a plain bool: readable from a plain-def activity's thread
        self._waiting_for_cancel = False
        # What an earlier attempt (or delivery) left, JSON; the latest heartbeat's, whether
        # the store has it yet, and when (monotonic) the activity started or last beat.
        # Plain attributes: a thread may beat.
        self._last_details = heartbeat_details
        self._details: bytes | None = None
        self._details_stored = True
        self._last_beat = time.monotonic()

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger named ``duro.activity.<name>`` that tags records with this step
        (``instance_id``, ``activity``, ``attempt``) and starts each message with
        ``[instance id]``."""
        if self._logger is None:
            self._logger = _InstanceLogger(
                logging.getLogger(f"duro.activity.{self.activity_name}"),
                {
                    "instance_id": self.instance_id,
                    "activity": self.activity_name,
                    "attempt": self.attempt,
                },
            )
        return self._logger

    def heartbeat(self, details: Any = None) -> None:
        """Report that the activity is alive, with ``details`` (JSON, at most 64 KiB; None
        keeps the last ones): how far it got, for an attempt that has to start over.

        Cheap and safe to call often and from a plain ``def`` activity's thread: it notes the
        time and the details, and the runtime stores the latest details with its next lock
        renewal and with a failure report.
        """
        if details is not None:
            self._details = bytes(encode(details, what="heartbeat details", limit=64 * 1024))
            self._details_stored = False
        self._last_beat = time.monotonic()

    @property
    def last_heartbeat_details(self) -> Any:
        """The details of the latest ``heartbeat`` of this step's previous attempt (or of an
        earlier delivery of this one, whose worker went away), decoded to builtins; None if
        there were none."""
        if self._last_details is None:
            return None
        return decode(self._last_details, what="heartbeat details")

    def _take_unstored_details(self) -> bytes | None:
        """Details the store does not have yet (for the runtime's lock renewal); None if
        none. ``_confirm_stored`` confirms them."""
        return None if self._details_stored else self._details

    def _confirm_stored(self, details: bytes) -> None:
        if self._details is details:
            self._details_stored = True

    @property
    def _latest_details(self) -> bytes | None:
        """The latest heartbeat details (or an earlier attempt's), for a failure report."""
        return self._details if self._details is not None else self._last_details

    @property
    def is_cancelled(self) -> bool:
        """True once cancellation was requested (safe to poll from any thread)."""
        return self._cancelled

    async def wait_cancelled(self) -> None:
        """Return when cancellation is requested."""
        if self._cancelled:
            return
        if self._cancelled_event is None:
            self._cancelled_event = anyio.Event()
        self._waiting_for_cancel = True
        try:
            await self._cancelled_event.wait()
        finally:
            self._waiting_for_cancel = False

    @property
    def parked(self) -> bool:
        """Whether the activity can do nothing but wait to be cancelled (it is in
        :meth:`wait_cancelled`): a test environment may let time pass meanwhile."""
        return self._waiting_for_cancel and not self._cancelled

    def cancel(self, reason: str) -> None:
        """Request cooperative cancellation (called by the runtime, on the event loop)."""
        if not self._cancelled:
            self.cancel_reason = reason
            self._cancelled = True
            if self._cancelled_event is not None:
                self._cancelled_event.set()

    def __repr__(self) -> str:
        return (
            f"ActivityContext(instance_id={self.instance_id!r}, "
            f"activity_name={self.activity_name!r}, attempt={self.attempt})"
        )


class _InstanceLogger(logging.LoggerAdapter[logging.Logger]):
    """Starts each message with ``[instance id]``, so a plain log format still shows it."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        msg, kwargs = super().process(msg, kwargs)
        extra = self.extra or {}
        return f"[{extra.get('instance_id')}] {msg}", kwargs
