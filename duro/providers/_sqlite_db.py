"""Connections and threads for the SQLite provider.

Design: one writer connection guarded by a ``threading.Lock``, plus a small pool of reader
connections; every call runs in a worker thread (``anyio.to_thread.run_sync``) taken from a
limiter that belongs to this database, so the event loop never waits on SQLite.

Why a lock inside the thread and not an async limiter of one: SQLite admits one writer at a
time anyway. With the lock in the thread, the next queued write is already sitting in its
worker thread when the previous one commits and starts the moment the lock is released, while
the event loop delivers the previous result in parallel (``sqlite3`` releases the GIL while a
statement runs). An async limiter of one would put an event-loop round trip between every two
transactions. In-process writers therefore never meet ``SQLITE_BUSY`` and never sleep in
SQLite's busy handler; ``busy_timeout`` only matters between processes (or between providers
on one file), where ``BEGIN IMMEDIATE`` waits for the other writer instead of failing.

Readers are separate connections: in WAL mode they read a consistent snapshot without waiting
for the writer, so status queries and management reads do not queue behind turn commits.

``":memory:"`` is different: an in-memory database belongs to its one connection, so all work
goes through the writer, and ``close()`` keeps the data as a serialized snapshot that the next
use restores (the provider behaves like a store that survives close/reopen, as files do).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from ._sqlite_errors import translate
from ._sqlite_schema import check_identity, migrate

T = TypeVar("T")
R = TypeVar("R")

MEMORY = ":memory:"
_MAX_READERS = 4
_WRITE_THREADS = 4


class Database:
    """Thread-offloaded access to one SQLite file (or one in-memory database)."""

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
        self._write_limiter: anyio.CapacityLimiter | None = None
        self._pending: list[_Write] = []
        self._flushing = False
        self._read_limiter: anyio.CapacityLimiter | None = None

    # -- async entry points -------------------------------------------------------------------

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self._open_sync, limiter=self._writers())

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._close_sync, limiter=self._writers())
        self._write_limiter = None
        self._read_limiter = None

    async def write(self, operation: str, txn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``txn`` atomically in a ``BEGIN IMMEDIATE`` transaction (see ``write_then``)."""
        return await self.write_then(operation, txn, _identity)

    async def write_then(
        self,
        operation: str,
        txn: Callable[[sqlite3.Connection], T],
        then: Callable[[T], R],
    ) -> R:
        """Run ``txn`` atomically, then ``then`` on its result after COMMIT.

        Group commit: writes queued while a batch is in the writer thread go together in the
        next batch, one transaction and one thread hop for all of them, each in its own
        savepoint so a failing write undoes only itself. ``then`` runs in the worker thread
        too (decoding large histories stays off the loop) but after COMMIT, so it does not
        extend the time the write lock is held.
        """
        write = _Write(operation, txn, then)
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
        if write.error is not None:
            raise write.error
        result: R = write.result
        return result

    async def _flush(self) -> None:
        """Run queued writes batch by batch until none is left (for every waiting task)."""
        self._flushing = True
        try:
            # Shielded: other tasks' writes ride on this one; they must not be stranded.
            with anyio.CancelScope(shield=True):
                while self._pending:
                    batch = self._pending[:_MAX_GROUP]
                    del self._pending[:_MAX_GROUP]
                    await anyio.to_thread.run_sync(
                        self._write_batch_sync, batch, limiter=self._writers()
                    )
                    for write in batch:
                        write.done.set()
        finally:
            self._flushing = False

    async def read(self, operation: str, txn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``txn`` in one read transaction (a consistent snapshot)."""
        if self.in_memory:
            return await anyio.to_thread.run_sync(
                self._read_on_writer_sync, operation, txn, limiter=self._writers()
            )
        return await anyio.to_thread.run_sync(
            self._read_sync, operation, txn, limiter=self._readers_limiter()
        )

    def _writers(self) -> anyio.CapacityLimiter:
        if self._write_limiter is None:
            self._write_limiter = anyio.CapacityLimiter(_WRITE_THREADS)
        return self._write_limiter

    def _readers_limiter(self) -> anyio.CapacityLimiter:
        if self._read_limiter is None:
            self._read_limiter = anyio.CapacityLimiter(_MAX_READERS)
        return self._read_limiter

    # -- worker-thread side ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (the module's implicit
        # transactions would begin DEFERRED, which can deadlock two upgrading writers).
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _writer_sync(self) -> sqlite3.Connection:
        """The open writer connection; opens (and migrates) on first use. Hold the lock."""
        if self._writer is not None:
            return self._writer
        conn = self._connect()
        try:
            if self.in_memory:
                if self._snapshot is not None:
                    conn.deserialize(self._snapshot)
                    self._snapshot = None
            else:
                # Refuse foreign files before touching them (journal mode is a write).
                check_identity(conn, self.path)
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA temp_store = MEMORY")
            migrate(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._writer = conn
        return conn

    def _open_sync(self) -> None:
        with self._write_lock:
            try:
                self._writer_sync()
            except sqlite3.Error as exc:
                raise translate("open", exc, self.path) from exc

    def _close_sync(self) -> None:
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
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                for write in batch:
                    write.error = _translated(write.operation, exc, self.path)
                return
            try:
                for write in batch:
                    _run_in_savepoint(conn, write, self.path)
                    if not conn.in_transaction:
                        # SQLite rolled the whole transaction back (I/O error, full disk):
                        # the writes before this one are gone too.
                        _fail_all(batch, write.error)
                        return
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                for write in batch:
                    write.error = _translated(write.operation, exc, self.path)
                return
            except BaseException as exc:
                _rollback(conn)
                _fail_all(batch, exc)
                raise
        for write in batch:
            if write.error is None:
                try:
                    write.result = write.then(write.result)
                except Exception as exc:
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
            return _in_read_txn(conn, txn)
        except sqlite3.Error as exc:
            raise translate(operation, exc, self.path) from exc
        finally:
            self._give_back(conn, generation)

    def _take_reader(self) -> tuple[sqlite3.Connection, int]:
        with self._pool_lock:
            generation = self._generation
            if self._readers:
                return self._readers.pop(), generation
        # The writer opens first: it checks the file's identity and migrates the schema.
        with self._write_lock:
            self._writer_sync()
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")
        return conn, generation

    def _give_back(self, conn: sqlite3.Connection, generation: int) -> None:
        with self._pool_lock:
            if generation == self._generation and len(self._readers) < _MAX_READERS:
                self._readers.append(conn)
                return
        conn.close()


_MAX_GROUP = 64


class _Write:
    """One queued write: its transaction body, what to do after COMMIT, and its outcome."""

    __slots__ = ("done", "error", "operation", "result", "then", "txn")

    def __init__(
        self,
        operation: str,
        txn: Callable[[sqlite3.Connection], Any],
        then: Callable[[Any], Any],
    ) -> None:
        self.operation = operation
        self.txn = txn
        self.then = then
        self.done = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


def _translated(operation: str, exc: sqlite3.Error, path: str) -> BaseException:
    error = translate(operation, exc, path)
    error.__cause__ = exc
    return error


def _run_in_savepoint(conn: sqlite3.Connection, write: _Write, path: str) -> None:
    conn.execute("SAVEPOINT write")
    try:
        write.result = write.txn(conn)
    except Exception as exc:
        write.error = (
            _translated(write.operation, exc, path) if isinstance(exc, sqlite3.Error) else exc
        )
        if conn.in_transaction:
            conn.execute("ROLLBACK TO write")
            conn.execute("RELEASE write")
        return
    conn.execute("RELEASE write")


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
