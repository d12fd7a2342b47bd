"""The command line's arguments (argparse: no dependency, and ``--help`` for free)."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from .._status import State

DESCRIPTION = """\
Inspect and operate duro orchestrations in a store.

The store: --sqlite PATH, or --cosmos (configured from COSMOS_ENDPOINT, COSMOS_KEY,
COSMOS_DATABASE, COSMOS_CONTAINER, ...); without either, DURO_STORE (sqlite:PATH, sqlite or
cosmos) or DURO_SQLITE (a path). Every command takes --json and then prints one JSON
document (shapes in docs/operations.md). Exit status: 0 done, 1 failed, 2 unknown instance
or bad usage.
"""

_LISTED_STATES = [s.value for s in State if s is not State.NOT_FOUND]
_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def moment(text: str) -> datetime:
    """An ISO 8601 date or time (local time unless it says otherwise), or an age: ``90s``,
    ``30m``, ``12h``, ``7d``, ``2w`` ago."""
    ago = _AGO.match(text.strip().lower())
    if ago:
        return datetime.now(UTC) - timedelta(seconds=float(ago[1]) * _UNITS[ago[2]])
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO 8601 date/time nor an age like 30m, 12h or 7d"
        ) from None
    return value if value.tzinfo is not None else value.astimezone()


def json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {value}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected 0 to 3600 seconds, got {value:g}")
    return value


class Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error of the command line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common(*, suppress: bool) -> Parser:
    """Store and output options, accepted before or after the command name."""
    default: Any = argparse.SUPPRESS if suppress else None
    common = Parser(add_help=False)
    group = common.add_argument_group("store and output")
    group.add_argument(
        "--sqlite", type=Path, metavar="PATH", default=default, help="a duro SQLite database"
    )
    group.add_argument(
        "--cosmos",
        action="store_true",
        default=default if suppress else False,
        help="Cosmos DB, from the COSMOS_* environment variables",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default if suppress else False,
        help="print one JSON document instead of tables",
    )
    return common


def _selection(parser: argparse.ArgumentParser, *, limit: int) -> None:
    parser.add_argument(
        "--state",
        action="append",
        choices=_LISTED_STATES,
        help="only instances in this state (repeatable)",
    )
    parser.add_argument("--name", help="only instances of this orchestration")
    parser.add_argument(
        "--created-after", type=moment, metavar="WHEN", help="ISO date/time or age (7d, 12h)"
    )
    parser.add_argument(
        "--created-before", type=moment, metavar="WHEN", help="ISO date/time or age (7d, 12h)"
    )
    parser.add_argument(
        "--limit", type=positive, default=limit, help=f"at most this many (default {limit})"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="duro",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(suppress=False)],
    )
    common = [_common(suppress=True)]
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    listing = commands.add_parser("list", parents=common, help="instances, newest first")
    _selection(listing, limit=50)

    status = commands.add_parser("status", parents=common, help="one instance's status")
    status.add_argument("instance_id", metavar="ID")

    history = commands.add_parser("history", parents=common, help="one execution's events")
    history.add_argument("instance_id", metavar="ID")
    history.add_argument(
        "--execution", type=positive, metavar="N", help="execution id (default: the current)"
    )

    raising = commands.add_parser(
        "raise-event", parents=common, help="send an external event (ctx.wait_for_event)"
    )
    raising.add_argument("instance_id", metavar="ID")
    raising.add_argument("name", metavar="NAME")
    raising.add_argument("--data", type=json_value, metavar="JSON", help="the event's payload")

    enqueue = commands.add_parser(
        "enqueue", parents=common, help="append a message to a mailbox (ctx.dequeue_event)"
    )
    enqueue.add_argument("instance_id", metavar="ID")
    enqueue.add_argument("name", metavar="QUEUE")
    enqueue.add_argument("--data", type=json_value, metavar="JSON", help="the message")

    cancel = commands.add_parser("cancel", parents=common, help="cancel an instance")
    cancel.add_argument("instance_id", metavar="ID")
    cancel.add_argument("--reason", default="cancelled from the command line", metavar="TEXT")

    delete = commands.add_parser(
        "delete",
        parents=common,
        help="delete instances (with their sub-orchestrations)",
        description=(
            "Delete the given instances, or every finished instance the filters select (page "
            "by page, safe while workers run)."
        ),
    )
    delete.add_argument("instance_ids", nargs="*", metavar="ID")
    delete.add_argument(
        "--force", action="store_true", help="delete the named instances even if running"
    )
    _selection(delete, limit=1000)
    delete.add_argument(
        "--completed-before",
        type=moment,
        metavar="WHEN",
        help="only instances that finished before (ISO date/time or age: 30d)",
    )

    prune = commands.add_parser(
        "prune",
        parents=common,
        help="delete old continue-as-new executions",
        description=(
            "Prune the given instances, or every instance with earlier executions that the "
            "filters select."
        ),
    )
    prune.add_argument("instance_ids", nargs="*", metavar="ID")
    prune.add_argument(
        "--keep", type=positive, default=1, metavar="N", help="executions to keep (default 1)"
    )
    _selection(prune, limit=1000)
    prune.add_argument(
        "--completed-before",
        type=moment,
        metavar="WHEN",
        help="only executions that ended before (ISO date/time or age: 30d)",
    )

    commands.add_parser("queues", parents=common, help="queue depths")

    schedules = commands.add_parser(
        "schedules",
        parents=common,
        help="list, pause, resume, trigger or delete schedules",
        description="Schedules (Client.create_schedule): list them, or act on one by its id.",
    )
    actions = schedules.add_subparsers(dest="action", metavar="ACTION", required=True)
    listed = actions.add_parser("list", parents=common, help="every schedule")
    listed.add_argument(
        "--limit", type=positive, default=1000, help="at most this many (default 1000)"
    )
    for action, text in (
        ("pause", "start no runs until resumed"),
        ("resume", "start runs again, from the next due time"),
        ("trigger", "start a run now"),
        ("delete", "delete the schedule (its runs stay)"),
    ):
        one = actions.add_parser(action, parents=common, help=text)
        one.add_argument("schedule_id", metavar="ID")
        if action == "trigger":
            one.add_argument("--run-id", metavar="ID", help="the run's instance id")

    ui = commands.add_parser(
        "ui",
        parents=common,
        help="a web view of the store's instances and histories",
        description=(
            "Serve a web view of the store on this machine (127.0.0.1) and print its address. "
            "Needs the ui extra: pip install 'duro[ui]'."
        ),
    )
    ui.add_argument("--port", type=port_number, default=0, help="the port (default: a free one)")
    ui.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="the interface to listen on (default 127.0.0.1); any other address needs the "
        "access token printed at start-up",
    )
    ui.add_argument(
        "--refresh",
        type=seconds,
        metavar="SECONDS",
        help="how often open pages refresh themselves (default 2, or 15 on Cosmos DB; 0: never)",
    )
    ui.add_argument("--read-only", action="store_true", help="no raise-event, cancel or delete")
    ui.add_argument("--open", action="store_true", help="open the address in a browser")
    commands.add_parser(
        "demo",
        parents=common,
        help="run the tour: an order workflow end to end",
        description="Run the tour on the selected store (default: a temporary SQLite file).",
    )
    return parser
