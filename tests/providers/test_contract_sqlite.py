"""The SQLite provider against the shared provider contract (a real file per test)."""

from __future__ import annotations

from pathlib import Path

import duro
from duro.providers import Provider
from duro.testing import ProviderContract, VirtualClock


class TestSqliteContract(ProviderContract):
    long_polling = True

    def create_provider(self, clock: VirtualClock, tmp_path: Path) -> Provider:
        return duro.SqliteProvider(tmp_path / "contract.db", clock=clock)
