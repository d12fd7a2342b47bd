"""The Cosmos stack of one benchmark run, and the request-unit figures it reports.

A Cosmos cell's config name says how many simulated physical partitions the container has
and how many runtime processes serve it: ``cosmos`` (1 and 1), ``cosmos-p30``,
``cosmos-r2``, ``cosmos-p30-r2`` (:func:`config_name`).

The stack is the test suite's: the local Node server behind the compat layer
(``tests/cosmos``), whose meter prices every request like Azure would (estimates, see
``tests/cosmos/compat_ru.py``). With one runtime the layer is an in-process transport, as
before; with N > 1 it is a :class:`~tests.cosmos.proxy.CompatProxy` (in this process, on a
thread) that the in-process runtime and N - 1 runtime processes (``benchmarks._runtime_process``)
all talk to, so batches stay atomic across processes and one meter sees everything. Each
runtime tags its requests ``runtime-<i>`` and the harness's client ``client``, so the figures
are the runtimes' alone.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx

from ._processes import RuntimeProcesses
from ._protocol import NotApplicable

RUNTIME_PREFIX = "runtime-"
CLIENT_SOURCE = "client"
_CONFIG = re.compile(r"^cosmos(?:-p(\d+))?(?:-r(\d+))?$")


def config_name(partitions: int, runtimes: int) -> str:
    return (
        "cosmos"
        + (f"-p{partitions}" if partitions != 1 else "")
        + (f"-r{runtimes}" if runtimes != 1 else "")
    )


@dataclass(frozen=True, slots=True)
class CosmosCell:
    partitions: int = 1
    runtimes: int = 1

    @classmethod
    def parse(cls, config: str) -> CosmosCell | None:
        """The cell a config name describes, or None if it is not a Cosmos config."""
        match = _CONFIG.match(config)
        if match is None:
            return None
        return cls(int(match.group(1) or 1), int(match.group(2) or 1))


class TaggingTransport(httpx.AsyncBaseTransport):
    """Marks every request with a meter source. Never closes ``inner`` (the stack owns it)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, source: str) -> None:
        from tests.cosmos.compat_meter import METER_SOURCE_HEADER

        self.inner = inner
        self.source = source
        self._header = METER_SOURCE_HEADER

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers[self._header] = self.source  # not signed: Cosmos signs verb, path, date
        return await self.inner.handle_async_request(request)


@dataclass
class CosmosStack:
    """Server, compat layer, stores and extra runtime processes of one Cosmos cell."""

    cell: CosmosCell
    db_dir: str
    store: Any = None
    """The in-process runtime's provider (source ``runtime-0``)."""
    client_store: Any = None
    """The harness client's provider (source ``client``)."""
    workers: RuntimeProcesses | None = None
    _server: Any = None
    _proxy: Any = None
    _compat: Any = None
    _http: httpx.AsyncBaseTransport | None = None

    @property
    def sources(self) -> list[str]:
        return [f"{RUNTIME_PREFIX}{i}" for i in range(self.cell.runtimes)]

    def meter(self) -> Any:
        """A snapshot of the meter (``tests.cosmos.compat_meter.MeterSnapshot``)."""
        layer = self._proxy if self._proxy is not None else self._compat
        return layer.meter.snapshot()

    async def __aenter__(self) -> Self:
        try:
            from duro_cosmos import CosmosConfig, CosmosProvider
            from tests.cosmos.compat import EMULATOR_KEY, CompatTransport
            from tests.cosmos.proxy import CompatProxy
            from tests.cosmos.server import CosmosServerError, start_server
        except ImportError as exc:
            raise NotApplicable(
                f"the Cosmos provider or its test server is missing: {exc}"
            ) from exc
        try:
            self._server = start_server(https=False)
        except CosmosServerError as exc:
            raise NotApplicable(str(exc)) from exc
        suffix = os.path.basename(self.db_dir).replace("_", "-")[-12:]
        partitions = self.cell.partitions
        if self.cell.runtimes == 1:
            self._compat = CompatTransport(
                self._server.url, key=EMULATOR_KEY, partitions=partitions
            )
            endpoint, base = self._server.url, self._compat
        else:
            self._proxy = CompatProxy(self._server.url, key=EMULATOR_KEY, partitions=partitions)
            self._proxy.start()
            self._http = httpx.AsyncHTTPTransport()
            endpoint, base = self._proxy.url, self._http
        config = CosmosConfig(endpoint, EMULATOR_KEY, f"bench-{suffix}", "duro")
        self.client_store = CosmosProvider(config, transport=TaggingTransport(base, CLIENT_SOURCE))
        await self.client_store.open()  # creates the database and container once, first
        self.store = CosmosProvider(
            config, transport=TaggingTransport(base, self.sources[0]), owner_id=self.sources[0]
        )
        self.workers = RuntimeProcesses(self.db_dir)
        cosmos_args = ["--endpoint", endpoint, "--key", EMULATOR_KEY]
        cosmos_args += ["--database", config.database, "--container", config.container]
        for source in self.sources[1:]:
            self.workers.spawn(source, cosmos_args)
        await self.workers.wait_ready()
        return self

    async def stop_workers(self) -> dict[str, dict[str, Any]]:
        """Stop the runtime processes gracefully; what each reported, by source."""
        return await self.workers.stop() if self.workers is not None else {}

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_workers()
        if self.client_store is not None:
            await self.client_store.close()
        if self._http is not None:
            await self._http.aclose()
        if self._compat is not None:
            await self._compat.aclose()
        if self._proxy is not None:
            self._proxy.stop()
        if self._server is not None:
            self._server.stop()


