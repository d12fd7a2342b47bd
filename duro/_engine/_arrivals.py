"""Arrivals: external events and mailbox messages, and the waits that take them.

An arrival is never lost and never taken twice: it either serves the oldest live wait on its
channel or waits in that channel's buffer, in arrival order, for the next one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import msgspec

from .._errors import PayloadError
from .._history import CarriedEvent
from .._serde import decode
from ._futures import DurableFuture, Scheduling

Channel = tuple[str, str]
"""``("event", name)`` for ``wait_for_event``, ``("queue", name)`` for ``dequeue_event``."""

Arrival = tuple[int, msgspec.Raw]
"""``(history position, data)``: the position orders arrivals and resolutions."""


class EventFuture(DurableFuture[Any]):
    """A wait for an external event or a mailbox message; cancelled waits consume nothing."""

    __slots__ = ("_arrivals", "channel", "output_type", "taken")

    def __init__(
        self, scheduling: Scheduling, arrivals: Arrivals, channel: Channel, output_type: Any
    ) -> None:
        super().__init__(scheduling)
        self._arrivals = arrivals
        # The channel waited on; fixed.
        self.channel = channel
        # What the arrival's data is decoded into.
        self.output_type = output_type
        # The arrival this wait took, until code observes the result (then it is gone for
        # good) or a lost select hands it back.
        self.taken: Arrival | None = None

    def serve(self, arrival: Arrival) -> None:
        """Take ``arrival`` and resolve with its decoded data, at its history position."""
        self.taken = arrival
        position, data = arrival
        what = f"{self.channel[0]} {self.channel[1]!r}"
        try:
            self.set_result(decode(data, self.output_type, what=what), position=position)
        except PayloadError as exc:
            self.set_exception(exc, position=position)

    def give_back(self) -> Arrival | None:
        """The arrival this wait took and code never observed; the wait holds it no more."""
        taken, self.taken = self.taken, None
        return taken

    def result(self) -> Any:
        self.taken = None  # observed: the arrival is consumed for good
        return super().result()

    def cancel(self, reason: str = "cancelled") -> None:
        if self.done:
            # A wait served from the buffer that loses a select hands its arrival back.
            if not self.cancelled:
                self.cancelled = True
                self._arrivals.return_arrival(self)
            return
        super().cancel(reason)


class Arrivals:
    """Waits and unconsumed arrivals per channel."""

    def __init__(self, scheduling: Scheduling) -> None:
        # Drives the futures of the waits made here.
        self._scheduling = scheduling
        # Waits not served yet, oldest first; cancelled ones are skipped when an arrival comes.
        # Lists, not deques: a channel rarely has more than one, and an empty deque costs
        # 600 bytes in every cached execution that waits.
        self._waiters: dict[Channel, list[EventFuture]] = {}
        # Arrivals no wait has taken, in history position order.
        self._buffers: dict[Channel, deque[Arrival]] = {}

    def carry_in(self, carried: Iterable[CarriedEvent], position: int) -> None:
        """Buffer what the previous execution left (ahead of anything that arrives later)."""
        for event in carried:
            self._buffers.setdefault((event.kind, event.queue), deque()).append(
                (position, event.data)
            )

    def deliver(self, channel: Channel, position: int, data: msgspec.Raw) -> None:
        """Serve the oldest live wait on ``channel``, or buffer the arrival for the next one."""
        waiters = self._waiters.get(channel)
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.done:
                waiter.serve((position, data))
                return
        self._buffers.setdefault(channel, deque()).append((position, data))

    def discard(self) -> None:
        """Forget waits and arrivals (the execution is discarded); waits refer back here."""
        self._waiters.clear()
        self._buffers.clear()

    def wait_on(self, channel: Channel, output_type: Any) -> EventFuture:
        """A future for the next unconsumed arrival on ``channel`` (FIFO)."""
        future = EventFuture(self._scheduling, self, channel, output_type)
        buffered = self._buffers.get(channel)
        if buffered:
            future.serve(buffered.popleft())
        else:
            self._waiters.setdefault(channel, []).append(future)
        return future

    def return_arrival(self, future: EventFuture) -> None:
        """Un-consume the arrival a losing wait took from the buffer, keeping arrival order."""
        taken = future.give_back()
        if taken is None:
            return
        buffered = self._buffers.setdefault(future.channel, deque())
        buffered.append(taken)
        self._buffers[future.channel] = deque(sorted(buffered, key=lambda item: item[0]))

    def queued(self) -> list[CarriedEvent]:
        """Mailbox messages nobody took: ``continue_as_new`` carries them to the next run."""
        return [
            CarriedEvent(queue=channel[1], data=data)
            for channel, buffered in self._buffers.items()
            if channel[0] == "queue"
            for _position, data in buffered
        ]
