"""A database file removed or replaced under a running runtime: noticed, never acknowledged.

SQLite keeps writing into an open file that was unlinked, so without a check a runtime would
report work done that no later process will ever see.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskStatus

import duro

pytestmark = pytest.mark.anyio

registry = duro.Registry()


@registry.activity
async def echo(ctx: duro.ActivityContext, value: int) -> int:
    return value


@registry.orchestration
async def once(ctx: duro.OrchestrationContext, value: int) -> int:
    result: int = await ctx.schedule_activity(echo, value)
    return result


def _options() -> duro.RuntimeOptions:
    return duro.RuntimeOptions(poll_timeout=0.05, idle_backoff_max=0.05, shutdown_grace_period=1)


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _replace(path: Path) -> None:
    """Swap in a copy (as a restore from backup would): same name, another file."""
    shutil.copyfile(path, f"{path}.copy")
    os.replace(f"{path}.copy", path)


@pytest.mark.parametrize("lose", [_remove, _replace], ids=["removed", "replaced"])
async def test_a_runtime_whose_database_file_is_lost_acknowledges_nothing_and_stops(
    tmp_path: Path, lose: Callable[[Path], None]
) -> None:
    path = tmp_path / "duro.db"
    store = duro.SqliteProvider(path)
    client = duro.Client(store, registry=registry)
    runtime = duro.Runtime(store, registry, _options())
    stopped: list[duro.StoreLostError] = []

    async def run(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await runtime.run(task_status=task_status)
        except duro.StoreLostError as exc:
            stopped.append(exc)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(run)
            await client.start_orchestration("before", once, 1)
            assert (await client.wait_for_orchestration("before")).output == 1

            lose(path)

            with pytest.raises(duro.StoreLostError, match=r"removed|replaced"):
                await client.start_orchestration("after", once, 2)
            with pytest.raises(duro.StoreLostError):
                await client.get_status("before")
        # The runtime stopped by itself (the task group waited for it).
    assert len(stopped) == 1


async def test_run_raises_store_lost_once_the_file_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "duro.db"
    runtime = duro.Runtime(duro.SqliteProvider(path), registry, _options())

    async def lose_soon() -> None:
        await anyio.sleep(0.3)
        _remove(path)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lose_soon)
            with pytest.raises(duro.StoreLostError, match="removed"):
                await runtime.run()
