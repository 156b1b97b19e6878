"""Capture at the file-descriptor level (VICTORIALOGS_CAPTURE=fd): whatever reaches fds 1 and 2
— print(), os.write, a C library's printf, a child process's output — is stored once.

At start-up the process puts a pipe (a pty when the fd was a terminal) in place of fd 1 and
fd 2 and forks a helper process that owns the other ends (see _fd_helper.py): it writes every
byte to the real fd at once and ships it. The helper outlives the program, so what was written
just before os._exit(), a fatal signal or SIGKILL still reaches the console and VictoriaLogs.
When fds 1 and 2 lead to the same place (a terminal, `2>&1`), they share one channel, so the
console sees their bytes in the order they were written.

Children inherit the fds, and the environment variable MARKER names them: a Python child with
vlhook starts no helper of its own for them, captures its logging records itself, and notes
the lines it prints for them (see _fd_streams.py), like the program.
"""

from __future__ import annotations

import os
import sys
from time import monotonic

from vlhook import _capture_streams, _diag
from vlhook._captures import STDERR, STDOUT
from vlhook._fd_link import Link
from vlhook._fd_wire import MARKER, format_marker, parse_marker
from vlhook._sender import Sender

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

    from vlhook._config import Config
    from vlhook._fd_streams import FdStream, Noter
    from vlhook._fd_wire import Captured
    from vlhook._stats import ExitReport

PIPE_BYTES = 1 << 20  # room in each pipe: the program rarely waits on the helper
F_SETPIPE_SZ = 1031  # Linux; fcntl has the name only from Python 3.10
KEPT_FDS_FROM = 100


class Channel:
    """One pipe or pty: the fds of the program it stands for, and its two ends."""

    __slots__ = ("fds", "index", "read", "tty", "write")

    def __init__(self, index: int, fds: tuple[int, ...]) -> None:
        self.index = index
        self.fds = fds
        self.tty = os.isatty(fds[0])
        self.read, self.write = os.openpty() if self.tty else os.pipe()
        try:
            if self.tty:
                _mirror_terminal(fds[0], self.write)
            else:
                _grow(self.write)
        except BaseException:
            os.close(self.read)
            os.close(self.write)
            raise


class FdCapture:
    """The captured fds of this process: which helper and channel each goes to."""

    def __init__(self, routes: dict[int, tuple[Link, int]], saved: dict[int, int],
                 added: Captured) -> None:  # fmt: skip
        self.routes = routes  # fd -> (link, channel)
        self.links = list({id(link): link for link, _ in routes.values()}.values())
        self.saved = saved  # fd -> the original, kept to undo the capture (this process's own)
        self.added = added  # what this process added to MARKER
        self.streams: list[FdStream] = []

    @property
    def shared(self) -> bool:
        return 1 in self.routes and self.routes.get(1) == self.routes.get(2)

    def ask(self, timeout: float, final: bool, disconnect: bool = False,
            python_buffers: bool = True) -> list[tuple[Link, Optional[int]]]:  # fmt: skip
        """Ask the helpers to ship what was written so far (at exit: only the helper this
        process started). Python's own buffers go to the fds first, unless the process is to
        end without writing them out (`python_buffers`: an exec, os._exit, a signal's death):
        written here, they would reach the console where without vlhook they are lost."""
        for stream in self.streams if python_buffers else ():
            with _diag.guard("fd flush"):
                try:
                    stream._vl_target.flush()
                except ValueError:  # detached or closed by the program: it holds nothing
                    pass
        return [(link, link.ask_flush(timeout, final, disconnect)) for link in self.links
                if link.owned or not final]  # fmt: skip

    @staticmethod
    def wait(asked: list[tuple[Link, Optional[int]]], deadline: float) -> bool:
        answers = [link.wait(ident, deadline) for link, ident in asked]  # each one, always
        return all(answers)

    def tell_context(self, fields: Optional[dict[str, Any]]) -> None:
        """The invocation now running (None: none): the helper adds its fields to the lines
        written from now on."""
        import json  # loaded already where this runs (awslambdaric uses it); orjson is not

        payload = json.dumps(fields, default=str).encode() if fields else b""
        for link in self.links:
            if link.owned:
                link.tell_context(payload)


class LinkedSender(Sender):
    """The sender of a process whose fds are captured: every flush and the exit flush the
    helper too, within the same deadline."""

    capture: Optional[FdCapture] = None

    def flush(self, timeout: Optional[float] = None, disconnect: bool = False,
              python_buffers: bool = True) -> bool:  # fmt: skip
        capture = self.capture
        if capture is None:
            return super().flush(timeout, disconnect)
        timeout = self.config.exit_timeout_ms / 1000 if timeout is None else timeout
        deadline = monotonic() + timeout
        asked = capture.ask(timeout, False, disconnect, python_buffers)
        ok = super().flush(timeout, disconnect)
        return capture.wait(asked, deadline) and ok

    def shutdown(self, deadline: float, python_buffers: bool = True) -> ExitReport:
        capture = self.capture
        asked = (capture.ask(deadline - monotonic(), True, python_buffers=python_buffers)
                 if capture is not None else [])  # fmt: skip
        report = super().shutdown(deadline)
        if capture is not None:
            capture.wait(asked, deadline)
        return report


_capture: Optional[FdCapture] = None


def current() -> Optional[FdCapture]:
    return _capture


def start(config: Config, own: bool) -> Optional[FdCapture]:
    """Capture fds 1 and 2 (`own`: those no parent captures already), or join the helper of
    the parent that captures them. None when neither applies. Raises OSError when the
    capture cannot be set up (the caller falls back to the stream tees)."""
    global _capture
    inherited = parse_marker(os.environ.get(MARKER, ""))
    idents: dict[int, tuple[int, int]] = {}
    for fd in (1, 2):
        try:
            status = os.fstat(fd)
        except OSError:  # closed: nothing is written there
            continue
        idents[fd] = (status.st_dev, status.st_ino)
    links: dict[bytes, Link] = {}
    routes: dict[int, tuple[Link, int]] = {}
    for fd, ident in idents.items():
        if ident in inherited:
            address, token, channel = inherited[ident]
            routes[fd] = (links.setdefault(address, Link(address, token, 0)), channel)
    todo = [fd for fd in idents if fd not in routes] if own else []
    saved: dict[int, int] = {}
    added: Captured = {}
    if todo:
        shared = len(todo) == 2 and idents[1] == idents[2]
        groups: list[tuple[int, ...]] = [tuple(todo)] if shared else [(fd,) for fd in todo]
        link, saved, added = _start_helper(config, groups)
        for index, fds in enumerate(groups):
            for fd in fds:
                routes[fd] = (link, index)
        os.environ[MARKER] = format_marker({**inherited, **added})
    if not routes:
        return None
    _capture = FdCapture(routes, saved, added)
    _install_streams(_capture, config)
    return _capture


def _start_helper(config: Config, groups: list[tuple[int, ...]]) -> tuple[Link, dict[int, int],
                                                                          Captured]:  # fmt: skip
    import _socket

    channels: list[Channel] = []
    listener = None
    try:
        for index, fds in enumerate(groups):
            channels.append(Channel(index, fds))
        owner = os.getpid()
        address = b"\0vlhook-fd-%d-%s" % (owner, os.urandom(4).hex().encode())
        token = os.urandom(16).hex().encode()
        listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        listener.bind(address)
        listener.listen(64)
        for stream in (sys.stdout, sys.stderr):  # nothing buffered may be written twice
            if stream is not None:
                stream.flush()
        _fork_helper(config, channels, listener, owner, token)
    except BaseException:
        for channel in channels:
            os.close(channel.write)
        raise
    finally:
        if listener is not None:
            listener.close()
        for channel in channels:
            os.close(channel.read)
    saved: dict[int, int] = {}
    added: Captured = {}
    for channel in channels:
        original = _keep(channel.fds[0])
        for fd in channel.fds:
            saved[fd] = original
            os.dup2(channel.write, fd)
        status = os.fstat(channel.write)
        added[(status.st_dev, status.st_ino)] = (address, token, channel.index)
        os.close(channel.write)
    return Link(address, token, owner), saved, added


def _fork_helper(
    config: Config, channels: list[Channel], listener: Any, owner: int, token: bytes
) -> None:
    """Fork twice: the helper is nobody's child (never a zombie of the program, never seen by
    the program's wait()); the middle process ends at once and is reaped here."""
    middle = _fork()
    if middle == 0:
        try:
            if os.fork() == 0:
                _run_helper(config, channels, listener, owner, token)
        finally:
            os._exit(0)
    os.waitpid(middle, 0)


def _run_helper(
    config: Config, channels: list[Channel], listener: Any, owner: int, token: bytes
) -> None:
    """The helper's process. The program does not wait for it to start (the helper's setup
    takes ~10 ms), so should it not run, the program's output is passed on all the same."""
    try:
        from vlhook import _fd_helper

        _fd_helper.main(config, channels, listener, owner, token)
    except BaseException as exc:
        _pass_through(channels, listener, exc)


