"""Stands in for the provider package the provider docs import as an example."""

from __future__ import annotations

from pathlib import Path

from duro import InMemoryProvider
from duro._clock import Clock


class MyStoreProvider(InMemoryProvider):
    def __init__(self, path: Path, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self.path = path
