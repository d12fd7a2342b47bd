"""The in-memory provider against the shared provider contract."""

from __future__ import annotations

from pathlib import Path

import duro
from duro.providers import Provider
from duro.testing import ProviderContract, VirtualClock


class TestInMemoryContract(ProviderContract):
    long_polling = True

    def create_provider(self, clock: VirtualClock, tmp_path: Path) -> Provider:
        return duro.InMemoryProvider(clock=clock)
