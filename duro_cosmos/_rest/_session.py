"""Session tokens, so reads see this client's own writes on Session-consistency accounts.

Every response may carry ``x-ms-session-token``: comma-separated ``<pkrange id>:<token>``
pairs, where a token looks like ``<version>#<global lsn>#...``. Reads and queries send back
the newest token known per partition key range of that container. Tokens are opaque apart
from the global LSN used to keep the newer of two; an absent header (the local test server
sends none) simply means nothing is sent.
"""

from __future__ import annotations

__all__ = ["SessionTokens"]


def _lsn(token: str) -> int | None:
    parts = token.split("#")
    if len(parts) < 2:
        return None
    try:
        return int(parts[1])
    except ValueError:
        return None


class SessionTokens:
    """Newest session token per (container, partition key range)."""

    __slots__ = ("_by_container",)

    def __init__(self) -> None:
        self._by_container: dict[str, dict[str, str]] = {}

    def update(self, container: str, header: str | None) -> None:
        if not header:
            return
        ranges = self._by_container.setdefault(container, {})
        for pair in header.split(","):
            range_id, sep, token = pair.strip().partition(":")
            if not sep or not range_id or not token:
                continue
            known = ranges.get(range_id)
            if known is None:
                ranges[range_id] = token
                continue
            new_lsn, old_lsn = _lsn(token), _lsn(known)
            if new_lsn is None or old_lsn is None or new_lsn >= old_lsn:
                ranges[range_id] = token

    def header(self, container: str) -> str | None:
        ranges = self._by_container.get(container)
        if not ranges:
            return None
        return ",".join(f"{range_id}:{token}" for range_id, token in sorted(ranges.items()))

    def forget(self, container: str) -> None:
        self._by_container.pop(container, None)
