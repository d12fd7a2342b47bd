"""Writes reach the store in batches: one round trip for every commit that is ready."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._errors import ProviderError
from . import _delays as delays
from ._polling import retry_provider_call

T = TypeVar("T")

log = logging.getLogger("duro.runtime")

MAX_BATCH = 128

CommitMany = Callable[[Sequence[T]], Awaitable[list[ProviderError | None]]]


@dataclass(slots=True)
class _Pending(Generic[T]):
    commit: T
    done: anyio.Event = field(default_factory=anyio.Event)
    error: ProviderError | None = None


class BatchCommitter(Generic[T]):
    """Collects commits from many tasks and applies whatever is queued in one call.

    No artificial delay: the committer takes what is queued when it is free, so batches grow
    only under load and a lone commit is applied at once. Each commit stays atomic on its own
    (``commit_many`` reports a result per commit).
    """

    def __init__(self, commit_many: CommitMany[T], retries: int, what: str) -> None:
        self._commit_many = commit_many
        self._retries = retries
        self._what = what
        self._send: MemoryObjectSendStream[_Pending[T]] | None = None
        self._stop_retrying: anyio.Event | None = None

    async def submit(self, commit: T) -> ProviderError | None:
        """Queue ``commit`` and wait until it is applied; returns its error, if any.

        After ``run`` has stopped (shutdown) nothing is applied: the caller's lock stays as it
        is, to be abandoned or to expire.
        """
        if self._send is None:
            return self._shutting_down()
        pending: _Pending[T] = _Pending(commit)
        self._send.send_nowait(pending)
        await pending.done.wait()
        return pending.error

    async def submit_until_applied(
        self, commit: Callable[[], T], describe: str
    ) -> ProviderError | None:
        """``submit(commit())``, again and again while the store fails in a way that may pass
        (a full disk, throttling, an outage): the caller holds finished work worth keeping.
        ``commit`` builds the commit afresh each time (a lock may have changed). Returns
        the error that ended the attempts: permanent, or shutdown's grace period over."""
        delay = delays.STORE_OUTAGE_FIRST
        while True:
            error = await self.submit(commit())
            stop = self._stop_event()
            if error is None or not error.retryable or self._send is None or stop.is_set():
                return error
            log.warning("%s failed (%s); kept, trying again in %.1f s", describe, error, delay)
            with anyio.move_on_after(delay):
                await stop.wait()
            delay = min(delay * 2, delays.STORE_OUTAGE_MAX)

    def stop_retrying(self) -> None:
        """Shutdown's grace period is over: pending ``submit_until_applied`` calls give up."""
        self._stop_event().set()

    def _stop_event(self) -> anyio.Event:
        if self._stop_retrying is None:
            self._stop_retrying = anyio.Event()
        return self._stop_retrying

    async def run(self) -> None:
        """Apply batches until cancelled; a batch already sent to the store always finishes,
        and commits still queued at cancellation are answered with an error, never dropped."""
        send, receive = anyio.create_memory_object_stream[_Pending[T]](math.inf)
        self._send = send
        try:
            await self._drain(receive)
        finally:
            self._send = None
            send.close()
            self._refuse_queued(receive)
            receive.close()

    async def _drain(self, receive: MemoryObjectReceiveStream[_Pending[T]]) -> None:
        async for first in receive:
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(receive.receive_nowait())
                except anyio.WouldBlock:
                    break
            with anyio.CancelScope(shield=True):
                await self._apply(batch)

    def _refuse_queued(self, receive: MemoryObjectReceiveStream[_Pending[T]]) -> None:
        while True:
            try:
                pending = receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                return
            pending.error = self._shutting_down()
            pending.done.set()

    def _shutting_down(self) -> ProviderError:
        return ProviderError(self._what, "the runtime is shutting down", retryable=True)

    async def _apply(self, batch: list[_Pending[T]]) -> None:
        commits = [p.commit for p in batch]
        try:
            results = await retry_provider_call(lambda: self._commit_many(commits), self._retries)
        except ProviderError as exc:
            results = [exc] * len(batch)
        except Exception as exc:  # a store bug: fail these commits, keep committing others
            log.exception("%s failed unexpectedly", self._what)
            unexpected = ProviderError(self._what, f"{type(exc).__name__}: {exc}", retryable=False)
            results = [unexpected] * len(batch)
        for pending, error in zip(batch, results, strict=True):
            pending.error = error
            pending.done.set()
