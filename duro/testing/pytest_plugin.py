"""An opt-in pytest plugin for workflow tests: the ``duro_env`` fixture.

Enable it in your ``conftest.py``::

    pytest_plugins = ["duro.testing.pytest_plugin"]

(or run ``pytest -p duro.testing.pytest_plugin``) and define the registry under test::

    @pytest.fixture
    def duro_registry() -> duro.Registry:
        return myapp.workflows.registry

Then every ``async def`` test that takes ``duro_env`` gets a running
``duro.testing.WorkflowEnvironment`` for that registry, and runs once per backend: asyncio and
trio (when trio is installed). The ini option ``duro_backends`` changes the list
(``duro_backends = asyncio``). Such tests need no ``@pytest.mark.anyio``: the plugin adds it.
It needs anyio's pytest plugin, which anyio installs.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from .._registry import Registry
from ._environment import WorkflowEnvironment

FIXTURE = "duro_env"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "duro_backends",
        "async backends the tests taking duro_env run on (default: asyncio, and trio if installed)",
        type="args",
        default=None,
    )


def _backends(config: pytest.Config) -> list[str]:
    configured: list[str] | None = config.getini("duro_backends")
    if configured:
        return list(configured)
    return ["asyncio", "trio"] if importlib.util.find_spec("trio") else ["asyncio"]


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> None:
    # Before anyio's own hook looks for its marker, so the test is run the anyio way.
    if not (collector.istestfunction(obj, name) and inspect.iscoroutinefunction(obj)):
        return
    if FIXTURE not in inspect.signature(obj).parameters:
        return
    marks = getattr(obj, "pytestmark", [])
    if not any(mark.name == "anyio" for mark in marks):
        pytest.mark.anyio(obj)
    parametrized = any(
        mark.name == "parametrize" and "anyio_backend" in str(mark.args[0]) for mark in marks
    )
    if not parametrized:
        pytest.mark.parametrize("anyio_backend", _backends(collector.config))(obj)


@pytest.fixture
def duro_registry() -> Iterator[Registry]:
    """The registry ``duro_env`` runs; override it in your ``conftest.py``."""
    raise pytest.UsageError(
        "duro_env needs the registry to test: define a fixture `duro_registry` that returns "
        "your duro.Registry (in conftest.py)"
    )
    yield Registry()  # pragma: no cover - makes this a generator, like the override


@pytest.fixture
async def duro_env(
    duro_registry: Registry, anyio_backend: Any
) -> AsyncIterator[WorkflowEnvironment]:
    """A running ``WorkflowEnvironment`` for ``duro_registry``, closed after the test."""
    async with WorkflowEnvironment(duro_registry) as env:
        yield env
