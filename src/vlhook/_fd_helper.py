"""The fd helper: a small process that owns the read ends of the program's fd 1 and fd 2.

It writes every byte it reads to the real fd at once (the console never waits on shipping),
then hands complete lines to a sender of its own: the whole pipeline (batching, delivery,
spool, exit report) runs here, on this process's CPU and GIL, not the program's. It ends when
every writer is gone (the program and the children that inherited the fds), whatever way they
ended: what was still in the pipe is written out and shipped, within VICTORIALOGS_EXIT_TIMEOUT_MS.

Lines the program noted (see _fd_wire.py) are written out but not shipped (SKIP), or shipped as
stderr (STDERR). Notes always come before the bytes they describe, and the connections are read
after each read of the pipes, so a note is known before its line is looked at.
"""

from __future__ import annotations

import os
import select
from time import time_ns

from vlhook import _diag
from vlhook._captures import STDERR, STDOUT
from vlhook._captures import text as make_text
from vlhook._fd_peers import Notes, Peers
from vlhook._fd_wire import SKIP
from vlhook._fd_wire import STDERR as LABEL_STDERR
from vlhook._sync import start_thread

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Optional, Union

    from vlhook._capture_fd import Channel
    from vlhook._config import Config
    from vlhook._fd_peers import FlushAsked
    from vlhook._sender import Sender
    from vlhook._stats import Stats

READ_BYTES = 1 << 20
HOLD_MAX = 1 << 16  # an unfinished line longer than this is shipped without waiting for its end
DRAIN_MAX = 64 << 20  # bytes a flush reads before it goes on, even if the program writes on


def main(config: Config, channels: list[Channel], listener: Any, owner: int, token: bytes) -> None:
    """Runs in the forked helper; the caller ends the process when this returns."""
    _diag.speak_as("vlhook (fd helper)")
    helper = Helper(config, channels, listener, owner, token)
    with _diag.guard("fd helper"):
        helper.prepare()
    helper.run()


class Pipe:
    """The helper's end of one channel, and where its bytes go."""

    __slots__ = ("dest", "fd", "kind", "notes", "open", "tail", "tail_ns", "tty")

    def __init__(self, channel: Channel) -> None:
        self.fd = channel.read
        self.dest = channel.fds[0]  # the helper's own fd 1 or 2: the original
        self.tty = channel.tty
        self.kind = STDOUT if 1 in channel.fds else STDERR
        self.notes = Notes()
        self.tail = b""  # the unfinished last line
        self.tail_ns = 0  # when its first bytes were read: the line's time
        self.open = True


