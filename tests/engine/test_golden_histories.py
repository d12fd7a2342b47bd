"""Histories recorded by earlier releases must keep replaying unchanged.

Each ``tests/histories/*.json`` holds an orchestration name, its recorded events and the
status replay must reach. Regenerate only for a deliberate, versioned engine change:
``python -m tests.engine.test_golden_histories``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

import duro
from duro._history import decode_events, encode_events
from duro._status import ExecutionStatus

from .histories import completed, event, start, timer_fired, turn

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
registry = duro.Registry()


@registry.activity
async def step(ctx: duro.ActivityContext, n: int) -> int:
    return n + 1


@registry.orchestration
async def golden_chain(ctx: duro.OrchestrationContext, n: int) -> int:
    for _ in range(3):
        n = await ctx.schedule_activity(step, n)
    return n


@registry.orchestration
async def golden_fan_out(ctx: duro.OrchestrationContext, _: None) -> Any:
    async def branch(i: int) -> int:
        await ctx.schedule_timer(i)
        return await ctx.schedule_activity(step, i)

    results = await ctx.join([branch(1), branch(2)])
    index, value = await ctx.select(ctx.wait_for_event("go"), ctx.schedule_timer(60))
    ctx.kv.set("results", results)
    ctx.set_custom_status({"index": index})
    return [results, index, value]


def _record_chain() -> list[Any]:
    h = turn(registry, None, [start("golden_chain", 1)]).result.new_events
    for seq, value in ((1, 2), (2, 3)):
        h += turn(registry, h, [completed(seq, value)]).result.new_events
    return h


def _record_fan_out() -> list[Any]:
    h = turn(registry, None, [start("golden_fan_out")]).result.new_events
    h += turn(registry, h, [timer_fired(2, 0), timer_fired(1, 0)]).result.new_events
    h += turn(registry, h, [completed(3, 3), completed(4, 2)]).result.new_events
    return h


RECORDERS = {"golden_chain": _record_chain, "golden_fan_out": _record_fan_out}


def _regenerate() -> None:
    HISTORIES.mkdir(exist_ok=True)
    for name, record in RECORDERS.items():
        events = json.loads(encode_events(record()))
        path = HISTORIES / f"{name}.json"
        path.write_text(json.dumps({"orchestration": name, "events": events}, indent=1) + "\n")


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
def test_golden_history_replays_without_nondeterminism(path: Path) -> None:
    data = json.loads(path.read_text())
    events = decode_events(json.dumps(data["events"]))
    decision = turn(registry, events, [])
    assert decision.result.error is None
    assert decision.result.new_events == []
    assert decision.result.status is ExecutionStatus.RUNNING


def test_golden_histories_exist_for_every_recorder() -> None:
    assert {p.stem for p in HISTORIES.glob("*.json")} == set(RECORDERS)


def test_golden_chain_finishes_from_its_recorded_history() -> None:
    data = json.loads((HISTORIES / "golden_chain.json").read_text())
    decision = turn(registry, decode_events(json.dumps(data["events"])), [completed(3, 4)])
    assert msgspec.json.decode(decision.result.output) == 4


def test_golden_fan_out_finishes_from_its_recorded_history() -> None:
    data = json.loads((HISTORIES / "golden_fan_out.json").read_text())
    decision = turn(registry, decode_events(json.dumps(data["events"])), [event("go", "now")])
    assert msgspec.json.decode(decision.result.output) == [[2, 3], 0, "now"]


if __name__ == "__main__":
    _regenerate()
