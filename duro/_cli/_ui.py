"""``duro ui``: open the store, bind, print the address, serve until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import sys

from ..providers import Provider
from ._errors import CliError
from ._output import Output
from ._stores import StoreChoice

REFRESH = {"sqlite": 2.0, "cosmos": 15.0}
"""Seconds between live refreshes by default: every refresh of an open page reads a page of
instances (Cosmos DB bills each read, per physical partition for the list)."""
COUNTS_EVERY = {"sqlite": 5.0, "cosmos": 60.0}
"""Seconds the counts by state are reused for, across all viewers (a Cosmos DB count is a
query per state and physical partition)."""


async def serve_ui(
    store: Provider, choice: StoreChoice, args: argparse.Namespace, out: Output
) -> int:
    try:
        from .._ui import UiOptions
        from .._ui._serve import listen, serve
    except ImportError as exc:
        raise CliError(
            f"duro ui needs the ui extra: pip install 'duro[ui]' (missing: {exc.name})"
        ) from None
    refresh = REFRESH[choice.kind] if args.refresh is None else args.refresh
    label = str(choice.path) if choice.path is not None else _cosmos_label(store)
    try:
        listening = listen(args.bind, args.port)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}") from exc
    options = UiOptions(
        store_label=label,
        refresh=refresh,
        counts_every=max(refresh, COUNTS_EVERY[choice.kind]),
        read_only=args.read_only,
    )

    def ready() -> None:
        if out.as_json:  # one line: a script reads it while the server runs
            document = {"url": listening.url, "token": listening.token, "store": label}
            sys.stdout.write(json.dumps(document) + "\n")
            sys.stdout.flush()
        else:
            sys.stdout.write(f"duro ui: {label} at {listening.url}  (Ctrl-C to stop)\n")
            if listening.token:
                sys.stdout.write(
                    f"access token: {listening.token}\n"
                    "  (it is in the address above; anyone who has it can read this store and "
                    "cancel or delete its instances)\n"
                )
            sys.stdout.flush()
        if args.open:
            import webbrowser

            webbrowser.open(listening.url)

    await serve(store, listening, options, ready)
    return 0


def _cosmos_label(store: Provider) -> str:
    config = getattr(store, "config", None)
    if config is None:
        return "Cosmos DB"
    return f"Cosmos DB {config.endpoint} {config.database}/{config.container}"
