"""SQLite-specific errors and the translation of ``sqlite3`` exceptions at the boundary.

These extend the tree in ``duro._errors``::

    ProviderError
    ├── NotADuroDatabaseError     the file is not SQLite, or SQLite written by something else
    ├── SchemaVersionError        the file was written by a newer duro
    ├── ReadOnlyStoreError        the file (or its directory) cannot be written
    ├── StoreFullError            the disk or the database size limit is full (retryable)
    └── StoreBusyError            another connection holds the write lock (retryable)

Every other ``sqlite3`` error becomes a plain ``ProviderError``: retryable for operational
errors (I/O, interrupted, protocol races), permanent otherwise.
"""

from __future__ import annotations

import os
import sqlite3

from .._errors import ProviderError, StoreCorruptionError

# Primary result codes (the low byte of an extended code).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_INTERRUPT = 9
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_PROTOCOL = 15
_SQLITE_NOTADB = 26


class NotADuroDatabaseError(ProviderError):
    """The file is not an SQLite database, or it belongs to another application."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            "open",
            f"{path!r} is not a duro database ({reason}); point the provider at a new or "
            "existing duro file",
            retryable=False,
        )
        self.path = path


class SchemaVersionError(ProviderError):
    """The file's schema is newer than this version of duro understands."""

    def __init__(self, path: str, *, found: int, supported: int) -> None:
        super().__init__(
            "open",
            f"{path!r} has schema version {found} but this duro supports up to {supported}; "
            "upgrade duro (the file was written by a newer release)",
            retryable=False,
        )
        self.path = path
        self.found = found
        self.supported = supported


class ReadOnlyStoreError(ProviderError):
    """The database cannot be written (file permissions, read-only mount, ...)."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(
            operation,
            f"{message}; the provider needs write access to the file and its directory",
            retryable=False,
        )


class StoreFullError(ProviderError):
    """The disk is full. Retryable: nothing was written, and freeing space fixes it."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(operation, f"{message}; free disk space", retryable=True)


class StoreBusyError(ProviderError):
    """Another connection held the database lock for longer than ``busy_timeout``."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(operation, message, retryable=True)


def is_busy(exc: sqlite3.Error) -> bool:
    """Another connection holds a lock this one needs (waiting could have helped)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def translate(operation: str, exc: sqlite3.Error, path: str) -> ProviderError:
    """The most specific ``ProviderError`` for ``exc``; raise it ``from exc``."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = f"{type(exc).__name__}: {exc}"
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return StoreBusyError(operation, f"database is locked by another connection ({text})")
    if primary == _SQLITE_NOTADB:
        return NotADuroDatabaseError(path, "it is not an SQLite file")
    if primary == _SQLITE_READONLY:
        return ReadOnlyStoreError(operation, f"{path!r} is read-only ({text})")
    if primary == _SQLITE_FULL:
        return StoreFullError(operation, f"{path!r} is full ({text})")
    if primary == _SQLITE_CORRUPT:
        return StoreCorruptionError(operation, f"{path!r} is corrupt ({text})")
    if primary == _SQLITE_CANTOPEN:
        if not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            return ReadOnlyStoreError(operation, f"cannot open {path!r} ({text})")
        return ProviderError(operation, f"cannot open {path!r} ({text})", retryable=False)
    if primary in (_SQLITE_INTERRUPT, _SQLITE_IOERR, _SQLITE_PROTOCOL):
        return ProviderError(operation, text, retryable=True)
    if isinstance(exc, sqlite3.OperationalError) and primary is None:
        return ProviderError(operation, text, retryable=True)
    return ProviderError(operation, text, retryable=False)
