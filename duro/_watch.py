"""In-process notice that an instance changed, so client waits wake without polling delay.

The runtime announces every committed turn on the store object it used; a ``Client`` on the
same store object in the same process wakes at once. Anything else (another process, a store
without this runtime) is still seen by the client's polling, just later.
"""

from __future__ import annotations

import weakref

import anyio


class InstanceWatch:
    def __init__(self) -> None:
        self._events: dict[str, anyio.Event] = {}

    def event(self, instance_id: str) -> anyio.Event:
        """The event the next change of ``instance_id`` sets; take it before reading state."""
        event = self._events.get(instance_id)
        if event is None or event.is_set():
            event = self._events[instance_id] = anyio.Event()
        return event

    def notify(self, instance_id: str) -> None:
        event = self._events.pop(instance_id, None)
        if event is not None:
            event.set()


_watches: weakref.WeakKeyDictionary[object, InstanceWatch] = weakref.WeakKeyDictionary()


def watch_for(store: object) -> InstanceWatch:
    watch = _watches.get(store)
    if watch is None:
        watch = _watches[store] = InstanceWatch()
    return watch