class Helper:
    def __init__(
        self, config: Config, channels: list[Channel], listener: Any, owner: int, token: bytes
    ) -> None:
        from vlhook._sender import Sender
        from vlhook._stats import Stats

        self.config = config
        self.owner = owner
        self.listener = listener
        self.pipes = [Pipe(channel) for channel in channels]
        self.poller = select.poll()
        notes = [pipe.notes for pipe in self.pipes]
        self.peers = Peers(listener, self.poller, owner, token, notes)
        self.stats: Stats = Stats()
        self.sender: Sender = Sender(_with_pid(config, owner), self.stats)

    # -- setting up ----------------------------------------------------------------------------

    def prepare(self) -> None:
        import _signal  # type: ignore[import-not-found]

        # Ctrl-C, a closed terminal or a group-wide SIGTERM end the program, which ends this
        # process in turn once everything it wrote is out.
        for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGTTOU", "SIGPIPE"):
            _signal.signal(getattr(_signal, name), _signal.SIG_IGN)
        if any(pipe.tty for pipe in self.pipes):
            _signal.signal(_signal.SIGWINCH, self._resize)
        else:
            # Out of the program's process group: a kill of the whole group (GNU timeout, a CI
            # job's end, `kill -9 -PGID`) would end this process too, with what the program
            # wrote last still in the pipe, unwritten. On a terminal it stays in the group, the
            # terminal's own: a resize reaches the foreground group only.
            try:
                os.setpgid(0, 0)
            except OSError:
                pass
        self._close_others()
        try:  # what `ps` and `top` show for this process (its command line is the program's)
            with open("/proc/self/comm", "w") as comm:
                comm.write("vlhook-fd")
        except OSError:
            pass
        for pipe in self.pipes:
            os.set_blocking(pipe.fd, False)
            self.poller.register(pipe.fd, select.POLLIN)
        self.listener.setblocking(False)
        self.poller.register(self.listener.fileno(), select.POLLIN)

    def _close_others(self) -> None:
        """Hold nothing else of the program's: a pipe or file it was given must see its end
        when the program closes it, not when this process does."""
        keep = {pipe.fd for pipe in self.pipes} | {pipe.dest for pipe in self.pipes}
        keep |= {self.listener.fileno(), 2}  # 2: where this process's own messages go
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):
            if fd not in keep:
                os.dup2(null, fd)
        keep |= {0, 1, null}
        try:
            fds = [int(name) for name in os.listdir("/proc/self/fd")]
        except OSError:
            fds = list(range(3, 1024))
        for fd in fds:
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        os.close(null)

    def _resize(self, signum: int, frame_: Optional[FrameType]) -> None:
        """The terminal changed size: so does the program's pty."""
        import fcntl
        import termios

        for pipe in self.pipes:
            if pipe.tty and pipe.open and pipe.dest >= 0:
                try:
                    size = fcntl.ioctl(pipe.dest, termios.TIOCGWINSZ, b"\0" * 8)
                    fcntl.ioctl(pipe.fd, termios.TIOCSWINSZ, size)
                except OSError:
                    pass

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        while any(pipe.open for pipe in self.pipes):
            try:
                self._round()
            except Exception as exc:  # shipping may fail; writing out must go on
                _diag.internal_error("fd helper", exc)
                select.select([], [], [], 0.01)  # never a busy loop
        with _diag.guard("fd helper exit"):
            from vlhook._lifecycle import final_flush

            final_flush(self.sender, self.config)

    def _round(self) -> None:
        ready = {fd for fd, _ in self.poller.poll()}
        chunks = [(pipe, self._read(pipe)) for pipe in self.pipes if pipe.open and pipe.fd in ready]
        self.peers.read()
        for pipe, data in chunks:
            self._take(pipe, data)
        self._serve()
        for pipe in self.pipes:
            if pipe.open and pipe.dest < 0:  # the console is gone: so is the program's fd
                self._close(pipe)

    def _read(self, pipe: Pipe) -> bytes:
        """Read what is there and write it out at once; b"" when nothing (or the end)."""
        try:
            data = os.read(pipe.fd, READ_BYTES)
        except BlockingIOError:
            return b""
        except OSError:  # EIO: a pty whose every writer is gone
            data = b""
        if not data:
            self._close(pipe)
            return b""
        self._write_out(pipe, data)
        return data

    def _write_out(self, pipe: Pipe, data: bytes) -> None:
        view = memoryview(data)
        while view and pipe.dest >= 0:
            try:
                view = view[os.write(pipe.dest, view) :]
            except BlockingIOError:  # someone made the console non-blocking: wait for room
                select.select([], [pipe.dest], [])
            except OSError:  # the reader went away (EPIPE), the terminal hung up (EIO)
                for other in self.pipes:
                    if other.dest == pipe.dest:
                        other.dest = -1

    def _close(self, pipe: Pipe) -> None:
        pipe.open = False
        self.poller.unregister(pipe.fd)
        os.close(pipe.fd)
        if pipe.dest not in (-1, 2) and not any(p.open and p.dest == pipe.dest for p in self.pipes):
            # Whoever reads the program's stdout sees its end now, not after the shipping.
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, pipe.dest)
            os.close(null)
        with _diag.guard("fd helper"):
            if pipe.tail:
                self._put(pipe.kind, pipe.tail, pipe.tail_ns)
                pipe.tail = b""

    # -- lines -----------------------------------------------------------------------------------

    def _take(self, pipe: Pipe, data: bytes) -> None:
        """Complete lines to the sender (minus those noted SKIP); the unfinished one waits. A
        line keeps the time its first bytes were read: the one the last read left unfinished
        goes apart from the lines after it, with its own."""
        if not data:
            return
        now = time_ns()
        held, began = pipe.tail, pipe.tail_ns
        buf = held + data if held else data
        end = buf.rfind(b"\n") + 1
        pipe.tail = buf[end:]
        if end or not held:
            pipe.tail_ns = now
        if end and held:
            first = buf.find(b"\n") + 1
            self._lines(pipe, buf[:first], began)
            if first < end:
                self._lines(pipe, buf[first:end], now)
        elif end:
            self._lines(pipe, buf[:end], now)
        if len(pipe.tail) > HOLD_MAX:
            self._put(pipe.kind, pipe.tail, pipe.tail_ns)
            pipe.tail = b""

    def _lines(self, pipe: Pipe, lines: bytes, t_ns: int) -> None:
        if pipe.notes.counts:
            self._sort(pipe, lines, t_ns)
        else:
            self._put(pipe.kind, lines, t_ns)

    def _sort(self, pipe: Pipe, lines: bytes, t_ns: int) -> None:
        kind = pipe.kind
        run: list[bytes] = []
        for line in lines[:-1].split(b"\n"):
            action = pipe.notes.match(line)
            if action == SKIP:
                continue
            this = STDERR if action == LABEL_STDERR else pipe.kind
            if this != kind and run:
                self._put(kind, b"\n".join(run) + b"\n", t_ns)
                t_ns += len(run)  # the assembler's nanosecond a line (see _lines.feed)
                run = []
            kind = this
            run.append(line)
        if run:
            self._put(kind, b"\n".join(run) + b"\n", t_ns)

    def _put(self, kind: int, data: bytes, t_ns: int) -> None:
        self.sender.put(make_text(kind, data, t_ns, 0, self.peers.context))

    # -- flushes ---------------------------------------------------------------------------------

    def _serve(self) -> None:
        """Flush requests: everything written before them is read and queued first."""
        if not self.peers.requests:
            return
        self._drain()
        for pipe in self.pipes:
            if pipe.tail:  # an unfinished line goes too, as at a flush of the stream tee
                self._put(pipe.kind, pipe.tail, pipe.tail_ns)
                pipe.tail = b""
        requests, self.peers.requests = self.peers.requests, []
        idle = not self.sender.thread_started and not self.sender.buffer.items
        for request in requests:
            if idle:  # nothing was ever captured: nothing to wait for
                request.peer.reply(request.ident, True)
            else:
                start_thread(self._flush, request)

    def _drain(self) -> None:
        taken = 0
        while taken < DRAIN_MAX:
            chunks = [(pipe, self._read(pipe)) for pipe in self.pipes if pipe.open]
            self.peers.read()
            for pipe, data in chunks:
                self._take(pipe, data)
            got = sum(len(data) for _, data in chunks)
            if not got:
                return
            taken += got

    def _flush(self, request: FlushAsked) -> None:
        ok = False
        with _diag.guard("fd helper flush"):
            before = self.stats.as_dict()
            if request.final:  # the program's end: its report below says what became of them
                self.sender.report_follows = True
            ok = self.sender.flush(request.timeout, request.disconnect)
            if request.final and not ok:
                self._report(before)
        request.peer.reply(request.ident, ok)

    def _report(self, before: dict[str, Union[int, str, dict[str, int]]]) -> None:
        """The program is exiting and not all its output could be delivered: say what became
        of it, as the exit report does."""
        from vlhook._stats import ExitReport

        now = self.stats.as_dict()
        report = ExitReport()
        report.delivered = _delta(now, before, "shipped")
        report.spooled = _delta(now, before, "spooled")
        report.in_flight = _delta(now, before, "in_flight")
        dropped, earlier = now["dropped"], before["dropped"]
        assert isinstance(dropped, dict) and isinstance(earlier, dict)
        report.dropped = {k: v - earlier.get(k, 0) for k, v in dropped.items()
                          if v > earlier.get(k, 0)}  # fmt: skip
        report.problem = self.sender.last_problem
        spool = self.sender.spool
        report.spool = spool.directory if spool is not None and spool.usable else "(none)"
        message = report.message(self.config.exit_timeout_ms)
        if message:
            _diag.warn(message, key="exit")


def _with_pid(config: Config, pid: int) -> Config:
    """The program's configuration, with the program's pid on every entry (not the helper's)."""
    from vlhook._config import Config

    names = [name for name, value in vars(Config).items()
             if not name.startswith("_") and not callable(value)
             and not isinstance(value, property)]  # fmt: skip
    values = {name: getattr(config, name) for name in names}
    values["fields"] = (*config.fields, ("pid", str(pid)))
    values["warnings"] = ()
    return Config(**values)


def _delta(now: dict[str, Any], before: dict[str, Any], name: str) -> int:
    return int(now[name]) - int(before[name])
