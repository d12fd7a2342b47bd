"""A shared compat layer: an HTTP proxy that runs every request through ONE ``CompatTransport``.

``CompatTransport`` lives inside one process's httpx client, so its batch lock, its fault plan
and its request log only cover that process. Tests with several *processes* (multi-runtime,
SIGKILL) point all of them at one :class:`CompatProxy` instead::

    with CompatProxy(server_url, key=EMULATOR_KEY) as proxy:     # or the cosmos_proxy fixture
        proxy.faults.add(kind="batch", status=429, retry_after_ms=20, times=3)
        # children: CosmosConfig(proxy.url, key, database, container), no transport
        ...
        assert proxy.log.count("batch", status=429) == 3

The proxy is a small HTTP/1.1 server (stdlib asyncio streams) on 127.0.0.1, port 0, running
its own event loop in a daemon thread of the process that creates it (normally pytest). Each
request is parsed, handed to the transport exactly as an in-process client would hand it, and
the transport's answer is written back. So every client sees one Cosmos-like service: atomic
batches serialised across all processes, partition-scoped queries, auth checks, 404s, quoted
etags, 207/424, and the same faults.

Faults that *raise* in the transport (``error=`` and ``lose_response=``) cannot cross a socket
as exceptions; the proxy aborts the connection instead, so the client sees a dropped
connection (``httpx.RemoteProtocolError`` / ``ReadError``): after ``lose_response`` the write
was applied, exactly the ambiguous outcome it models. For a timeout exception
(``httpx.TimeoutException`` subclasses) the proxy first stalls ``timeout_stall`` seconds, so a
client whose read timeout is shorter sees a real ``httpx.ReadTimeout``. A client cannot tell
an injected ``ConnectError`` (not sent) from a lost response here: both look like a dropped
connection, which a provider must treat as "may have been applied" anyway.

The fault plan and the request log are used from the loop thread; adding rules from another
thread is safe in CPython (list appends), and :meth:`CompatProxy.call` runs a function inside
the loop when a test needs several changes to land at once.

The request-unit **meter** (:mod:`.compat_meter`) lives in the proxy too, so it totals the
requests of every process: read it with ``proxy.meter.snapshot()`` in the owning process, or
from anywhere over HTTP: ``GET /_compat/meter`` answers the snapshot as JSON and
``POST /_compat/meter/reset`` clears it (:func:`~.compat_meter.fetch_meter`). Those two paths
are the proxy's own, never forwarded. ``partitions=P`` simulates P physical partitions.

Run it by hand against a running server: ``python -m tests.cosmos.proxy --server URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import httpx

from .compat import EMULATOR_KEY, CompatTransport
from .compat_faults import FaultPlan, RequestLog
from .compat_meter import METER_PATH, Meter

__all__ = ["CompatProxy", "ProxyEnv"]

T = TypeVar("T")

_MAX_HEADER_BYTES = 256 * 1024
_MAX_BODY_BYTES = 16 * 1024 * 1024
_HOP_BY_HOP = {b"content-length", b"transfer-encoding", b"connection", b"keep-alive"}
_REASONS = {207: "Multi-Status", 449: "Retry With"}
_FORWARD_TIMEOUT = {"connect": 10.0, "read": 60.0, "write": 60.0, "pool": 60.0}


class _BadRequest(Exception):
    pass


class CompatProxy:
    """One :class:`CompatTransport` served over HTTP to any number of processes.

    ``start()`` / ``stop()`` or ``with``. ``url`` is the endpoint clients use. Extra keyword
    arguments go to :class:`CompatTransport` (``max_clock_skew``, ``clock``, ...).
    ``timeout_stall``: seconds to hold a request whose fault raises a timeout before the
    connection is dropped (0: drop at once).
    """

    def __init__(
        self,
        server_url: str,
        *,
        key: str | None = EMULATOR_KEY,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_stall: float = 0.0,
        **transport_options: Any,
    ) -> None:
        self.server_url = server_url
        self.host = host
        self.port = port
        self.timeout_stall = timeout_stall
        self._transport_options = dict(transport_options, key=key, faults=faults)
        self._transport: CompatTransport | None = None
        self._faults = faults if faults is not None else FaultPlan()
        self._transport_options["faults"] = self._faults
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.internal_errors: list[str] = []
        """Tracebacks of exceptions the compat layer raised that were not injected faults."""
        self.connections = 0
        """Client connections accepted so far."""

    # -- public ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the proxy is not listening yet")
        return f"http://{self.host}:{self.port}"

    @property
    def transport(self) -> CompatTransport:
        """The shared transport (touch it only from the proxy's loop, see :meth:`call`)."""
        if self._transport is None:
            raise RuntimeError("the proxy is not running")
        return self._transport

    @property
    def faults(self) -> FaultPlan:
        return self._faults

    @property
    def log(self) -> RequestLog:
        return self.transport.log

    @property
    def meter(self) -> Meter:
        """The shared RU meter (thread-safe: read it from any thread)."""
        return self.transport.meter

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("the proxy was started already")
        self._thread = threading.Thread(target=self._run_loop, name="cosmos-compat-proxy")
        self._thread.daemon = True
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the compat proxy did not start within {timeout} s")
        if self._startup_error is not None:
            raise RuntimeError("the compat proxy failed to start") from self._startup_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is None or stopping is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop ended already
            loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"the compat proxy did not stop within {timeout} s")

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn()`` in the proxy's loop thread (between two requests) and return its value."""
        if self._loop is None:
            raise RuntimeError("the proxy is not running")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self.port else "not listening"
        return f"<CompatProxy {where} -> {self.server_url}>"

    # -- the loop thread -------------------------------------------------------------------

    def _run_loop(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # pragma: no cover - reported through start()
            self._startup_error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._transport = CompatTransport(self.server_url, **self._transport_options)
        try:
            server = await asyncio.start_server(
                self._serve_connection, self.host, self.port, limit=_MAX_HEADER_BYTES
            )
        except BaseException as exc:
            self._startup_error = exc
            await self._transport.aclose()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await server.wait_closed()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if tasks:
                # The aborted connections end on their own (EOF); cancelling a connection
                # task instead makes asyncio log a CancelledError traceback per connection.
                await asyncio.wait(tasks, timeout=1.0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._transport.aclose()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                try:
                    parsed = await self._read_request(reader)
                except _BadRequest as exc:
                    await self._write(writer, _plain(400, str(exc)), keep_alive=False, head=False)
                    return
                if parsed is None:
                    return  # the client closed the connection
                request, keep_alive = parsed
                if request.url.path.startswith(METER_PATH):
                    await self._write(writer, self._meter_endpoint(request), keep_alive, False)
                    if not keep_alive:
                        return
                    continue
                try:
                    response = await self.transport.handle_async_request(request)
                    await response.aread()
                except httpx.TimeoutException:
                    if self.timeout_stall > 0:
                        await asyncio.sleep(self.timeout_stall)
                    writer.transport.abort()
                    return
                except httpx.TransportError:
                    writer.transport.abort()  # injected (or real) network failure: drop it
                    return
                except Exception:
                    self.internal_errors.append(traceback.format_exc())
                    response = _plain(500, "compat proxy: internal error (see internal_errors)")
                await self._write(writer, response, keep_alive, head=request.method == "HEAD")
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; a request it sent may still have been applied
        finally:
            self._writers.discard(writer)
            writer.close()

    def _meter_endpoint(self, request: httpx.Request) -> httpx.Response:
        meter = self.transport.meter
        if request.method == "GET" and request.url.path == METER_PATH:
            return httpx.Response(200, json=meter.snapshot().to_json())
        if request.method == "POST" and request.url.path == METER_PATH + "/reset":
            meter.reset()
            return httpx.Response(204)
        return _plain(404, f"compat proxy: no such meter endpoint {request.url.path}")

    async def _read_request(
        self, reader: asyncio.StreamReader
    ) -> tuple[httpx.Request, bool] | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise _BadRequest("truncated request head") from None
            return None
        except asyncio.LimitOverrunError:
            raise _BadRequest("request head too large") from None
        lines = head[:-4].split(b"\r\n")
        try:
            method, target, version = lines[0].decode("ascii").split(" ", 2)
        except ValueError:
            raise _BadRequest("malformed request line") from None
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name.strip():
                raise _BadRequest("malformed header line")
            headers.append((name.strip().lower(), value.strip()))
        values = {k: v for k, v in headers}
        body = b""
        if values.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = await self._read_chunked(reader)
        elif b"content-length" in values:
            try:
                length = int(values[b"content-length"])
            except ValueError:
                raise _BadRequest("bad content-length") from None
            if length < 0 or length > _MAX_BODY_BYTES:
                raise _BadRequest("unacceptable content-length")
            body = await reader.readexactly(length)
        connection = values.get(b"connection", b"").lower()
        keep_alive = connection != b"close" and (
            version.upper() == "HTTP/1.1" or connection == b"keep-alive"
        )
        if not target.startswith("/"):  # absolute form (a client configured as a proxy user)
            target = httpx.URL(target).raw_path.decode("ascii")
        url = httpx.URL(f"http://{self.host}:{self.port}").copy_with(
            raw_path=target.encode("ascii")
        )
        forwarded = [(k, v) for k, v in headers if k not in _HOP_BY_HOP]
        request = httpx.Request(
            method.upper(),
            url,
            headers=forwarded,
            content=body,
            extensions={"timeout": dict(_FORWARD_TIMEOUT)},
        )
        return request, keep_alive

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest("bad chunk size") from None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > _MAX_BODY_BYTES:
                raise _BadRequest("request body too large")
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def _write(
        self, writer: asyncio.StreamWriter, response: httpx.Response, keep_alive: bool, head: bool
    ) -> None:
        status = response.status_code
        reason = _REASONS.get(status) or httpx.codes.get_reason_phrase(status) or "Unknown"
        out = [f"HTTP/1.1 {status} {reason}\r\n".encode("ascii")]
        for name, value in response.headers.raw:
            if name.lower() not in _HOP_BY_HOP:
                out.append(name + b": " + value + b"\r\n")
        content = response.content
        bodiless = status in (204, 304) or 100 <= status < 200
        if not bodiless:
            out.append(f"content-length: {len(content)}\r\n".encode("ascii"))
        out.append(b"connection: keep-alive\r\n" if keep_alive else b"connection: close\r\n")
        out.append(b"\r\n")
        if not bodiless and not head:
            out.append(content)
        writer.write(b"".join(out))
        await writer.drain()


def _plain(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"code": str(status), "message": message})


@dataclass(frozen=True, slots=True)
class ProxyEnv:
    """One test's isolated Cosmos world behind a :class:`CompatProxy` (``cosmos_proxy_env``).

    Give child processes ``url``, ``key``, ``database`` and ``container`` (no transport: they
    talk HTTP to the proxy). The database is not created: the provider bootstraps it.
    """

    url: str
    key: str
    database: str
    container: str
    proxy: CompatProxy

    @property
    def faults(self) -> FaultPlan:
        return self.proxy.faults

    @property
    def log(self) -> RequestLog:
        return self.proxy.log


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.cosmos.proxy", description=__doc__)
    parser.add_argument("--server", help="URL of a running cosmosdb-server (default: start one)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default=EMULATOR_KEY, help="master key clients sign with")
    parser.add_argument(
        "--partitions", type=int, default=1, help="simulated physical partitions (pkranges)"
    )
    args = parser.parse_args(argv)
    server = None
    url = args.server
    if url is None:
        from .server import start_server

        server = start_server()
        url = server.url
    try:
        with CompatProxy(url, key=args.key, port=args.port, partitions=args.partitions) as proxy:
            print(
                f"Compat proxy at {proxy.url} -> {url}, {args.partitions} partition(s); "
                f"meter at {proxy.url}{METER_PATH} (Ctrl-C stops it)",
                flush=True,
            )
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
