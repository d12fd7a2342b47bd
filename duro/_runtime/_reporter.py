"""Activity results reach the store in batches: one round trip for every result ready."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._errors import ProviderError
from ..providers import ActivityCommit, Provider
from ._polling import retry_provider_call

MAX_BATCH = 128


@dataclass(slots=True)
class _Pending:
    commit: ActivityCommit
    done: anyio.Event = field(default_factory=anyio.Event)
    error: ProviderError | None = None


class CompletionReporter:
    """Collects completions from every running activity and commits them together.

    No artificial delay: the reporter takes whatever is queued when it is free, so batches
    grow only under load and a lone result is committed at once.
    """

    def __init__(self, provider: Provider, retries: int) -> None:
        self._provider = provider
        self._retries = retries
        self._send: MemoryObjectSendStream[_Pending] | None = None

    async def report(self, commit: ActivityCommit) -> ProviderError | None:
        """Queue ``commit`` and wait until it is applied; returns its error, if any.

        After ``run`` has stopped (shutdown) nothing is committed: the item stays locked, to be
        abandoned or redelivered when its lock expires.
        """
        if self._send is None:
            return ProviderError("complete_activity", "the worker is shutting down", retryable=True)
        pending = _Pending(commit)
        self._send.send_nowait(pending)
        await pending.done.wait()
        return pending.error

    async def run(self) -> None:
        send, receive = anyio.create_memory_object_stream[_Pending](math.inf)
        self._send = send
        try:
            async with send, receive:
                await self._drain(receive)
        finally:
            self._send = None

    async def _drain(self, receive: MemoryObjectReceiveStream[_Pending]) -> None:
        async for first in receive:
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(receive.receive_nowait())
                except anyio.WouldBlock:
                    break
            await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        commits = [p.commit for p in batch]
        try:
            results = await retry_provider_call(
                lambda: self._provider.complete_activities(commits), self._retries
            )
        except ProviderError as exc:
            results = [exc] * len(batch)
        for pending, error in zip(batch, results, strict=True):
            pending.error = error
            pending.done.set()
