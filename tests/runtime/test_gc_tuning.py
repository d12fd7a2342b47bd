"""While runtimes run, CPython's default collector thresholds give way to rarer collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import duro

pytestmark = pytest.mark.anyio

registry = duro.Registry()
PYTHON_DEFAULTS = (700, 10, 10)


@pytest.fixture(autouse=True)
def python_default_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(*PYTHON_DEFAULTS)
    yield
    gc.set_threshold(*before)


async def test_thresholds_are_raised_while_runtimes_run_and_restored_after_the_last() -> None:
    store = duro.InMemoryProvider()
    async with duro.Runtime(store, registry):
        first = gc.get_threshold()
        async with duro.Runtime(store, registry):
            both = gc.get_threshold()
        one_left = gc.get_threshold()
    assert first == both == one_left
    assert first[0] > PYTHON_DEFAULTS[0] and first[2] > PYTHON_DEFAULTS[2]
    assert gc.get_threshold() == PYTHON_DEFAULTS


async def test_a_hosts_own_thresholds_are_left_alone() -> None:
    gc.set_threshold(5_000, 20, 20)
    async with duro.Runtime(duro.InMemoryProvider(), registry):
        during = gc.get_threshold()
    assert during == gc.get_threshold() == (5_000, 20, 20)


async def test_tune_gc_false_changes_nothing() -> None:
    options = duro.RuntimeOptions(tune_gc=False)
    async with duro.Runtime(duro.InMemoryProvider(), registry, options):
        during = gc.get_threshold()
    assert during == PYTHON_DEFAULTS
