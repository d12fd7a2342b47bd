"""How many index terms a document adds under a container's indexing policy (for the RU meter).

Cosmos DB charges a write more the more of the document it has to index ("Request Units in
Azure Cosmos DB": *item property count* and *indexed properties*; "Indexing policies": excluding
paths lowers the write charge). The meter prices that with one term per indexed scalar, so it
needs to know, per document, how many scalar leaves the policy indexes.

The policy semantics modelled (from the "Indexing policies" page):

* ``indexingMode: "none"`` (or ``automatic: false``) indexes nothing;
* a path pattern is ``/a/b/?`` (the scalar at exactly that path), ``/a/*`` (everything at and
  under ``/a``) or ``/*`` (the whole document); ``[]`` stands for any array index and a
  quoted segment (``/"_etag"/?``) is a literal name;
* when an included and an excluded path both match, the more precise (longer) one wins; at
  equal length ``?`` is more precise than ``*``, and an exclusion wins a full tie;
* the default policy includes ``/*`` and excludes ``/"_etag"/?``.

System properties (``_rid``, ``_self``, ``_etag``, ``_ts``, ``_attachments``) are not counted,
so a request body and the stored document it becomes count the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_POLICY", "IndexPolicy"]

_SYSTEM = frozenset({"_rid", "_self", "_etag", "_ts", "_attachments"})
_ARRAY = "[]"


@dataclass(frozen=True, slots=True)
class _Pattern:
    segments: tuple[str, ...]
    wildcard: bool  # "/*" (this path and below) rather than "/?" (exactly this scalar)
    include: bool

    @property
    def precision(self) -> tuple[int, int, int]:
        # Longer paths win; at equal length "?" beats "*"; at a full tie exclusion wins.
        return (len(self.segments), 0 if self.wildcard else 1, 0 if self.include else 1)

    def matches(self, leaf: tuple[str, ...]) -> bool:
        n = len(self.segments)
        if self.wildcard:
            if len(leaf) < n:
                return False
        elif len(leaf) != n:
            return False
        return leaf[:n] == self.segments


def _parse(path: str, include: bool) -> _Pattern | None:
    parts = [p for p in path.strip().split("/") if p]
    if not parts or parts[-1] not in {"?", "*"}:
        return None  # not a path pattern Cosmos accepts; ignore it rather than guess
    segments = tuple(p[1:-1] if len(p) >= 2 and p[0] == p[-1] == '"' else p for p in parts[:-1])
    return _Pattern(segments, parts[-1] == "*", include)


@dataclass(frozen=True, slots=True)
class IndexPolicy:
    """A container's indexing policy reduced to what the write charge depends on."""

    enabled: bool
    patterns: tuple[_Pattern, ...]

    @classmethod
    def from_json(cls, policy: Mapping[str, Any] | None) -> IndexPolicy:
        """The policy of a container-create body (``None``: Cosmos's default policy)."""
        if not policy:
            return DEFAULT_POLICY
        mode = str(policy.get("indexingMode", "consistent")).lower()
        enabled = mode != "none" and policy.get("automatic", True) is not False
        patterns: list[_Pattern] = []
        included = policy.get("includedPaths")
        if included is None:
            included = [{"path": "/*"}]  # Cosmos fills the default in
        for entry in included or []:
            if isinstance(entry, Mapping) and (p := _parse(str(entry.get("path", "")), True)):
                patterns.append(p)
        for entry in policy.get("excludedPaths") or []:
            if isinstance(entry, Mapping) and (p := _parse(str(entry.get("path", "")), False)):
                patterns.append(p)
        patterns.sort(key=lambda p: p.precision, reverse=True)
        return cls(enabled, tuple(patterns))

    def indexed(self, leaf: tuple[str, ...]) -> bool:
        """Whether the scalar at ``leaf`` (``[]`` for array positions) is indexed."""
        if not self.enabled:
            return False
        for pattern in self.patterns:  # most precise first
            if pattern.matches(leaf):
                return pattern.include
        return False

    def terms(self, document: Any) -> int:
        """Number of indexed scalar leaves of ``document`` (0 for anything not an object)."""
        if not isinstance(document, Mapping) or not self.enabled:
            return 0
        return sum(1 for leaf in _leaves(document, ()) if self.indexed(leaf))


def _leaves(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if isinstance(value, Mapping):
        for key, child in value.items():
            if not path and key in _SYSTEM:
                continue
            yield from _leaves(child, (*path, str(key)))
    elif isinstance(value, list):
        for child in value:
            yield from _leaves(child, (*path, _ARRAY))
    else:
        yield path


DEFAULT_POLICY = IndexPolicy(
    True,
    (_Pattern(("_etag",), False, False), _Pattern((), True, True)),
)
"""Cosmos's default: every path range-indexed except ``_etag``."""
