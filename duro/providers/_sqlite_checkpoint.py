"""WAL checkpoints in a background thread, so their fsync never stalls the event loop.

SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold, on whatever
thread committed: with commits on the event loop that is a 10-20 ms stall every few hundred
transactions. The writer connection turns it off (``wal_autocheckpoint = 0``) and this
thread checkpoints after every ``every`` commits, on a connection of its own, in two passes:

1. PASSIVE, taking no lock: copying the WAL's pages into the database (most of the time,
   about 18 us a page here) overlaps every process's commits.
2. FULL, holding this process's write lock and, once it gets it, the file's: only the pages
   committed during the first pass are left. The next write then restarts the WAL from its
   beginning. A checkpoint racing commits never reaches the end of the WAL, and then the
   WAL is never restarted and grows without bound: with two processes writing without
   pause, by 135 MB in 6,000 commits when this pass was PASSIVE too (holding only this
   process's lock). The file's lock is tried again after 50 us, doubling to 2 ms, for up to
   ``_FULL_WAIT_S``; past that the next checkpoint tries again. Writes of this process that
   arrive meanwhile wait in worker threads; the event loop runs on.

One pass under the lock stalled this process's writes for 30-45 ms every 200 commits and
sent them through threads; the second pass takes 6-8 ms.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

log = logging.getLogger("duro.providers.sqlite")

CHECKPOINT_EVERY = 200
"""Write transactions between checkpoints: at a few pages each, near SQLite's default of
checkpointing once the WAL holds 1,000 pages."""
_FULL_WAIT_S = 0.05
"""How long the second pass tries for the file's write lock (this process's writes wait)."""
_FULL_RETRY_FIRST_S = 0.00005
_FULL_RETRY_MOST_S = 0.002


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
        self.reached_end = 0
        """Checkpoints that copied the whole WAL, each letting the next write restart it."""
        self.pending = False
        """The second pass waits for the write lock. Writes on the event loop then step
        aside (they would take the lock back the instant they release it, and starve the
        checkpoint: the WAL would grow without bound)."""

    def committed(self) -> None:
        """Count one commit (call it holding the write lock); every ``every`` commits, wake
        the thread (starting it once)."""
        self._commits += 1
        if self._commits < self._every:
            return
        self._commits = 0
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
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the bulk; writes go on
                    self.pending = True
                    with self._write_lock:
                        if _checkpoint_to_the_end(conn):
                            self.reached_end += 1
                    self.checkpoints += 1
                except sqlite3.Error as exc:
                    # The next one retries; a WAL that cannot shrink only costs disk space.
                    log.warning("WAL checkpoint failed: %s", exc)
                finally:
                    self.pending = False
        finally:
            if conn is not None:
                conn.close()


def _checkpoint_to_the_end(conn: sqlite3.Connection) -> bool:
    """Checkpoint the whole WAL holding the file's write lock (FULL); False if another
    connection's writer or reader kept it from the end for ``_FULL_WAIT_S``."""
    deadline = time.monotonic() + _FULL_WAIT_S
    pause = _FULL_RETRY_FIRST_S
    while True:
        busy = conn.execute("PRAGMA wal_checkpoint(FULL)").fetchone()[0]
        if not busy:
            return True
        if time.monotonic() + pause > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, _FULL_RETRY_MOST_S)
