"""``duro schedules list | pause | resume | trigger | delete``."""

from __future__ import annotations

import argparse
from typing import Any

from .._client import Client
from .._schedules import ScheduleInfo
from ._output import Output, iso, when


def schedule_json(info: ScheduleInfo) -> dict[str, Any]:
    return {
        "schedule_id": info.schedule_id,
        "status": info.status,
        "orchestration": info.orchestration,
        "every_seconds": None if info.every is None else info.every.total_seconds(),
        "cron": info.cron,
        "start_at": iso(info.start_at),
        "end_at": iso(info.end_at),
        "overlap": info.overlap,
        "next_run_at": iso(info.next_run_at),
        "last_run_id": info.last_run_id,
        "last_run_at": iso(info.last_run_at),
        "running_run_id": info.running_run_id,
        "buffered_run_id": info.buffered_run_id,
        "runs_started": info.runs_started,
        "runs_skipped": info.runs_skipped,
    }


def _when(info: ScheduleInfo) -> str:
    if info.cron is not None:
        return info.cron
    return f"every {info.every}" if info.every is not None else "-"


async def schedules(client: Client, args: argparse.Namespace, out: Output) -> int:
    action: str = args.action
    if action == "list":
        found = await client.list_schedules(limit=args.limit)
        if out.as_json:
            out.json({"schedules": [schedule_json(info) for info in found]})
            return 0
        out.table(
            ["SCHEDULE", "STATUS", "ORCHESTRATION", "WHEN", "NEXT RUN", "LAST RUN", "RUNS"],
            [
                [
                    info.schedule_id,
                    info.status,
                    info.orchestration or "-",
                    _when(info),
                    when(info.next_run_at),
                    info.last_run_id or "-",
                    str(info.runs_started),
                ]
                for info in found
            ],
        )
        return 0
    schedule_id: str = args.schedule_id
    document: dict[str, Any] = {"schedule_id": schedule_id, "action": action}
    if action == "pause":
        await client.pause_schedule(schedule_id)
        said = f"asked schedule {schedule_id} to pause"
    elif action == "resume":
        await client.resume_schedule(schedule_id)
        said = f"asked schedule {schedule_id} to resume"
    elif action == "trigger":
        run_id = await client.trigger_schedule(schedule_id, run_id=args.run_id)
        document["run_id"] = run_id
        said = f"asked schedule {schedule_id} to start run {run_id} now"
    else:
        await client.delete_schedule(schedule_id)
        said = f"deleted schedule {schedule_id} (its runs are left as they are)"
    if out.as_json:
        out.json(document)
    else:
        out.line(said)
    return 0
