"""Simulated physical partitions: P partition-key ranges over one test-server container.

Real Cosmos spreads a container over physical partitions, each owning a range of the
*effective partition key* (EPK) hash space, listed by ``GET .../colls/{coll}/pkranges``. A
cross-partition query runs once per physical partition (and is billed so); the SDKs run
ORDER BY / TOP / aggregates per range by addressing one with
``x-ms-documentdb-partitionkeyrangeid``. The test server has one range and ignores that
header. :class:`PartitionLayout` provides:

* ``count`` ranges with ids ``"0"`` .. ``"P-1"``, splitting a 128-bit hash space evenly. The
  bounds are 32 upper-case hex digits; as in Cosmos the first range starts at ``""`` and the
  last ends at ``"FF"`` (the "infinity" sentinel), and ``range_of`` never compares strings;
* :func:`pk_hash`: a deterministic 128-bit hash (BLAKE2b of the canonical JSON of the
  partition key value). It is **not** Cosmos's MurmurHash3-based EPK: which key lands in which
  range differs from Azure, only the even spread and the determinism are modelled;
* :meth:`PartitionLayout.pkranges_body`: the ``pkranges`` response in Cosmos's shape
  (``_rid``, ``PartitionKeyRanges`` with ``id``, ``minInclusive``, ``maxExclusive``,
  ``ridPrefix``, ``throughputFraction``, ``status``, ``parents`` and system properties,
  ``_count``), as in the REST reference page "Get Partition key ranges";
* :func:`keys_in_range`: the partition key values stored in one range, which the transport
  puts into a range-scoped query as ``ARRAY_CONTAINS(@keys, c.<pk>)``.

Ranges never split. A range id that does not exist gets 410 Gone, substatus 1002
(PartitionKeyRangeGone), which is what tells Cosmos clients to re-read the ranges.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import time
import uuid
from typing import Any

from .compat_backend import Backend, doc_path

__all__ = ["MAX_PARTITIONS", "RANGE_ID_HEADER", "PartitionLayout", "keys_in_range", "pk_hash"]

RANGE_ID_HEADER = "x-ms-documentdb-partitionkeyrangeid"
MAX_PARTITIONS = 1000
_SPACE = 1 << 128
_MIN_EPK = ""
_MAX_EPK = "FF"


def pk_hash(value: Any) -> int:
    """A stable 128-bit hash of a partition key value (not Cosmos's EPK hash)."""
    canonical = json.dumps([value], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=16).digest(), "big")


class PartitionLayout:
    """``count`` equal partition-key ranges."""

    def __init__(self, count: int = 1) -> None:
        if not 1 <= count <= MAX_PARTITIONS:
            raise ValueError(f"partitions must be 1..{MAX_PARTITIONS}, not {count}")
        self.count = count
        self._lower = [i * _SPACE // count for i in range(count)]

    def range_of(self, value: Any) -> int:
        """Index of the range the partition key value hashes into."""
        return bisect.bisect_right(self._lower, pk_hash(value)) - 1

    def bounds(self, index: int) -> tuple[str, str]:
        """``(minInclusive, maxExclusive)`` of one range, as EPK hex strings."""
        low = _MIN_EPK if index == 0 else f"{self._lower[index]:032X}"
        high = _MAX_EPK if index == self.count - 1 else f"{self._lower[index + 1]:032X}"
        return low, high

    def parse_range_id(self, header: str) -> int | None:
        """The range a ``x-ms-documentdb-partitionkeyrangeid`` value names, or None if none
        does. SDKs send either ``"<id>"`` or ``"<collection rid>,<id>"``."""
        raw = header.rsplit(",", 1)[-1].strip()
        if not raw.isdigit():
            return None
        index = int(raw)
        return index if index < self.count else None

    def pkranges_body(self, container: dict[str, Any]) -> dict[str, Any]:
        coll_rid = str(container.get("_rid", ""))
        coll_self = str(container.get("_self", "")).rstrip("/")
        now = int(time.time())
        ranges = []
        for index in range(self.count):
            low, high = self.bounds(index)
            rid = f"{coll_rid}:{index}"
            ranges.append(
                {
                    "_rid": rid,
                    "id": str(index),
                    "_etag": f'"{uuid.uuid5(uuid.NAMESPACE_URL, rid)}"',
                    "minInclusive": low,
                    "maxExclusive": high,
                    "ridPrefix": index,
                    "_self": f"{coll_self}/pkranges/{rid}/",
                    "throughputFraction": 1.0 / self.count,
                    "status": "online",
                    "parents": [],
                    "_ts": now,
                }
            )
        return {"_rid": coll_rid, "PartitionKeyRanges": ranges, "_count": len(ranges)}


async def keys_in_range(
    backend: Backend, collection: str, pk_path: str, layout: PartitionLayout, index: int
) -> list[Any]:
    """Distinct partition key values of the container's documents that hash into range
    ``index`` (an unsigned, unlogged scan of the test server: keep test containers small)."""
    parts = [p for p in pk_path.strip("/").split("/") if p]
    sql = "SELECT VALUE c" + "".join(f"[{json.dumps(p)}]" for p in parts) + " FROM c"
    path = doc_path(collection)
    seen: dict[str, Any] = {}
    token: str | None = None
    while True:
        headers = {
            "x-ms-documentdb-isquery": "True",
            "x-ms-documentdb-query-enablecrosspartition": "True",
            "content-type": "application/query+json",
        }
        if token:
            headers["x-ms-continuation"] = token
        reply = await backend.call(
            "POST", path, headers=headers, body={"query": sql, "parameters": []}
        )
        if reply.status != 200 or not isinstance(reply.data, dict):
            raise RuntimeError(f"compat layer: listing partition keys gave {reply.status}")
        for value in reply.data.get("Documents") or []:
            seen.setdefault(json.dumps(value, sort_keys=True), value)
        token = reply.headers.get("x-ms-continuation") or None
        if token is None:
            break
    return [v for v in seen.values() if layout.range_of(v) == index]
