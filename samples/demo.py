"""A tour of duro on the embedded SQLite store: one order, end to end.

Run it with ``python -m samples.demo`` (a fresh database file in a temporary directory) or
``python -m samples.demo --db orders.db`` to keep the file and look at it afterwards; the
installed command line runs the same tour as ``duro demo``. The orchestrations and activities
(an activity chain, a retry, a fan-out, a sub-orchestration with a timer, an early external
event, custom status, KV and a failed instance) are in ``duro/_cli/_demo.py``, so that an
installed ``duro`` can run them too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import anyio

import duro
from duro._cli._demo import run


async def tour(db_path: Path, run_tag: str) -> None:
    async with duro.SqliteProvider(db_path) as store:
        result = await run(store, str(db_path), run_tag)
    if not result.as_expected:
        sys.exit("the demo did not end as expected")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", type=Path, help="SQLite file to use (default: a temporary one)")
    args = parser.parse_args()
    if args.db is not None:
        # Instance ids must be unique per store: tag them so the demo can rerun on one file.
        anyio.run(tour, args.db, f"-{time.strftime('%H%M%S')}")
        return
    with tempfile.TemporaryDirectory(prefix="duro-demo-") as tmp:
        anyio.run(tour, Path(tmp) / "demo.db", "")


if __name__ == "__main__":
    main()
