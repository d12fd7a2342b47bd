"""The ``duro`` console script against a SQLite file that a running workflow writes."""

from __future__ import annotations

import functools
import os
import pty
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

import duro
from tests.e2e._support import wait_until

from .conftest import ROOT, Cli, Result

pytestmark = pytest.mark.anyio

registry = duro.Registry()


@registry.activity
async def shout(ctx: duro.ActivityContext, text: str) -> str:
    return text.upper()


@registry.orchestration
async def waiter(ctx: duro.OrchestrationContext, _: None) -> object:
    ctx.set_custom_status({"stage": "waiting"})
    value = await ctx.wait_for_event("go")
    ctx.set_custom_status({"stage": "done"})
    return value


@registry.orchestration
async def mailbox(ctx: duro.OrchestrationContext, _: None) -> object:
    return await ctx.dequeue_event("inbox")


@registry.orchestration
async def greeter(ctx: duro.OrchestrationContext, name: str) -> str:
    greeting: str = await ctx.schedule_activity(shout, f"hello {name}")
    return greeting


@registry.orchestration
async def counter(ctx: duro.OrchestrationContext, n: int) -> int:
    if n < 3:
        ctx.continue_as_new(n + 1)
    return n


@registry.orchestration
async def broken(ctx: duro.OrchestrationContext, _: None) -> None:
    raise RuntimeError("nothing works")


@dataclass
class World:
    db: Path
    client: duro.Client
    cli: Cli

    async def run(self, *args: str, **env: str) -> Result:
        """The command line on this world's file, without blocking the runtime meanwhile."""
        call = functools.partial(self.cli, *args, "--sqlite", str(self.db), env=env)
        return await anyio.to_thread.run_sync(call)

    async def state(self, instance_id: str) -> str:
        return (await self.client.get_status(instance_id)).state.value


@pytest.fixture
async def world(tmp_path: Path, cli: Cli) -> AsyncIterator[World]:
    """A SQLite file with a runtime serving it, and instances in every state."""
    db = tmp_path / "ops.db"
    store = duro.SqliteProvider(db)
    options = duro.RuntimeOptions(idle_backoff_max=0.05, max_sessions=0)
    async with store, duro.Runtime(store, registry, options):
        client = duro.Client(store)
        await client.start_orchestration("hello", greeter, "ops")
        await client.start_orchestration("broken", broken)
        await client.start_orchestration("count", counter, 0)
        await client.start_orchestration("waiting", waiter)
        await client.start_orchestration("box", mailbox)
        for instance_id in ("hello", "broken", "count"):
            await client.wait_for_orchestration(instance_id, timeout=30)
        await wait_until(
            lambda: _custom(client, "waiting"), what="the waiter to wait for its event"
        )
        yield World(db, client, cli)


async def _custom(client: duro.Client, instance_id: str) -> bool:
    return (await client.get_status(instance_id)).custom_status == {"stage": "waiting"}


async def test_list_shows_instances_newest_first_with_filters(world: World) -> None:
    listed = await world.run("list", "--json")
    assert listed.code == 0, listed.err
    instances = listed.json["instances"]
    assert [i["instance_id"] for i in instances] == ["box", "waiting", "count", "broken", "hello"]
    assert instances[-1] == {
        "instance_id": "hello",
        "name": "greeter",
        "version": "1.0.0",
        "state": "completed",
        "execution_id": 1,
        "parent_instance_id": None,
        "created_at": instances[-1]["created_at"],
        "updated_at": instances[-1]["updated_at"],
    }
    assert instances[-1]["created_at"].endswith("+00:00")

    failed = await world.run("list", "--state", "failed", "--json")
    assert [i["instance_id"] for i in failed.json["instances"]] == ["broken"]
    named = await world.run("list", "--name", "counter", "--state", "completed", "--json")
    assert [i["instance_id"] for i in named.json["instances"]] == ["count"]
    limited = await world.run("list", "--limit", "2", "--created-after", "1h", "--json")
    assert len(limited.json["instances"]) == 2
    none_yet = await world.run("list", "--created-before", "2000-01-01", "--json")
    assert none_yet.json == {"instances": []}

    table = await world.run("list", "--state", "running")
    assert table.code == 0 and table.err == ""
    lines = table.out.splitlines()
    assert lines[0].split() == [
        "INSTANCE",
        "NAME",
        "VERSION",
        "STATE",
        "EXEC",
        "CREATED",
        "UPDATED",
    ]
    rows = [line.split()[:4] for line in lines[2:]]
    assert rows == [
        ["box", "mailbox", "1.0.0", "running"],
        ["waiting", "waiter", "1.0.0", "running"],
    ]
    assert "\x1b[" not in table.out  # no colour when not writing to a terminal


