"""In-process notice that an instance changed, so client waits wake without polling delay.

The runtime announces every committed turn on the store object it used; a ``Client`` on the
same store object in the same process wakes at once. Anything else (another process, a store
without this runtime) is still seen by the client's polling, just later. A wait for the end
of an instance wakes only for the turn that ends it: an instance with a thousand turns costs
its waiter one status read, not a thousand.
"""

from __future__ import annotations

import weakref

import anyio


class InstanceWatch:
    def __init__(self) -> None:
        self._changes: dict[str, anyio.Event] = {}
        self._endings: dict[str, anyio.Event] = {}

    def event(self, instance_id: str, *, ending_only: bool = False) -> anyio.Event:
        """The event the next change (or only the end) of ``instance_id`` sets; take it
        before reading state, so no change slips in between."""
        events = self._endings if ending_only else self._changes
        event = events.get(instance_id)
        if event is None or event.is_set():
            event = events[instance_id] = anyio.Event()
        return event

    def notify(self, instance_id: str, *, ended: bool) -> None:
        """A turn of ``instance_id`` committed; ``ended``: it completed or failed the instance."""
        _set(self._changes.pop(instance_id, None))
        if ended:
            _set(self._endings.pop(instance_id, None))


def _set(event: anyio.Event | None) -> None:
    if event is not None:
        event.set()


_watches: weakref.WeakKeyDictionary[object, InstanceWatch] = weakref.WeakKeyDictionary()


def watch_for(store: object) -> InstanceWatch:
    watch = _watches.get(store)
    if watch is None:
        watch = _watches[store] = InstanceWatch()
    return watch
