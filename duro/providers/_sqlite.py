"""``SqliteProvider``: the embedded, durable default store.

Layout of the implementation:

* ``_sqlite_db``: connections, and where calls run. One writer connection behind a thread
  lock plus a pool of WAL reader connections; short calls run on the event loop when no lock
  is in the way, anything that would wait (or scans a lot) runs in a worker thread.
* ``_sqlite_schema``: identity check, DDL and numbered migrations (``PRAGMA user_version``).
* ``_sqlite_turns`` / ``_sqlite_activities`` / ``_sqlite_manage``: one ``*_txn`` function per
  contract operation, each run as exactly one transaction (``BEGIN IMMEDIATE`` for writes).
* ``_sqlite_errors``: typed errors and the translation of ``sqlite3`` errors.
* ``_sqlite_wake``: wake-ups between processes on one file (Unix datagram sockets).
* ``_sqlite_liveness``: which runtimes on the file are alive, so a killed one's locks end at
  once instead of expiring.

Correctness never depends on in-process state: locks are rows with tokens and expiry times
(milliseconds from the provider's clock, computed in Python), so several providers, runtimes
or processes can share one file. In-process state is only used to wake long-polling fetches
early: writes through this provider object notify its waiters at once, and other processes'
waiters through their sockets. A waiting fetch also reads the file's ``PRAGMA data_version``
(shared memory, not a query) after 1 ms, then at doubling intervals, for the commits of
processes that cannot wake it.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

import anyio

from .._clock import SYSTEM_CLOCK, Clock
from .._codec import Codec
from .._errors import ProviderError
from .._history import HistoryEvent
from ._boundary import CodecBoundary
from ._interface import Provider
from ._signal import WorkSignal
from ._sqlite_activities import (
    abandon_activity_txn,
    activity_work_remains_txn,
    cleanup_sessions_txn,
    complete_activities_txn,
    expire_activity_locks_txn,
    expire_sessions_txn,
    fetch_activities_txn,
    renew_activity_txn,
    renew_sessions_txn,
)
from ._sqlite_db import MEMORY, Database
from ._sqlite_liveness import RuntimeLiveness
from ._sqlite_manage import (
    children_txn,
    count_instances_txn,
    delete_instance_txn,
    kv_items_txn,
    kv_snapshot_txn,
    list_instances_txn,
    prune_txn,
    queue_depths_txn,
    read_executions_txn,
    read_history_txn,
    read_instance_txn,
)
from ._sqlite_turns import (
    NoWork,
    RawTurn,
    abandon_turn_txn,
    commit_turns_txn,
    decode_turn_list,
    decode_turns,
    expire_turn_locks_txn,
    fetch_turns_txn,
    forget_worker_txn,
    insert_message_txn,
    ms,
    renew_turn_txn,
    start_instance_txn,
    turn_work_remains_txn,
)
from ._sqlite_wake import (
    ACTIVITIES,
    LOST,
    TURNS,
    PeerWakeups,
    decode_notices,
    encode_notices,
)
from ._types import (
    ANY_INSTANCE,
    AbandonRequest,
    ActivityCommit,
    ActivityWorkItem,
    DeleteRequest,
    DeleteResult,
    ExecutionRecord,
    FetchActivityRequest,
    FetchTurnRequest,
    InstanceCountQuery,
    InstanceCounts,
    InstanceNotice,
    InstancePage,
    InstanceQuery,
    InstanceRecord,
    KvEntry,
    OrchestrationWorkItem,
    PruneRequest,
    PruneResult,
    QueueDepths,
    RenewRequest,
    ScheduledMessage,
    SessionRenewal,
    StartOutcome,
    StartRequest,
    TurnCommit,
)

W = TypeVar("W")

log = logging.getLogger("duro.providers.sqlite")


class SqliteProvider(Provider):
    """Stores everything in one SQLite file (WAL mode), safe to share between processes.

    ``SqliteProvider("app.db")`` does no I/O until first used; ``async with`` or ``close()``
    releases the connections (using the provider again reopens it). The schema is created on
    first use and upgraded in place by numbered migrations.

    ``busy_timeout`` is how long a write waits for another process's write lock before
    failing with a retryable ``StoreBusyError``. ``poll_interval`` is how often (real seconds)
    a long-polling fetch queries the file again; other processes' commits wake it within
    milliseconds (through sockets in ``<path>-wake/``, or by watching the file's change
    counter every 64 ms where none can be bound). With
    ``codec`` (for example ``duro.AesGcmCodec``) every payload is stored in its encoded form;
    every process that opens the file needs the same codec keys.
    """

    name = "sqlite"
    fetches_with_commits = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        busy_timeout: float = 30.0,
        poll_interval: float = 0.25,
        codec: Codec | None = None,
    ) -> None:
        self._path = os.fspath(path)
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._codec = CodecBoundary(codec)
        self._poll_interval = poll_interval
        self._db = Database(self._path, busy_timeout=busy_timeout)
        self._turn_signal = WorkSignal()
        self._activity_signal = WorkSignal()
        self._idle_pace: dict[WorkSignal, float] = {}
        """The pace of looks a long poll that found no work ended at, by the work it waited
        for: the next long poll for that work starts there."""
        self._peers = PeerWakeups(self._path)
        self._watchers = PeerWakeups(self._path, suffix="-watch")
        """Clients in other processes waiting for instances (see ``instance_notices``)."""
        self._liveness = RuntimeLiveness(self._path)
        self._runtimes: list[str] = []
        """Worker ids of the runtimes running on this provider, oldest first; starts made
        here name the oldest (see ``_sqlite_turns.PEERS_FIRST_MS``)."""

    @classmethod
    def in_memory(cls, *, clock: Clock | None = None, codec: Codec | None = None) -> SqliteProvider:
        """A private in-memory database (for tests and demos); kept across close/reopen."""
        return cls(MEMORY, clock=clock, codec=codec)

    @property
    def path(self) -> str:
        """The database file (``":memory:"`` style names for in-memory databases)."""
        return self._path

    def __repr__(self) -> str:
        codec = "" if self._codec.codec is None else f", codec={self._codec.codec!r}"
        return f"SqliteProvider({self._path!r}, clock={self._clock!r}{codec})"

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        self._liveness.release_all()
        self._peers.close()
        self._watchers.close()
        await self._db.close()

    async def runtime_started(self, worker_id: str) -> None:
        if not self._db.in_memory:
            # First: a peer burying this id's previous run must be done before it (see
            # _sqlite_liveness), and from now on peers know this run is alive.
            await self._liveness.claim(worker_id)
        now = self._clock.now_ms()
        # worker_id names one live process: locks under it belong to a run that has ended
        # (crashed), so they need not wait for their expiry. Their tokens still fence.
        reclaimed = await self._db.write(
            "runtime_started", partial(_expire_locks_txn, worker_id=worker_id, now=now)
        )
        if reclaimed:
            log.info("%s took back %d lock(s) its previous run held", worker_id, reclaimed)
            self._work_written(TURNS | ACTIVITIES)
        self._runtimes.append(worker_id)

    async def runtime_stopped(self, worker_id: str) -> None:
        if worker_id in self._runtimes:
            self._runtimes.remove(worker_id)
        # Its executions left memory with it: the others need not leave its instances to it.
        handed = await self._db.write(
            "runtime_stopped", partial(forget_worker_txn, worker_id=worker_id), on_loop=False
        )
        if handed:
            self._work_written(TURNS)
        self._liveness.release(worker_id)

    async def _take_over_dead_runtimes(self) -> None:
        """End the locks, sessions and affinity of runtimes whose process died (see
        ``_sqlite_liveness``): their work moves now, not when their locks expire."""
        for dead in self._liveness.dead():
            try:
                ended = await self._db.write(
                    "take_over",
                    partial(_end_worker_txn, worker_id=dead.worker_id, now=self._clock.now_ms()),
                    on_loop=False,  # scans the instances (no index by last worker)
                )
            except ProviderError as exc:
                dead.leave()  # the next look tries again
                log.warning("taking over runtime %s failed: %s", dead.worker_id, exc)
                continue
            except BaseException:  # cancelled: the lock must not stay held here
                dead.leave()
                raise
            dead.bury()
            log.warning(
                "runtime %s ended without stopping (killed?): %d of its locks and sessions "
                "ended now, not at their expiry",
                dead.worker_id, ended,
            )  # fmt: skip
            self._work_written(TURNS | ACTIVITIES)

    # -- client side ----------------------------------------------------------------------------

    async def start_instance(self, request: StartRequest) -> StartOutcome:
        request = self._codec.encode_start(request)
        outcome = await self._db.write(
            "start_instance",
            partial(
                start_instance_txn,
                request=request,
                now=self._clock.now_ms(),
                started_by=self._runtimes[0] if self._runtimes else None,
            ),
        )
        self._work_written(TURNS)
        return outcome

    async def enqueue_orchestrator_message(self, message: ScheduledMessage) -> None:
        message = self._codec.encode_scheduled(message)
        await self._db.write(
            "enqueue_orchestrator_message",
            partial(
                insert_message_txn,
                message=message.message,
                visible_at_ms=message.visible_at_ms,
                now=self._clock.now_ms(),
            ),
        )
        self._work_written(TURNS)

    # -- orchestration turns --------------------------------------------------------------------

    async def fetch_turns(self, request: FetchTurnRequest) -> list[OrchestrationWorkItem]:
        async def attempt() -> list[OrchestrationWorkItem] | NoWork:
            txn = self._fetch_turns_txn(request, self._clock.now_ms())
            return await self._db.write_then("fetch_turns", txn, decode_turns)

        items = await self._long_poll(self._turn_signal, request.poll_timeout, attempt)
        return await self._codec.decode_turns(items, self.abandon_turn)

    def _fetch_turns_txn(
        self, request: FetchTurnRequest, now: int
    ) -> Callable[[sqlite3.Connection], list[RawTurn] | NoWork]:
        return partial(
            fetch_turns_txn, now=now, lock_until=now + ms(request.lock_timeout),
            owner_id=request.owner_id, new_token=_new_token, max_items=request.max_items,
            cached=request.cached_histories, skip=tuple(request.skip_instances),
            shared=self._shared(),
        )  # fmt: skip

    def _shared(self) -> bool:
        """Whether runtimes in other processes fetch from this file too (then each leaves
        the others' instances to them for a while: see ``_sqlite_turns._candidate_txn``)."""
        return not self._db.in_memory and self._peers.has_peers()

    async def commit_turns(self, commits: Sequence[TurnCommit]) -> list[ProviderError | None]:
        if not commits:
            return []
        commits = self._codec.encode_turn_commits(commits)
        results = await self._db.write(
            "commit_turns", partial(commit_turns_txn, commits=commits, now=self._clock.now_ms())
        )
        scheduled = any(c.changes.activity_tasks for c in commits)
        self._work_written(TURNS | (ACTIVITIES if scheduled else 0))
        self._tell_watchers(commits, results)
        return results

    async def commit_turns_and_fetch_activities(
        self, commits: Sequence[TurnCommit], fetch: FetchActivityRequest
    ) -> tuple[list[ProviderError | None], list[ActivityWorkItem]]:
        commits = self._codec.encode_turn_commits(commits)
        now = self._clock.now_ms()
        fetch = _skips_read_now(fetch)

        def txn(
            conn: sqlite3.Connection,
        ) -> tuple[list[ProviderError | None], list[ActivityWorkItem], bool]:
            results = commit_turns_txn(conn, commits, now)
            found = fetch_activities_txn(conn, fetch, now=now, new_token=_new_token)
            items = found if isinstance(found, list) else []
            more = len(items) >= fetch.max_items or activity_work_remains_txn(conn, now)
            return results, items, more

        results, items, more = await self._db.write("commit_turns", txn)
        self._work_written(TURNS | (ACTIVITIES if more else 0))
        self._tell_watchers(commits, results)
        return results, await self._codec.decode_activities(items, self.abandon_activity)

    async def complete_activities_and_fetch_turns(
        self, commits: Sequence[ActivityCommit], fetch: FetchTurnRequest
    ) -> tuple[list[ProviderError | None], list[OrchestrationWorkItem]]:
        commits = self._codec.encode_activity_commits(commits)
        now = self._clock.now_ms()
        fetch_turns = self._fetch_turns_txn(fetch, now)

        def txn(conn: sqlite3.Connection) -> tuple[list[ProviderError | None], list[RawTurn], bool]:
            results = complete_activities_txn(conn, commits, now)
            found = fetch_turns(conn)
            turns = found if isinstance(found, list) else []
            more = len(turns) >= fetch.max_items or turn_work_remains_txn(conn, now)
            return results, turns, more

        def decode(
            raw: tuple[list[ProviderError | None], list[RawTurn], bool],
        ) -> tuple[list[ProviderError | None], list[OrchestrationWorkItem], bool]:
            results, turns, more = raw
            return results, decode_turn_list(turns), more

        results, items, more = await self._db.write_then("complete_activities", txn, decode)
        # A result due later moves the waiting fetches' next due time: they must hear of it.
        later = any(c.result and c.result.visible_at_ms is not None for c in commits)
        self._work_written(ACTIVITIES | (TURNS if more or later else 0), peers=TURNS)
        return results, await self._codec.decode_turns(items, self.abandon_turn)

    async def abandon_turn(self, request: AbandonRequest) -> None:
        await self._db.write(
            "abandon_turn", partial(abandon_turn_txn, request=request, now=self._clock.now_ms())
        )
        self._work_written(TURNS)

    async def renew_turn_lock(self, request: RenewRequest) -> None:
        await self._db.write(
            "renew_turn_lock", partial(renew_turn_txn, request=request, now=self._clock.now_ms())
        )

    # -- activity work items --------------------------------------------------------------------

    async def fetch_activities(self, request: FetchActivityRequest) -> list[ActivityWorkItem]:
        async def attempt() -> list[ActivityWorkItem] | NoWork:
            txn = partial(
                fetch_activities_txn,
                request=_skips_read_now(request),
                now=self._clock.now_ms(),
                new_token=_new_token,
            )
            return await self._db.write("fetch_activities", txn)

        items = await self._long_poll(self._activity_signal, request.poll_timeout, attempt)
        return await self._codec.decode_activities(items, self.abandon_activity)

    async def complete_activities(
        self, commits: Sequence[ActivityCommit]
    ) -> list[ProviderError | None]:
        if not commits:
            return []
        commits = self._codec.encode_activity_commits(commits)
        results = await self._db.write(
            "complete_activities",
            partial(complete_activities_txn, commits=commits, now=self._clock.now_ms()),
        )
        results_written = any(c.result is not None for c in commits)
        self._work_written(ACTIVITIES | (TURNS if results_written else 0), peers=TURNS)
        return results

    async def abandon_activity(self, request: AbandonRequest) -> None:
        await self._db.write(
            "abandon_activity",
            partial(abandon_activity_txn, request=request, now=self._clock.now_ms()),
        )
        self._work_written(ACTIVITIES)

    async def renew_activity_lock(self, request: RenewRequest) -> None:
        request = self._codec.encode_renewal(request)
        await self._db.write(
            "renew_activity_lock",
            partial(renew_activity_txn, request=request, now=self._clock.now_ms()),
        )

    # -- sessions -------------------------------------------------------------------------------

    async def renew_sessions(self, request: SessionRenewal) -> int:
        return await self._db.write(
            "renew_sessions",
            partial(renew_sessions_txn, request=request, now=self._clock.now_ms()),
        )

    async def cleanup_orphaned_sessions(self, idle_timeout: float) -> int:
        # Only expired sessions go, and an expired session is idle by definition.
        return await self._db.write(
            "cleanup_orphaned_sessions", partial(cleanup_sessions_txn, now=self._clock.now_ms())
        )

    # -- reads ----------------------------------------------------------------------------------

    async def read_instance(self, instance_id: str) -> InstanceRecord | None:
        record = await self._db.read(
            "read_instance", partial(read_instance_txn, instance_id=instance_id)
        )
        return self._codec.decode_record(record)

    async def read_history(
        self, instance_id: str, execution_id: int | None = None
    ) -> list[HistoryEvent]:
        history = await self._db.read(
            "read_history",
            partial(read_history_txn, instance_id=instance_id, execution_id=execution_id),
            on_loop=False,
        )
        return self._codec.decode_history(instance_id, history)

    async def read_executions(self, instance_id: str) -> list[ExecutionRecord]:
        return await self._db.read(
            "read_executions", partial(read_executions_txn, instance_id=instance_id)
        )

    async def get_kv_value(self, instance_id: str, key: str) -> KvEntry | None:
        items = await self._db.read(
            "get_kv_value", partial(kv_items_txn, instance_id=instance_id, key=key)
        )
        return self._codec.decode_kv_entry(instance_id, items.get(key))

    async def get_kv_items(self, instance_id: str) -> dict[str, KvEntry]:
        items = await self._db.read("get_kv_items", partial(kv_items_txn, instance_id=instance_id))
        return self._codec.decode_kv(instance_id, items)

    async def get_kv_snapshot(self, instance_id: str) -> dict[str, KvEntry]:
        items = await self._db.read(
            "get_kv_snapshot", partial(kv_snapshot_txn, instance_id=instance_id)
        )
        return self._codec.decode_kv(instance_id, items)

    # -- management -----------------------------------------------------------------------------

    async def list_instances(self, query: InstanceQuery) -> InstancePage:
        page = await self._db.read(
            "list_instances", partial(list_instances_txn, query=query), on_loop=False
        )
        return self._codec.decode_page(page)

    async def count_instances(self, query: InstanceCountQuery) -> InstanceCounts:
        return await self._db.read(
            "count_instances", partial(count_instances_txn, query=query), on_loop=False
        )

    async def list_children(self, instance_id: str) -> list[str]:
        return await self._db.read(
            "list_children", partial(children_txn, instance_id=instance_id), on_loop=False
        )

    async def delete_instance(self, request: DeleteRequest) -> DeleteResult:
        return await self._db.write(
            "delete_instance", partial(delete_instance_txn, request=request), on_loop=False
        )

    async def prune_executions(self, request: PruneRequest) -> PruneResult:
        return await self._db.write(
            "prune_executions", partial(prune_txn, request=request), on_loop=False
        )

    async def queue_depths(self) -> QueueDepths:
        return await self._db.read(
            "queue_depths", partial(queue_depths_txn, now=self._clock.now_ms()), on_loop=False
        )

    # -- long polling ---------------------------------------------------------------------------

    def _work_written(self, kinds: int, *, peers: int = TURNS | ACTIVITIES) -> None:
        """Wake the fetches waiting for ``kinds`` of work, here and (``kinds & peers``) in the
        other processes on this file. A completed activity wakes this process's activity
        fetches (it freed one of their slots) but only the turn fetches of others."""
        self._wake_here(kinds)
        if kinds & peers and not self._db.in_memory:
            self._peers.announce(kinds & peers)

    def _wake_here(self, kinds: int) -> None:
        if kinds & TURNS:
            self._turn_signal.notify()
        if kinds & ACTIVITIES:
            self._activity_signal.notify()

    def _tell_watchers(
        self, commits: Sequence[TurnCommit], results: Sequence[ProviderError | None]
    ) -> None:
        """Send the committed turns' instances to the clients waiting in other processes."""
        if self._db.in_memory or not self._watchers.has_peers():
            return
        notices = [
            InstanceNotice(
                c.changes.instance_id, c.changes.execution_status.instance_state().is_terminal
            )
            for c, error in zip(commits, results, strict=True)
            if error is None
        ]
        for datagram in encode_notices(notices):
            self._watchers.send(datagram, after_loss=LOST)

    async def instance_notices(self) -> list[InstanceNotice]:
        if self._db.in_memory:  # no other process: this one's runtime tells its clients
            return await super().instance_notices()
        if not self._watchers.listening:
            self._watchers.listen()
            if self._watchers.listening:
                # Turns committed before the socket was bound told nobody: every waiter reads
                # its instance again, now that no later turn can pass unheard. (No await
                # before returning it: a cancelled call must not bind without telling.)
                return [InstanceNotice(ANY_INSTANCE, ended=True)]
        while True:
            await self._watchers.readable()
            notices = decode_notices(self._watchers.receive())
            if notices:
                return notices

    async def _forward_peer_wakeups(self) -> None:
        while True:
            self._wake_here(await self._peers.wait())

    async def _long_poll(
        self,
        signal: WorkSignal,
        poll_timeout: float,
        attempt: Callable[[], Awaitable[list[W] | NoWork]],
    ) -> list[W]:
        """Try, then wait for a wake-up, the next due time or the deadline, and try again."""
        deadline = self._clock.now_ms() + ms(poll_timeout)
        # A fetch after one that waited in vain goes on at its pace: looking at 1, 2, 4 ms
        # again would wake an idle process a dozen times a second for nothing.
        pace = self._idle_pace.pop(signal, _FIRST_CHANGE_CHECK_S)
        while True:
            if self._liveness.due():
                await self._take_over_dead_runtimes()
            # Taken before the query, so a write that lands in between still wakes us.
            event = signal.current()
            result = await attempt()
            if not isinstance(result, NoWork):
                return result
            # Idle now: tell the clients whose queue was full that they missed word (no later
            # commit may come to carry it).
            self._watchers.resend_lost(LOST)
            now = self._clock.now_ms()
            if now >= deadline:
                if poll_timeout > 0:
                    self._idle_pace[signal] = pace
                return []
            until = deadline if result.due_ms is None else min(deadline, result.due_ms)
            pace = await self._wait_for_work(event, until, pace)

    async def _wait_for_work(self, event: anyio.Event, until_ms: int, pace: float) -> float:
        """Until a write here or a peer's wake-up sets ``event``, the clock reaches
        ``until_ms``, another process commits, or ``poll_interval`` real seconds pass (then
        the caller queries again); returns the pace of ``_watch_for_work``."""
        version = self._db.data_version()
        if version is not None:
            self._peers.listen()
        if not self._peers.listening:
            return await self._watch_for_work(event, until_ms, pace, version, _MOST_CHANGE_CHECK_S)
        if pace < _WAKEUPS_AFTER_S:
            # A fetch that just found work looks at 1, 2, 4 ms first: waiting on the socket
            # costs a task and a descriptor per wait (about 0.2 ms), and busy processes end
            # most waits within those looks.
            pace = await self._watch_for_work(
                event, until_ms, pace, version, _WAKEUPS_AFTER_S, ramp=True
            )
            if pace < _WAKEUPS_AFTER_S:
                return pace  # woken, or the file changed
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._forward_peer_wakeups)
            # Peers wake us; the looks only find the few that cannot (see _sqlite_wake).
            pace = await self._watch_for_work(event, until_ms, pace, version, self._poll_interval)
            tg.cancel_scope.cancel()
        return pace

    async def _watch_for_work(
        self,
        event: anyio.Event,
        until_ms: int,
        pace: float,
        version: int | None,
        most: float,
        *,
        ramp: bool = False,
    ) -> float:
        """Waits like ``_wait_for_work``, minus the peers' wake-ups.

        Looks for other processes' commits (a ``data_version`` other than ``version``) after
        ``pace`` real seconds, then at doubling intervals up to ``most``; returns the pace for
        the caller's next wait, so a fetch that found nothing keeps looking at the same rate
        instead of starting over at 1 ms. With ``ramp``, returns as soon as the pace reaches
        ``most``."""
        if version is None:
            pace = self._poll_interval  # an in-memory database: no other process writes it
        waited = 0.0
        while True:
            step = min(pace, self._poll_interval - waited)
            left_ms = max(until_ms - self._clock.now_ms(), 1)
            woken = False
            with anyio.move_on_after(step) as scope:
                woken = await WorkSignal.wait(self._clock, event, left_ms / 1000)
            waited += step
            if woken or self._db.data_version() != version:
                return _FIRST_CHANGE_CHECK_S  # work may come in a burst: look soon again
            if not scope.cancelled_caught:
                return pace  # the due time (or the poll's end) came: no sign of a burst
            pace = min(pace * 2, most)
            if waited >= self._poll_interval or (ramp and pace >= most):
                return pace