async def test_status_and_history_show_one_instance(world: World) -> None:
    status = await world.run("status", "broken", "--json")
    assert status.code == 0, status.err
    document = status.json
    assert (document["state"], document["output"], document["custom_status"]) == (
        "failed",
        None,
        None,
    )
    assert document["error"]["category"] == "application"
    assert (document["error"]["type"], document["error"]["message"]) == (
        "RuntimeError",
        "nothing works",
    )
    people = await world.run("status", "hello")
    assert "completed" in people.out and '"HELLO OPS"' in people.out

    history = await world.run("history", "hello", "--json")
    assert history.code == 0, history.err
    assert history.json["instance_id"] == "hello" and history.json["execution_id"] == 1
    types = [e["type"] for e in history.json["events"]]
    assert types == [
        "OrchestrationStarted",
        "ActivityScheduled",
        "ActivityCompleted",
        "OrchestrationCompleted",
    ]
    assert history.json["events"][1]["name"] == "shout"
    table = await world.run("history", "hello")
    assert "ActivityScheduled" in table.out and "name=shout" in table.out

    current = await world.run("history", "count", "--json")
    assert current.json["execution_id"] == 4
    first = await world.run("history", "count", "--execution", "1", "--json")
    assert first.json["execution_id"] == 1
    assert first.json["events"][-1]["type"] == "ContinuedAsNew"
    missing = await world.run("history", "count", "--execution", "9")
    assert missing.code == 1
    assert missing.err == "duro: error: instance 'count' has no execution 9 (1, 2, 3, 4)\n"


async def test_raise_enqueue_and_cancel_reach_the_running_workflows(world: World) -> None:
    raised = await world.run("raise-event", "waiting", "go", "--data", '{"approved": true}')
    assert (raised.code, raised.out) == (0, "raised event 'go' on waiting\n"), raised.err
    status = await world.client.wait_for_orchestration("waiting", timeout=30)
    assert status.output == {"approved": True}

    enqueued = await world.run("enqueue", "box", "inbox", "--data", "[1, 2]", "--json")
    assert enqueued.json == {"instance_id": "box", "queue": "inbox", "data": [1, 2]}
    status = await world.client.wait_for_orchestration("box", timeout=30)
    assert status.output == [1, 2]

    await world.client.start_orchestration("doomed", waiter)
    cancelled = await world.run("cancel", "doomed", "--reason", "not needed", "--json")
    assert cancelled.json == {"instance_id": "doomed", "reason": "not needed"}
    status = await world.client.wait_for_orchestration("doomed", timeout=30)
    assert status.error is not None
    assert (status.error.category, status.error.message) == (
        duro.ErrorCategory.CANCELLED,
        "not needed",
    )


async def test_delete_prune_and_queues_manage_the_store(world: World) -> None:
    queues = await world.run("queues", "--json")
    assert queues.code == 0, queues.err
    assert set(queues.json) == {"orchestrator", "timers", "worker", "locked"}
    assert all(isinstance(v, int) for v in queues.json.values())

    pruned = await world.run("prune", "count", "--keep", "2", "--json")
    assert pruned.json == {
        "results": [{"instance_id": "count", "executions_deleted": 2, "events_deleted": 4}]
    }
    assert await world.client.store.list_executions("count") == [3, 4]

    running = await world.run("delete", "waiting")
    assert running.code == 1
    assert running.err == (
        "duro: error: instance 'waiting' is still running; pass --force to delete it anyway\n"
    )
    forced = await world.run("delete", "waiting", "--force", "--json")
    [result] = forced.json["results"]
    assert (result["instance_id"], result["instances_deleted"]) == ("waiting", 1)
    assert await world.state("waiting") == "not_found"

    bulk = await world.run("delete", "--state", "completed", "--state", "failed")
    assert bulk.code == 0, bulk.err
    assert {line.split()[0] for line in bulk.out.splitlines()[2:]} == {"hello", "broken", "count"}
    assert "deleted: 1 instances" in bulk.out
    for instance_id in ("hello", "broken", "count"):
        assert await world.state(instance_id) == "not_found"
    nothing = await world.run("delete", "--state", "failed", "--json")
    assert nothing.json == {"results": []}
    neither = await world.run("delete")
    assert neither.code == 1 and "instance ids, or filters" in neither.err


