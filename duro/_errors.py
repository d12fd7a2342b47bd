"""Every exception duro raises, in one tree.

    DuroError
    ├── OrchestrationFailureError        raised *inside* orchestration code, catchable there
    │   ├── ActivityFailedError          an activity raised (after its retries)
    │   ├── SubOrchestrationFailedError  a sub-orchestration ended in failure
    │   └── TaskCancelledError           the awaited task was cancelled (select loser, shutdown)
    ├── NondeterminismError              replay diverged from recorded history
    ├── NonDurableAwaitError             orchestration awaited something that is not durable
    ├── RegistrationError                bad or duplicate registration
    ├── UnregisteredError                a name (and version) the registry does not know
    ├── PayloadError                     a value that cannot be serialised / decoded, or too big
    │   └── CodecError                   a stored payload the provider's codec cannot decode
    │       ├── UnknownKeyError          encrypted under a key id the codec does not hold
    │       └── PayloadAuthenticationError  fails authentication: wrong key or altered data
    ├── InvalidInstanceIdError           instance id empty, too long or with forbidden characters
    ├── InstanceAlreadyExistsError       start of an id that is pending, running or finished
    ├── InstanceNotFoundError            management call on an unknown instance
    ├── InstanceStillRunningError        delete without force of a running instance
    ├── InstanceNotFailedError           rewind of an instance that has not failed
    ├── InvalidScheduleError             a schedule's spec is wrong (also a ValueError)
    │   └── CronSyntaxError              a cron expression that cannot be parsed
    ├── ScheduleNotFoundError            management call on an unknown schedule
    ├── WaitTimeoutError                 a client wait ran out of time (also a TimeoutError)
    └── ProviderError                    storage failed; ``retryable`` says whether to try again
        ├── LockLostError                the lock/lease token is unknown, expired or stolen
        ├── DuplicateEventError          history already has this (instance, execution, event id)
        └── StoreCorruptionError         stored data cannot be decoded

Errors carry structured fields; code never needs to match on message text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._status import ErrorInfo


class DuroError(Exception):
    """Base class of every error raised by duro."""


class OrchestrationFailureError(DuroError):
    """A durable task failed; raised inside orchestration code so it can be caught there."""

    def __init__(self, message: str, *, error: ErrorInfo) -> None:
        super().__init__(message)
        self.error = error

    @property
    def error_type(self) -> str:
        """Name of the original exception type (for example ``"ValueError"``)."""
        return self.error.error_type

    @property
    def error_message(self) -> str:
        """Message of the original exception."""
        return self.error.message


class ActivityFailedError(OrchestrationFailureError):
    """An activity raised; carries the original error type and message.

    ``name`` is the activity name, ``attempts`` how many attempts were made and
    ``heartbeat_details`` what the last one reported with its last heartbeat.
    """

    def __init__(
        self,
        name: str,
        error: ErrorInfo,
        *,
        attempts: int = 1,
        heartbeat_details: bytes | None = None,
    ) -> None:
        # A poison or configuration failure is not an attempt that ran and raised: its message
        # (say, how many deliveries) speaks for itself.
        ran = error.category.value == "application"
        outcome = f"failed after {attempts} attempt(s)" if ran else "could not run"
        super().__init__(
            f"activity {name!r} {outcome}: {error.error_type}: {error.message}", error=error
        )
        self.name = name
        self.attempts = attempts
        self.heartbeat_details = heartbeat_details
        """JSON the failed attempt last passed to ``ActivityContext.heartbeat`` (None:
        none); a retry hands it to the next attempt."""


class SubOrchestrationFailedError(OrchestrationFailureError):
    """A sub-orchestration ended in failure; carries its error."""

    def __init__(self, name: str, instance_id: str, error: ErrorInfo) -> None:
        super().__init__(
            f"sub-orchestration {name!r} ({instance_id}) failed: "
            f"{error.error_type}: {error.message}",
            error=error,
        )
        self.name = name
        self.instance_id = instance_id


class TaskCancelledError(OrchestrationFailureError):
    """The awaited durable task was cancelled before it finished."""


class NondeterminismError(DuroError):
    """Replaying history diverged from what the orchestration code does now.

    ``position`` is the 1-based event id in the execution's history where the mismatch was
    found; ``recorded`` describes what history holds there and ``requested`` what the code
    asked for. Fix the code (or register the change as a new version) and start new instances.
    """

    def __init__(self, instance_id: str, position: int, recorded: str, requested: str) -> None:
        super().__init__(
            f"nondeterminism in instance {instance_id!r} at history position {position}: "
            f"history recorded {recorded}, but the code now requests {requested}. "
            "Orchestration code must make the same durable calls in the same order on replay; "
            "register changed logic as a new version instead."
        )
        self.instance_id = instance_id
        self.position = position
        self.recorded = recorded
        self.requested = requested


class NonDurableAwaitError(DuroError):
    """Orchestration code awaited something that is not a durable future (e.g. asyncio.sleep)."""


class RegistrationError(DuroError):
    """A function could not be registered (duplicate name/version, wrong signature, ...)."""


_DECORATORS = {
    "activity": "@registry.activity",
    "orchestration": "@registry.orchestration",
}


class UnregisteredError(DuroError):
    """The registry has no orchestration or activity under this name (and version)."""

    def __init__(self, kind: str, name: str, version: str | None = None) -> None:
        what = f"{kind} {name!r}" + (f" version {version!r}" if version else "")
        decorator = _DECORATORS.get(kind, "@registry.activity or @registry.orchestration")
        super().__init__(f"{what} is not registered; register it with {decorator}")
        self.kind = kind
        self.name = name
        self.version = version


class PayloadError(DuroError, TypeError):
    """A value could not be serialised or decoded, or exceeds the payload size limit."""


class CodecError(PayloadError):
    """A stored payload could not be decoded by the provider's codec (``duro.Codec``).

    ``instance_id`` names the instance the payload belongs to and ``key_id`` the key it says
    it was encrypted with (None when the payload names none). Raised by reads (status, history,
    KV, listings); a fetched turn or work item whose payloads cannot be decoded is put back for
    a worker that can, and logged, instead of being run.
    """

    def __init__(self, message: str, *, instance_id: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.instance_id = instance_id
        self.key_id = key_id


class UnknownKeyError(CodecError):
    """The payload was encrypted under ``key_id``, which the codec's keys do not include.

    Add the key back (as a decrypt-only key: any id in ``keys`` other than ``active``) on
    every worker and client that reads this store.
    """


class PayloadAuthenticationError(CodecError):
    """The payload fails authentication under ``key_id``: the key registered under that id
    differs from the one that encrypted it, or the stored bytes were altered or copied from
    another instance. Never decrypted to garbage: nothing of it is returned."""


class InvalidInstanceIdError(DuroError, ValueError):
    """An instance id is empty, too long, or contains characters stores cannot key on."""


class InstanceAlreadyExistsError(DuroError):
    """``start_orchestration`` for an id that already exists (pending, running or finished)."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(
            f"instance {instance_id!r} already exists; delete it first or choose another id"
        )
        self.instance_id = instance_id


