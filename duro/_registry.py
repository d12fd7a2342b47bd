"""The registry: which orchestrations (by name and version) and activities a worker runs."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from ._errors import RegistrationError, UnregisteredError
from ._versions import ACCEPTED, VersionKey, version_key

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_VERSION = "1.0.0"
_RESERVED_PREFIX = "duro:"


@dataclass(frozen=True, slots=True)
class Registered:
    """One registered function and the types its payloads decode to."""

    name: str
    version: str
    fn: Callable[..., Any]
    input_type: Any
    output_type: Any
    is_async: bool
    takes_input: bool


def _signature_types(fn: Callable[..., Any], kind: str) -> tuple[Any, Any, bool]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise RegistrationError(f"cannot inspect {kind} {fn!r}: {exc}") from exc
    params = list(sig.parameters.values())
    if not params or len(params) > 2:
        raise RegistrationError(
            f"{kind} {getattr(fn, '__qualname__', fn)!r} must take (ctx) or (ctx, input)"
        )
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to untyped payloads
        hints = {}
    input_type = hints.get(params[1].name, Any) if len(params) == 2 else Any
    output_type = hints.get("return", Any)
    if output_type is type(None):
        output_type = Any
    return input_type, output_type, len(params) == 2


def _checked_version(name: str, version: str) -> VersionKey:
    try:
        return version_key(version)
    except ValueError:
        raise RegistrationError(
            f"orchestration {name!r} version {version!r} cannot be ordered against other "
            f"versions; use {ACCEPTED}"
        ) from None


class Registry:
    """Orchestrations and activities known to a worker.

    ``@registry.activity`` and ``@registry.orchestration`` register under the function name
    (or ``name=``); orchestrations may be registered under several ``version=`` values. New
    instances start on the latest version (PEP 440 or semantic-versioning order, pre-releases
    before their release); running instances keep the version they started on.
    """

    def __init__(self) -> None:
        self._orchestrations: dict[str, dict[str, Registered]] = {}
        self._activities: dict[str, Registered] = {}
        self._names: dict[Callable[..., Any], str] = {}
        self._version_keys: dict[tuple[str, str], VersionKey] = {}

    # -- registration --------------------------------------------------------------------------

    @overload
    def activity(self, fn: F, /) -> F: ...
    @overload
    def activity(self, fn: None = None, /, *, name: str | None = None) -> Callable[[F], F]: ...

    def activity(self, fn: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
        """Register an activity: ``async def`` or plain ``def`` taking ``(ctx, input)``."""

        def register(f: F) -> F:
            act_name = self._check_name(name or f.__name__, "activity")
            if act_name in self._activities:
                raise RegistrationError(f"activity {act_name!r} is already registered")
            input_type, output_type, takes_input = _signature_types(f, "activity")
            self._activities[act_name] = Registered(
                act_name,
                DEFAULT_VERSION,
                f,
                input_type,
                output_type,
                inspect.iscoroutinefunction(f),
                takes_input,
            )
            self._names[f] = act_name
            return f

        return register(fn) if fn is not None else register

    @overload
    def orchestration(self, fn: F, /) -> F: ...
    @overload
    def orchestration(
        self, fn: None = None, /, *, name: str | None = None, version: str | None = None
    ) -> Callable[[F], F]: ...

    def orchestration(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        version: str | None = None,
    ) -> Any:
        """Register an orchestration: ``async def f(ctx, input)``, optionally versioned."""

        def register(f: F) -> F:
            if not inspect.iscoroutinefunction(f):
                raise RegistrationError(
                    f"orchestration {f.__qualname__!r} must be an async def function"
                )
            orch_name = self._check_name(name or f.__name__, "orchestration")
            ver = version or DEFAULT_VERSION
            key = _checked_version(orch_name, ver)
            versions = self._orchestrations.setdefault(orch_name, {})
            same = next((v for v in versions if self._version_keys[orch_name, v] == key), None)
            if same is not None:
                again = "already registered" if same == ver else f"the same as {same!r}"
                raise RegistrationError(f"orchestration {orch_name!r} version {ver!r} is {again}")
            input_type, output_type, takes_input = _signature_types(f, "orchestration")
            versions[ver] = Registered(
                orch_name, ver, f, input_type, output_type, True, takes_input
            )
            self._version_keys[orch_name, ver] = key
            self._names[f] = orch_name
            return f

        return register(fn) if fn is not None else register

    def _copy(self) -> Registry:
        """An independent registry with the same registrations (tests change the copy)."""
        copy = Registry()
        copy._orchestrations = {name: dict(v) for name, v in self._orchestrations.items()}
        copy._activities = dict(self._activities)
        copy._names = dict(self._names)
        copy._version_keys = dict(self._version_keys)
        return copy

    def _replace_activity(self, name: str, fn: Callable[..., Any]) -> None:
        """Run ``fn`` wherever activity ``name`` is scheduled (payload types stay the
        original's, so the orchestration decodes the same values); registers ``name`` if it
        was not."""
        input_type, output_type, takes_input = _signature_types(fn, "activity")
        original = self._activities.get(name)
        if original is not None:
            input_type, output_type = original.input_type, original.output_type
        self._activities[name] = Registered(
            name,
            DEFAULT_VERSION,
            fn,
            input_type,
            output_type,
            inspect.iscoroutinefunction(fn),
            takes_input,
        )

    @staticmethod
    def _check_name(name: str, kind: str) -> str:
        if not name or not isinstance(name, str):
            raise RegistrationError(f"{kind} name must be a non-empty string")
        if name.startswith(_RESERVED_PREFIX):
            raise RegistrationError(f"{kind} names starting with {_RESERVED_PREFIX!r} are reserved")
        return name

    # -- lookup --------------------------------------------------------------------------------

    def name_of(self, target: str | Callable[..., Any], kind: str = "function") -> str:
        """The registered name of a function, or the string itself.

        ``UnregisteredError`` for a function registered nowhere; ``kind`` ("activity",
        "orchestration") says what the caller expected it to be, for the error's hint.
        """
        if isinstance(target, str):
            return target
        name = self._names.get(target)
        if name is None:
            raise UnregisteredError(kind, getattr(target, "__qualname__", repr(target)))
        return name

    def knows(self, target: Callable[..., Any]) -> bool:
        """Whether ``target`` was registered here (as an activity or orchestration)."""
        return target in self._names

    def get_activity(self, name: str) -> Registered | None:
        """The activity registered under ``name``, or None."""
        return self._activities.get(name)

    def get_orchestration(self, name: str, version: str | None = None) -> Registered | None:
        """Exact version, or the latest when ``version`` is None. Built-in orchestrations
        (``duro:schedule``) resolve in every registry."""
        versions = self._orchestrations.get(name)
        if not versions:
            builtin = _builtin_orchestrations().get(name)
            return builtin if builtin is not None and version in (None, DEFAULT_VERSION) else None
        if version is None:
            return versions[max(versions, key=lambda v: self._version_keys[name, v])]
        return versions.get(version)

    def has_orchestration(self, name: str) -> bool:
        """Whether some version of orchestration ``name`` is registered (or built in)."""
        return name in self._orchestrations or name in _builtin_orchestrations()

    @property
    def activity_names(self) -> list[str]:
        """Registered activity names, sorted."""
        return sorted(self._activities)

    @property
    def orchestration_names(self) -> list[str]:
        """Registered orchestration names, sorted."""
        return sorted(self._orchestrations)


@functools.cache
def _builtin_orchestrations() -> dict[str, Registered]:
    """The orchestrations duro runs itself, under reserved ``duro:`` names; imported late
    because they are written against the engine, which imports this module."""
    from ._schedules._orchestration import run_schedule
    from ._schedules._spec import SCHEDULE_ORCHESTRATION, ScheduleState

    schedule = Registered(
        SCHEDULE_ORCHESTRATION, DEFAULT_VERSION, run_schedule, ScheduleState, Any, True, True
    )
    return {SCHEDULE_ORCHESTRATION: schedule}
