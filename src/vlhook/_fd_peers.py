"""The fd helper's side of the wire: the connections of the program's processes, and what
they said (notes per channel, flush requests, the invocation's context).

Only connections that start with the helper's token are heard (the abstract address is
visible to every user of the host); only the process that started the helper may set the
context.
"""

from __future__ import annotations

import _socket
from struct import Struct

from vlhook._fd_wire import (
    CONTEXT,
    DISCONNECT,
    FINAL,
    FLUSH,
    FLUSH_BODY,
    HELLO,
    NOTE,
    NOTE_ITEM,
    REPLY,
    REPLY_BODY,
    SKIP,
    STDERR,
    Frames,
    frame,
    line_key,
)
from vlhook._sync import allocate_lock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

    from vlhook._captures import Context

MAX_NOTES = 100_000  # notes never matched (their bytes never came): forgotten past this many
PEER_CREDENTIALS = Struct("iII")  # struct ucred: pid, uid, gid


class Notes:
    """Lines announced for one channel, by (action, length, CRC-32), as counts."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: dict[tuple[int, int, int], int] = {}
        self.total = 0

    def add(self, action: int, length: int, crc: int) -> None:
        if self.total >= MAX_NOTES:  # a program that noted lines it never wrote
            self.counts.clear()
            self.total = 0
        key = (action, length, crc)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.total += 1

    def match(self, line: bytes) -> Optional[int]:
        """SKIP or STDERR when the line was noted (the note is used up), else None."""
        length, crc = line_key(line)
        for action in (SKIP, STDERR):
            key = (action, length, crc)
            count = self.counts.get(key)
            if count:
                if count == 1:
                    del self.counts[key]
                else:
                    self.counts[key] = count - 1
                self.total -= 1
                return action
        return None


class Peer:
    """The connection of one process of the program."""

    __slots__ = ("frames", "lock", "pid", "sock", "trusted")

    def __init__(self, sock: _socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.frames = Frames()
        self.lock = allocate_lock()
        self.trusted = False  # it said the token

    def reply(self, ident: int, ok: bool) -> None:
        """From a flush's thread: the answer the process waits for."""
        with self.lock:
            try:
                self.sock.sendall(frame(REPLY, REPLY_BODY.pack(ident, ok)))
            except OSError:  # the process stopped waiting, or ended
                pass


class FlushAsked:
    """A peer's FLUSH: ship what was written before it within `timeout` seconds, then answer."""

    __slots__ = ("disconnect", "final", "ident", "peer", "timeout")

    def __init__(self, peer: Peer, ident: int, timeout: float, flags: int) -> None:
        self.peer = peer
        self.ident = ident
        self.timeout = timeout
        self.final = bool(flags & FINAL)  # the program's end
        self.disconnect = bool(flags & DISCONNECT)  # see Sender.flush


class Peers:
    def __init__(
        self, listener: Any, poller: Any, owner: int, token: bytes, notes: list[Notes]
    ) -> None:
        self.listener = listener
        self.poller = poller
        self.owner = owner
        self.token = token
        self.notes = notes  # per channel
        self.peers: dict[int, Peer] = {}
        #: Flushes asked for and not yet served.
        self.requests: list[FlushAsked] = []
        self.context: Optional[Context] = None

    def read(self) -> None:
        """Everything every process has sent so far."""
        self._accept()
        for peer in list(self.peers.values()):
            self._read(peer)

    def _accept(self) -> None:
        while True:
            try:
                fd, _ = self.listener._accept()
            except OSError:  # BlockingIOError: none waiting
                return
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
            cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, PEER_CREDENTIALS.size)
            pid, _, _ = PEER_CREDENTIALS.unpack(cred)
            sock.setblocking(False)
            self.peers[fd] = Peer(sock, pid)
            self.poller.register(fd, 1)  # POLLIN: a closed connection wakes the loop too

    def _read(self, peer: Peer) -> None:
        while True:
            try:
                data = peer.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            frames = peer.frames.feed(data) if data else None
            if frames is None or not all(self._heard(peer, *each) for each in frames):
                self._drop(peer)  # gone, or not one of ours
                return

    def _drop(self, peer: Peer) -> None:
        fd = peer.sock.fileno()
        self.poller.unregister(fd)
        del self.peers[fd]
        with peer.lock:
            peer.sock.close()

    def _heard(self, peer: Peer, kind: bytes, body: bytes) -> bool:
        """Act on one frame; False when the peer must be dropped."""
        if not peer.trusted:
            peer.trusted = kind == HELLO and body == self.token
            return peer.trusted
        if kind == NOTE:
            for offset in range(0, len(body) - NOTE_ITEM.size + 1, NOTE_ITEM.size):
                channel, action, length, crc = NOTE_ITEM.unpack_from(body, offset)
                if channel < len(self.notes):
                    self.notes[channel].add(action, length, crc)
        elif kind == FLUSH and len(body) == FLUSH_BODY.size:
            ident, millis, flags = FLUSH_BODY.unpack(body)
            self.requests.append(FlushAsked(peer, ident, millis / 1000, flags))
        elif kind == CONTEXT and peer.pid == self.owner:
            # At once: the program says it only when all it wrote before is read (after a
            # flush's answer, or at the start of an invocation, when nothing is being written).
            import json

            fields = json.loads(body) if body else None
            self.context = (fields,) if isinstance(fields, dict) else None
        return True
