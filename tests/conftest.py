from __future__ import annotations

import pytest

pytest_plugins = ["tests.cosmos.fixtures"]
"""The Cosmos test server and its transports, for every directory (see that module)."""


@pytest.fixture
def anyio_backend() -> str:
    """Default backend; end-to-end modules parametrise over asyncio and trio themselves."""
    return "asyncio"
