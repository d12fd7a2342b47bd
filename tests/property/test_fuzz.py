"""Property-based tests: payloads, instance ids and the order of messages, fuzzed.

* any JSON value (integers of any size included) round-trips exactly; a value JSON cannot
  carry (NaN, an infinity) is refused with ``PayloadError``, never changed;
* any string is either a valid instance id that a store keeps and gives back as it was, or is
  refused with ``InvalidInstanceIdError`` before anything is stored;
* however activity results, duplicates and events are ordered and batched into turns, a
  fan-in gets the same answer, a ``select`` is won by whatever reached history first, every
  history numbers its events 1..n, and replaying it from scratch reproduces it.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import duro
from duro._ids import validate_instance_id
from duro._serde import decode, encode
from duro.history import ActivityCompleted, EventRaised, HistoryEvent, OrchestrationCompleted
from duro.testing import replay
from tests.engine.golden_recorders import Instance
from tests.engine.histories import T0, completed, event, start

# -- payloads ----------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: JSON numbers are exact in duro's encoding
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)


@given(json_values)
def test_any_json_value_round_trips_exactly(value: Any) -> None:
    assert decode(encode(value, what="a payload"), Any, what="a payload") == value


@given(
    json_values,
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.lists(st.sampled_from(["list", "dict"]), max_size=3),
)
def test_a_non_finite_float_anywhere_is_refused_not_changed(
    value: Any, bad: float, wrapping: list[str]
) -> None:
    nested: Any = bad
    for kind in wrapping:
        nested = [value, nested] if kind == "list" else {"ok": value, "bad": nested}
    with pytest.raises(duro.PayloadError, match=r"NaN|infinit"):
        encode(nested, what="a payload")


# -- instance ids ------------------------------------------------------------------------------

_STORE_IDS: list[str] = []


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_an_instance_id_is_kept_exactly_or_refused_before_anything_is_stored(
    tmp_path_factory: pytest.TempPathFactory, instance_id: str
) -> None:
    try:
        validate_instance_id(instance_id)
    except duro.InvalidInstanceIdError:
        valid = False
    else:
        valid = True

    async def attempt() -> duro.OrchestrationStatus[Any] | None:
        path = tmp_path_factory.getbasetemp() / "ids.db"
        async with duro.SqliteProvider(path) as store:
            client = duro.Client(store)
            before = await store.queue_depths()
            try:
                await client.start_orchestration(instance_id, "orch", {"id": instance_id})
            except duro.InvalidInstanceIdError:
                assert await store.queue_depths() == before  # nothing stored
                return None
            _STORE_IDS.append(instance_id)
            listed = await client.list_instances()
            assert instance_id in {record.instance_id for record in listed}
            return await client.get_status(instance_id)

    try:
        status = anyio.run(attempt)
    except duro.InstanceAlreadyExistsError:
        assert instance_id in _STORE_IDS  # hypothesis tried this id before
        return
    assert (status is not None) == valid
    if status is not None:
        assert status.instance_id == instance_id
        assert status.state is duro.State.PENDING


# -- the order of messages against the replay engine -------------------------------------------

registry = duro.Registry()
FAN = 5


@registry.activity
async def part(ctx: duro.ActivityContext, n: int) -> int:
    return n


@registry.orchestration
async def fan_in(ctx: duro.OrchestrationContext, _: None) -> int:
    values = await ctx.join([ctx.schedule_activity(part, n) for n in range(FAN)])
    return sum(values)


@registry.orchestration
async def race(ctx: duro.OrchestrationContext, _: None) -> int:
    winner, _value = await ctx.select(
        ctx.wait_for_event("a"), ctx.wait_for_event("b"), ctx.schedule_activity(part, 7)
    )
    await ctx.wait_for_event("late")  # what lost stays buffered or dropped; history decides
    return winner


def _batches(draw: st.DrawFn, messages: list[Any]) -> list[list[Any]]:
    """``messages`` in a drawn order, some delivered twice, cut into drawn turns."""
    ordered = draw(st.permutations(messages))
    with_duplicates = list(ordered)
    for message in draw(st.lists(st.sampled_from(ordered), max_size=3)):
        with_duplicates.insert(draw(st.integers(0, len(with_duplicates))), message)
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(with_duplicates) - 1)), max_size=4)))
    bounds = [0, *cuts, len(with_duplicates)]
    return [with_duplicates[a:b] for a, b in itertools.pairwise(bounds) if a < b]


def _output(instance: Instance) -> Any:
    last = instance.history[-1]
    assert isinstance(last, OrchestrationCompleted), last
    return msgspec.json.decode(last.output)


def _whole(events: list[HistoryEvent]) -> None:
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))


@st.composite
def fan_in_deliveries(draw: st.DrawFn) -> list[list[Any]]:
    return _batches(draw, [completed(seq, seq - 1) for seq in range(1, FAN + 1)])


@settings(max_examples=200)
@given(fan_in_deliveries())
def test_a_fan_in_gives_one_answer_whatever_the_order_batching_and_duplicates(
    batches: list[list[Any]],
) -> None:
    instance = Instance("inst", registry)
    instance.turn(start("fan_in"), at=T0)
    for n, batch in enumerate(batches, start=1):
        instance.turn(*batch, at=T0 + n)

    assert instance.status is not None and instance.status.value == "completed"
    assert _output(instance) == sum(range(FAN))
    _whole(instance.history)
    assert replay(registry, instance.history, instance_id="inst").events == len(instance.history)


@st.composite
def race_deliveries(draw: st.DrawFn) -> list[list[Any]]:
    # The activity of the race is seq 1; events "a" and "b" race it.
    racers = [event("a", 1), event("b", 2), completed(1, 7)]
    return _batches(draw, racers)


@settings(max_examples=200)
@given(race_deliveries())
def test_a_select_is_won_by_what_reached_history_first(batches: list[list[Any]]) -> None:
    instance = Instance("inst", registry)
    instance.turn(start("race"), at=T0)
    for n, batch in enumerate(batches, start=1):
        instance.turn(*batch, at=T0 + n)
    instance.turn(event("late"), at=T0 + 100)

    first = next(e for e in instance.history if isinstance(e, EventRaised | ActivityCompleted))
    expected = {"a": 0, "b": 1}[first.name] if isinstance(first, EventRaised) else 2
    assert instance.status is not None and instance.status.value == "completed"
    assert _output(instance) == expected
    _whole(instance.history)
    replay(registry, instance.history, instance_id="inst")