def _pass_through(channels: list[Channel], listener: Any, exc: BaseException) -> None:
    """What reaches the program's fds, copied as it comes to where they led before, unshipped
    and said once on that stderr: for a helper that cannot run (a limit of open files too low
    to open its code, no memory left...). Before, it ended, and every write of the program's
    to fds 1 and 2 failed (EPIPE): no output, and the exit status 120 or 1. Only what is
    loaded already is used: `os`, and one process per channel rather than `select`."""
    import _signal  # type: ignore[import-not-found]  # built in: nothing to open

    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGPIPE"):  # as the helper's
        _signal.signal(getattr(_signal, name), _signal.SIG_IGN)
    try:
        listener.close()  # the program's exit then finds no helper to wait for
        for channel in channels:
            os.close(channel.write)  # else the end of the program's output never shows
        why = f"{type(exc).__name__}: {exc}"[:300]
        os.write(2, f"vlhook (fd helper): cannot run ({why}); what the program writes to fds 1 "
                    "and 2 is passed on, not shipped\n".encode("utf-8", "replace"))  # fmt: skip
    except OSError:
        pass
    for channel in channels[1:]:
        if os.fork() == 0:
            _copy_through(channel)
            os._exit(0)
    _copy_through(channels[0])


def _copy_through(channel: Channel) -> None:
    """The channel's bytes to the fd it stands for, until the program's end closes it. Bytes
    that fd no longer takes (its reader is gone) are read all the same: the program never
    waits on a full pipe."""
    dest = channel.fds[0]  # here, as in the helper, still the program's original
    while True:
        try:
            data = os.read(channel.read, 1 << 16)
        except OSError:  # a pty's end (EIO)
            return
        if not data:
            return
        while data and dest >= 0:
            try:
                data = data[os.write(dest, data) :]
            except OSError:
                dest = -1


def _fork() -> int:
    threading = sys.modules.get("threading")
    if threading is None or threading.active_count() == 1:
        return os.fork()
    import warnings

    with warnings.catch_warnings():  # 3.12+ warns of fork in a threaded process: ours is safe
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def _mirror_terminal(original: int, slave: int) -> None:
    """The pty answers like the terminal (modes, size) but passes bytes through unchanged:
    the real terminal does the output processing (\\n -> \\r\\n) once, as before."""
    import fcntl
    import termios

    try:
        attrs = termios.tcgetattr(original)
        size = fcntl.ioctl(original, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
    except (OSError, termios.error):  # a terminal that will not say: the pty's defaults
        attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST
    termios.tcsetattr(slave, termios.TCSANOW, attrs)


def _keep(fd: int) -> int:
    """A copy of the original fd, to undo the capture: close-on-exec (children never see it),
    and numbered high, where a program does not expect its own files to be."""
    import fcntl

    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, KEPT_FDS_FROM)
    except OSError:  # a limit on open files below that
        return os.dup(fd)


def _grow(pipe: int) -> None:
    import fcntl

    try:
        fcntl.fcntl(pipe, F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:  # over the user's pipe quota: the default size works too
        pass


def _install_streams(capture: FdCapture, config: Config) -> None:
    from vlhook._fd_streams import FdStream, Noter, OwnOutput, watch

    noters: dict[int, Noter] = {}
    for fd, name, kind in ((1, "stdout", STDOUT), (2, "stderr", STDERR)):
        route = capture.routes.get(fd)
        current = getattr(sys, name)
        if route is None or current is None:
            continue
        link, channel = route
        noters[fd] = Noter(current, link, channel, label=fd == 2 and capture.shared)
        stream = FdStream(current, kind, noters[fd])
        capture.streams.append(stream)
        setattr(sys, name, stream)
        if getattr(sys, f"__{name}__") is current:
            setattr(sys, f"__{name}__", stream)
    _capture_streams.suppressed = watch(_capture_streams.suppressed, capture.streams)
    if 2 in noters:
        _diag.configure(OwnOutput(noters[2]), config.debug)  # type: ignore[arg-type]


def stop() -> None:
    """Undo this process's capture (the CLI's own output is not a program's): the streams are
    the originals again, and fds this process captured lead where they led before."""
    from vlhook._fd_streams import OwnOutput

    global _capture
    capture, _capture = _capture, None
    if capture is None:
        return
    for stream in capture.streams:
        for name in ("stdout", "stderr", "__stdout__", "__stderr__"):
            if getattr(sys, name) is stream:
                setattr(sys, name, stream._vl_target)
    if isinstance(_diag._out, OwnOutput):
        _diag.configure(_diag._out.noter.target, _diag._debug)
    if capture.saved:
        # What the helper has not written yet goes first.
        capture.wait(capture.ask(1.0, final=True), monotonic() + 1.0)
    for fd, original in capture.saved.items():
        os.dup2(original, fd)
    for original in set(capture.saved.values()):
        os.close(original)
    left = {k: v for k, v in parse_marker(os.environ.get(MARKER, "")).items()
            if k not in capture.added}  # fmt: skip
    if left:
        os.environ[MARKER] = format_marker(left)
    else:
        os.environ.pop(MARKER, None)