# -- figures ------------------------------------------------------------------------------------


def is_runtime(source: str) -> bool:
    return source.startswith(RUNTIME_PREFIX)


def busy_figures(meter: Any, *, orchestrations: int, activities: int, turns: int) -> dict[str, Any]:
    """Requests and RU per orchestration, activity and turn, and per request kind, of the
    runtimes' requests during the workload (``meter``: a MeterSnapshot delta)."""
    runtime = meter.select(is_runtime)
    total = runtime.total()
    per = max(1, orchestrations)
    locks, failed = runtime.lock_writes()
    out: dict[str, Any] = {
        "http_requests": total.requests,
        "http_requests_per_orchestration": total.requests / per,
        "ru": total.ru,
        "ru_per_orchestration": total.ru / per,
        "kb_sent_per_orchestration": total.bytes_sent / 1024 / per,
        "kb_received_per_orchestration": total.bytes_received / 1024 / per,
        "lock_writes": locks,
        "lock_writes_412": failed,
        "lock_412_share": failed / locks if locks else None,
        "turns": turns,
        "activities": activities,
    }
    if activities:
        out["http_requests_per_activity"] = total.requests / activities
        out["ru_per_activity"] = total.ru / activities
    if turns:
        out["http_requests_per_turn"] = total.requests / turns
        out["ru_per_turn"] = total.ru / turns
    for kind, tally in runtime.by_kind().items():
        out[f"requests_per_orch.{kind}"] = tally.requests / per
        out[f"ru_per_orch.{kind}"] = tally.ru / per
    for op, tally in runtime.batch_ops().items():
        out[f"batch_ops_per_orch.{op}"] = tally.requests / per
        out[f"batch_ru_per_orch.{op}"] = tally.ru / per
    return out


def idle_figures(meter: Any, *, seconds: float, runtimes: int) -> dict[str, Any]:
    """Requests and RU per second of idle runtimes, in total, per runtime and per kind."""
    runtime = meter.select(is_runtime)
    total = runtime.total()
    out: dict[str, Any] = {
        "idle_seconds": seconds,
        "idle_requests_per_s": total.requests / seconds,
        "idle_ru_per_s": total.ru / seconds,
        "idle_requests_per_s_per_runtime": total.requests / seconds / runtimes,
        "idle_ru_per_s_per_runtime": total.ru / seconds / runtimes,
    }
    for kind, tally in runtime.by_kind().items():
        out[f"idle_requests_per_s.{kind}"] = tally.requests / seconds
        out[f"idle_ru_per_s.{kind}"] = tally.ru / seconds
    return out
