"""The replay checker (``duro.testing.replay`` / ``replay_all``) and the history export format.

Engine-level cases build histories with the factories of ``tests/engine/histories.py``; the
last tests run the documented workflow end to end: record instances on SQLite, export the
running ones, and check a changed registry against the files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

import duro
from duro.history import (
    HISTORY_FORMAT_VERSION,
    ActivityCompleted,
    ActivityScheduled,
    HistoryFile,
    OrchestrationCompleted,
    OrchestrationFailed,
)
from duro.providers import ExecutionStatus
from duro.testing import replay, replay_all

from .e2e._support import history_has
from .engine.golden_format import GoldenHistory, golden_names
from .engine.golden_orchestrations import registry as golden_registry
from .engine.histories import T0, History, raw


def _registry(*, second: str = "ship", finish: bool = True) -> duro.Registry:
    """``order``: reserve, wait for approval, then ``second``; the code under check."""
    registry = duro.Registry()

    @registry.activity
    async def reserve(ctx: duro.ActivityContext, order: str) -> str:
        return "held"

    @registry.activity(name=second)
    async def then(ctx: duro.ActivityContext, order: str) -> str:
        return "done"

    @registry.orchestration
    async def order(ctx: duro.OrchestrationContext, order_id: str) -> str:
        await ctx.schedule_activity(reserve, order_id)
        await ctx.wait_for_event("approved", type=bool)
        result: str = await ctx.schedule_activity(second, order_id)
        if not finish:
            await ctx.wait_for_event("never")
        return result

    return registry


def _waiting() -> History:
    return (
        History()
        .started("order", "o-1")
        .activity_scheduled(1, "reserve", "o-1")
        .activity_completed(1, "held")
    )


def _finished() -> History:
    history = _waiting().event_raised("approved", True).activity_scheduled(2, "ship", "o-1")
    history.activity_completed(2, "done")
    history._add(OrchestrationCompleted, output=raw("done"))
    return history


# -- one history -----------------------------------------------------------------------------


def test_running_history_that_the_code_matches_replays() -> None:
    result = replay(_registry(), _waiting().events, instance_id="o-1")
    assert (result.instance_id, result.orchestration, result.version) == ("o-1", "order", "1.0.0")
    assert result.status is ExecutionStatus.RUNNING
    assert result.events == 3 and result.next_steps == []


def test_changed_step_raises_nondeterminism_naming_position_recorded_and_requested() -> None:
    history = _waiting().event_raised("approved", True).activity_scheduled(2, "ship", "o-1")
    with pytest.raises(duro.NondeterminismError) as caught:
        replay(_registry(second="ship_express"), history.events, instance_id="o-1")
    error = caught.value
    assert (error.instance_id, error.position) == ("o-1", 5)
    assert error.recorded == "activity 'ship' with input \"o-1\""
    assert error.requested == "activity 'ship_express' with input \"o-1\""


def test_new_steps_after_the_end_of_a_running_history_are_next_work_not_divergence() -> None:
    history = _waiting().event_raised("approved", True)
    result = replay(_registry(), history.events, instance_id="o-1")
    assert [type(e) for e in result.next_steps] == [ActivityScheduled]
    assert isinstance(result.next_steps[0], ActivityScheduled)
    assert result.next_steps[0].name == "ship"


def test_code_that_now_fails_where_a_running_history_waits_is_reported() -> None:
    registry = _registry()

    @registry.orchestration(name="order", version="2.0.0")
    async def broken(ctx: duro.OrchestrationContext, order_id: str) -> str:
        await ctx.schedule_activity("reserve", order_id)
        raise RuntimeError("new bug")

    history = _waiting().events
    history[0] = msgspec.structs.replace(history[0], version="2.0.0")
    with pytest.raises(duro.NondeterminismError) as caught:
        replay(registry, history, instance_id="o-1")
    assert caught.value.position == 4
    assert "RuntimeError: new bug" in caught.value.requested


def test_code_that_ends_before_the_history_does_says_how_it_ended() -> None:
    registry = duro.Registry()
    registry.activity(name="reserve")(_stub)
    registry.activity(name="ship")(_stub)

    @registry.orchestration(name="order")
    async def early(ctx: duro.OrchestrationContext, order_id: str) -> str:
        await ctx.schedule_activity("reserve", order_id)
        return "early"

    history = _waiting().event_raised("approved", True).activity_scheduled(2, "ship", "o-1")
    with pytest.raises(duro.NondeterminismError) as caught:
        replay(registry, history.events, instance_id="o-1")
    assert caught.value.position == 4  # the arrival history still has after the code ended
    assert caught.value.recorded == "EventRaised"
    assert 'completed with "early"' in caught.value.requested


def test_finished_history_replays_when_the_code_ends_the_same_way() -> None:
    result = replay(_registry(), _finished().events, instance_id="o-1")
    assert result.status is ExecutionStatus.COMPLETED
    assert result.next_steps == []


def test_finished_history_the_code_no_longer_ends_there_is_a_divergence() -> None:
    with pytest.raises(duro.NondeterminismError) as caught:
        replay(_registry(finish=False), _finished().events, instance_id="o-1")
    assert caught.value.position == 7
    assert caught.value.recorded == 'the end of the code (completed with "done")'
    assert caught.value.requested == "nothing (the code is still waiting)"


def test_finished_history_with_a_new_step_before_the_end_is_a_divergence() -> None:
    registry = _registry()

    @registry.orchestration(name="order", version="1.0.0-audit")
    async def audited(ctx: duro.OrchestrationContext, order_id: str) -> str:
        await ctx.schedule_activity("reserve", order_id)
        await ctx.wait_for_event("approved", type=bool)
        await ctx.schedule_activity("ship", order_id)
        await ctx.schedule_activity("reserve", "audit")
        return "done"

    events = _finished().events
    events[0] = msgspec.structs.replace(events[0], version="1.0.0-audit")
    with pytest.raises(duro.NondeterminismError) as caught:
        replay(registry, events, instance_id="o-1")
    assert caught.value.requested == "activity 'reserve' with input \"audit\""


def test_a_history_ended_from_outside_the_code_is_checked_up_to_its_end() -> None:
    error = duro.ErrorInfo(
        category=duro.ErrorCategory.INFRASTRUCTURE, error_type="PoisonMessage", message="x"
    )
    history = _waiting()
    history._add(OrchestrationFailed, error=error)
    result = replay(_registry(), history.events, instance_id="o-1")
    assert result.status is ExecutionStatus.FAILED


def test_unregistered_version_is_reported_as_unregistered() -> None:
    history = History().started("order", "o-1", version="9.0.0")
    with pytest.raises(duro.UnregisteredError) as caught:
        replay(_registry(), history.events, instance_id="o-1")
    assert (caught.value.name, caught.value.version) == ("order", "9.0.0")


def test_events_without_an_instance_id_are_refused() -> None:
    # Default child ids and new_guid() derive from it: a guess would report false divergences.
    with pytest.raises(TypeError, match="instance_id"):
        replay(_registry(), _waiting().events)


def test_a_history_must_begin_with_its_start() -> None:
    with pytest.raises(ValueError, match="OrchestrationStarted"):
        replay(_registry(), _waiting().events[1:], instance_id="o-1")


@pytest.mark.parametrize("name", golden_names())
def test_checker_agrees_with_the_engine_on_every_golden_history(name: str) -> None:
    golden = GoldenHistory.load(name)
    terminal = golden.terminal
    error = terminal.error if isinstance(terminal, OrchestrationFailed) else None
    where = {"instance_id": golden.instance_id, "execution_id": golden.execution_id}
    if error is not None and error.error_type == "NondeterminismError":
        with pytest.raises(duro.NondeterminismError) as caught:
            replay(golden_registry, golden.events, **where)
        assert error.details is not None
        assert caught.value.position == json.loads(error.details)["position"]
    elif error is not None and error.error_type == "UnregisteredError":
        with pytest.raises(duro.UnregisteredError):
            replay(golden_registry, golden.events, **where)
    else:
        replay(golden_registry, golden.events, **where)


# -- the export format -------------------------------------------------------------------------


def test_export_round_trips_with_payload_bytes_untouched(tmp_path: Path) -> None:
    odd = msgspec.Raw(b'{"city":"K\xc3\xb8benhavn","n":1.50}')  # raw UTF-8, a trailing zero
    events = list(_waiting().events)
    events[1] = msgspec.structs.replace(events[1], input=odd)
    exported = HistoryFile(
        instance_id="o-1",
        kv={"total": duro.history.ExportedKv(value=msgspec.Raw(b"30"), updated_at_ms=T0)},
        events=events,
    )
    path = exported.write(tmp_path / "deep" / "o-1.json")
    again = HistoryFile.read(path)
    assert again == exported
    assert isinstance(again.events[1], ActivityScheduled)
    assert bytes(again.events[1].input) == bytes(odd)
    text = path.read_text()
    assert text.startswith('{\n "format": "duro-history",\n "version": 1,')
    assert text.count("\n  {") == len(events)  # one event per line


def test_export_refuses_a_newer_format_version_and_other_files(tmp_path: Path) -> None:
    data = json.loads(HistoryFile(instance_id="o-1", events=_waiting().events).to_json())
    data["version"] = HISTORY_FORMAT_VERSION + 1
    with pytest.raises(duro.PayloadError, match="upgrade duro"):
        HistoryFile.from_json(json.dumps(data))
    with pytest.raises(duro.PayloadError, match="not a duro history export"):
        HistoryFile.from_json('{"orchestration": "x", "events": []}')
    with pytest.raises(duro.PayloadError, match="not a duro history export"):
        HistoryFile.from_json("not json")


def test_export_keeps_unknown_fields_of_a_later_minor_change_readable() -> None:
    data = json.loads(HistoryFile(instance_id="o-1", events=_waiting().events).to_json())
    data["exported_by"] = "a later duro"
    assert HistoryFile.from_json(json.dumps(data)).instance_id == "o-1"


# -- a directory of histories ------------------------------------------------------------------


def test_replay_all_returns_a_result_per_file_when_every_history_replays(tmp_path: Path) -> None:
    HistoryFile(instance_id="o-1", events=_waiting().events).write(tmp_path / "o-1.json")
    HistoryFile(instance_id="o-2", events=_finished().events).write(tmp_path / "sub" / "o-2.json")
    results = replay_all(_registry(), tmp_path)
    assert [r.instance_id for r in results] == ["o-1", "o-2"]
    assert results[0].source == tmp_path / "o-1.json"


def test_replay_all_reports_every_failing_file_at_once(tmp_path: Path) -> None:
    diverging = _waiting().event_raised("approved", True).activity_scheduled(2, "ship", "o-1")
    HistoryFile(instance_id="bad-1", events=diverging.events).write(tmp_path / "bad-1.json")
    HistoryFile(instance_id="ok", events=_waiting().events).write(tmp_path / "ok.json")
    (tmp_path / "bad-2.json").write_text("{}")
    with pytest.raises(ExceptionGroup) as caught:
        replay_all(_registry(second="ship_express"), tmp_path)
    failures = caught.value.exceptions
    assert "2 of 3 histories" in str(caught.value)
    assert [type(f) for f in failures] == [duro.NondeterminismError, duro.PayloadError]
    assert any("bad-1.json" in note for note in getattr(failures[0], "__notes__", []))


def test_replay_all_refuses_a_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        replay_all(_registry(), tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no history files"):
        replay_all(_registry(), tmp_path)


# -- the documented workflow, end to end -------------------------------------------------------


async def _export_running(client: duro.Client, directory: Path) -> list[Path]:
    """As docs/testing.md shows it: one file per running instance."""
    written = []
    for status in await client.list_instances(states={duro.State.RUNNING}, limit=1000):
        exported = await client.export_history(status.instance_id)
        safe = status.instance_id.replace(":", "_")
        written.append(exported.write(directory / f"{safe}.json"))
    return written


@pytest.mark.anyio
async def test_histories_exported_from_a_store_check_a_change_before_it_is_deployed(
    tmp_path: Path,
) -> None:
    deployed = _registry()
    store = duro.SqliteProvider(tmp_path / "app.db")
    async with store, duro.Runtime(store, deployed) as runtime:
        client = runtime.client
        for n in (1, 2):
            await client.start_orchestration(f"order-{n}", "order", f"o-{n}")
        await client.start_orchestration("order-3", "order", "o-3")
        await client.raise_event("order-3", "approved", True)
        assert (await client.wait_for_orchestration("order-3", timeout=10)).output == "done"
        for n in (1, 2):
            await history_has(client, f"order-{n}", ActivityCompleted)
        files = await _export_running(client, tmp_path / "histories")
    assert sorted(p.name for p in files) == ["order-1.json", "order-2.json"]

    results = replay_all(deployed, tmp_path / "histories")
    assert [(r.instance_id, r.status) for r in results] == [
        ("order-1", ExecutionStatus.RUNNING),
        ("order-2", ExecutionStatus.RUNNING),
    ]
    changed = duro.Registry()
    changed.activity(name="reserve")(_stub)

    @changed.orchestration(name="order")
    async def order(ctx: duro.OrchestrationContext, order_id: str) -> str:
        await ctx.schedule_activity("reserve", order_id.upper())  # the change
        return "done"

    with pytest.raises(ExceptionGroup) as caught:
        replay_all(changed, tmp_path / "histories")
    assert len(caught.value.exceptions) == 2
    first = caught.value.exceptions[0]
    assert isinstance(first, duro.NondeterminismError) and first.position == 2


@pytest.mark.anyio
async def test_export_of_an_unknown_instance_raises_instance_not_found() -> None:
    client = duro.Client(duro.InMemoryProvider())
    with pytest.raises(duro.InstanceNotFoundError):
        await client.export_history("nobody")


async def _stub(ctx: duro.ActivityContext, value: Any) -> Any:
    return value
