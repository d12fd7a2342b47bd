"""The provider contract: storage for instances, history, two peek-lock queues, sessions and KV.

The runtime owns every orchestration semantic (event ids, execution ids, replay, what to
schedule); a provider is storage with precise atomicity. Reading guide:

* **Who generates ids.** The runtime assigns event ids, execution ids, activity ``seq`` numbers
  and instance ids. The provider generates lock tokens only (unique per fetch; a UUID4 is fine).
* **Locks.** Orchestrations are locked per *instance* (one holder; the lock expires after
  ``lock_timeout`` unless renewed; an expired lock may be taken over by the next fetch, which
  re-tags every visible message). Activity work items are locked per *item*. Expiry only lets
  others take over: the token is the fence. A token that was taken over, released or whose
  item is gone fails every operation that takes it with ``LockLostError``; an expired token
  nobody took over still commits, completes, abandons and renews (so a holder whose event
  loop stalled past its lease does not lose finished work that nobody else started).
* **Errors.** Every method raises ``ProviderError`` (or a subclass) with ``retryable`` set:
  busy/locked database, timeouts, throttling and network errors are retryable; bad tokens,
  duplicate events, corruption and invalid input are permanent. A method that returns a locked
  item never raises after taking the lock: it returns the item (``history_error`` set if the
  history cannot be decoded) so the caller can commit or abandon it.
* **Visibility.** Every queue message has a visible-at time; fetches only see messages whose
  time has come (``clock.now_ms()`` of the provider's clock). Timers are ordinary orchestrator
  messages with a future visible-at.
* **Instance creation.** Instances come into existence only through a committed turn.
  ``start_instance`` only enqueues the start message (and refuses duplicates, unless asked
  otherwise).
* **Payloads** (``msgspec.Raw`` fields, output, custom status, KV values) are stored as given.
  A store with a payload codec encodes and decodes them in its public methods only, through
  ``CodecBoundary`` (``_boundary.py``); everything below sees the encoded form.

The shared contract suite in ``duro.testing.ProviderContract`` pins all of this down.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import ClassVar, Self, TypeVar

import anyio

from .._errors import ProviderError
from .._history import HistoryEvent
from .._messages import StartOrchestrationMessage
from .._status import State
from ._types import (
    LISTED_STATES,
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

_Request = TypeVar("_Request", FetchTurnRequest, FetchActivityRequest)
_Item = TypeVar("_Item", OrchestrationWorkItem, ActivityWorkItem)


class Provider(abc.ABC):
    """Abstract storage backend. Construction must do no blocking I/O; open lazily."""

    name: str = "provider"

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect and create the schema if needed. Idempotent; every method opens lazily."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Idempotent. The provider may be reopened by using it again."""

    async def runtime_started(self, worker_id: str) -> None:  # noqa: B027 - optional hook
        """A runtime (``RuntimeOptions.worker_id``) starts dispatching from this store.

        A store that shares work out among the runtimes using it joins them here; called after
        :meth:`open`, before the runtime's first fetch. A worker id names one live process, so
        a store may also end the locks still held under ``worker_id`` at once: they belong to
        an earlier run of it that crashed (their tokens still fence, see Locks above).
        """

    async def runtime_stopped(self, worker_id: str) -> None:  # noqa: B027 - optional hook
        """That runtime stopped (after its last commit): a store that shares work out hands
        the runtime's share to the others now, not when it notices the silence. Called even
        when the store stays open for other users."""

    async def maintain(self) -> float | None:
        """Background upkeep while a runtime runs (a store's heartbeats, for example).

        The runtime calls it once started, and again after the number of seconds it returns,
        whatever its fetches are doing; None: no upkeep, never call again. Errors are logged
        and the call is retried after a second.
        """
        return None

    async def instance_notices(self) -> list[InstanceNotice]:
        """Wait for word that other processes committed turns of some instances.

        A client calls it while it waits for an instance (``Client.wait_for_orchestration``
        and the other waits), so a turn committed by a runtime in another process wakes the
        waiter at once instead of at its next poll; a runtime in the waiter's own process
        wakes it without the store. Returns once there is word, possibly about instances
        nobody here waits for. Word is a hint: it may be late or lost, and the waiter reads
        the instance from the store either way. The default never returns (a store without
        such word: the waits only poll).
        """
        await anyio.sleep_forever()
        return []

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- client side: starting and signalling --------------------------------------------------

    @abc.abstractmethod
    async def start_instance(self, request: StartRequest) -> StartOutcome:
        """Enqueue ``request.start`` (visible now) unless the instance exists, then
        ``request.messages``; all in one atomic step (all of it or nothing).

        The instance *exists* if it has a committed turn (any state) or a queued
        ``StartOrchestrationMessage``. When it exists, ``request.if_exists`` decides:

        * ``"fail"``: raise ``InstanceAlreadyExistsError`` and enqueue nothing;
        * ``"use_existing"``: enqueue only the messages; ``StartOutcome.EXISTING``;
        * ``"restart_if_finished"``: if its current execution is COMPLETED or FAILED and no
          start is queued for it, enqueue the start and the messages and make the record read
          as PENDING (``state`` PENDING, ``execution_status`` None, ``execution_id`` still the
          finished execution's) until the next commit for it; ``StartOutcome.RESTARTED``.
          Otherwise raise ``InstanceAlreadyExistsError``.

        A restarted instance's next turn commits a new execution (the finished one's id plus
        one), as a continue-as-new does. Does not create the instance.
        """

    async def start_orchestration(self, start: StartOrchestrationMessage) -> None:
        """``start_instance`` with its defaults: enqueue ``start``, or raise
        ``InstanceAlreadyExistsError`` if the instance exists."""
        await self.start_instance(StartRequest(start=start))

    @abc.abstractmethod
    async def enqueue_orchestrator_message(self, message: ScheduledMessage) -> None:
        """Insert one orchestrator-queue message (events, cancellations, test injection).

        Never creates the instance. A message for an instance that does not exist yet is
        still stored (it may be started later); ``fetch_turns`` decides its fate.
        """

    # -- orchestration turns -------------------------------------------------------------------

    @abc.abstractmethod
    async def fetch_turns(self, request: FetchTurnRequest) -> list[OrchestrationWorkItem]:
        """Lock up to ``request.max_items`` instances that have visible messages, each with its
        own fresh token and batch; ``[]`` when there is no work.

        Per instance, in one atomic step:

        * pick instances with at least one visible message and no live lock, in the order
          their first visible message became visible;
        * take the instance lock for ``request.lock_timeout`` seconds, tag every currently
          visible message of the instance with the token and increment each one's delivery
          count. Messages arriving later are not in the batch and stay queued for the next
          turn;
        * load the instance record, the current execution's history (by event id) and the KV
          snapshot. When ``request.cached_histories`` holds the instance's current execution
          and event count, the store may leave history and KV out and set
          ``history_omitted`` (an optional optimisation);
        * an instance never started (no committed turn and no ``StartOrchestrationMessage``
          in its batch) is left unlocked and skipped, so its messages cannot starve others;
          its ``EnqueueEventMessage`` and ``CancelOrchestrationMessage`` messages may be
          dropped, all others stay queued for a later start;
        * a history that cannot be decoded still returns the item, with ``history_error`` set
          and an empty history (lock held, delivery counted).

        With no work, may wait up to ``request.poll_timeout`` seconds for some (long polling)
        and must return promptly after that.
        """

    @abc.abstractmethod
    async def commit_turns(self, commits: Sequence[TurnCommit]) -> list[ProviderError | None]:
        """Apply each turn's changes atomically on its own: all of a commit or nothing of it.

        Returns, per commit and in order, None or the ``ProviderError`` it failed with; a
        failing commit changes nothing and does not undo the others. An error raised instead
        means none was applied. Each commit, in one transaction guarded by its instance lock
        (``LockLostError`` if the token is unknown, released or taken over; nothing is applied
        and a still-held lock stays held):

        1. delete the messages tagged with this token (later arrivals stay);
        2. create or update the instance record from ``changes``: name, version, parent
           (immutable once set), current execution id, execution status, output/error,
           ``updated_at``; a new execution id creates a new execution. The changes carry the
           execution's full state, not a delta;
        3. append ``new_events`` to ``(instance_id, execution_id)``: never read, decode or
           rewrite stored events; a duplicate event id fails the whole commit with
           ``DuplicateEventError``;
        4. custom status: if ``custom_status_changed``, store it and bump its version by one;
        5. KV: ``kv_clear_all`` then ``kv_changes`` go to the current execution's delta;
           when the execution completes or continues as new (``ExecutionStatus.commits_kv``)
           the delta is merged into the committed KV and emptied. A failed execution's delta
           stays apart (client reads show it; a rewind clears and rewrites it), so the
           committed KV remains the snapshot the execution started from. A restart's first
           commit (the record was restarting and the commit opens the next execution) drops
           the committed KV and the delta before it writes. Entries keep the
           ``updated_at_ms`` their change carries; values are stored byte for byte;
        6. insert ``activity_tasks`` into the worker queue (visible now), then withdraw the
           work items of ``cancelled_activities`` (this execution's seq numbers; missing ones
           are ignored);
        7. insert ``orchestrator_messages`` for whichever instances they target;
        8. release the lock.
        """

    async def commit_turns_and_fetch_activities(
        self, commits: Sequence[TurnCommit], fetch: FetchActivityRequest
    ) -> tuple[list[ProviderError | None], list[ActivityWorkItem]]:
        """``commit_turns``, then ``fetch_activities`` without waiting (``poll_timeout`` is
        ignored): how the runtime hands the activities its turns just scheduled straight to
        its own worker pool, when :attr:`fetches_with_commits` is set.

        The fetch follows every rule of ``fetch_activities`` and sees the commits' work items.
        Its failure never undoes the commits: the default then returns no items. A store that
        does both in one transaction saves the worker a round trip per turn.
        """
        results = await self.commit_turns(commits)
        return results, await self._fetch_quietly(self.fetch_activities, fetch)

    async def complete_activities_and_fetch_turns(
        self, commits: Sequence[ActivityCommit], fetch: FetchTurnRequest
    ) -> tuple[list[ProviderError | None], list[OrchestrationWorkItem]]:
        """``complete_activities``, then ``fetch_turns`` without waiting: the completions'
        instances come back locked for their next turn in the same round trip (when the
        store does both in one transaction). Same rules as the pair of calls it replaces."""
        results = await self.complete_activities(commits)
        return results, await self._fetch_quietly(self.fetch_turns, fetch)

    fetches_with_commits: ClassVar[bool] = False
    """Whether the runtime should use the two ``..._and_fetch_...`` methods above. Worth it
    for a store that does the commit and the fetch in one transaction (SQLite, in-memory);
    a remote store whose fetch is an extra query per commit batch leaves it off."""

    @staticmethod
    async def _fetch_quietly(
        fetch: Callable[[_Request], Awaitable[list[_Item]]], request: _Request
    ) -> list[_Item]:
        try:
            return await fetch(dataclasses.replace(request, poll_timeout=0.0))
        except ProviderError:
            return []  # the fetch loops find the work later

    @abc.abstractmethod
    async def abandon_turn(self, request: AbandonRequest) -> None:
        """Release the lock without committing; messages become visible after ``delay``.

        Every message of the instance that would become visible before now + ``delay``
        (arrivals during the turn included) becomes visible at now + ``delay``; later ones
        (timers) keep their time. ``undo_delivery_count`` undoes this delivery's increment.
        Unknown, released or taken-over token: ``LockLostError``.
        """

    @abc.abstractmethod
    async def renew_turn_lock(self, request: RenewRequest) -> None:
        """Extend the instance lock to now + ``extend_for`` (even if it expired, unless taken
        over); ``LockLostError`` if the token is unknown, released or taken over."""

    # -- activity work items -------------------------------------------------------------------

    @abc.abstractmethod
    async def fetch_activities(self, request: FetchActivityRequest) -> list[ActivityWorkItem]:
        """Lock up to ``request.max_items`` visible, unlocked (or lock-expired) work items the
        filters accept, oldest first, each with its own token; ``[]`` when nothing qualifies.

        Increments each one's delivery count. Session routing: without ``session_owner``
        only items without a session qualify; with it, also items whose session is owned by
        that owner or has no live owner, and taking such an item claims (or renews) the
        session for ``session_lock_timeout`` in the same atomic step. Does not check whether
        the orchestration still runs. May long-poll up to ``poll_timeout``.
        """

    @abc.abstractmethod
    async def complete_activities(
        self, commits: Sequence[ActivityCommit]
    ) -> list[ProviderError | None]:
        """Per commit, atomically delete its locked item and enqueue ``commit.result`` (if any).

        Returns, per commit and in order, None or the ``ProviderError`` it failed with (one
        failing commit does not undo the others); an error raised instead means none was
        applied. ``LockLostError`` (and nothing enqueued) when the item was withdrawn, another
        fetch took it over or the token is unknown: this is how a worker learns its result is
        no longer wanted. Refreshes the session's last-activity time.
        """

    @abc.abstractmethod
    async def abandon_activity(self, request: AbandonRequest) -> None:
        """Unlock the item; visible again after ``delay``.

        ``undo_delivery_count`` undoes this delivery's increment. Unknown token:
        ``LockLostError``.
        """

    @abc.abstractmethod
    async def renew_activity_lock(self, request: RenewRequest) -> None:
        """Extend the item lock (even if it expired, unless taken over); ``LockLostError`` if
        withdrawn or taken over (= cancellation).

        Refreshes the session's last-activity time, like ``complete_activities``.
        """

    # -- one item at a time (conveniences built on the batch methods) ----------------------------

    async def fetch_turn(self, request: FetchTurnRequest) -> OrchestrationWorkItem | None:
        """``fetch_turns`` for one instance: its batch, or None."""
        items = await self.fetch_turns(dataclasses.replace(request, max_items=1))
        return items[0] if items else None

    async def commit_turn(self, commit: TurnCommit) -> None:
        """``commit_turns`` for one commit, raising the error it failed with."""
        [error] = await self.commit_turns([commit])
        if error is not None:
            raise error

    async def fetch_activity(self, request: FetchActivityRequest) -> ActivityWorkItem | None:
        """``fetch_activities`` for one work item: it, or None."""
        items = await self.fetch_activities(dataclasses.replace(request, max_items=1))
        return items[0] if items else None

    async def complete_activity(self, commit: ActivityCommit) -> None:
        """``complete_activities`` for one commit, raising the error it failed with."""
        [error] = await self.complete_activities([commit])
        if error is not None:
            raise error

    # -- sessions ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def renew_sessions(self, request: SessionRenewal) -> int:
        """Extend live sessions of these owners whose last activity is later than
        now - ``idle_timeout``.

        Idle sessions are not renewed so they expire. Returns how many were renewed.
        """

    @abc.abstractmethod
    async def cleanup_orphaned_sessions(self, idle_timeout: float) -> int:
        """Delete expired sessions that no work item references; returns how many.

        ``idle_timeout`` is advisory (a store may also sweep sessions idle that long).
        """

    # -- reads ---------------------------------------------------------------------------------

    @abc.abstractmethod
    async def read_instance(self, instance_id: str) -> InstanceRecord | None:
        """The instance record; a PENDING record for a pending start; None if unknown."""

    @abc.abstractmethod
    async def read_history(
        self, instance_id: str, execution_id: int | None = None
    ) -> list[HistoryEvent]:
        """One execution's events by event id (default: the current one); [] if unknown."""

    @abc.abstractmethod
    async def read_executions(self, instance_id: str) -> list[ExecutionRecord]:
        """Every stored execution with its status, times and event count, ascending by id;
        [] if unknown (or only pending). Pruned executions are gone."""

    async def list_executions(self, instance_id: str) -> list[int]:
        """Stored execution ids, ascending; [] if unknown (``read_executions``' ids)."""
        return [record.execution_id for record in await self.read_executions(instance_id)]

    @abc.abstractmethod
    async def get_kv_value(self, instance_id: str, key: str) -> KvEntry | None:
        """Merged read: the current execution's delta over the committed KV; None if absent
        or the instance is unknown."""

    @abc.abstractmethod
    async def get_kv_items(self, instance_id: str) -> dict[str, KvEntry]:
        """Every key of the merged KV view; {} for an unknown instance."""

    async def get_kv_snapshot(self, instance_id: str) -> dict[str, KvEntry]:
        """The committed KV alone, without the current execution's delta: what a running or
        failed execution started from and replays from (an execution that completed or
        continued as new has merged its writes into it). {} for an unknown instance. History
        exports carry it. The default returns ``get_kv_items``, which is the same only while
        no delta is pending: stores override it."""
        return await self.get_kv_items(instance_id)

    # -- management ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def list_instances(self, query: InstanceQuery) -> InstancePage:
        """Instances matching ``query``, newest first, paged by an opaque continuation.

        Pending starts are listed as PENDING records. Time bounds are
        ``created_after_ms < created_at_ms < created_before_ms`` and
        ``completed_at_ms < completed_before_ms`` (a running instance has no completion
        time); ``instance_id_prefix`` keeps ids that start with it. A page's cost must not
        grow with the store (views poll it): read about ``limit`` records from an index, never
        every match. The continuation is a position, not an offset: instances created or
        deleted meanwhile never cause duplicates or gaps, so a caller may delete what it
        lists while it pages.
        """

    async def count_instances(self, query: InstanceCountQuery) -> InstanceCounts:
        """How many instances are in each state, counting no state past ``query.at_most``.

        Pending starts count as PENDING. A read with no atomicity across states: each count is
        right as of some moment during the call. Its cost must not grow with the store beyond
        ``at_most`` entries per state (an index walk, a server-side count), because views poll
        it. This default pages through ``list_instances``, reading up to ``at_most + 1``
        records per state; a store overrides it with a count that reads no records.
        """
        counts: dict[State, int] = {}
        capped: set[State] = set()
        for state in LISTED_STATES:
            found = 0
            continuation: str | None = None
            while found <= query.at_most:
                page = await self.list_instances(
                    InstanceQuery(
                        states=frozenset({state}),
                        limit=min(1000, query.at_most + 1 - found),
                        continuation=continuation,
                    )
                )
                found += len(page.instances)
                continuation = page.continuation
                if continuation is None:
                    break
            if found > query.at_most:
                capped.add(state)
            counts[state] = min(found, query.at_most)
        return InstanceCounts(counts=counts, capped=frozenset(capped))

    @abc.abstractmethod
    async def list_children(self, instance_id: str) -> list[str]:
        """Direct sub-orchestrations (by parent link); [] for a leaf or unknown instance."""

    @abc.abstractmethod
    async def delete_instance(self, request: DeleteRequest) -> DeleteResult:
        """Delete an instance and all its descendants atomically.

        A pending start counts as a running instance (``force`` removes the start).

        ``InstanceNotFoundError`` if unknown. Without ``force`` any running instance in the
        tree raises ``InstanceStillRunningError`` and nothing is deleted. Removes history,
        executions, queued messages, work items, locks, KV and the records, so a turn still in
        flight for a deleted instance fails its commit (its lock is gone).
        """

    @abc.abstractmethod
    async def prune_executions(self, request: PruneRequest) -> PruneResult:
        """Delete old, finished executions and their history; never the current one.

        Keeps the ``keep_last`` newest executions (current included); with
        ``completed_before_ms`` only older completions go. ``InstanceNotFoundError`` if unknown;
        a pending start has nothing to prune.
        """

    @abc.abstractmethod
    async def queue_depths(self) -> QueueDepths:
        """Counts of queued messages (see ``QueueDepths``)."""
