"""A process's connection to an fd helper: notes, flushes and the invocation's context.

One connection per process (a forked child opens its own: the parent's is the parent's), made
on first use. Writes are whole frames under a lock; a flush waits for its own reply. When the
helper cannot be reached, nothing is sent any more from this process and the program goes on.
"""

from __future__ import annotations

import _socket
import os
from time import monotonic

from vlhook._fd_wire import (
    CONTEXT,
    DISCONNECT,
    FINAL,
    FLUSH,
    FLUSH_BODY,
    HELLO,
    REPLY,
    REPLY_BODY,
    Frames,
    frame,
)
from vlhook._sync import RLock, allocate_lock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


class Link:
    def __init__(self, address: bytes, token: bytes, owner: int) -> None:
        self.address = address
        self.token = token
        self.owner = owner  # pid of the process whose fds the helper captured first
        self._lock = RLock()  # a signal handler that logs may run while it is held
        self._flush_lock = allocate_lock()
        self._sock: Optional[_socket.socket] = None
        self._pid = 0
        self._broken = False
        self._ids = 0

    @property
    def owned(self) -> bool:
        """This process started the helper (its exit is the helper's flush point)."""
        return os.getpid() == self.owner

    def send(self, data: bytes) -> bool:
        with self._lock:
            sock = self._connected()
            if sock is None:
                return False
            try:
                sock.sendall(data)
            except OSError:
                self._broken = True
                return False
            return True

    def _connected(self) -> Optional[_socket.socket]:
        pid, sock = os.getpid(), self._sock
        if pid != self._pid:  # first use, or a forked child: a connection of its own
            self._pid = pid  # (the parent's connection stays open in the parent)
        elif sock is None or self._broken:
            return None
        elif self._ours(sock):
            return sock
        if sock is not None:
            self._let_go(sock)
        self._sock, self._broken = None, False
        try:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            sock.connect(self.address)
            sock.sendall(frame(HELLO, self.token))
        except OSError:
            self._broken = True
            return None
        self._sock = sock
        return sock

    def _ours(self, sock: _socket.socket) -> bool:
        """Whether the socket's descriptor is still this connection to the helper. A program
        that closes every descriptor it did not open (a daemon's `os.closerange(3, ...)`) may
        then open a socket of its own under that number: sending there would write notes into
        the program's connection. The helper's address is unique (random, abstract), so being
        connected to it is this connection's identity; checked before each use, ~1 µs a
        note (a closed number, a file or another socket fails it)."""
        try:
            return bool(sock.getpeername() == self.address)
        except OSError:
            return False

    def _let_go(self, sock: _socket.socket) -> None:
        """Close our descriptor; one that is no longer ours is left to its owner (detached)."""
        if self._ours(sock):
            sock.close()
        else:
            sock.detach()

    def tell_context(self, payload: bytes) -> None:
        """The fields of the invocation now running (JSON; empty: none)."""
        self.send(frame(CONTEXT, payload))

    def ask_flush(self, timeout: float, final: bool, disconnect: bool = False
                  ) -> Optional[int]:  # fmt: skip
        """Ask the helper to ship everything written so far; the id to wait for, or None.
        The caller flushed Python's own stream buffers first."""
        if not self._flush_lock.acquire(True, max(timeout, 0.0)):
            return None
        self._ids = (self._ids + 1) & 0xFFFFFFFF
        flags = (FINAL if final else 0) | (DISCONNECT if disconnect else 0)
        body = FLUSH_BODY.pack(self._ids, int(max(timeout, 0.0) * 1000), flags)
        if not self.send(frame(FLUSH, body)):
            self._flush_lock.release()
            return None
        return self._ids

    def wait(self, asked: Optional[int], deadline: float) -> bool:
        """The helper's answer to ask_flush, by `deadline` (monotonic)."""
        if asked is None:
            return False
        try:
            return self._reply(asked, deadline)
        finally:
            self._flush_lock.release()

    def _reply(self, asked: int, deadline: float) -> bool:
        import select

        sock = self._sock
        if sock is None:
            return False
        frames = Frames()
        poller = select.poll()  # not select(): a busy program's fds may be numbered past 1024
        poller.register(sock.fileno(), select.POLLIN)
        while True:
            left = deadline - monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                return False
            try:
                data = sock.recv(4096, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            got = frames.feed(data) if data else None
            if got is None:
                return False  # the helper is gone
            for kind, body in got:
                if kind == REPLY and len(body) == REPLY_BODY.size:
                    ident, ok = REPLY_BODY.unpack(body)
                    if ident == asked:  # an earlier one's caller stopped waiting
                        return bool(ok)
