"""What ``Client``'s schedule methods do: check a spec, start, read and steer the schedule's
instance (decision 0008)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from .._errors import (
    CronSyntaxError,
    InstanceNotFoundError,
    InvalidScheduleError,
    ScheduleNotFoundError,
)
from .._ids import validate_instance_id
from .._serde import decode, encode
from .._status import OrchestrationStatus, State
from ._cron import CronExpression
from ._spec import (
    CONTROL_QUEUE,
    MAX_SCHEDULE_ID_LENGTH,
    OVERLAPS,
    SCHEDULE_ORCHESTRATION,
    SCHEDULE_PREFIX,
    Control,
    ScheduleSpec,
    ScheduleState,
    ScheduleSummary,
    instance_id_of,
    stamp,
)

if TYPE_CHECKING:
    from .._client import Client

ScheduleStatus = Literal["pending", "active", "paused", "ended", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleInfo:
    """A schedule as ``Client.get_schedule`` and ``Client.list_schedules`` report it.

    ``status`` is ``"pending"`` until a runtime has run the schedule's first turn (then the
    spec fields are None, as they are not readable yet), ``"active"``, ``"paused"``,
    ``"ended"`` (``end_at`` has passed; ``trigger_schedule`` still starts runs) or
    ``"failed"`` (the schedule's instance failed: see ``Client.get_status``). Pause, resume
    and trigger show here after the schedule's next turn.
    """

    schedule_id: str
    status: ScheduleStatus
    orchestration: str | None = None
    every: timedelta | None = None
    cron: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    overlap: str | None = None
    next_run_at: datetime | None = None
    """The next due time (None: paused, ended or pending)."""
    last_run_id: str | None = None
    """The instance id of the run started last."""
    last_run_at: datetime | None = None
    running_run_id: str | None = None
    """The run started last, until it reports its end."""
    buffered_run_id: str | None = None
    """``buffer_one``: the run that starts when the running one ends."""
    runs_started: int = 0
    runs_skipped: int = 0
    """Due times whose run the overlap policy skipped (or a newer buffered one replaced)."""


def _at(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _ms(value: datetime | None, schedule_id: str, what: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidScheduleError(
            schedule_id, f"{what} must be a timezone-aware datetime, got {value!r}"
        )
    return int(value.timestamp() * 1000)


def check_schedule_id(schedule_id: str) -> str:
    validate_instance_id(schedule_id)
    if len(schedule_id) > MAX_SCHEDULE_ID_LENGTH:
        raise InvalidScheduleError(
            schedule_id[:40] + "...",
            f"the id is {len(schedule_id)} characters; the limit is {MAX_SCHEDULE_ID_LENGTH}",
        )
    return schedule_id


def build_spec(
    client: Client,
    schedule_id: str,
    orchestration: str | Callable[..., Any],
    input: Any,
    *,
    version: str | None,
    every: timedelta | None,
    cron: str | None,
    start_at: datetime | None,
    end_at: datetime | None,
    overlap: str,
) -> ScheduleSpec:
    """The spec of a new schedule, or ``InvalidScheduleError`` naming what is wrong."""
    check_schedule_id(schedule_id)
    if (every is None) == (cron is None):
        raise InvalidScheduleError(schedule_id, "give exactly one of every= and cron=")
    every_ms: int | None = None
    if every is not None:
        if not isinstance(every, timedelta):
            raise InvalidScheduleError(schedule_id, f"every must be a timedelta, got {every!r}")
        if every < timedelta(seconds=1):
            raise InvalidScheduleError(
                schedule_id, f"every must be at least one second, got {every}"
            )
        every_ms = every // timedelta(milliseconds=1)
    if cron is not None:
        try:
            CronExpression.parse(cron)
        except CronSyntaxError as exc:
            raise CronSyntaxError(exc.expression, exc.field, exc.problem, schedule_id) from None
    start_ms = _ms(start_at, schedule_id, "start_at")
    end_ms = _ms(end_at, schedule_id, "end_at")
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise InvalidScheduleError(
            schedule_id, f"end_at ({end_at}) must be after start_at ({start_at})"
        )
    if overlap not in OVERLAPS:
        raise InvalidScheduleError(
            schedule_id, f"overlap must be one of {', '.join(OVERLAPS)}, got {overlap!r}"
        )
    name = _target_name(client, schedule_id, orchestration, version)
    return ScheduleSpec(
        schedule_id=schedule_id,
        orchestration=name,
        version=version,
        input=encode(input, what=f"input of schedule {schedule_id!r}"),
        every_ms=every_ms,
        cron=cron,
        start_at_ms=start_ms,
        end_at_ms=end_ms,
        overlap=overlap,
    )


def _target_name(
    client: Client, schedule_id: str, orchestration: str | Callable[..., Any], version: str | None
) -> str:
    registry = client.registry
    if isinstance(orchestration, str):
        name = orchestration
    elif registry is not None and registry.knows(orchestration):
        name = registry.name_of(orchestration)
    else:
        name = getattr(orchestration, "__name__", "")
    if not name or name.startswith("duro:"):
        raise InvalidScheduleError(schedule_id, f"{orchestration!r} is not an orchestration name")
    # Without a registry the client cannot know the workers' names: the run then fails as
    # any start of an unknown name does.
    if registry is not None:
        if not registry.has_orchestration(name):
            raise InvalidScheduleError(
                schedule_id,
                f"orchestration {name!r} is not registered in the client's registry",
            )
        if version is not None and registry.get_orchestration(name, version) is None:
            raise InvalidScheduleError(
                schedule_id, f"orchestration {name!r} has no version {version!r} registered"
            )
    return name


def info_of(schedule_id: str, status: OrchestrationStatus[Any]) -> ScheduleInfo:
    raw = status.custom_status_json
    if raw is None:
        return ScheduleInfo(schedule_id=schedule_id, status="pending")
    summary = decode(raw, ScheduleSummary, what=f"status of schedule {schedule_id!r}")
    state: ScheduleState = summary.state
    spec = state.spec
    kind: ScheduleStatus
    if status.state is State.FAILED:
        kind = "failed"
    elif state.paused:
        kind = "paused"
    elif summary.next_run_at_ms is None:
        kind = "ended"
    else:
        kind = "active"
    return ScheduleInfo(
        schedule_id=schedule_id,
        status=kind,
        orchestration=spec.orchestration,
        every=None if spec.every_ms is None else timedelta(milliseconds=spec.every_ms),
        cron=spec.cron,
        start_at=_at(spec.start_at_ms),
        end_at=_at(spec.end_at_ms),
        overlap=spec.overlap,
        next_run_at=_at(summary.next_run_at_ms),
        last_run_id=state.last_run_id,
        last_run_at=_at(state.last_run_at_ms),
        running_run_id=state.running,
        buffered_run_id=state.buffered,
        runs_started=state.runs_started,
        runs_skipped=state.runs_skipped,
    )


async def get_schedule(client: Client, schedule_id: str) -> ScheduleInfo:
    check_schedule_id(schedule_id)
    status = await client.get_status(instance_id_of(schedule_id))
    if status.state is State.NOT_FOUND or status.name not in (None, SCHEDULE_ORCHESTRATION):
        raise ScheduleNotFoundError(schedule_id)
    return info_of(schedule_id, status)


async def list_schedules(client: Client, limit: int) -> list[ScheduleInfo]:
    found = await client.list_instances(name=SCHEDULE_ORCHESTRATION, limit=limit)
    infos = [
        info_of(status.instance_id.removeprefix(SCHEDULE_PREFIX), status)
        for status in found
        if status.instance_id.startswith(SCHEDULE_PREFIX)
    ]
    return sorted(infos, key=lambda info: info.schedule_id)


async def send_control(client: Client, schedule_id: str, request: Control) -> None:
    check_schedule_id(schedule_id)
    try:
        await client.enqueue_event(instance_id_of(schedule_id), CONTROL_QUEUE, request)
    except InstanceNotFoundError:
        raise ScheduleNotFoundError(schedule_id) from None


def trigger_run_id(schedule_id: str) -> str:
    """A fresh id for a run started by ``trigger_schedule``: the time and a random suffix."""
    now = int(datetime.now(UTC).timestamp() * 1000)
    return f"{schedule_id}@{stamp(now)}-trigger-{secrets.token_hex(3)}"


async def delete_schedule(client: Client, schedule_id: str) -> None:
    check_schedule_id(schedule_id)
    try:
        result = await client.delete_instance(instance_id_of(schedule_id), force=True)
    except InstanceNotFoundError:
        raise ScheduleNotFoundError(schedule_id) from None
    if result.instances_deleted == 0:
        raise ScheduleNotFoundError(schedule_id)
