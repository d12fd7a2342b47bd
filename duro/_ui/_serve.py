"""Serving the view: the socket, the address people open, the access token, and Uvicorn."""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from ..providers import Provider
from ._app import UiOptions, create_app

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Listening:
    """Where the view answers, and the address to print."""

    sock: socket.socket
    url: str
    token: str | None


def listen(host: str, port: int) -> Listening:
    """Bind now (port 0: a free one), so the printed address is the real one. Beyond
    loopback the view needs a fresh access token, which goes into the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    if is_loopback(host):
        return Listening(sock, f"http://{shown}:{bound}/", None)
    token = secrets.token_urlsafe(24)
    if host in ("0.0.0.0", "::"):
        shown = socket.gethostname()
    return Listening(sock, f"http://{shown}:{bound}/?token={token}", token)


def loopback_hosts(port: int) -> frozenset[str]:
    return frozenset(f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]"))


async def serve(
    store: Provider, listening: Listening, options: UiOptions, ready: Callable[[], None]
) -> None:
    """Answer on ``listening.sock`` until SIGINT or SIGTERM; ``ready`` runs once it listens."""
    import uvicorn

    port = listening.sock.getsockname()[1]
    options = replace(
        options,
        token=listening.token,
        allowed_hosts=None if listening.token else loopback_hosts(port),
    )
    app = create_app(store, options)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", server_header=False
    )
    server = _Server(config, ready)
    await server.serve(sockets=[listening.sock])


class _Server:
    """Uvicorn's server, stopping on SIGINT/SIGTERM without re-raising the signal afterwards
    (``duro ui`` closes its store and exits 0)."""

    def __init__(self, config: Any, ready: Callable[[], None]) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                handled = (signal.SIGINT, signal.SIGTERM)
                previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
                try:
                    yield
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)

            async def startup(self, sockets: Any = None) -> None:
                await super().startup(sockets)
                ready()

        self._server = Server(config)

    async def serve(self, sockets: list[socket.socket]) -> None:
        await self._server.serve(sockets=sockets)