async def test_bulk_delete_and_prune_page_through_the_filters(world: World) -> None:
    pruned = await world.run("prune", "--name", "counter", "--keep", "2", "--json")
    assert pruned.code == 0, pruned.err
    assert pruned.json == {
        "results": [{"instance_id": "count", "executions_deleted": 2, "events_deleted": 4}]
    }
    forced = await world.run("delete", "--state", "completed", "--force")
    assert forced.code == 1 and "filters select finished instances only" in forced.err
    running = await world.run("delete", "--state", "running")
    assert running.code == 1 and "finished instances only" in running.err
    future = await world.run("delete", "--completed-before", "2000-01-01", "--json")
    assert future.json == {"results": []}

    deleted = await world.run("delete", "--completed-before", "0s", "--json")
    assert deleted.code == 0, deleted.err
    assert sorted(r["instance_id"] for r in deleted.json["results"]) == [
        "broken",
        "count",
        "hello",
    ]
    assert all(r["instances_deleted"] == 1 for r in deleted.json["results"])
    assert await world.state("waiting") == "running"


async def test_errors_are_one_line_on_stderr_with_a_nonzero_exit(
    world: World, cli: Cli, tmp_path: Path
) -> None:
    unknown = await world.run("status", "nobody")
    assert (unknown.code, unknown.out) == (2, "")
    assert unknown.err == "duro: error: no instance 'nobody' in this store\n"
    for command in (["history", "nobody"], ["raise-event", "nobody", "go"], ["cancel", "nobody"]):
        result = await world.run(*command)
        assert (result.code, result.err.count("\n")) == (2, 1), result.err
        assert "'nobody'" in result.err
    deleted = await world.run("delete", "nobody", "--json")
    assert (deleted.code, deleted.out) == (2, "")

    bad = await world.run("raise-event", "waiting", "go", "--data", "{not json")
    assert bad.code == 2 and bad.out == ""
    assert bad.err.count("\n") == 1 and "--data: not valid JSON" in bad.err

    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    not_db = cli("list", "--sqlite", str(text))
    assert not_db.code == 1 and not_db.err.count("\n") == 1
    assert "is not a duro database" in not_db.err
    missing = cli("list", "--sqlite", str(tmp_path / "typo.db"))
    assert missing.code == 1 and "no such file" in missing.err
    assert not (tmp_path / "typo.db").exists()
    nowhere = cli("list")
    assert nowhere.code == 1
    assert nowhere.err == (
        "duro: error: no store: pass --sqlite PATH or --cosmos, or set DURO_SQLITE or DURO_STORE\n"
    )
    unreachable = cli(
        "list", "--cosmos", env={"COSMOS_ENDPOINT": "http://127.0.0.1:9", "COSMOS_DATABASE": "x"}
    )
    assert unreachable.code == 1 and unreachable.err.count("\n") == 1
    assert unreachable.err.startswith("duro: error: cannot reach Cosmos DB at http://127.0.0.1:9")


async def test_the_store_can_come_from_the_environment(world: World, cli: Cli) -> None:
    by_path = await anyio.to_thread.run_sync(
        lambda: cli("status", "hello", "--json", env={"DURO_SQLITE": str(world.db)})
    )
    assert by_path.json["state"] == "completed"
    by_store = await anyio.to_thread.run_sync(
        lambda: cli("queues", "--json", env={"DURO_STORE": f"sqlite:{world.db}"})
    )
    assert by_store.code == 0, by_store.err
    before = await anyio.to_thread.run_sync(
        lambda: cli(
            "--json", "status", "hello", env={"DURO_STORE": "sqlite", "DURO_SQLITE": str(world.db)}
        )
    )
    assert before.json["instance_id"] == "hello"  # options before the command work too
    wrong = await anyio.to_thread.run_sync(lambda: cli("list", env={"DURO_STORE": "mongo"}))
    assert wrong.code == 1 and "DURO_STORE='mongo'" in wrong.err


