"""The compat layer's request-unit meter: what every request cost, by source, kind and status.

:class:`Meter` accumulates, :class:`MeterSnapshot` is an immutable copy to query, subtract and
serialise. The transport records every request the provider sent (faults included: an injected
429 is a request Cosmos answered, for 0 RU), with its estimated charge from
:mod:`.compat_ru`. Request kinds:

``point_read``, ``create``, ``upsert``, ``replace``, ``patch``, ``delete``, ``batch``,
``partition_query`` (one logical partition: partition key header), ``range_query`` (one
physical partition: ``x-ms-documentdb-partitionkeyrangeid``), ``cross_partition_query``
(fans out to every physical partition), ``pkranges`` and ``other`` (account, database and
container requests, read feeds).

A request is **conditional** when it carries ``If-Match`` (a batch: when any operation does):
in duro's provider those are exactly the lock writes, so ``lock_writes()`` reports how many
of them failed with 412 (a batch fails as a whole with 207; its failing operation says 412).

The **source** is the value of the ``x-compat-meter-source`` request header (``""`` if absent):
benchmarks tag the runtime's and the harness client's requests so they can be told apart.

Across processes (:class:`~tests.cosmos.proxy.CompatProxy`), the meter lives in the proxy;
``GET /_compat/meter`` returns :meth:`MeterSnapshot.to_json` and ``POST /_compat/meter/reset``
clears it (:func:`fetch_meter`, :func:`reset_meter`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

__all__ = [
    "KINDS",
    "METER_PATH",
    "METER_SOURCE_HEADER",
    "Meter",
    "MeterSnapshot",
    "OpRow",
    "Row",
    "Tally",
    "fetch_meter",
    "reset_meter",
]

METER_SOURCE_HEADER = "x-compat-meter-source"
METER_PATH = "/_compat/meter"
KINDS = (
    "point_read",
    "create",
    "upsert",
    "replace",
    "patch",
    "delete",
    "batch",
    "partition_query",
    "range_query",
    "cross_partition_query",
    "pkranges",
    "other",
)
_CONDITIONAL_KINDS = ("replace", "patch", "delete", "upsert", "batch")


@dataclass(slots=True)
class Tally:
    """Requests and RU (and bytes, to re-price with another table) of some group of requests."""

    requests: int = 0
    ru: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0

    def add(self, row: Row | Tally) -> None:
        self.requests += row.requests
        self.ru += row.ru
        self.bytes_sent += row.bytes_sent
        self.bytes_received += row.bytes_received


@dataclass(frozen=True, slots=True)
class Row:
    """The totals of one (source, kind, status, conditional) cell."""

    source: str
    kind: str
    status: int | None  # None: no answer (an injected network error)
    conditional: bool
    requests: int = 0
    ru: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0

    @property
    def key(self) -> tuple[str, str, int | None, bool]:
        return self.source, self.kind, self.status, self.conditional


@dataclass(frozen=True, slots=True)
class OpRow:
    """The operations of one type and per-operation status inside transactional batches."""

    source: str
    op: str  # create, upsert, replace, delete, patch, read
    status: int
    count: int = 0
    ru: float = 0.0

    @property
    def key(self) -> tuple[str, str, int]:
        return self.source, self.op, self.status


@dataclass(frozen=True, slots=True)
class MeterSnapshot:
    """What the meter had counted at one moment. ``partitions`` is the simulated count."""

    partitions: int
    rows: tuple[Row, ...] = ()
    ops: tuple[OpRow, ...] = ()

    # -- selecting ----------------------------------------------------------------------------

    def select(self, source: str | Callable[[str], bool]) -> MeterSnapshot:
        """Only the requests of one source (or of the sources a predicate accepts)."""
        keep = source if callable(source) else (lambda s: s == source)
        return replace(
            self,
            rows=tuple(r for r in self.rows if keep(r.source)),
            ops=tuple(o for o in self.ops if keep(o.source)),
        )

    @property
    def sources(self) -> list[str]:
        return sorted({r.source for r in self.rows})

    def total(self) -> Tally:
        out = Tally()
        for row in self.rows:
            out.add(row)
        return out

    def by_kind(self) -> dict[str, Tally]:
        out: dict[str, Tally] = {}
        for row in self.rows:
            out.setdefault(row.kind, Tally()).add(row)
        return out

    def by_kind_status(self) -> dict[tuple[str, int | None], Tally]:
        out: dict[tuple[str, int | None], Tally] = {}
        for row in self.rows:
            out.setdefault((row.kind, row.status), Tally()).add(row)
        return out

    def tally(
        self,
        kind: str | Iterable[str] | None = None,
        *,
        status: int | None = None,
        conditional: bool | None = None,
    ) -> Tally:
        """Totals of the rows matching every given filter."""
        kinds = {kind} if isinstance(kind, str) else (set(kind) if kind is not None else None)
        out = Tally()
        for row in self.rows:
            if (
                (kinds is None or row.kind in kinds)
                and (status is None or row.status == status)
                and (conditional is None or row.conditional == conditional)
            ):
                out.add(row)
        return out

    def batch_ops(self) -> dict[str, Tally]:
        """Operations inside transactional batches by type (``requests`` counts operations)."""
        out: dict[str, Tally] = {}
        for op in self.ops:
            tally = out.setdefault(op.op, Tally())
            tally.requests += op.count
            tally.ru += op.ru
        return out

    def lock_writes(self) -> tuple[int, int]:
        """``(conditional writes, of which failed with 412)``: point writes with If-Match and
        batches with an ``ifMatch`` operation; a batch counts as a 412 when its failing
        operation answered 412."""
        total = self.tally(_CONDITIONAL_KINDS, conditional=True).requests
        point_412 = self.tally(_CONDITIONAL_KINDS, status=412, conditional=True).requests
        batch_412 = sum(o.count for o in self.ops if o.status == 412)
        return total, point_412 + batch_412

    # -- arithmetic and serialisation ----------------------------------------------------------

    def minus(self, earlier: MeterSnapshot) -> MeterSnapshot:
        """What was counted between ``earlier`` and this snapshot."""
        before = {r.key: r for r in earlier.rows}
        rows = []
        for row in self.rows:
            old = before.get(row.key)
            if old is not None:
                row = replace(
                    row,
                    requests=row.requests - old.requests,
                    ru=row.ru - old.ru,
                    bytes_sent=row.bytes_sent - old.bytes_sent,
                    bytes_received=row.bytes_received - old.bytes_received,
                )
            if row.requests:
                rows.append(row)
        ops_before = {o.key: o for o in earlier.ops}
        ops = []
        for op in self.ops:
            old_op = ops_before.get(op.key)
            if old_op is not None:
                op = replace(op, count=op.count - old_op.count, ru=op.ru - old_op.ru)
            if op.count:
                ops.append(op)
        return replace(self, rows=tuple(rows), ops=tuple(ops))

    def to_json(self) -> dict[str, Any]:
        return {
            "partitions": self.partitions,
            "rows": [
                {
                    "source": r.source,
                    "kind": r.kind,
                    "status": r.status,
                    "conditional": r.conditional,
                    "requests": r.requests,
                    "ru": r.ru,
                    "bytes_sent": r.bytes_sent,
                    "bytes_received": r.bytes_received,
                }
                for r in self.rows
            ],
            "batch_ops": [
                {"source": o.source, "op": o.op, "status": o.status, "count": o.count, "ru": o.ru}
                for o in self.ops
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MeterSnapshot:
        return cls(
            partitions=int(data["partitions"]),
            rows=tuple(Row(**r) for r in data.get("rows", [])),
            ops=tuple(OpRow(**o) for o in data.get("batch_ops", [])),
        )

    def summary(self) -> dict[str, Any]:
        """A compact view for reports: totals, per kind, batch operations, lock writes."""
        total = self.total()
        locks, failed = self.lock_writes()
        return {
            "partitions": self.partitions,
            "requests": total.requests,
            "ru": round(total.ru, 3),
            "by_kind": {
                k: {"requests": t.requests, "ru": round(t.ru, 3)}
                for k, t in sorted(self.by_kind().items())
            },
            "by_status": {
                f"{k}:{s}": t.requests
                for (k, s), t in sorted(self.by_kind_status().items(), key=str)
            },
            "batch_ops": {
                k: {"count": t.requests, "ru": round(t.ru, 3)}
                for k, t in sorted(self.batch_ops().items())
            },
            "lock_writes": locks,
            "lock_writes_412": failed,
        }


@dataclass
class Meter:
    """Thread-safe accumulator (the proxy records in its loop thread, tests read elsewhere)."""

    partitions: int = 1
    _rows: dict[tuple[str, str, int | None, bool], Tally] = field(default_factory=dict)
    _ops: dict[tuple[str, str, int], list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(
        self,
        *,
        source: str,
        kind: str,
        status: int | None,
        ru: float,
        conditional: bool = False,
        bytes_sent: int = 0,
        bytes_received: int = 0,
        ops: Iterable[tuple[str, int, float]] = (),
    ) -> None:
        """One request; ``ops`` are a batch's ``(operation type, status, RU)``."""
        with self._lock:
            tally = self._rows.setdefault((source, kind, status, conditional), Tally())
            tally.requests += 1
            tally.ru += ru
            tally.bytes_sent += bytes_sent
            tally.bytes_received += bytes_received
            for op, op_status, op_ru in ops:
                cell = self._ops.setdefault((source, op, op_status), [0, 0.0])
                cell[0] += 1
                cell[1] += op_ru

    def snapshot(self) -> MeterSnapshot:
        with self._lock:
            rows = tuple(
                Row(s, k, st, c, t.requests, t.ru, t.bytes_sent, t.bytes_received)
                for (s, k, st, c), t in self._rows.items()
            )
            ops = tuple(
                OpRow(s, op, st, int(cell[0]), cell[1]) for (s, op, st), cell in self._ops.items()
            )
        return MeterSnapshot(self.partitions, rows, ops)

    def reset(self) -> None:
        with self._lock:
            self._rows.clear()
            self._ops.clear()


def fetch_meter(proxy_url: str, *, timeout: float = 10.0) -> MeterSnapshot:
    """The meter of a :class:`~tests.cosmos.proxy.CompatProxy` (any process), over HTTP."""
    response = httpx.get(proxy_url.rstrip("/") + METER_PATH, timeout=timeout)
    response.raise_for_status()
    return MeterSnapshot.from_json(response.json())


def reset_meter(proxy_url: str, *, timeout: float = 10.0) -> None:
    response = httpx.post(proxy_url.rstrip("/") + METER_PATH + "/reset", timeout=timeout)
    response.raise_for_status()
