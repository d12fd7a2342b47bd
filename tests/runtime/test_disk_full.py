"""A disk that fills up mid-run and frees up again: finished work is kept, nothing runs twice.

A real (small, tmpfs) filesystem is filled while activities run. Their results cannot be
written; the runtime keeps them and offers them again with back-off instead of dropping them
(which would run the activities again once their locks lapsed). Once space returns the
instance goes on at once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import duro

pytestmark = pytest.mark.anyio

registry = duro.Registry()
runs: list[str] = []
filler: list[Path] = []


@contextlib.contextmanager
def small_filesystem(directory: Path, size: str = "8m") -> Iterator[Path]:
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", directory], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a small filesystem here (needs root): {mounted.stderr!r}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", directory], check=True)


def fill(path: Path) -> None:
    """Write to ``path`` until the filesystem is full."""
    block = b"\0" * 65536
    with path.open("wb") as f:
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError:
            pass


@registry.activity
async def fills_the_disk(ctx: duro.ActivityContext, value: int) -> int:
    runs.append(f"fill-{ctx.instance_id}")
    fill(filler[0])
    return value + 1


@registry.activity
async def after(ctx: duro.ActivityContext, value: int) -> int:
    runs.append(f"after-{ctx.instance_id}")
    return value * 10


@registry.orchestration
async def outage(ctx: duro.OrchestrationContext, value: int) -> int:
    first: int = await ctx.schedule_activity(fills_the_disk, value)
    second: int = await ctx.schedule_activity(after, first)
    return second


async def test_results_finished_while_the_disk_is_full_are_kept_until_space_returns(
    tmp_path: Path,
) -> None:
    runs.clear()
    with small_filesystem(tmp_path / "small") as disk:
        filler[:] = [disk / "filler"]
        store = duro.SqliteProvider(disk / "duro.db")
        client = duro.Client(store, registry=registry)
        options = duro.RuntimeOptions(
            poll_timeout=0.05,
            idle_backoff_max=0.05,
            # Shorter than the outage: the locks lapse meanwhile, and nobody may take over.
            activity_lock_timeout=0.6,
            orchestration_lock_timeout=0.6,
        )
        async with duro.Runtime(store, registry, options):
            await client.start_orchestration("full-1", outage, 1)
            with anyio.fail_after(30):
                while not filler[0].exists():  # noqa: ASYNC110 - another task fills it
                    await anyio.sleep(0.01)
            await anyio.sleep(2.0)  # the disk stays full: reports fail and are kept
            os.unlink(filler[0])
            status = await client.wait_for_orchestration("full-1", timeout=30)
        await store.close()

    assert status.state is duro.State.COMPLETED, status.error
    assert status.output == 20
    assert runs == ["fill-full-1", "after-full-1"]  # each ran once
