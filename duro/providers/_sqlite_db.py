"""Connections, and where SQLite calls run: on the event loop when they cannot wait, else in
a worker thread.

Design: one writer connection guarded by a ``threading.Lock``, plus a small pool of reader
connections (WAL readers see a consistent snapshot without waiting for the writer).

**On the loop first.** A hot-path transaction (fetch, commit, start, status read) takes tens
to hundreds of microseconds, while handing it to a worker thread and waking the loop again
costs about 160 us of CPU on a small VM: in a W1 profile the hand-offs were most of the
provider's cost, and running such calls on the loop thread doubled throughput (decision
0006). So they run right on the loop thread, but only when that cannot block: connections
used there have ``busy_timeout = 0``, so if another process holds the write lock the write
gives up before doing anything and the flush tries again later, still on the loop (the loop
runs other tasks meanwhile); a reader that is refused (rarely) takes the thread path below,
which waits with the real ``busy_timeout``. Calls that may scan a lot (management queries,
deletes, whole histories) pass ``on_loop=False`` and always use a thread.

**Thread path** (long writes, and writes that find this process's lock held by a thread
batch or a checkpoint). The lock is taken inside the worker thread: the next queued write is
already sitting in its thread when the previous one commits and starts the moment the lock
is released. Writes queued while a batch runs or waits go together in the next batch
(group commit), each in its own savepoint so a failing write undoes only itself.
In-process writers therefore never sleep in SQLite's busy handler; ``busy_timeout`` only
matters between processes (or between providers on one file), where ``BEGIN IMMEDIATE``
waits for the other writer instead of failing.

``":memory:"`` is different: an in-memory database belongs to its one connection, so all work
goes through the writer, and ``close()`` keeps the data as a serialized snapshot that the next
use restores (the provider behaves like a store that survives close/reopen, as files do).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from .._errors import StoreLostError
from ._sqlite_checkpoint import Checkpointer
from ._sqlite_errors import ReadOnlyStoreError, is_busy, translate
from ._sqlite_schema import check_identity, latest_version, migrate

T = TypeVar("T")
R = TypeVar("R")

MEMORY = ":memory:"
_MAX_READERS = 4
_WRITE_THREADS = 4
_MAX_GROUP = 64
_RETRY_FIRST_S = 0.00005
_RETRY_MOST_S = 0.002
"""Pauses between tries for a write lock another process holds: a commit holds it for a
fraction of a millisecond (SQLite's own busy handler sleeps 1, 2, 5, 10 ms... between tries)."""
_NAP_S = 0.0001
"""How long a flush whose loop has nothing else to run sleeps on the loop thread between
tries for that lock (see ``_LockWait``)."""
_NAPPING_S = 0.003
"""How long a flush tries that way before it waits on the loop's timers instead."""
_IDLE_CHECKPOINT_S = 0.00005
"""A checkpoint that returns sooner ran no other task: the loop had nothing else to do."""


class _Busy(Exception):
    """An on-loop attempt met another connection's lock; nothing was done."""


WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""Bytes of WAL kept on disk once it restarts from the beginning."""


class Database:
    """Access to one SQLite file (or one in-memory database) from async code."""

    def __init__(self, path: str, *, busy_timeout: float) -> None:
        self.path = path
        self.in_memory = path == MEMORY
        self._busy_timeout = busy_timeout
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._generation = 0
        self._snapshot: bytes | None = None
        self._file_id: tuple[int, int] | None = None
        """(device, inode) of the file opened; a different one at ``path`` means it was
        replaced (or removed) under us."""
        self._write_limiter: anyio.CapacityLimiter | None = None
        self._pending: list[_Write] = []
        self._flushing = False
        self._read_limiter: anyio.CapacityLimiter | None = None
        self._watch: sqlite3.Connection | None = None
        """Reads ``PRAGMA data_version`` only (on the loop thread)."""
        self.checkpointer = (
            None if self.in_memory else Checkpointer(self._connect, self._write_lock)
        )

    # -- async entry points -------------------------------------------------------------------

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self._open_sync, limiter=self._writers())

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._close_sync, limiter=self._writers())
        self._write_limiter = None
        self._read_limiter = None

    async def write(
        self, operation: str, txn: Callable[[sqlite3.Connection], T], *, on_loop: bool = True
    ) -> T:
        """Run ``txn`` atomically in a ``BEGIN IMMEDIATE`` transaction (see ``write_then``)."""
        return await self.write_then(operation, txn, _identity, on_loop=on_loop)

    async def write_then(
        self,
        operation: str,
        txn: Callable[[sqlite3.Connection], T],
        then: Callable[[T], R],
        *,
        on_loop: bool = True,
    ) -> R:
        """Run ``txn`` atomically, then ``then`` on its result after COMMIT (outside the
        write lock: decoding a large history does not stretch the time it is held)."""
        write = _Write(operation, txn, then, on_loop)
        if on_loop and not self._pending and not self._flushing:
            await anyio.lowlevel.checkpoint_if_cancelled()
            try:
                ran = self._write_on_loop([write])
            except _Busy:
                ran = False  # queued below: the flush waits for the other process on the loop
            if ran:
                # Yield once, as a thread hop would have, but never cancel a done write.
                await anyio.lowlevel.cancel_shielded_checkpoint()
                result: R = write.outcome()
                return result
        write.done = anyio.Event()
        self._pending.append(write)
        if self._flushing:
            try:
                await write.done.wait()
            except anyio.get_cancelled_exc_class():
                if write in self._pending:  # not started: it never runs
                    self._pending.remove(write)
                raise
        else:
            await self._flush()
        queued: R = write.outcome()
        return queued

    async def _flush(self) -> None:
        """Run queued writes batch by batch until none is left (for every waiting task).

        A batch of short writes runs on the loop thread. While another process holds the
        file's write lock, the flush waits for it here, on the loop (see ``_LockWait``, up to
        ``busy_timeout``): the loop keeps running turns meanwhile and the writes queued in
        the wait join the batch. A thread waited before, then ran the transaction competing
        with the loop for the GIL (holding the file's lock longer) and handed every result
        back: that cost two processes on one file much of their gain. Only a lock held in
        this process (a checkpoint, a long write) or a long write itself sends a batch to a
        thread.
        """
        self._flushing = True
        try:
            # Shielded: other tasks' writes ride on this one; they must not be stranded.
            with anyio.CancelScope(shield=True):
                wait: _LockWait | None = None
                while self._pending:
                    batch = self._next_batch()
                    if batch[0].on_loop:
                        try:
                            ran = self._write_on_loop(batch)
                        except _Busy as busy:
                            wait = wait or _LockWait(self._busy_timeout)
                            if await wait.before_next_try():
                                continue
                            assert isinstance(busy.__cause__, sqlite3.Error)
                            _fail_translated(batch, busy.__cause__, self.path)
                            ran = True
                        if ran:
                            del self._pending[: len(batch)]
                            _set_done(batch)
                            wait = None
                            continue
                    del self._pending[: len(batch)]
                    await anyio.to_thread.run_sync(
                        self._write_batch_sync, batch, limiter=self._writers()
                    )
                    _set_done(batch)
        finally:
            self._flushing = False

    def _next_batch(self) -> list[_Write]:
        """The next queued writes to run together (left queued until they start): a run of
        short ones for the loop, else up to ``_MAX_GROUP`` of any kind for a thread."""
        if not self._pending[0].on_loop:
            return self._pending[:_MAX_GROUP]
        size = 1
        while size < min(len(self._pending), _MAX_GROUP) and self._pending[size].on_loop:
            size += 1
        return self._pending[:size]

    async def read(
        self, operation: str, txn: Callable[[sqlite3.Connection], T], *, on_loop: bool = True
    ) -> T:
        """Run ``txn`` in one read transaction (a consistent snapshot)."""
        self.check_file(operation)  # a removed file still reads, as if nothing happened
        if on_loop:
            await anyio.lowlevel.checkpoint_if_cancelled()
            try:
                result = self._read_on_loop(operation, txn)
            except _Busy:
                pass
            else:
                await anyio.lowlevel.cancel_shielded_checkpoint()
                return result
        if self.in_memory:
            return await anyio.to_thread.run_sync(
                self._read_on_writer_sync, operation, txn, limiter=self._writers()
            )
        return await anyio.to_thread.run_sync(
            self._read_sync, operation, txn, limiter=self._readers_limiter()
        )

    def data_version(self) -> int | None:
        """A number that changes when another connection commits to the file: another
        process, or this one's writer. None for an in-memory database (no other process can
        write it) or if it could not be read; cheap enough to call every millisecond."""
        if self.in_memory:
            return None
        try:
            if self._watch is None:
                self._watch = self._connect()
            row = self._watch.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            return None
        return int(row[0])

    def _writers(self) -> anyio.CapacityLimiter:
        if self._write_limiter is None:
            self._write_limiter = anyio.CapacityLimiter(_WRITE_THREADS)
        return self._write_limiter

    def _readers_limiter(self) -> anyio.CapacityLimiter:
        if self._read_limiter is None:
            self._read_limiter = anyio.CapacityLimiter(_MAX_READERS)
        return self._read_limiter

    # -- on the loop thread: never waits for a lock ---------------------------------------------

    def _write_on_loop(self, batch: list[_Write]) -> bool:
        """Run ``batch`` here if the writer is open and free in this process; False if it
        could not start. Raises ``_Busy`` (having done nothing) if another connection holds
        the file's write lock."""
        conn = self._writer
        if self.checkpointer is not None and self.checkpointer.pending:
            return False  # let the checkpoint have the lock first (see Checkpointer.pending)
        if conn is None or not self._write_lock.acquire(blocking=False):
            return False
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")  # busy_timeout is 0: fails fast if locked
            except sqlite3.Error as exc:
                if is_busy(exc):
                    raise _Busy from exc
                _fail_translated(batch, exc, self.path)
                return True
            self._run_batch(conn, batch)
        finally:
            self._write_lock.release()
        _run_then(batch)
        return True

    def _read_on_loop(self, operation: str, txn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read here on an idle connection; ``_Busy`` if none is idle or it met a lock."""
        if self.in_memory:
            conn = self._writer
            if conn is None or not self._write_lock.acquire(blocking=False):
                raise _Busy
            try:
                return self._read_here(operation, conn, txn)
            finally:
                self._write_lock.release()
        with self._pool_lock:
            if not self._readers:
                raise _Busy  # a thread opens the next connection, then it joins the pool
            conn, generation = self._readers.pop(), self._generation
        try:
            return self._read_here(operation, conn, txn)
        finally:
            self._return_connection(conn, generation)

    def _read_here(
        self, operation: str, conn: sqlite3.Connection, txn: Callable[[sqlite3.Connection], T]
    ) -> T:
        try:
            return _in_read_txn(conn, txn)
        except sqlite3.Error as exc:
            if is_busy(exc):
                raise _Busy from exc
            raise translate(operation, exc, self.path) from exc

    # -- worker-thread side ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (the module's implicit
        # transactions would begin DEFERRED, which can deadlock two upgrading writers).
        # timeout=0 and busy_timeout 0: a connection waits for locks only inside `_patient`.
        return sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)

    @contextlib.contextmanager
    def _patient(self, conn: sqlite3.Connection) -> Iterator[None]:
        """Wait up to ``busy_timeout`` for other connections' locks (worker threads only)."""
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        try:
            yield
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    def _writer_sync(self) -> sqlite3.Connection:
        """The open writer connection; opens (and migrates) on first use. Hold the lock."""
        if self._writer is None:
            self._writer = self._open_writer() if self.in_memory else self._open_file_writer()
        return self._writer

    def _open_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            with self._patient(conn):
                if self.in_memory:
                    if self._snapshot is not None:
                        conn.deserialize(self._snapshot)
                        self._snapshot = None
                else:
                    # Refuse foreign files before touching them (journal mode is a write).
                    check_identity(conn, self.path)
                    conn.execute("PRAGMA journal_mode = WAL")
                    conn.execute("PRAGMA synchronous = NORMAL")
                    # Checkpoints (and their fsync) run in the checkpointer's thread instead.
                    conn.execute("PRAGMA wal_autocheckpoint = 0")
                    # A WAL that grew (a burst, a checkpoint blocked by a full disk) shrinks
                    # back to this when it restarts, instead of keeping the disk space.
                    conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
                conn.execute("PRAGMA temp_store = MEMORY")
                migrate(conn, self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_file_writer(self) -> sqlite3.Connection:
        # While other processes open the same new file, SQLite refuses some of the locks
        # involved (switching to WAL, recovering its index) without calling the busy handler:
        # those are waited for here, up to busy_timeout like any other lock.
        conn = _until_not_busy(self._open_writer, self._busy_timeout, first=0.001, most=0.05)
        if self._file_id is None:
            stat = os.stat(self.path)
            self._file_id = (stat.st_dev, stat.st_ino)
        return conn

    def check_file(self, operation: str) -> None:
        """Raise ``StoreLostError`` if the file at ``path`` is no longer the one opened.

        Deleting or replacing a database file under open connections goes unnoticed by
        SQLite: writes keep succeeding into a file nobody will read again."""
        if self._file_id is None:
            return
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            why = "was removed"
        else:
            if (stat.st_dev, stat.st_ino) == self._file_id:
                return
            why = "was replaced by another file"
        raise StoreLostError(
            operation,
            f"the database file {self.path!r} {why} while open; nothing written since is "
            "kept. Stop, restore the file (or point at the right one) and start again",
        )

    def _open_sync(self) -> None:
        with self._write_lock:
            try:
                self._writer_sync()
            except sqlite3.Error as exc:
                raise translate("open", exc, self.path) from exc

    def _close_sync(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()
        with self._write_lock:
            with self._pool_lock:
                readers, self._readers = self._readers, []
                self._generation += 1
            for reader in readers:
                reader.close()
            writer, self._writer = self._writer, None
            if writer is not None:
                if self.in_memory:
                    self._snapshot = writer.serialize()
                writer.close()

    def _write_batch_sync(self, batch: list[_Write]) -> None:
        with self._write_lock:
            try:
                conn = self._writer_sync()
                _until_not_busy(
                    lambda: conn.execute("BEGIN IMMEDIATE"),
                    self._busy_timeout,
                    first=_RETRY_FIRST_S,
                    most=_RETRY_MOST_S,
                )
            except sqlite3.Error as exc:
                _fail_translated(batch, exc, self.path)
                return
            self._run_batch(conn, batch)
        _run_then(batch)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Write]) -> None:
        """Run ``batch`` in the transaction just begun and COMMIT; hold the write lock."""
        try:
            if len(batch) == 1:
                if not _run_alone(conn, batch[0], self.path):
                    return
            else:
                for write in batch:
                    _run_in_savepoint(conn, write, self.path)
                    if not conn.in_transaction:
                        # SQLite rolled the whole transaction back (I/O error, full disk):
                        # the writes before this one are gone too.
                        _fail_all(batch, write.error)
                        return
            conn.execute("COMMIT")
            if self.checkpointer is not None:
                self.checkpointer.committed()
            self._fail_if_file_lost(batch)
        except sqlite3.Error as exc:
            _rollback(conn)
            _fail_translated(batch, exc, self.path)
        except BaseException as exc:
            _rollback(conn)
            _fail_all(batch, exc)
            raise

    def _fail_if_file_lost(self, batch: list[_Write]) -> None:
        """Committed, but into a file that is gone: none of it may be acknowledged."""
        for write in batch:
            if write.error is None:
                try:
                    self.check_file(write.operation)
                except StoreLostError as exc:
                    write.error = exc

    def _read_on_writer_sync(self, operation: str, txn: Callable[[sqlite3.Connection], T]) -> T:
        with self._write_lock:
            try:
                conn = self._writer_sync()
                return _in_read_txn(conn, txn)
            except sqlite3.Error as exc:
                raise translate(operation, exc, self.path) from exc

    def _read_sync(self, operation: str, txn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn, generation = self._take_reader()
        except sqlite3.Error as exc:
            raise translate(operation, exc, self.path) from exc
        try:
            with self._patient(conn):
                return _in_read_txn(conn, txn)
        except sqlite3.Error as exc:
            raise translate(operation, exc, self.path) from exc
        finally:
            self._return_connection(conn, generation)

    def _take_reader(self) -> tuple[sqlite3.Connection, int]:
        with self._pool_lock:
            generation = self._generation
            if self._readers:
                return self._readers.pop(), generation
        # The writer opens first: it checks the file's identity and migrates the schema.
        try:
            with self._write_lock:
                self._writer_sync()
        except sqlite3.Error as exc:
            if not isinstance(translate("open", exc, self.path), ReadOnlyStoreError):
                raise
            return self._connect_read_only(), generation
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")
        return conn, generation

    def _connect_read_only(self) -> sqlite3.Connection:
        """A reader for a file nobody here can write (a read-only mount, say): reads still work.

        ``mode=ro`` reads the WAL through its shared-memory index, which must exist or be
        creatable. On a read-only mount after a clean close neither the WAL nor the index
        exists, and the file alone is the whole database: ``immutable=1`` reads it as is.
        """
        uri = "file:" + urllib.parse.quote(self.path)
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=0, check_same_thread=False)
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error:
            conn.close()
            wal = self.path + "-wal"
            if os.path.exists(wal) and os.path.getsize(wal) > 0:
                raise  # committed data may sit in the WAL: reading the file alone would lie
            conn = sqlite3.connect(
                f"{uri}?immutable=1", uri=True, timeout=0, check_same_thread=False
            )
        try:
            conn.isolation_level = None
            version = check_identity(conn, self.path)
            if version < latest_version():
                raise ReadOnlyStoreError(
                    "open",
                    f"{self.path!r} is read-only and has schema version {version}; open it "
                    f"once with write access so it can be upgraded to {latest_version()}",
                )
        except BaseException:
            conn.close()
            raise
        return conn

    def _return_connection(self, conn: sqlite3.Connection, generation: int) -> None:
        with self._pool_lock:
            if generation == self._generation and len(self._readers) < _MAX_READERS:
                self._readers.append(conn)
                return
        conn.close()


class _LockWait:
    """A flush's wait for the write lock another process holds, from the first refusal until
    ``busy_timeout``.

    A commit holds that lock for a fraction of a millisecond, but a timer of the event loop
    cannot wait less than a millisecond (epoll counts in milliseconds; about 1.3 ms in all),
    and waking an idle loop costs 80-130 us of CPU on a small VM. Waiting that way, the
    process with less to do tried again least often and lost most races for the lock: two
    runtimes sharing a file split the turns 2:1, and the one with fewer idled. So while the
    loop has nothing else to run, the flush naps 0.1 ms at a time on the loop thread itself;
    while other tasks are ready, it lets them run and tries again right after. After 3 ms
    (a bulk delete, say, holds the lock longer) it waits on the loop's timers.
    """

    def __init__(self, busy_timeout: float) -> None:
        now = time.monotonic()
        self._napping_until = now + _NAPPING_S
        self._deadline = now + busy_timeout
        self._pause = _RETRY_FIRST_S

    async def before_next_try(self) -> bool:
        """Wait before the next try; False, at once, if none is left before the timeout."""
        now = time.monotonic()
        napping = now < self._napping_until
        if now + (0.0 if napping else self._pause) > self._deadline:
            return False
        if napping:
            began = time.perf_counter()
            await anyio.lowlevel.checkpoint()
            if time.perf_counter() - began < _IDLE_CHECKPOINT_S:
                time.sleep(_NAP_S)  # noqa: ASYNC251 (shorter than any timer of the loop)
            return True
        await anyio.sleep(self._pause)
        self._pause = min(self._pause * 2, _RETRY_MOST_S)
        return True


class _Write:
    """One write: its transaction body, what to do after COMMIT, and its outcome."""

    __slots__ = ("done", "error", "on_loop", "operation", "result", "then", "txn")

    def __init__(
        self,
        operation: str,
        txn: Callable[[sqlite3.Connection], Any],
        then: Callable[[Any], Any],
        on_loop: bool,
    ) -> None:
        self.operation = operation
        self.txn = txn
        self.then = then
        self.on_loop = on_loop
        """Short enough to run on the event loop (see ``Database.write_then``)."""
        self.done: anyio.Event | None = None
        """Set once a flush ran it (queued writes only)."""
        self.result: Any = None
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


def _set_done(batch: list[_Write]) -> None:
    for write in batch:
        assert write.done is not None
        write.done.set()


def _until_not_busy(attempt: Callable[[], T], timeout: float, *, first: float, most: float) -> T:
    """``attempt()``, again after doubling pauses (``first`` to ``most`` seconds) while
    SQLite reports a lock held elsewhere, for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = first
    while True:
        try:
            return attempt()
        except sqlite3.Error as exc:
            if not is_busy(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, most)


def _translated(operation: str, exc: sqlite3.Error, path: str) -> BaseException:
    error = translate(operation, exc, path)
    error.__cause__ = exc
    return error


def _failure(write: _Write, exc: Exception, path: str) -> BaseException:
    """What a failing write body reports: SQLite errors translated, others as they are."""
    return _translated(write.operation, exc, path) if isinstance(exc, sqlite3.Error) else exc


def _fail_translated(batch: list[_Write], exc: sqlite3.Error, path: str) -> None:
    """Every write of ``batch`` fails with ``exc``, translated for its own operation."""
    for write in batch:
        write.error = _translated(write.operation, exc, path)


def _run_alone(conn: sqlite3.Connection, write: _Write, path: str) -> bool:
    """The only write of its transaction: no savepoint needed. False if it failed (and the
    transaction was rolled back)."""
    try:
        write.result = write.txn(conn)
    except Exception as exc:
        write.error = _failure(write, exc, path)
        _rollback(conn)
        return False
    return True


def _run_in_savepoint(conn: sqlite3.Connection, write: _Write, path: str) -> None:
    conn.execute("SAVEPOINT write")
    try:
        write.result = write.txn(conn)
    except Exception as exc:
        write.error = _failure(write, exc, path)
        if conn.in_transaction:
            conn.execute("ROLLBACK TO write")
            conn.execute("RELEASE write")
        return
    conn.execute("RELEASE write")


def _run_then(batch: list[_Write]) -> None:
    for write in batch:
        if write.error is None:
            try:
                write.result = write.then(write.result)
            except Exception as exc:
                write.error = exc


def _fail_all(batch: list[_Write], error: BaseException | None) -> None:
    for write in batch:
        write.error = error


def _identity(value: T) -> T:
    return value


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            # SQLite rolls back by itself after some errors (I/O, full disk); the original
            # error is the one worth reporting.
            pass


def _in_read_txn(conn: sqlite3.Connection, txn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN")
    try:
        return txn(conn)
    finally:
        _rollback(conn)
