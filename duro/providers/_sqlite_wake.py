"""Wake-ups between processes that share one SQLite file.

A write through one provider wakes the fetches waiting in its own process at once (a
``WorkSignal``); fetches in other processes would only see it when they next look at the
file's ``PRAGMA data_version`` (after 1 ms, then up to every 64 ms). Here each provider also
binds a Unix datagram socket in a directory beside the file (``<file>-wake/``), and after a
write that makes work it sends one byte to every other socket there: a waiting fetch in
another process wakes within a fraction of a millisecond.

It only ever speeds things up. Correctness never depends on a datagram arriving: the work of
a peer without Unix sockets (Windows), one whose path is too long for a socket address, or an
older duro is still found by the ``data_version`` looks. A sender never blocks: a peer whose
queue is full has wake-ups waiting already, and a socket left by a killed process is removed
by the first sender that meets it. Senders list the directory again whenever its
modification time changes, so a process that starts is woken from its first wait on.

Datagrams are only read while a fetch waits, so a busy process is not woken by its peers'
commits: they queue (at most ``net.unix.max_dgram_qlen``, 10 by default on Linux) and cost
one spurious query when it next waits.

Clients that wait for instances use a second directory, ``<file>-watch/``, the same way (see
``instance_notices``): runtimes send them the ids of the instances whose turns they
committed, and only clients listen there, so runtimes never wake each other with them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import weakref
from collections.abc import Iterable, Sequence

import anyio

from ._types import ANY_INSTANCE, InstanceNotice

log = logging.getLogger("duro.providers.sqlite")

TURNS = 1
"""Datagram bit: orchestrator messages were written."""
ACTIVITIES = 2
"""Datagram bit: activity work items were written."""

MAX_DATAGRAM = 65536
"""The most one datagram may hold (a receive reads at most this many bytes)."""

_PEERS_FRESH_S = 1.0
"""How long a listing of the directory is used while the directory's modification time stays
the same (a file system whose times are coarse could hide a second change in one tick)."""


class PeerWakeups:
    """This provider's socket in ``<path><suffix>/`` and the list of its peers' sockets."""

    def __init__(self, db_path: str, suffix: str = "-wake") -> None:
        self._db_path = db_path
        self._suffix = suffix
        self._dir = ""
        """``<real path of the file><suffix>``, resolved at first use (a provider does no I/O
        before)."""
        self._sock: socket.socket | None = None
        """Bound to ``<dir>/<name>`` once a fetch waited; unbound while it only sends."""
        self._release: weakref.finalize[..., PeerWakeups] = weakref.finalize(self, _nothing)
        """Closes ``_sock`` (and removes its file) once: at ``close``, or when a provider that
        was never closed is collected or the interpreter exits."""
        self._name = ""
        self._pid = 0
        """The process that bound ``_name``: a forked child must neither use nor remove it."""
        self._peers: list[str] = []
        self._dropped: set[str] = set()
        """Peers a ``send`` with ``after_loss`` could not reach (their queue was full)."""
        self._listed_at = -_PEERS_FRESH_S
        self._listed_mtime = -1
        self._listed_empty = False
        """The last listing found no socket at all (not even this provider's)."""
        self._unavailable = not hasattr(socket, "AF_UNIX")

    @property
    def listening(self) -> bool:
        if self._name and self._pid != os.getpid():
            self._forget_inherited()
        return bool(self._name)

    def listen(self) -> None:
        """Bind a socket for this provider (once), so peers' datagrams reach it; on any
        failure, stay without one. Only a provider that waits binds one (a fetch in
        ``-wake/``, a client's wait in ``-watch/``): peers send to every socket in the
        directory, and one that never waits would only make them send more."""
        if self.listening or self._unavailable:
            return
        self._resolve_dir()
        sock = _new_socket()
        name = os.urandom(8).hex()
        try:
            self._bind(sock, name)
        except OSError as exc:
            # A path too long for a socket address, a read-only directory: the data_version
            # looks still find other processes' work, only later.
            sock.close()
            self._unavailable = True
            log.info("no wake-ups from other processes for %s: %s", self._dir, exc)
            return
        self._own(sock, name)
        self._listed_at = -_PEERS_FRESH_S  # leave itself out of the list from now on

    def _bind(self, sock: socket.socket, name: str) -> None:
        for _ in range(3):
            os.makedirs(self._dir, exist_ok=True)
            try:
                sock.bind(os.path.join(self._dir, name))
                return
            except FileNotFoundError:
                continue  # the last peer to close removed the directory in between
        raise FileNotFoundError(f"{self._dir} keeps disappearing")

    def close(self) -> None:
        if self._name and self._pid != os.getpid():
            self._forget_inherited()
        self._release()
        self._sock, self._name = None, ""

    def has_peers(self) -> bool:
        """Whether another socket is in the directory (a ``stat``, see ``_refresh_peers``)."""
        if self._unavailable:
            return False
        self._resolve_dir()
        self._refresh_peers()
        return bool(self._peers)

    def announce(self, kinds: int) -> None:
        """Wake the other processes' fetches waiting for ``kinds`` (``TURNS | ACTIVITIES``)."""
        self.send(bytes((kinds,)))

    def send(self, payload: bytes, *, after_loss: bytes = b"") -> None:
        """Send ``payload`` to every other socket in the directory (none: nothing to do). A
        peer that missed an earlier send with ``after_loss`` gets ``after_loss`` first, in
        the same datagram."""
        if self._unavailable:
            return
        sock = self._sock
        if sock is None:
            self._resolve_dir()
            sock = _new_socket()
            self._own(sock, "")
        self._refresh_peers()
        for peer in tuple(self._peers):  # a dead peer is forgotten on the way
            missed = after_loss and peer in self._dropped
            delivered = self._send_to(sock, peer, after_loss + payload if missed else payload)
            if delivered and missed:
                self._dropped.discard(peer)
            elif delivered is False and after_loss:
                self._dropped.add(peer)

    def resend_lost(self, after_loss: bytes) -> None:
        """Send ``after_loss`` alone to the peers that missed a send (see ``send``) and can
        take one now."""
        sock = self._sock
        if not self._dropped or sock is None:
            return
        for peer in list(self._dropped):
            if self._send_to(sock, peer, after_loss):
                self._dropped.discard(peer)

    def _send_to(self, sock: socket.socket, peer: str, data: bytes) -> bool | None:
        """Whether ``data`` reached ``peer``'s queue; None (and the peer forgotten) if no
        socket is bound there any more."""
        try:
            sock.sendto(data, peer)
        except (ConnectionRefusedError, FileNotFoundError):
            self._forget(peer)
            return None
        except OSError:
            return False  # its queue is full (it has datagrams waiting), or it is going away
        return True

    def drain(self) -> int:
        """Read every datagram waiting; the union of their ``kinds`` (0: none)."""
        kinds = 0
        for data in self.receive(16):
            for byte in data:
                kinds |= byte
        return kinds

    def receive(self, max_bytes: int = MAX_DATAGRAM) -> list[bytes]:
        """Every datagram waiting, oldest first, each cut to ``max_bytes`` (none if not
        listening)."""
        received: list[bytes] = []
        sock = self._sock if self._name else None
        while sock is not None:
            try:
                received.append(sock.recv(max_bytes))
            except OSError:  # BlockingIOError: nothing more waits
                break
        return received

    async def wait(self) -> int:
        """Until a peer's datagram arrives; returns the kinds read (forever if not listening)."""
        await self.readable()
        return self.drain()

    async def readable(self) -> None:
        """Until a peer's datagram waits to be read (forever if not listening)."""
        sock = self._sock
        if sock is None or not self._name:
            await anyio.sleep_forever()
            return
        # Several fetches may wait at once, and each backend allows one waiter per descriptor.
        fd = os.dup(sock.fileno())
        try:
            await anyio.wait_readable(fd)
        finally:
            os.close(fd)

    def _resolve_dir(self) -> None:
        if not self._dir:
            self._dir = os.path.realpath(self._db_path) + self._suffix

    def _own(self, sock: socket.socket, name: str) -> None:
        self._release()
        self._sock, self._name, self._pid = sock, name, os.getpid()
        self._release = weakref.finalize(self, _release, sock, self._dir, name)

    def _forget_inherited(self) -> None:
        self._release.detach()  # the parent's: a forked child must not remove its file
        if self._sock is not None:
            self._sock.close()
        self._sock, self._name = None, ""

    def _refresh_peers(self) -> None:
        """Lists the directory again when a socket came or went (one ``stat``, 1-2 us), and
        while it exists but lists no peer."""
        try:
            mtime = os.stat(self._dir).st_mtime_ns
        except OSError:
            mtime = -1
        now = time.monotonic()
        fresh = mtime == self._listed_mtime and now - self._listed_at < _PEERS_FRESH_S
        # An existing directory that listed empty is a peer between creating it and binding
        # its socket, often within one tick of a coarse clock: look until the socket shows.
        if fresh and not (self._listed_empty and mtime != -1):
            return
        try:
            names = os.listdir(self._dir)
        except OSError:
            names = []
        self._peers = [os.path.join(self._dir, n) for n in names if n != self._name]
        self._listed_at, self._listed_mtime, self._listed_empty = now, mtime, not names

    def _forget(self, peer: str) -> None:
        # Refused: the file is there but no socket is bound to it (its process was killed).
        try:
            os.unlink(peer)
        except OSError:
            pass
        if peer in self._peers:
            self._peers.remove(peer)
        self._dropped.discard(peer)


LOST = b"*\n"
"""Leads the first notice datagram a peer gets after one it missed (its queue was full)."""


def encode_notices(notices: Sequence[InstanceNotice]) -> list[bytes]:
    """``notices`` as datagrams of ``MAX_DATAGRAM - len(LOST)`` bytes at most: one line per
    instance, ``E<id>`` (ended) or ``C<id>`` (changed); instance ids hold no line breaks."""
    datagrams: list[bytes] = []
    lines: list[bytes] = []
    size = 0
    for notice in notices:
        line = (b"E" if notice.ended else b"C") + notice.instance_id.encode()
        if lines and size + len(line) + 1 > MAX_DATAGRAM - len(LOST):
            datagrams.append(b"\n".join(lines))
            lines, size = [], 0
        lines.append(line)
        size += len(line) + 1
    if lines:
        datagrams.append(b"\n".join(lines))
    return datagrams


def decode_notices(datagrams: Iterable[bytes]) -> list[InstanceNotice]:
    """What ``encode_notices`` sent (``LOST``: an ``ANY_INSTANCE`` notice); anything else in
    a datagram is skipped."""
    notices: list[InstanceNotice] = []
    for datagram in datagrams:
        for line in datagram.split(b"\n"):
            kind, instance_id = line[:1], line[1:]
            if line == LOST.rstrip():
                notices.append(InstanceNotice(ANY_INSTANCE, ended=True))
            elif kind in (b"E", b"C") and instance_id:
                notices.append(
                    InstanceNotice(instance_id.decode(errors="replace"), ended=kind == b"E")
                )
    return notices


def _nothing() -> None:
    pass


def _release(sock: socket.socket, directory: str, name: str) -> None:
    sock.close()
    if name:
        try:
            os.unlink(os.path.join(directory, name))
            os.rmdir(directory)  # only succeeds when no other process is listening
        except OSError:
            pass


def _new_socket() -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock
