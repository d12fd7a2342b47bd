"""The fixture scaffolding every contract test class builds on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest

from ...providers import Provider
from .._clock import VirtualClock

CONTRACT_EPOCH_MS = 1_700_000_000_000


class ContractBase:
    """Override :meth:`create_provider`; tune the class-level knobs for slow remote stores."""

    lock_timeout: ClassVar[float] = 5.0
    """Lock timeout (seconds) the tests pass to fetches."""

    def create_provider(self, clock: VirtualClock, tmp_path: Path) -> Provider:
        """Build a fresh, isolated provider that reads time from ``clock``."""
        raise NotImplementedError("subclass ProviderContract and implement create_provider")

    @pytest.fixture
    def clock(self) -> VirtualClock:
        return VirtualClock(start_ms=CONTRACT_EPOCH_MS)

    @pytest.fixture
    async def provider(self, clock: VirtualClock, tmp_path: Path) -> AsyncIterator[Provider]:
        store = self.create_provider(clock, tmp_path)
        async with store:
            yield store
