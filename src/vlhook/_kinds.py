"""What a capture is, as the first element of every item in the buffer."""

from __future__ import annotations

STDOUT, STDERR, LOGGING, EXCEPTION, FD1, FD2 = 0, 1, 2, 3, 4, 5
FLUSH = -1  # a control item: everything before it must be delivered, then its event is set
DISCARD = -2  # a control item: the line being assembled for (stream, thread) was shed

TEXT = frozenset({STDOUT, STDERR, FD1, FD2})
STREAM_NAME = {
    STDOUT: "stdout",
    STDERR: "stderr",
    LOGGING: "logging",
    EXCEPTION: "stderr",
    FD1: "fd1",
    FD2: "fd2",
}