def test_demo_runs_the_tour_and_leaves_a_store_to_inspect(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    tour = cli("demo", "--sqlite", str(db), "--json")
    assert tour.code == 0, tour.err
    states = {i["name"]: i["state"] for i in tour.json["instances"] if i["name"]}
    assert sorted(tour.json["instances"][i]["state"] for i in range(3)) == [
        "completed",
        "completed",
        "failed",
    ]
    assert states["shipping_workflow"] == "completed"
    listed = cli("list", "--sqlite", str(db), "--json")
    assert len(listed.json["instances"]) == 3
    people = cli("demo")  # a temporary file
    assert people.code == 0, people.err
    assert "history of order-1" in people.out and "state=failed" in people.out


def test_python_dash_m_duro_is_the_same_command_line(cli: Cli) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "duro", "--help"],
        cwd=ROOT,
        env=dict(cli.env),
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0
    for command in ("list", "status", "history", "raise-event", "enqueue", "cancel", "delete",
                    "prune", "queues", "demo"):  # fmt: skip
        assert command in run.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
async def test_on_a_terminal_states_are_coloured_and_bulk_deletes_show_progress(
    world: World, cli: Cli
) -> None:
    listed = await anyio.to_thread.run_sync(_on_terminal, cli, ["list", "--sqlite", str(world.db)])
    assert "\x1b[" in listed and "completed" in listed
    deleted = await anyio.to_thread.run_sync(
        _on_terminal,
        cli,
        ["delete", "--sqlite", str(world.db), "--state", "completed", "--state", "failed"],
    )
    assert "deleting" in deleted  # the bar, drawn on stderr while it works
    assert "━" in deleted


def _on_terminal(cli: Cli, args: list[str]) -> str:
    """Run with stdout and stderr on a pseudo-terminal 100 columns wide; what it showed."""
    primary, secondary = pty.openpty()
    env = {**cli.env, "COLUMNS": "100", "LINES": "40", "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        [*cli.command, *args], cwd=ROOT, env=env, stdout=secondary, stderr=secondary
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(primary)
    assert proc.returncode == 0
    return b"".join(chunks).decode(errors="replace")


async def test_schedules_are_listed_paused_resumed_triggered_and_deleted(
    tmp_path: Path, cli: Cli
) -> None:
    db = tmp_path / "schedules.db"
    store = duro.SqliteProvider(db)
    options = duro.RuntimeOptions(idle_backoff_max=0.05, max_sessions=0)
    async with store, duro.Runtime(store, registry, options):
        client = duro.Client(store, registry=registry)
        await client.create_schedule("daily", greeter, "ops", cron="@daily")
        world = World(db, client, cli)

        async def armed() -> bool:
            return (await client.get_schedule("daily")).status == "active"

        await wait_until(armed, what="the schedule to set its timer")
        listed = await world.run("schedules", "list", "--json")
        assert listed.code == 0, listed.err
        [daily] = listed.json["schedules"]
        assert daily["schedule_id"] == "daily"
        assert daily["cron"] == "@daily" and daily["status"] == "active"
        table = await world.run("schedules", "list")
        assert table.out.splitlines()[0].split()[:3] == ["SCHEDULE", "STATUS", "ORCHESTRATION"]

        paused = await world.run("schedules", "pause", "daily")
        assert paused.code == 0 and "pause" in paused.out

        async def is_paused() -> bool:
            return (await client.get_schedule("daily")).status == "paused"

        await wait_until(is_paused, what="the schedule to pause")
        assert (await world.run("schedules", "resume", "daily")).code == 0
        triggered = await world.run("schedules", "trigger", "daily", "--run-id", "now-1", "--json")
        assert triggered.json == {"schedule_id": "daily", "action": "trigger", "run_id": "now-1"}

        async def ran() -> bool:
            return (await client.get_status("now-1")).state is duro.State.COMPLETED

        await wait_until(ran, what="the triggered run")
        assert (await world.run("schedules", "delete", "daily")).code == 0
        missing = await world.run("schedules", "pause", "daily")
        assert missing.code == 2
        assert "no schedule 'daily'" in missing.err
