"""The commands: each reads or changes the store through a ``Client`` and reports through an
``Output``, as one JSON document (shapes in docs/operations.md) or as tables."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec

from .._bulk import finished_states
from .._client import Client
from .._errors import InstanceNotFoundError, InstanceStillRunningError
from .._history import ActivityScheduled, HistoryEvent, TimerCreated, encode_events
from .._status import ErrorInfo, OrchestrationStatus, State
from ..providers import DeleteResult, Provider, PruneResult
from ._errors import EXIT_FAILED, CliError, UnknownInstanceError
from ._output import Output, iso, when

Command = Callable[[Client, argparse.Namespace, Output], Awaitable[int]]

GONE = "not found"
LEFT = "something in its tree still runs, or it was deleted meanwhile"
"""A selected instance that was gone by the time its turn came (deleted with its parent)."""

# -- shapes ----------------------------------------------------------------------------------


def error_json(error: ErrorInfo | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {
        "category": error.category.value,
        "type": error.error_type,
        "message": error.message,
        "retryable": error.retryable,
        "details": error.details,
    }


def instance_json(status: OrchestrationStatus, *, full: bool = False) -> dict[str, Any]:
    """One instance; ``full`` adds its output, custom status and error."""
    document: dict[str, Any] = {
        "instance_id": status.instance_id,
        "name": status.name,
        "version": status.version,
        "state": status.state.value,
        "execution_id": status.execution_id,
        "parent_instance_id": status.parent_instance_id,
        "created_at": iso(status.created_at),
        "updated_at": iso(status.updated_at),
    }
    if full:
        document["custom_status"] = _decoded(status.custom_status_json)
        document["output"] = _decoded(status.output_json)
        document["error"] = error_json(status.error)
    return document


def _decoded(raw: bytes | None) -> Any:
    return None if raw is None else msgspec.json.decode(raw)


def _compact(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def require(client: Client, instance_id: str) -> OrchestrationStatus:
    status = await client.get_status(instance_id)
    if status.state is State.NOT_FOUND:
        raise UnknownInstanceError(instance_id)
    return status


# -- reading -----------------------------------------------------------------------------------


async def list_instances(client: Client, args: argparse.Namespace, out: Output) -> int:
    found = await client.list_instances(**_filters(args))
    if out.as_json:
        out.json({"instances": [instance_json(s) for s in found]})
        return 0
    if not found:
        out.line("no instances match")
        return 0
    out.table(
        ["INSTANCE", "NAME", "VERSION", "STATE", "EXEC", "CREATED", "UPDATED"],
        [
            [
                s.instance_id,
                s.name or "",
                s.version or "",
                out.state(s.state),
                str(s.execution_id),
                when(s.created_at),
                when(s.updated_at),
            ]
            for s in found
        ],
        optional=("UPDATED", "VERSION", "EXEC", "CREATED"),
    )
    return 0


async def status(client: Client, args: argparse.Namespace, out: Output) -> int:
    found = await require(client, args.instance_id)
    if out.as_json:
        out.json(instance_json(found, full=True))
        return 0
    pairs: list[tuple[str, Any]] = [
        ("instance", found.instance_id),
        ("orchestration", f"{found.name} {found.version or ''}".strip()),
        ("state", out.state(found.state)),
        ("execution", str(found.execution_id)),
        ("created", when(found.created_at)),
        ("updated", when(found.updated_at)),
    ]
    if found.parent_instance_id:
        pairs.append(("parent", found.parent_instance_id))
    if found.custom_status_json is not None:
        pairs.append(("custom status", _compact(found.custom_status, 400)))
    if found.state is State.COMPLETED:
        pairs.append(("output", _compact(found.output, 400)))
    if found.error is not None:
        error = found.error
        pairs.append(("error", f"{error.error_type}: {error.message}"))
        pairs.append(("category", error.category.value))
    out.fields(pairs)
    return 0


async def history(client: Client, args: argparse.Namespace, out: Output) -> int:
    found = await require(client, args.instance_id)
    execution = args.execution if args.execution is not None else found.execution_id
    executions = await client.store.list_executions(args.instance_id)
    if execution not in executions:
        known = ", ".join(map(str, executions)) or "none yet"
        raise CliError(f"instance {args.instance_id!r} has no execution {execution} ({known})")
    events = await client.get_history(args.instance_id, execution)
    if out.as_json:
        out.json(
            {
                "instance_id": args.instance_id,
                "execution_id": execution,
                "events": json.loads(encode_events(events)),
            }
        )
        return 0
    start = events[0].ts if events else 0
    out.table(
        ["#", "AT", "EVENT", "DETAIL"],
        [
            [str(e.event_id), f"+{(e.ts - start) / 1000:.3f}s", type(e).__name__, _detail(e)]
            for e in events
        ],
        title=f"{args.instance_id}, execution {execution} ({len(events)} events)",
        optional=("AT",),
    )
    return 0


_DETAIL_FIELDS = ("seq", "target", "name", "queue", "instance_id", "attempt", "key", "reason")
_PAYLOAD_FIELDS = ("input", "result", "output", "data", "value")


def _detail(event: HistoryEvent) -> str:
    """The fields that tell one event from another, payloads shortened."""
    parts = []
    for name in _DETAIL_FIELDS:
        value = getattr(event, name, None)
        if value is not None and not (name == "attempt" and value == 1):
            parts.append(f"{name}={value}")
    if isinstance(event, TimerCreated):
        parts.append(f"fires in {(event.fire_at - event.ts) / 1000:g}s")
    error: ErrorInfo | None = getattr(event, "error", None)
    if error is not None:
        parts.append(f"error={error.error_type}: {error.message}")
    for name in _PAYLOAD_FIELDS:
        raw = getattr(event, name, None)
        if isinstance(raw, msgspec.Raw) and bytes(raw) != b"null":
            parts.append(f"{name}={_compact(msgspec.json.decode(raw))}")
    if isinstance(event, ActivityScheduled) and event.tag:
        parts.append(f"tag={event.tag}")
    return " ".join(parts)


async def queues(client: Client, args: argparse.Namespace, out: Output) -> int:
    depths = await client.queue_depths()
    document = {
        "orchestrator": depths.orchestrator,
        "timers": depths.timers,
        "worker": depths.worker,
        "locked": depths.locked,
    }
    if out.as_json:
        out.json(document)
        return 0
    out.table(["QUEUE", "MESSAGES"], [[name, str(depth)] for name, depth in document.items()])
    return 0


# -- signalling --------------------------------------------------------------------------------


async def raise_event(client: Client, args: argparse.Namespace, out: Output) -> int:
    await require(client, args.instance_id)
    await client.raise_event(args.instance_id, args.name, args.data)
    if out.as_json:
        out.json({"instance_id": args.instance_id, "event": args.name, "data": args.data})
    else:
        out.line(f"raised event {args.name!r} on {args.instance_id}")
    return 0


async def enqueue(client: Client, args: argparse.Namespace, out: Output) -> int:
    await require(client, args.instance_id)
    await client.enqueue_event(args.instance_id, args.name, args.data)
    if out.as_json:
        out.json({"instance_id": args.instance_id, "queue": args.name, "data": args.data})
    else:
        out.line(f"enqueued a message on queue {args.name!r} of {args.instance_id}")
    return 0


async def cancel(client: Client, args: argparse.Namespace, out: Output) -> int:
    await require(client, args.instance_id)
    await client.cancel_orchestration(args.instance_id, args.reason)
    if out.as_json:
        out.json({"instance_id": args.instance_id, "reason": args.reason})
    else:
        out.line(f"asked {args.instance_id} to cancel ({args.reason})")
    return 0


# -- management (the instances named, or every instance a filter selects) ---------------------


def _named(args: argparse.Namespace) -> list[str]:
    """The instance ids given; [] when filters select the instances instead (bulk mode)."""
    filters = _filters(args)
    filtered = any(v is not None for k, v in filters.items() if k != "limit")
    if args.instance_ids and filtered:
        raise CliError(
            "give instance ids or filters (--state, --name, --created-*, --completed-before), "
            "not both"
        )
    if not args.instance_ids and not filtered:
        raise CliError("give one or more instance ids, or filters that select instances")
    return list(args.instance_ids)


def _deleted_row(instance_id: str, result: DeleteResult) -> dict[str, Any]:
    return {
        "instance_id": instance_id,
        "instances_deleted": result.instances_deleted,
        "executions_deleted": result.executions_deleted,
        "events_deleted": result.events_deleted,
        "messages_deleted": result.messages_deleted,
    }


def _pruned_row(instance_id: str, result: PruneResult) -> dict[str, Any]:
    return {
        "instance_id": instance_id,
        "executions_deleted": result.executions_deleted,
        "events_deleted": result.events_deleted,
    }


async def delete(client: Client, args: argparse.Namespace, out: Output) -> int:
    targets = _named(args)
    results: list[dict[str, Any]] = []
    if not targets:
        if args.force:
            raise CliError(
                "--force deletes instances named by id; filters select finished instances only"
            )
        filters = _filters(args)
        try:
            states = finished_states(filters.pop("states"))
        except ValueError as exc:
            raise CliError(str(exc)) from None
        with out.progress("deleting", None) as bar:

            def seen(instance_id: str, result: DeleteResult | None) -> None:
                if result is None:
                    results.append({"instance_id": instance_id, "left": LEFT})
                else:
                    results.append(_deleted_row(instance_id, result))
                bar.advance()

            await client.delete_instances(states=set(states), on_progress=seen, **filters)
        return _report(out, "deleted", results)
    single = len(targets) == 1
    with out.progress("deleting", len(targets)) as bar:
        for instance_id in targets:
            try:
                result = await client.delete_instance(instance_id, force=args.force)
            except InstanceNotFoundError:
                if single:
                    raise UnknownInstanceError(instance_id) from None
                # Gone with its parent (deletes cascade), or by someone else meanwhile.
                results.append({"instance_id": instance_id, "error": GONE})
            except InstanceStillRunningError:
                message = "still running; pass --force to delete it anyway"
                if single:
                    raise CliError(f"instance {instance_id!r} is {message}") from None
                results.append({"instance_id": instance_id, "error": message})
            else:
                results.append(_deleted_row(instance_id, result))
            bar.advance()
    return _report(out, "deleted", results)


async def prune(client: Client, args: argparse.Namespace, out: Output) -> int:
    if args.keep < 1:
        raise CliError("--keep must be at least 1 (the current execution is always kept)")
    targets = _named(args)
    results: list[dict[str, Any]] = []
    completed_before = args.completed_before
    if not targets:
        filters = _filters(args)
        del filters["completed_before"]  # here: of the executions, not of the instances
        with out.progress("pruning", None) as bar:

            def seen(instance_id: str, result: PruneResult) -> None:
                results.append(_pruned_row(instance_id, result))
                bar.advance()

            await client.prune_executions_all(
                keep=args.keep, completed_before=completed_before, on_progress=seen, **filters
            )
        return _report(out, "pruned", results)
    single = len(targets) == 1
    with out.progress("pruning", len(targets)) as bar:
        for instance_id in targets:
            try:
                result = await client.prune_executions(
                    instance_id, keep_last=args.keep, completed_before=completed_before
                )
            except InstanceNotFoundError:
                if single:
                    raise UnknownInstanceError(instance_id) from None
                results.append({"instance_id": instance_id, "error": GONE})
            else:
                results.append(_pruned_row(instance_id, result))
            bar.advance()
    return _report(out, "pruned", results)


def _report(out: Output, verb: str, results: list[dict[str, Any]]) -> int:
    """One row per instance; exit 1 if any instance could not be handled (one that is already
    gone, with its parent or by someone else, is not a failure)."""
    failed = any("error" in r and r["error"] != GONE for r in results)
    if out.as_json:
        out.json({"results": results})
    elif not results:
        out.line(f"nothing {verb}: no instance matches")
    else:
        out.table(["INSTANCE", "RESULT"], [[r["instance_id"], _outcome(verb, r)] for r in results])
    return EXIT_FAILED if failed else 0


def _outcome(verb: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return str(result["error"])
    if "left" in result:
        return f"left: {result['left']}"
    counts = ", ".join(
        f"{value} {key.removesuffix('_deleted')}"
        for key, value in result.items()
        if key.endswith("_deleted")
    )
    return f"{verb}: {counts}"


# -- the tour ------------------------------------------------------------------------------------


async def demo(store: Provider, where: str, out: Output) -> int:
    from ._demo import run

    tag = f"-{datetime.now().strftime('%H%M%S')}"
    say: Callable[[str], None] = (lambda _: None) if out.as_json else out.console.out
    result = await run(store, where, tag, say)
    if out.as_json:
        out.json(
            {
                "store": where,
                "instances": [
                    instance_json(s, full=True)
                    for s in (result.order, result.shipping, result.declined)
                ],
                "turns_committed": result.turns,
                "activities_completed": result.activities,
            }
        )
    if not result.as_expected:
        raise CliError("the demo did not end as expected")
    return 0


# -- arguments shared by several commands --------------------------------------------------------


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    states = {State(s) for s in args.state} if args.state else None
    filters = {
        "states": states,
        "name": args.name,
        "created_after": args.created_after,
        "created_before": args.created_before,
        "limit": args.limit,
    }
    if "completed_before" in args:
        filters["completed_before"] = args.completed_before
    return filters
