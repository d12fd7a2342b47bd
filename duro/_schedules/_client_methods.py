"""``Client``'s schedule methods (a base class of ``Client``, kept apart to keep both short)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from .._errors import InvalidScheduleError
from .._ids import validate_instance_id
from . import _manage
from ._manage import ScheduleInfo
from ._spec import SCHEDULE_ORCHESTRATION, Control, Overlap, ScheduleState, instance_id_of

if TYPE_CHECKING:
    from .._client import Client


def _client(methods: ScheduleMethods) -> Client:
    return cast("Client", methods)


class ScheduleMethods:
    """Recurring runs of an orchestration (decision 0008): each schedule is an instance of
    the built-in orchestration ``duro:schedule``, id ``duro:schedule:<schedule id>``, which
    any runtime on the store runs."""

    async def create_schedule(
        self,
        schedule_id: str,
        orchestration: str | Callable[..., Any],
        input: Any = None,
        *,
        every: timedelta | None = None,
        cron: str | None = None,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        overlap: Overlap = "skip",
        version: str | None = None,
    ) -> str:
        """Run ``orchestration`` with ``input`` on a schedule: ``every`` interval (at least a
        second; due times aligned to ``start_at``, or to the Unix epoch) or at the times of a
        five-field ``cron`` expression in UTC. Give exactly one. Returns ``schedule_id``.

        Each run is an ordinary instance with the predictable id
        ``<schedule_id>@<due time as YYYYMMDDTHHMMSSZ, UTC>``, started once per due time
        however many runtimes share the store. Due times before ``start_at`` or after
        ``end_at`` (timezone-aware datetimes) are not run. After downtime the schedule
        catches up once, for the latest due time it missed.

        ``overlap`` decides what happens when a run is due while the previous one still runs:
        ``"skip"`` the new one, ``"buffer_one"`` start it when the running one ends (at most
        one waits; a newer due time replaces it), or ``"allow"`` start it anyway.

        ``InvalidScheduleError`` (a ``ValueError``) for a spec that cannot work, naming the
        problem; ``CronSyntaxError`` (one of those) for a cron expression that does not parse;
        ``InstanceAlreadyExistsError`` if the schedule exists. With a ``registry`` the client
        also refuses an orchestration (or ``version``) it does not know.
        """
        spec = _manage.build_spec(
            _client(self),
            schedule_id,
            orchestration,
            input,
            version=version,
            every=every,
            cron=cron,
            start_at=start_at,
            end_at=end_at,
            overlap=overlap,
        )
        await _client(self).start_orchestration(
            instance_id_of(schedule_id), SCHEDULE_ORCHESTRATION, ScheduleState(spec=spec)
        )
        return schedule_id

    async def get_schedule(self, schedule_id: str) -> ScheduleInfo:
        """The schedule's spec and what it has done; ``ScheduleNotFoundError`` if there is
        no such schedule."""
        return await _manage.get_schedule(_client(self), schedule_id)

    async def list_schedules(self, *, limit: int = 1000) -> list[ScheduleInfo]:
        """Every schedule (up to ``limit``), by schedule id."""
        return await _manage.list_schedules(_client(self), limit)

    async def pause_schedule(self, schedule_id: str) -> None:
        """Start no runs until ``resume_schedule`` (due times that pass meanwhile are not
        made up for). Takes effect at the schedule's next turn; runs in flight go on."""
        await _manage.send_control(_client(self), schedule_id, Control(op="pause"))

    async def resume_schedule(self, schedule_id: str) -> None:
        """Undo ``pause_schedule``: the next run is the first due time after the resume."""
        await _manage.send_control(_client(self), schedule_id, Control(op="resume"))

    async def trigger_schedule(self, schedule_id: str, *, run_id: str | None = None) -> str:
        """Start a run now, whatever the overlap policy and even while paused; returns its
        instance id (``run_id``, or ``<schedule_id>@<now>-trigger-<random>``). The run
        starts at the schedule's next turn; due times are unaffected."""
        target = run_id if run_id is not None else _manage.trigger_run_id(schedule_id)
        if run_id is not None:
            validate_instance_id(run_id)
            if run_id.startswith("duro:"):
                raise InvalidScheduleError(schedule_id, f"run id {run_id!r} is reserved")
        await _manage.send_control(_client(self), schedule_id, Control(op="trigger", run_id=target))
        return target

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete the schedule (at once, even mid-turn); its runs, finished or running, are
        left as they are. ``ScheduleNotFoundError`` if there is no such schedule."""
        await _manage.delete_schedule(_client(self), schedule_id)
