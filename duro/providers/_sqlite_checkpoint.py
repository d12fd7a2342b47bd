"""WAL checkpoints in a background thread, so their fsync never stalls the event loop.

SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold, on whatever
thread committed: with commits on the event loop that is a 10-20 ms stall every few hundred
transactions. The writer connection turns it off (``wal_autocheckpoint = 0``) and this
thread runs a PASSIVE checkpoint (never waits for other connections' locks) after every
``every`` commits, on a connection of its own. It holds this process's write lock meanwhile,
as the automatic checkpoint did: a checkpoint racing new commits never catches up with the
end of the WAL, and then the WAL is never restarted and grows without bound. Writes that
arrive meanwhile wait for it in worker threads; the event loop runs on.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("duro.providers.sqlite")

CHECKPOINT_EVERY = 200
"""Write transactions between checkpoints: at a few pages each, near SQLite's default of
checkpointing once the WAL holds 1,000 pages."""


class Checkpointer:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        write_lock: threading.Lock,
        every: int = CHECKPOINT_EVERY,
    ) -> None:
        self._connect = connect
        self._write_lock = write_lock
        self._every = every
        self._commits = 0
        self._due = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.checkpoints = 0
        """Checkpoints run so far (for tests and diagnostics)."""
        self.pending = False
        """A checkpoint is due and waits for the write lock. Writes on the event loop then
        step aside (they would take the lock back the instant they release it, and starve the
        checkpoint: the WAL would grow without bound)."""

    def committed(self) -> None:
        """Count one commit (call it holding the write lock); every ``every`` commits, wake
        the thread (starting it once)."""
        self._commits += 1
        if self._commits < self._every:
            return
        self._commits = 0
        self.pending = True
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="duro-sqlite-checkpoint", daemon=True
            )
            self._thread.start()
        self._due.set()

    def stop(self) -> None:
        """End the thread (after a checkpoint under way); the next commit starts a new one.
        Call it *without* the write lock: a checkpoint under way needs it to finish."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping = True
            self._due.set()
            thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._stopping:
                    return
                try:
                    if conn is None:
                        conn = self._connect()
                    with self._write_lock:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    self.checkpoints += 1
                except sqlite3.Error as exc:
                    # The next one retries; a WAL that cannot shrink only costs disk space.
                    log.warning("WAL checkpoint failed: %s", exc)
                finally:
                    self.pending = False
        finally:
            if conn is not None:
                conn.close()
