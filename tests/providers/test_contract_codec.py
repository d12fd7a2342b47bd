"""The in-memory and SQLite providers with an ``AesGcmCodec`` against the shared contract: the
codec boundary must change no behaviour of a store, only what it holds."""

from __future__ import annotations

from pathlib import Path

import duro
from duro.providers import Provider
from duro.testing import ProviderContract, VirtualClock

CODEC = duro.AesGcmCodec({"k1": bytes(range(32))}, active="k1")


class TestInMemoryContractWithCodec(ProviderContract):
    long_polling = True

    def create_provider(self, clock: VirtualClock, tmp_path: Path) -> Provider:
        return duro.InMemoryProvider(clock=clock, codec=CODEC)


class TestSqliteContractWithCodec(ProviderContract):
    long_polling = True

    def create_provider(self, clock: VirtualClock, tmp_path: Path) -> Provider:
        return duro.SqliteProvider(tmp_path / "contract.db", clock=clock, codec=CODEC)