class InstanceNotFoundError(DuroError):
    """A management call named an instance the store does not have."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(f"instance {instance_id!r} not found")
        self.instance_id = instance_id


class InstanceStillRunningError(DuroError):
    """The operation needs a finished instance: deleting a running one needs ``force=True``;
    restarting one in place waits until it finished."""

    def __init__(
        self, instance_id: str, what_to_do: str = "cancel it first or pass force=True"
    ) -> None:
        super().__init__(f"instance {instance_id!r} is still running; {what_to_do}")
        self.instance_id = instance_id


class InstanceNotFailedError(DuroError):
    """``rewind_orchestration`` for an instance that has not failed (only a FAILED instance
    can be rewound)."""

    def __init__(self, instance_id: str, state: str) -> None:
        super().__init__(
            f"instance {instance_id!r} is {state}, not failed: only a failed instance can be "
            "rewound (restart_orchestration runs a completed one again)"
        )
        self.instance_id = instance_id
        self.state = state


class InvalidScheduleError(DuroError, ValueError):
    """``Client.create_schedule`` was given a spec that cannot work (both or neither of
    ``every`` and ``cron``, a non-positive interval, ``end_at`` before ``start_at``, an
    unknown orchestration or overlap policy). ``problem`` says which, in words."""

    def __init__(self, schedule_id: str, problem: str) -> None:
        super().__init__(f"schedule {schedule_id!r}: {problem}")
        self.schedule_id = schedule_id
        self.problem = problem


class CronSyntaxError(InvalidScheduleError):
    """A cron expression cannot be parsed. ``expression`` is the whole expression,
    ``field`` the field at fault (``"minute"``, ``"hour"``, ``"day of month"``, ``"month"``,
    ``"day of week"``, or ``"expression"`` for its overall shape) and ``problem`` what is
    wrong with it."""

    def __init__(self, expression: str, field: str, problem: str, schedule_id: str = "") -> None:
        DuroError.__init__(
            self,
            f"invalid cron expression {expression!r}: {field}: {problem} "
            "(five fields: minute hour day-of-month month day-of-week, in UTC)",
        )
        self.schedule_id = schedule_id
        self.expression = expression
        self.field = field
        self.problem = problem


class ScheduleNotFoundError(DuroError):
    """A schedule management call named a schedule the store does not have."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"schedule {schedule_id!r} not found")
        self.schedule_id = schedule_id


class InstanceFinishedError(DuroError):
    """An event, mailbox message or cancellation for an instance that has already ended:
    nothing would ever receive it."""

    def __init__(self, instance_id: str, state: str, what: str) -> None:
        super().__init__(
            f"instance {instance_id!r} already {state}; {what} reach only a pending or "
            "running instance"
        )
        self.instance_id = instance_id
        self.state = state


class WaitTimeoutError(DuroError, TimeoutError):
    """A client wait ran out of time before the instance reached the awaited state."""


class ProviderError(DuroError):
    """The store failed. ``retryable`` tells the runtime whether trying again may succeed."""

    def __init__(self, operation: str, message: str, *, retryable: bool) -> None:
        kind = "retryable" if retryable else "permanent"
        super().__init__(f"{operation}: {message} ({kind})")
        self.operation = operation
        self.message = message
        self.retryable = retryable


class LockLostError(ProviderError):
    """The lock token is unknown, released or was taken over; the caller's work is void."""

    def __init__(
        self, operation: str, message: str = "lock token is unknown or taken over"
    ) -> None:
        super().__init__(operation, message, retryable=False)


class StoreLostError(ProviderError):
    """The store a runtime was using is gone (its database file was removed or replaced).

    Nothing written since can be trusted to last, so nothing is acknowledged: the runtime
    stops and ``Runtime.run`` (or ``async with runtime``) raises this error."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(operation, message, retryable=False)


class DuplicateEventError(ProviderError):
    """A commit tried to append an event id the history already has."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(operation, message, retryable=False)


class StoreCorruptionError(ProviderError):
    """Stored data could not be decoded."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(operation, message, retryable=False)
