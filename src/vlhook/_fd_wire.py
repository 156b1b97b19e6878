"""What a program and its fd helper say to each other, and how children find the helper.

The program (and every process that shares its captured fds) talks to the helper over one
Unix stream connection per process, to an abstract socket the helper listens on. Frames are
`kind (1 byte) | payload length (4 bytes) | payload`:

- HELLO: the helper's token, first on every connection. The address is visible to every user
  of the host; the token is only in the environment of the program's processes (which keep it
  when they drop privileges, as a pre-fork server's workers do). A connection that does not
  start with it is closed.
- NOTE: lines this process is about to write to a captured fd, by length and CRC-32, with what
  the helper must do with them: SKIP (already captured richer: a logging record a handler
  prints, a traceback already shipped, vlhook's own message) or STDERR (a line written to
  sys.stderr, on a channel that fds 1 and 2 share). A note is sent before the bytes are
  written, so the helper, which reads the connections after reading a channel, always has it
  in time.
- FLUSH: id, milliseconds, flags (FINAL: the program's end; DISCONNECT: close the idle
  delivery connections once shipped, before a Lambda SnapStart snapshot). The helper reads
  everything written so far, ships it, and answers REPLY: id, ok.
- CONTEXT: the invocation's fields (JSON), applied to the lines read from then on.

The environment variable MARKER tells child processes which of their fds are already captured:
`dev:ino:channel:address:token` items separated by `;` (a pipe or pty is known by its device
and inode, which a child sees through fstat on its own fd 1 and 2).
"""

from __future__ import annotations

from struct import Struct
from zlib import crc32

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

    #: (st_dev, st_ino) of a captured fd -> (helper address, helper token, channel)
    Captured = dict[tuple[int, int], tuple[bytes, bytes, int]]

MARKER = "VICTORIALOGS_FD_CAPTURED"
HELLO, NOTE, FLUSH, CONTEXT, REPLY = b"H", b"N", b"F", b"C", b"R"
SKIP, STDERR = 0, 1

HEAD = Struct("<cI")
NOTE_ITEM = Struct("<BBII")  # channel, action, line length, CRC-32 of the line
FLUSH_BODY = Struct("<IIB")  # id, milliseconds, flags
FINAL, DISCONNECT = 1, 2  # a FLUSH's flags
REPLY_BODY = Struct("<IB")  # id, ok
MAX_FRAME = 1 << 20  # a peer that announces more is not one of ours: the connection is dropped


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return HEAD.pack(kind, len(payload)) + payload


def line_key(line: bytes) -> tuple[int, int]:
    return len(line), crc32(line)


class Frames:
    """Frames out of a byte stream that arrives in pieces."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = b""

    def feed(self, data: bytes) -> Optional[list[tuple[bytes, bytes]]]:
        """Complete frames so far; None when the stream is not one of ours."""
        buf = self._data + data if self._data else data
        out = []
        start = 0
        while len(buf) - start >= HEAD.size:
            kind, size = HEAD.unpack_from(buf, start)
            if size > MAX_FRAME:
                return None
            end = start + HEAD.size + size
            if end > len(buf):
                break
            out.append((kind, buf[start + HEAD.size : end]))
            start = end
        self._data = buf[start:]
        return out


def parse_marker(value: str) -> Captured:
    """What the parent captures; items that do not parse are ignored (a child must start)."""
    captured: Captured = {}
    for item in value.split(";"):
        parts = item.split(":")
        if len(parts) != 5 or not all(p.isdigit() for p in parts[:3]) or not all(parts[3:]):
            continue
        dev, ino, channel = (int(p) for p in parts[:3])
        name, token = (part.encode("ascii", "replace") for part in parts[3:])
        captured[(dev, ino)] = (b"\0" + name, token, channel)
    return captured


def format_marker(captured: Captured) -> str:
    return ";".join(
        f"{dev}:{ino}:{channel}:{address[1:].decode('ascii')}:{token.decode('ascii')}"
        for (dev, ino), (address, token, channel) in captured.items()
    )
