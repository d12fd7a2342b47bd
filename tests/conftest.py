from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Default backend; end-to-end modules parametrise over asyncio and trio themselves."""
    return "asyncio"
