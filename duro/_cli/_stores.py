"""Which store a command talks to: flags first, then ``DURO_STORE``, then ``DURO_SQLITE``.

===============  ==============================================================
``--sqlite P``   the SQLite file ``P`` (it must exist, except for ``demo``)
``--cosmos``     Cosmos DB, configured from the ``COSMOS_*`` variables
``DURO_STORE``   ``sqlite:PATH``, ``sqlite`` (path from ``DURO_SQLITE``) or ``cosmos``
``DURO_SQLITE``  a SQLite file, when nothing else says otherwise
===============  ==============================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..providers import Provider
from ._errors import CliError

COSMOS_ATTEMPTS = 2
"""HTTP attempts per Cosmos request: a command line should say an endpoint is unreachable in
seconds, not after the runtime's patient retries."""
COSMOS_CONNECT_TIMEOUT = 5.0
COSMOS_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class StoreChoice:
    kind: str
    """``sqlite`` or ``cosmos``."""
    path: Path | None = None
    """The SQLite file (None for Cosmos)."""


def choose_store(
    sqlite: Path | None, cosmos: bool, environ: Mapping[str, str] | None = None
) -> StoreChoice | None:
    """The store the flags or the environment name; None when nothing names one."""
    env = os.environ if environ is None else environ
    if sqlite is not None and cosmos:
        raise CliError("choose one store: --sqlite or --cosmos, not both")
    if sqlite is not None:
        return StoreChoice("sqlite", sqlite)
    if cosmos:
        return StoreChoice("cosmos")
    named = env.get("DURO_STORE", "").strip()
    if named:
        kind, _, rest = named.partition(":")
        kind = kind.lower()
        if kind == "cosmos" and not rest:
            return StoreChoice("cosmos")
        if kind == "sqlite":
            path = rest or env.get("DURO_SQLITE", "").strip()
            if not path:
                raise CliError("DURO_STORE=sqlite needs a path: sqlite:PATH, or set DURO_SQLITE")
            return StoreChoice("sqlite", Path(path))
        raise CliError(f"DURO_STORE={named!r}: expected sqlite:PATH, sqlite or cosmos")
    path = env.get("DURO_SQLITE", "").strip()
    if path:
        return StoreChoice("sqlite", Path(path))
    return None


def open_store(choice: StoreChoice, *, create: bool = False) -> Provider:
    """The provider for ``choice`` (not opened yet). A SQLite file must exist unless
    ``create``: reading commands never leave an empty database behind a typo."""
    path = choice.path
    if path is not None:
        from ..providers._sqlite import SqliteProvider

        if not create and not path.exists():
            raise CliError(f"{path}: no such file (expected a duro SQLite database)")
        if path.is_dir():
            raise CliError(f"{path} is a directory, not a duro SQLite database")
        return SqliteProvider(path)
    try:
        from duro_cosmos import CosmosConfig, CosmosConfigError, CosmosProvider, HttpRetryPolicy
    except ImportError as exc:  # pragma: no cover - duro_cosmos ships with duro
        raise CliError(f"the Cosmos DB provider is not installed: {exc}") from exc
    try:
        config = CosmosConfig.from_env(
            connect_timeout=COSMOS_CONNECT_TIMEOUT, timeout=COSMOS_TIMEOUT
        )
    except CosmosConfigError as exc:
        raise CliError(f"Cosmos DB configuration: {exc}") from exc
    return CosmosProvider(config, retry=HttpRetryPolicy(max_attempts=COSMOS_ATTEMPTS))
