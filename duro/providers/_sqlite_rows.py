"""Mapping between SQLite rows and the provider contract's records."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from .._status import ErrorInfo, State
from ._types import ExecutionStatus, InstanceRecord


def instance_columns(table: str = "") -> str:
    """``INSTANCE_COLUMNS`` read from ``table`` (an alias in a join), if given."""
    t = f"{table}." if table else ""
    return (
        f"{t}instance_id, {t}name, {t}version, {t}execution_id,"
        f" CASE WHEN {t}restarting THEN NULL ELSE {t}execution_status END AS execution_status,"
        f" CASE WHEN {t}restarting THEN NULL ELSE {t}output END AS output,"
        f" CASE WHEN {t}restarting THEN NULL ELSE {t}error END AS error,"
        f" CASE WHEN {t}restarting THEN NULL ELSE {t}custom_status END AS custom_status,"
        f" {t}custom_status_version, {t}parent_instance_id, {t}created_at_ms, {t}updated_at_ms,"
        f" CASE WHEN {t}restarting THEN NULL ELSE {t}completed_at_ms END AS completed_at_ms"
    )


INSTANCE_COLUMNS = instance_columns()
"""Column order ``instance_from_row`` expects; index 3 is the current execution id. A
restarting instance reads as PENDING (no status, output, error or custom status) with its
finished execution's id."""

PENDING_COLUMNS = (
    "q.instance_id, q.start_name, q.start_version, 0, NULL, NULL, NULL, NULL, 0,"
    " q.start_parent_id, q.enqueued_at_ms, q.enqueued_at_ms, NULL"
)
"""A queued start in ``INSTANCE_COLUMNS`` shape (``execution_status`` NULL means PENDING)."""

_error_decoder = msgspec.json.Decoder(ErrorInfo)


def instance_from_row(row: tuple[Any, ...]) -> InstanceRecord:
    """Raises ``msgspec.DecodeError``/``ValidationError``/``ValueError`` on corrupt rows."""
    (
        instance_id,
        name,
        version,
        execution_id,
        status,
        output,
        error,
        custom_status,
        custom_status_version,
        parent_instance_id,
        created_at_ms,
        updated_at_ms,
        completed_at_ms,
    ) = row
    execution_status = None if status is None else ExecutionStatus(status)
    return InstanceRecord(
        instance_id=instance_id,
        state=State.PENDING if execution_status is None else execution_status.instance_state(),
        name=name,
        version=version,
        execution_id=execution_id,
        execution_status=execution_status,
        output=output,
        error=None if error is None else _error_decoder.decode(error),
        custom_status=custom_status,
        custom_status_version=custom_status_version,
        parent_instance_id=parent_instance_id,
        created_at_ms=created_at_ms,
        updated_at_ms=updated_at_ms,
        completed_at_ms=completed_at_ms,
    )


def json_array(values: Iterable[object]) -> str:
    """``values`` as a JSON array, for ``json_each`` in a query."""
    return msgspec.json.encode(list(values)).decode()
