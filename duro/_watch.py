"""Notice that an instance changed, so client waits wake without polling delay.

The runtime announces every committed turn on the store object it used; a ``Client`` on the
same store object in the same process wakes at once. Turns committed in other processes reach
the waits through the store's ``instance_notices`` where it has them (SQLite sends them over
Unix sockets); anything else is still seen by the client's polling, just later. A wait for
the end of an instance wakes only for the turn that ends it: an instance with a thousand turns
costs its waiter one status read, not a thousand.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from typing import TYPE_CHECKING

import anyio

from .providers._types import ANY_INSTANCE

if TYPE_CHECKING:
    from .providers import Provider

log = logging.getLogger("duro.client")


class InstanceWatch:
    def __init__(self) -> None:
        self._changes: dict[str, anyio.Event] = {}
        self._endings: dict[str, anyio.Event] = {}
        self._relaying = False
        self._relay_queue: deque[anyio.Event] = deque()
        """Waits queued to relay the store's notices after the one relaying now."""

    def event(self, instance_id: str, *, ending_only: bool = False) -> anyio.Event:
        """The event the next change (or only the end) of ``instance_id`` sets; take it
        before reading state, so no change slips in between."""
        events = self._endings if ending_only else self._changes
        event = events.get(instance_id)
        if event is None or event.is_set():
            event = events[instance_id] = anyio.Event()
        return event

    def notify(self, instance_id: str, *, ended: bool) -> None:
        """A turn of ``instance_id`` committed; ``ended``: it completed or failed the instance.
        ``"*"`` (word was lost) wakes every waiter."""
        if instance_id == ANY_INSTANCE:
            for events in (self._changes, self._endings):
                for event in events.values():
                    event.set()
                events.clear()
            return
        _set(self._changes.pop(instance_id, None))
        if ended:
            _set(self._endings.pop(instance_id, None))

    async def wait(self, event: anyio.Event, timeout: float, store: Provider) -> None:
        """Until ``event`` is set or ``timeout`` seconds pass; meanwhile passes on what other
        processes tell ``store`` (so their turns set the events too)."""
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._relay, store)
                await event.wait()
                tg.cancel_scope.cancel()

    async def _relay(self, store: Provider) -> None:
        """Turn ``store``'s notices into ``notify`` calls until cancelled. One wait relays at
        a time (a store may spend a descriptor on each call); the others queue and the first
        takes over when it leaves."""
        if self._relaying:
            turn = anyio.Event()
            self._relay_queue.append(turn)
            try:
                await turn.wait()
            except BaseException:
                if turn.is_set():
                    self._hand_over()  # given the relay just as it left: pass it on
                else:
                    self._relay_queue.remove(turn)
                raise
        self._relaying = True
        try:
            while True:
                for notice in await store.instance_notices():
                    self.notify(notice.instance_id, ended=notice.ended)
        except Exception:  # notices only hasten a wait: the polls still see every change
            log.debug("no instance notices from %r", store, exc_info=True)
        finally:
            self._hand_over()
        await anyio.sleep_forever()

    def _hand_over(self) -> None:
        if self._relay_queue:
            self._relay_queue.popleft().set()
        else:
            self._relaying = False


def _set(event: anyio.Event | None) -> None:
    if event is not None:
        event.set()


_watches: weakref.WeakKeyDictionary[object, InstanceWatch] = weakref.WeakKeyDictionary()


def watch_for(store: object) -> InstanceWatch:
    watch = _watches.get(store)
    if watch is None:
        watch = _watches[store] = InstanceWatch()
    return watch
