"""The ``duro`` command line (``duro ...`` or ``python -m duro ...``); see ``duro --help`` and
docs/operations.md."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from .._client import Client
from .._errors import DuroError, InstanceNotFoundError, ProviderError, ScheduleNotFoundError
from ..providers import Provider
from . import _commands as commands
from ._errors import EXIT_FAILED, EXIT_UNKNOWN_INSTANCE, CliError
from ._output import Output
from ._parser import build_parser
from ._schedules import schedules
from ._stores import StoreChoice, choose_store, open_store

__all__ = ["main"]

COMMANDS: dict[str, commands.Command] = {
    "list": commands.list_instances,
    "status": commands.status,
    "history": commands.history,
    "raise-event": commands.raise_event,
    "enqueue": commands.enqueue,
    "cancel": commands.cancel,
    "delete": commands.delete,
    "prune": commands.prune,
    "queues": commands.queues,
    "schedules": schedules,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    out = Output(as_json=args.json)
    try:
        return anyio.run(_run, args, out)
    except CliError as exc:
        return _fail(exc.message, exc.exit_code)
    except InstanceNotFoundError as exc:
        return _fail(f"no instance {exc.instance_id!r} in this store", EXIT_UNKNOWN_INSTANCE)
    except ScheduleNotFoundError as exc:
        return _fail(f"no schedule {exc.schedule_id!r} in this store", EXIT_UNKNOWN_INSTANCE)
    except ProviderError as exc:
        return _fail(exc.message, EXIT_FAILED)
    except DuroError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


def _fail(message: str, code: int) -> int:
    sys.stdout.flush()
    sys.stderr.write(f"duro: error: {message}\n")
    return code


async def _run(args: argparse.Namespace, out: Output) -> int:
    choice = choose_store(args.sqlite, args.cosmos)
    if args.command == "demo":
        return await _demo(choice, out)
    if choice is None:
        raise CliError("no store: pass --sqlite PATH or --cosmos, or set DURO_SQLITE or DURO_STORE")
    store = open_store(choice)
    if args.command == "ui":
        from ._ui import serve_ui

        async with _opened(store, choice):
            return await serve_ui(store, choice, args, out)
    async with _opened(store, choice):
        return await COMMANDS[args.command](Client(store), args, out)


async def _demo(choice: StoreChoice | None, out: Output) -> int:
    import tempfile

    if choice is not None:
        store = open_store(choice, create=True)
        where = str(choice.path) if choice.path is not None else "Cosmos DB"
        async with _opened(store, choice):
            return await commands.demo(store, where, out)
    with tempfile.TemporaryDirectory(prefix="duro-demo-") as folder:
        path = Path(folder) / "demo.db"
        choice = StoreChoice("sqlite", path)
        store = open_store(choice, create=True)
        async with _opened(store, choice):
            return await commands.demo(store, f"{path} (temporary)", out)


class _opened:
    """Open the store, translating the failures people meet first into one clear line."""

    def __init__(self, store: Provider, choice: StoreChoice) -> None:
        self._store = store
        self._choice = choice

    async def __aenter__(self) -> Provider:
        try:
            await self._store.open()
        except DuroError as exc:
            raise _explain(exc, self._store, self._choice) from exc
        return self._store

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            await self._store.close()


def _explain(exc: DuroError, store: Provider, choice: StoreChoice) -> DuroError | CliError:
    if choice.kind != "cosmos":
        return exc
    from duro_cosmos._rest._errors import CosmosUnavailable

    if isinstance(exc, CosmosUnavailable):
        endpoint = getattr(getattr(store, "config", None), "endpoint", "?")
        return CliError(f"cannot reach Cosmos DB at {endpoint}: {exc.message}")
    return exc
