"""The compat transport's isolation: atomic batches run alone, everything else together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

__all__ = ["ReadWriteLock"]


class ReadWriteLock:
    """Shared for ordinary requests, exclusive for atomic batches; waiting writers go first."""

    def __init__(self) -> None:
        self._cond: anyio.Condition | None = None
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def _condition(self) -> anyio.Condition:
        if self._cond is None:
            self._cond = anyio.Condition()
        return self._cond

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        cond = self._condition()
        async with cond:
            while self._writer or self._writers_waiting:
                await cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                async with cond:
                    self._readers -= 1
                    cond.notify_all()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        cond = self._condition()
        async with cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    await cond.wait()
            finally:
                self._writers_waiting -= 1
                cond.notify_all()
            self._writer = True
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                async with cond:
                    self._writer = False
                    cond.notify_all()
