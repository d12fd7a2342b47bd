"""Registration: the hints errors give, and which version of an orchestration is the latest."""

from __future__ import annotations

import pytest

import duro
from duro._versions import version_key

from .engine.histories import History, start, turn


async def _noop(ctx: duro.OrchestrationContext) -> None:
    return None


def _versions(*versions: str) -> duro.Registry:
    registry = duro.Registry()
    for version in versions:
        registry.orchestration(name="flow", version=version)(_noop)
    return registry


def test_unregistered_activity_function_names_the_real_decorator() -> None:
    registry = duro.Registry()

    async def forgotten(ctx: duro.ActivityContext, x: int) -> int:
        return x

    @registry.orchestration
    async def uses(ctx: duro.OrchestrationContext, _: None) -> int:
        return await ctx.schedule_activity(forgotten, 1)

    error = turn(registry, None, [start("uses")]).changes.error
    assert error is not None and error.error_type == "UnregisteredError"
    assert "register it with @registry.activity" in error.message
    assert "@registry.function" not in error.message


def test_unregistered_sub_orchestration_function_names_the_real_decorator() -> None:
    registry = duro.Registry()

    @registry.orchestration
    async def uses(ctx: duro.OrchestrationContext, _: None) -> None:
        await ctx.schedule_sub_orchestration(_noop)

    error = turn(registry, None, [start("uses")]).changes.error
    assert error is not None
    assert "register it with @registry.orchestration" in error.message


def test_a_lookup_that_does_not_say_what_it_expected_names_both_decorators() -> None:
    with pytest.raises(duro.UnregisteredError) as caught:
        duro.Registry().name_of(_noop)
    message = str(caught.value)
    assert "@registry.activity or @registry.orchestration" in message
    assert "@registry.function" not in message


@pytest.mark.parametrize(
    ("registered", "latest"),
    [
        (["2.0.0", "2.0.0-rc1"], "2.0.0"),
        (["2.0.0-rc1", "2.0.0"], "2.0.0"),
        (["2.0.0", "2.0.0rc1", "1.9"], "2.0.0"),
        (["1.0.0", "2.0.0-rc.1"], "2.0.0-rc.1"),
        (["2.0.0-beta.11", "2.0.0-beta.2"], "2.0.0-beta.11"),
        (["9.2", "10.0"], "10.0"),
        (["1.0", "1.0.post1"], "1.0.post1"),
        (["1.1.dev1", "1.0"], "1.1.dev1"),
        (["1.0.0+build.9", "1.0.1"], "1.0.1"),
        (["v1", "v2"], "v2"),
    ],
)
def test_new_instances_start_on_the_latest_version_with_pre_releases_before_release(
    registered: list[str], latest: str
) -> None:
    found = _versions(*registered).get_orchestration("flow")
    assert found is not None and found.version == latest


def test_pre_release_registered_beside_its_release_does_not_take_new_instances() -> None:
    registry = _versions("2.0.0", "2.0.0-rc1")
    decision = turn(registry, None, [start("flow")])
    started = decision.changes.new_events[0]
    assert getattr(started, "version", None) == "2.0.0"


def test_semantic_versioning_precedence_example_is_kept() -> None:
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
    ]
    assert sorted(reversed(ordered), key=version_key) == ordered


def test_pep_440_order_is_kept() -> None:
    ordered = ["1.0.dev1", "1.0a1.dev2", "1.0a1", "1.0b2.post3", "1.0rc1", "1.0", "1.0.post1"]
    assert sorted(reversed(ordered), key=version_key) == ordered


@pytest.mark.parametrize("version", ["banana", "latest", "1..2", "1.0.0-", ""])
def test_unparseable_version_is_a_registration_error_that_says_what_is_accepted(
    version: str,
) -> None:
    registry = duro.Registry()
    with pytest.raises(duro.RegistrationError) as caught:
        registry.orchestration(name="flow", version=version or " ")(_noop)
    message = str(caught.value)
    assert "PEP 440" in message and "semantic version" in message
    assert registry.get_orchestration("flow") is None


def test_two_spellings_of_one_version_cannot_both_be_registered() -> None:
    registry = _versions("1.0.0")
    with pytest.raises(duro.RegistrationError, match=r"the same as '1\.0\.0'"):
        registry.orchestration(name="flow", version="1.0")(_noop)


def test_running_instances_keep_any_recorded_version_string() -> None:
    # Histories recorded before versions were checked replay on the exact string they hold.
    registry = _versions("1.0.0", "2.0.0")
    decision = turn(registry, History().started("flow", version="1.0.0"), [])
    assert decision.changes.error is None
