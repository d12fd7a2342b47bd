"""Instance states, error details and the status snapshot the client returns."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

T = TypeVar("T")
if TYPE_CHECKING:
    # A default, so a bare ``OrchestrationStatus`` means ``OrchestrationStatus[Any]`` (PEP 696;
    # typing has it from 3.13). Type checkers read typing_extensions from their own stubs.
    from typing_extensions import TypeVar as DefaultedTypeVar

    Output = DefaultedTypeVar("Output", default=Any)
else:
    Output = TypeVar("Output")


class State(enum.Enum):
    """Lifecycle state of an orchestration instance."""

    PENDING = "pending"
    """Started by a client but no turn has run yet."""
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    """Ended in failure; ``status.error.category`` tells application, cancelled, ..."""
    NOT_FOUND = "not_found"

    @property
    def is_terminal(self) -> bool:
        return self in (State.COMPLETED, State.FAILED)


class ExecutionStatus(enum.Enum):
    """Status of one execution (continue-as-new starts a new execution of the same instance)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CONTINUED_AS_NEW = "continued_as_new"

    @property
    def is_terminal(self) -> bool:
        return self is not ExecutionStatus.RUNNING

    @property
    def commits_kv(self) -> bool:
        """Whether an execution ending with this status merges its KV writes into the
        instance's committed KV, the snapshot later executions start from (completed,
        continued as new). A failed execution's writes stay apart: client reads still see
        them, and a rewind replays from the KV the execution started with."""
        return self is ExecutionStatus.COMPLETED or self is ExecutionStatus.CONTINUED_AS_NEW

    def instance_state(self) -> State:
        """The instance state this execution status shows to clients."""
        if self is ExecutionStatus.COMPLETED:
            return State.COMPLETED
        if self is ExecutionStatus.FAILED:
            return State.FAILED
        return State.RUNNING


class ErrorCategory(enum.Enum):
    """Why an instance (or a step) failed, for deciding what to do about it."""

    APPLICATION = "application"
    """User code raised."""
    CONFIGURATION = "configuration"
    """Nondeterminism, unregistered names, non-durable awaits: fix the code or registration."""
    INFRASTRUCTURE = "infrastructure"
    """The store failed or a message was poison (delivered too many times)."""
    CANCELLED = "cancelled"
    """The instance (or its parent) was cancelled."""


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Persisted description of a failure."""

    category: ErrorCategory
    error_type: str
    """Original exception type name, or a duro error kind (``"NondeterminismError"``)."""
    message: str
    retryable: bool = True
    """Whether a retry policy may retry it (False for ``non_retryable`` types)."""
    details: str | None = None
    """Traceback or structured details, for humans."""

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def decode_payload(raw: bytes | None, type_: Any = Any) -> Any:
    """Decode stored JSON ``raw`` as ``type_`` (builtins when ``Any``)."""
    if raw is None:
        return None
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders.setdefault(type_, msgspec.json.Decoder(type_))
    return decoder.decode(raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationStatus(Generic[Output]):
    """A snapshot of one instance, as read by ``Client.get_status``.

    Generic in the output type: ``Client.wait_for_orchestration(id, output_type=Receipt)``
    returns an ``OrchestrationStatus[Receipt]`` whose ``output`` is a ``Receipt``.
    """

    instance_id: str
    state: State
    name: str | None = None
    version: str | None = None
    execution_id: int = 0
    output_json: bytes | None = None
    """The raw JSON output; ``output`` decodes it."""
    error: ErrorInfo | None = None
    custom_status_json: bytes | None = None
    custom_status_version: int = 0
    parent_instance_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    output_type: Any = field(default=Any, repr=False, compare=False)
    """What ``output`` decodes into (builtins unless the caller asked for a type)."""

    @property
    def output(self) -> Output:
        """The orchestration's return value decoded as ``output_type``; None unless the
        instance has completed."""
        value: Output = decode_payload(self.output_json, self.output_type)
        return value

    def output_as(self, type_: type[T]) -> T:
        """The output decoded into ``type_`` (a Struct, dataclass, ...)."""
        value: T = decode_payload(self.output_json, type_)
        return value

    @property
    def custom_status(self) -> Any:
        """The last value passed to ``ctx.set_custom_status``, decoded to builtins."""
        return decode_payload(self.custom_status_json)

    @property
    def is_terminal(self) -> bool:
        """Whether the instance has completed or failed."""
        return self.state.is_terminal


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionInfo:
    """One execution of an instance, as ``Client.list_executions`` returns it: the first
    execution, then one more per ``continue_as_new`` or restart."""

    execution_id: int
    status: ExecutionStatus
    started_at: datetime
    completed_at: datetime | None = None
    """None while it runs."""
    event_count: int = 0
    """Events in its history (``Client.get_history(instance_id, execution_id)``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KvValue:
    """One KV entry of an instance with its time, as ``Client.get_values(...,
    with_updated_at=True)`` returns it."""

    value: Any
    """Decoded to builtins."""
    updated_at: datetime
    """When the orchestration last set it (the time of that turn)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceTree:
    """An instance and its sub-orchestrations, recursively (``Client.get_instance_tree``)."""

    status: OrchestrationStatus[Any]
    children: list[InstanceTree] = field(default_factory=list)
    """Direct sub-orchestrations, oldest first, each with its own children."""

    def walk(self) -> list[OrchestrationStatus[Any]]:
        """Every instance of the tree, depth first, this one first."""
        found = [self.status]
        for child in self.children:
            found.extend(child.walk())
        return found
