"""Run the pinned local Cosmos DB-compatible server (``@vercel/cosmosdb-server``) for tests.

The server is a Node.js process started directly (never through ``npx``: killing an npx
wrapper orphans the node server). It binds a random loopback port (``-p 0``) and prints one
line, ``Ready to accept HTTP(S) connections at 127.0.0.1:PORT``, which is parsed for the port.
Its output (stack traces of its own 500s go there) is drained by a daemon thread into a bounded
buffer so the pipe can never fill up and block the server.

Install it first with ``npm ci --prefix tests/cosmos_server``.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "SERVER_DIR",
    "CosmosServer",
    "CosmosServerError",
    "cli_path",
    "running_server",
    "start_server",
]

SERVER_DIR = Path(__file__).resolve().parent.parent / "cosmos_server"
_CLI = Path("node_modules") / "@vercel" / "cosmosdb-server" / "lib" / "cli.js"
_READY = re.compile(r"Ready to accept (HTTPS?) connections at (\S+):(\d+)")


class CosmosServerError(RuntimeError):
    """The local Cosmos test server could not be found or started."""


def cli_path(server_dir: Path = SERVER_DIR) -> Path:
    """Path of the server's CLI script, or a clear error telling how to install it."""
    cli = server_dir / _CLI
    if not cli.is_file():
        raise CosmosServerError(
            f"the local Cosmos DB test server is not installed ({cli} is missing). "
            f"Install it with: npm ci --prefix {_display(server_dir)}"
        )
    return cli


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class CosmosServer:
    """A running server process. Use :func:`start_server` or :func:`running_server`."""

    def __init__(self, process: subprocess.Popen[str], *, https: bool, max_lines: int) -> None:
        self.process = process
        self.https = https
        self.host = ""
        self.port = 0
        self._lines: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._ready = threading.Event()
        self._drainer = threading.Thread(
            target=self._drain, name=f"cosmosdb-server-{process.pid}", daemon=True
        )
        self._drainer.start()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"{'https' if self.https else 'http'}://{self.host}:{self.port}"

    @property
    def output(self) -> list[str]:
        """The last lines the server printed (stdout and stderr merged)."""
        return list(self._lines)

    def _drain(self) -> None:
        stream = self.process.stdout
        if stream is None:  # pragma: no cover - Popen is always given stdout=PIPE
            return
        for line in stream:
            line = line.rstrip("\n")
            self._lines.append(line)
            if not self._ready.is_set():
                match = _READY.search(line)
                if match:
                    self.host, self.port = match.group(2), int(match.group(3))
                    self._ready.set()
        self._ready.set()  # EOF: unblock a waiter; it sees port == 0 and reports the failure

    def _wait_ready(self, timeout: float) -> None:
        if not self._ready.wait(timeout) or self.port == 0:
            self.stop()
            tail = "\n".join(self.output[-20:]) or "(no output)"
            raise CosmosServerError(
                f"the Cosmos test server did not report readiness within {timeout} s "
                f"(exit code {self.process.returncode}). Its output:\n{tail}"
            )

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after ``timeout``) and reap it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._drainer.join(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __repr__(self) -> str:
        return f"<CosmosServer {self.url} pid={self.process.pid}>"


def start_server(
    *,
    https: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
    server_dir: Path = SERVER_DIR,
    timeout: float = 15.0,
    max_output_lines: int = 2000,
) -> CosmosServer:
    """Start the server and wait until it listens. The caller must call ``stop()``."""
    cli = cli_path(server_dir)
    node = shutil.which("node")
    if node is None:
        raise CosmosServerError("`node` (Node.js >= 20) is not on PATH; it runs the test server")
    argv = [node, str(cli), "--host", host, "-p", str(port)]
    if not https:
        argv.append("--no-ssl")
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
    )
    server = CosmosServer(process, https=https, max_lines=max_output_lines)
    server._wait_ready(timeout)
    return server


@contextmanager
def running_server(*, https: bool = False, timeout: float = 15.0) -> Iterator[CosmosServer]:
    """Context manager form of :func:`start_server`."""
    server = start_server(https=https, timeout=timeout)
    try:
        yield server
    finally:
        server.stop()
