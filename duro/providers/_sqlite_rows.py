"""Mapping between SQLite rows and the provider contract's records."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from .._status import ErrorInfo, State
from ._types import ExecutionStatus, InstanceRecord

INSTANCE_COLUMNS = (
    "instance_id, name, version, execution_id,"
    " CASE WHEN restarting THEN NULL ELSE execution_status END AS execution_status,"
    " CASE WHEN restarting THEN NULL ELSE output END AS output,"
    " CASE WHEN restarting THEN NULL ELSE error END AS error,"
    " CASE WHEN restarting THEN NULL ELSE custom_status END AS custom_status,"
    " custom_status_version, parent_instance_id, created_at_ms,"
    " updated_at_ms, CASE WHEN restarting THEN NULL ELSE completed_at_ms END AS completed_at_ms"
)
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
