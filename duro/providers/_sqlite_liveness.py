"""Which runtimes sharing a SQLite file are alive, so a killed one's work moves at once.

Every runtime started on a file holds an exclusive ``flock`` on its own small file in
``<file>-live/`` (named after its worker id, which it holds) for as long as it runs. The
kernel drops that lock when the process ends, however it ends: SIGKILL, the OOM killer, a
crash. A peer that can take the lock knows the runtime is gone, and ends its locks in one
transaction instead of waiting ``orchestration_lock_timeout`` / ``activity_lock_timeout``
for them to expire. A runtime that is alive but stalled keeps its lock: only expiry moves
its work, as before.

One rule makes this safe when a runtime restarts under the same worker id while a peer
buries its predecessor: only whoever holds the lock on the file *now linked* at the path
speaks for that worker id. A peer ends the dead runtime's locks holding it, then unlinks the
file; a runtime that claims the id takes that lock first (waiting out a burial in progress)
and makes sure the file it locked is still the linked one. So a burial always commits before
the new run's first lock, and never ends a live run's locks.

Like the wake-ups, it only ever speeds things up: without ``fcntl`` (Windows) or a writable
directory beside the file, locks expire as they always did. A child process forked by a
runtime (not exec'd) shares the lock and keeps it after its parent dies; then, too, the
locks expire as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import anyio

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("duro.providers.sqlite")

CHECK_EVERY_S = 0.5
"""How often a runtime's fetches look for dead peers (a look costs a directory listing and
one non-blocking lock attempt per peer: tens of microseconds)."""
CLAIM_PATIENCE_S = 2.0
"""How long claiming a worker id waits for its file's lock: a peer burying the previous
run holds it for one transaction; a live runtime with the same id holds it for good."""
_CLAIM_RETRY_S = 0.01


@dataclass(slots=True)
class DeadRuntime:
    """A runtime whose process ended without stopping; its file's lock is held here until
    ``bury`` (its locks ended) or ``leave`` (try again at the next look)."""

    worker_id: str
    path: str
    fd: int

    def bury(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # under the lock: nobody can claim this file meanwhile
        os.close(self.fd)

    def leave(self) -> None:
        os.close(self.fd)


class RuntimeLiveness:
    """This process's claims in ``<path>-live/`` and the search for dead peers."""

    def __init__(self, db_path: str) -> None:
        self._db_path = db_path
        self._dir = ""
        self._held: dict[str, tuple[str, int]] = {}
        """Worker id -> (file name, descriptor holding its lock)."""
        self._looked_at = 0.0
        self.available = fcntl is not None

    async def claim(self, worker_id: str) -> bool:
        """Hold ``worker_id``'s file while its runtime runs; False (and logged) if another
        live process holds it: two runtimes run under one id, and neither is watched."""
        if not self.available or worker_id in self._held:
            return worker_id in self._held
        self._resolve_dir()
        name = _file_name(worker_id)
        path = os.path.join(self._dir, name)
        deadline = time.monotonic() + CLAIM_PATIENCE_S
        while True:
            try:
                os.makedirs(self._dir, exist_ok=True)  # again: the last runtime to stop removes it
                fd = _locked(path, create=True)
            except OSError as exc:
                self.available = False
                log.info("no fast take-over of killed runtimes for %s: %s", self._dir, exc)
                return False
            if fd is not None:
                os.ftruncate(fd, 0)
                os.write(fd, worker_id.encode())
                self._held[worker_id] = (name, fd)
                return True
            if time.monotonic() >= deadline:
                log.warning(
                    "another live process runs a runtime with worker id %r on %s: give each "
                    "runtime its own id (see RuntimeOptions.worker_id)",
                    worker_id, self._db_path,
                )  # fmt: skip
                return False
            await anyio.sleep(_CLAIM_RETRY_S)

    def release(self, worker_id: str) -> None:
        """The runtime stopped: its file goes (and the directory, if it was the last)."""
        held = self._held.pop(worker_id, None)
        if held is None:
            return
        name, fd = held
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self._dir, name))
        os.close(fd)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)  # fails unless it is empty: other runtimes still run

    def release_all(self) -> None:
        for worker_id in list(self._held):
            self.release(worker_id)

    def due(self) -> bool:
        """Whether to look for dead peers now (only while a runtime of this process runs)."""
        if not self._held:
            return False
        now = time.monotonic()
        if now - self._looked_at < CHECK_EVERY_S:
            return False
        self._looked_at = now
        return True

    def dead(self) -> Iterator[DeadRuntime]:
        """Peers' files whose lock nobody holds, each locked here until buried or left."""
        if not self.available:
            return
        self._resolve_dir()
        mine = {name for name, _ in self._held.values()}
        try:
            names = os.listdir(self._dir)
        except OSError:
            return
        for name in names:
            if name in mine:
                continue
            path = os.path.join(self._dir, name)
            fd = _locked(path, create=False)
            if fd is None:
                continue  # alive (or gone meanwhile)
            try:
                worker_id = os.read(fd, 4096).decode()
            except (OSError, UnicodeDecodeError):
                worker_id = ""
            dead = DeadRuntime(worker_id, path, fd)
            if not worker_id:
                dead.bury()  # its owner died between creating and writing it
                continue
            yield dead

    def _resolve_dir(self) -> None:
        if not self._dir:
            self._dir = os.path.realpath(self._db_path) + "-live"


def _file_name(worker_id: str) -> str:
    """A worker id may hold any character, and be long: its file is named by its hash."""
    return hashlib.sha256(worker_id.encode()).hexdigest()[:32]


def _locked(path: str, *, create: bool) -> int | None:
    """A descriptor of the file linked at ``path`` holding its exclusive lock, or None if a
    live process holds that lock (or, without ``create``, there is no such file). Raises the
    ``OSError`` of a file that cannot be created."""
    assert fcntl is not None
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    for _ in range(3):
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            if create:
                continue  # the directory went (the last runtime stopped): the caller makes it
            return None
        except OSError:
            if create:
                raise
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        try:
            linked = os.stat(path).st_ino == os.fstat(fd).st_ino
        except OSError:
            linked = False
        if linked:
            return fd
        os.close(fd)  # buried (unlinked) while we opened it: look at the path again
        if not create:
            return None
    return None
