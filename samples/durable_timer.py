"""A durable timer survives a restart: the worker stops while the timer runs, and a new
worker on the same database fires it on time, without repeating the steps already done.

The timer is a message in the store that becomes visible at its fire time, so nothing has to
stay running while it waits: a trial that ends in 30 days is the same code with
``timedelta(days=30)``. Here it waits ``--seconds`` (2 by default) so the sample ends quickly::

    python -m samples.durable_timer                      # both halves, one temporary file
    python -m samples.durable_timer --db trial.db start  # start, then stop the worker
    python -m samples.durable_timer --db trial.db resume # later, in another process
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import anyio
import msgspec

import duro

registry = duro.Registry()
sent: list[str] = []
"""Emails sent by this process (the activity's side effect, to show what ran where)."""


class Trial(msgspec.Struct):
    user: str
    seconds: float


@registry.activity
async def send_email(ctx: duro.ActivityContext, text: str) -> None:
    sent.append(text)
    print(f"    [email] {text}")


@registry.orchestration
async def trial_reminder(ctx: duro.OrchestrationContext, trial: Trial) -> str:
    await ctx.schedule_activity(send_email, f"welcome, {trial.user}")
    ctx.set_custom_status("trial running")
    await ctx.schedule_timer(timedelta(seconds=trial.seconds))  # days, in real life
    await ctx.schedule_activity(send_email, f"{trial.user}, your trial has ended")
    return f"reminded {trial.user}"


async def start(db: Path, seconds: float) -> None:
    """Start the instance, wait until its timer is recorded, then stop the worker."""
    store = duro.SqliteProvider(db)
    async with store, duro.Runtime(store, registry) as runtime:
        client = runtime.client
        await client.start_orchestration("trial-ada", trial_reminder, Trial("ada", seconds))
        status = await client.get_status("trial-ada")
        while status.custom_status != "trial running":  # recorded with the timer, in one turn
            status = await client.wait_for_status_change("trial-ada", status, timeout=10)
    print(f"worker stopped with trial-ada waiting on its timer ({seconds:g} s)")


async def resume(db: Path) -> None:
    """A new worker on the same database: the timer fires and the instance completes."""
    store = duro.SqliteProvider(db)
    began = time.monotonic()
    async with store, duro.Runtime(store, registry) as runtime:
        status = await runtime.client.wait_for_orchestration("trial-ada", timeout=60)
    print(f"new worker: trial-ada {status.state.value} -> {status.output!r}")
    print(f"  after {time.monotonic() - began:.1f} s more; emails sent by it: {sent}")
    if status.output != "reminded ada":
        raise SystemExit(f"unexpected result: {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", type=Path, help="SQLite file (default: a temporary one)")
    parser.add_argument("--seconds", type=float, default=2.0, help="how long the timer waits")
    parser.add_argument("phase", nargs="?", choices=["start", "resume"], help="one half only")
    args = parser.parse_args()
    if args.phase == "start":
        anyio.run(start, args.db, args.seconds)
    elif args.phase == "resume":
        anyio.run(resume, args.db)
    else:
        with tempfile.TemporaryDirectory(prefix="duro-timer-") as tmp:
            db = args.db or Path(tmp) / "trial.db"
            anyio.run(start, db, args.seconds)
            sent.clear()  # what the new worker sends is what matters now
            anyio.run(resume, db)
        if sent != ["ada, your trial has ended"]:
            raise SystemExit(f"the new worker repeated or missed a step: {sent}")


if __name__ == "__main__":
    main()