def _expire_locks_txn(conn: sqlite3.Connection, worker_id: str, now: int) -> int:
    return expire_turn_locks_txn(conn, worker_id, now) + expire_activity_locks_txn(
        conn, worker_id, now
    )


def _end_worker_txn(conn: sqlite3.Connection, worker_id: str, now: int) -> int:
    """A runtime whose process died: its locks and sessions end now, and its instances are
    no longer left to it (its memory died with it)."""
    ended = _expire_locks_txn(conn, worker_id, now) + expire_sessions_txn(conn, worker_id, now)
    forget_worker_txn(conn, worker_id)
    return ended


def _skips_read_now(request: FetchActivityRequest) -> FetchActivityRequest:
    """``request`` with its (live) skip set read now, on the event loop: the transaction may
    run on another thread while the runtime changes the set."""
    if not request.skip_activities:
        return request
    return dataclasses.replace(request, skip_activities=tuple(request.skip_activities))


_FIRST_CHANGE_CHECK_S = 0.001
"""How soon a waiting fetch first looks for other processes' commits."""
_WAKEUPS_AFTER_S = 0.008
"""How long (as a look's pace) a fetch waits by looks alone before it also waits on its socket."""
_MOST_CHANGE_CHECK_S = 0.064
"""The longest gap between two looks of a provider without a socket (with one, peers wake it
and the looks stretch to ``poll_interval``): work another process writes to an idle file
waits 32 ms on average. Each look wakes the event loop, 100-250 us of CPU on a small VM, so a
waiting fetch costs about 16 of them a second."""


def _new_token() -> str:
    """A lock token: unique across processes and restarts, not secret. Made under the write
    lock, so it is a random per-process prefix and a counter, not a ``uuid4`` (an OS random
    read and an object for every token)."""
    return f"{_token_prefix}{next(_token_counter):x}"


def _reseed_tokens() -> None:
    global _token_prefix, _token_counter
    _token_prefix = os.urandom(12).hex() + "-"
    _token_counter = itertools.count()


_token_prefix: str
_token_counter: itertools.count[int]
_reseed_tokens()
if hasattr(os, "register_at_fork"):  # a forked child must not repeat its parent's tokens
    os.register_at_fork(after_in_child=_reseed_tokens)
