"""The work this provider knows is waiting in its slots, so fetches need no query to find it.

Filled by what the provider itself writes (its commits' work items and messages, its
activities' results, its clients' starts and events) and by sweeps, which read what other
processes wrote (see ``_sweep``). A fetch takes the oldest entry and then checks it against
the store, so an entry that went stale (someone else took or deleted the work) costs a read,
never a wrong result.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass


@dataclass(slots=True, kw_only=True)
class WorkRef:
    """A work item (``worker_queue`` document) as last seen."""

    doc_id: str
    instance_id: str
    visible_at: int
    seq: int
    slot: int
    tag: str | None = None
    session: str | None = None
    etag: str | None = None
    """None: read the document before taking it."""
    task: str | None = None
    """The activity task (JSON text) when known, saving that read."""
    locked_until: int = 0
    lock_owner: str | None = None


class KnownWork:
    """Instances with messages, and work items, by the time they become (or became) visible."""

    def __init__(self) -> None:
        self._turns: dict[str, int] = {}
        """Instance id -> the earliest visible-at of a message it is known to have."""
        self._items: dict[str, WorkRef] = {}
        """Work item id -> what is known of it."""

    def __len__(self) -> int:
        return len(self._turns) + len(self._items)

    # -- turns -------------------------------------------------------------------------------

    def note_turn(self, instance_id: str, visible_at: int) -> None:
        known = self._turns.get(instance_id)
        if known is None or visible_at < known:
            self._turns[instance_id] = visible_at

    def take_turns(
        self, now: int, limit: int, skip: Container[str], mine: Callable[[str], bool]
    ) -> list[str]:
        """Up to ``limit`` instances with a visible message, oldest first; they leave the
        index (a message that arrives meanwhile notes the instance again). Instances that
        are no longer ``mine`` (their slot moved to another member) are dropped."""
        for instance_id in [i for i in self._turns if not mine(i)]:
            del self._turns[instance_id]
        due = sorted(
            (at, instance_id)
            for instance_id, at in self._turns.items()
            if at <= now and instance_id not in skip
        )
        taken = [instance_id for _, instance_id in due[:limit]]
        for instance_id in taken:
            del self._turns[instance_id]
        return taken

    # -- work items --------------------------------------------------------------------------

    def note_item(self, ref: WorkRef) -> None:
        self._items[ref.doc_id] = ref

    def forget_item(self, doc_id: str) -> None:
        self._items.pop(doc_id, None)

    def take_item(self, doc_id: str) -> bool:
        """Remove the item to lock it; False if another fetch took it first."""
        return self._items.pop(doc_id, None) is not None

    def drop_items(self, keep: Callable[[WorkRef], bool]) -> None:
        for doc_id in [d for d, ref in self._items.items() if not keep(ref)]:
            del self._items[doc_id]

    def due_items(self, now: int, accept: Callable[[WorkRef], bool]) -> Iterator[WorkRef]:
        """Visible items ``accept`` takes, oldest first. A snapshot: take each with
        :meth:`take_item`, which fails for one another fetch took meanwhile."""
        due = sorted(
            (ref for ref in self._items.values() if ref.visible_at <= now and accept(ref)),
            key=lambda ref: (ref.visible_at, ref.seq),
        )
        return iter(due)

    def forget_instance(self, instance_id: str) -> None:
        """The instance is gone: nothing of it is waiting any more."""
        self._turns.pop(instance_id, None)
        for doc_id in [d for d, ref in self._items.items() if ref.instance_id == instance_id]:
            del self._items[doc_id]

    # -- waiting -----------------------------------------------------------------------------

    def next_due(self, now: int) -> int | None:
        """The earliest time after ``now`` at which something known becomes visible."""
        times = [at for at in self._turns.values() if at > now]
        times.extend(ref.visible_at for ref in self._items.values() if ref.visible_at > now)
        times.extend(ref.locked_until for ref in self._items.values() if ref.locked_until > now)
        return min(times) if times else None

    def turn_due(self, now: int) -> bool:
        return any(at <= now for at in self._turns.values())


__all__ = ["KnownWork", "WorkRef"]
