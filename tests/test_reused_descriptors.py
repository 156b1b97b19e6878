"""A program that closes every descriptor it did not open (a daemon's `os.closerange(3, ...)`)
and opens files of its own gets the lowest free numbers: those vlhook's descriptors had. Here
the program's moves are made at the exact moments between two of vlhook's calls (the real
program, at random moments, is in test_delivery_faults.py): vlhook must never close, read,
write or change a file of the program's, and must not lose or repeat what it was doing."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from conftest import SRC, run_python
from shipping import RawServer
from vlhook import _diag
from vlhook._config import load, parse_endpoint
from vlhook._delivery import http, private, spool
from vlhook._delivery.http import Connection, HttpError
from vlhook._delivery.private import HIGH_FD, Opened, open_high
from vlhook._delivery.spool import SENT, Spool
from vlhook._delivery.transport import FileTransport
from vlhook._sender import Sender, Spare, _is_open
from vlhook._stats import Stats

PROGRAM_DATA = b"the program's data\n"


class ProgramFile:
    """A file of the program's, put under a number vlhook had (as the program's next open
    would get it once it closed vlhook's)."""

    def __init__(self, path: Path) -> None:
        path.write_bytes(PROGRAM_DATA)
        self.path = path
        self.fd = -1

    def take(self, number: int) -> None:
        mine = os.open(self.path, os.O_RDWR)
        if mine != number:  # else closed already, and got by the open
            os.dup2(mine, number)  # closes vlhook's, as closerange did, and takes its number
            os.close(mine)
        self.fd = number

    def opens(self) -> None:
        """Its next file: at the lowest free number, one vlhook had as a rule."""
        self.fd = os.open(self.path, os.O_RDWR)

    def intact(self) -> bool:
        """Still open under its number, its data and position as the program left them."""
        try:
            same = os.path.samestat(os.fstat(self.fd), os.stat(self.path))
        except OSError:  # closed
            return False
        return same and os.lseek(self.fd, 0, os.SEEK_CUR) == 0 and \
            self.path.read_bytes() == PROGRAM_DATA  # fmt: skip

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):  # closed by vlhook: a test says so
                os.close(self.fd)


@pytest.fixture
def program(tmp_path: Path) -> Iterator[ProgramFile]:
    file = ProgramFile(tmp_path / "program.txt")
    yield file
    file.close()


def _open_fds() -> set[int]:
    return {n for n in range(HIGH_FD + 64) if _is_open(n)}


def _taken_before_moved(monkeypatch: Any, program: ProgramFile, times: int = 1) -> None:
    """The next `times` numbers os.open gives vlhook become the program's before they are
    moved up."""
    moved = private.moved_up
    left = [times]

    def taken(low: int) -> int:
        if left[0] > 0:
            left[0] -= 1
            program.take(low)
        return moved(low)

    monkeypatch.setattr(private, "moved_up", taken)


# -- the spool's descriptors ----------------------------------------------------------------


def test_the_spool_opens_its_files_above_the_programs_numbers(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "f").write_text("x")
    before = _open_fds()
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        opened = open_high("f", private.READ, dir_fd)
        assert opened.fd >= HIGH_FD and os.read(opened.fd, 1) == b"x"
        assert _open_fds() == before | {dir_fd, opened.fd}  # the low number it had is closed
        opened.close()
        assert not opened.held
    finally:
        os.close(dir_fd)


SPARE_ALONE = """\
import os, sys
from vlhook._delivery.private import HIGH_FD
from vlhook._sender import Spare, _is_open
def open_fds():
    return {n for n in range(HIGH_FD + 64) if _is_open(n)}
def lowest_free():
    return min(set(range(HIGH_FD)) - open_fds())
at_start = sys.argv[1] == "True"
before, lowest = open_fds(), lowest_free()
number = HIGH_FD + 40
held = Spare.high(number) if at_start else Spare.low()
assert held is not None and held.at_start is at_start
assert open_fds() == before | {held.fd}, (before, open_fds())
assert held.fd == (number if at_start else lowest), (held.fd, lowest)
assert not os.get_inheritable(held.fd)
if at_start:
    assert lowest_free() == lowest
held.close()
held.close()  # once: a second call finds the number closed
assert open_fds() == before, (before, open_fds())
print("ok")
"""


@pytest.mark.parametrize("at_start", [False, True])
def test_the_spare_descriptor_is_one_not_inherited_and_let_go_once(
    tmp_path: Path, at_start: bool
) -> None:
    """The descriptor held for the exit (Sender.hold_spare_at_start, Sender._hold_spare): one,
    not passed to programs the process starts, closed when let go. The one held from the start
    is at the number asked for: the program's next file gets the number it gets without it.
    In a process of its own: the suite's leftover threads (a test server's) open and close
    descriptors of their own meanwhile."""
    script = tmp_path / "spare.py"
    script.write_text(SPARE_ALONE)
    run = run_python(script, {"PYTHONPATH": str(SRC)}, dropin=False, args=(str(at_start),))
    assert (run.rc, run.out) == (0, "ok\n"), run.err


def test_a_spare_descriptor_is_not_put_on_a_number_the_program_holds(program: ProgramFile) -> None:
    """A number taken at the start (inherited from the parent) stays the program's, and no
    other number is taken instead."""
    number = HIGH_FD + 40
    program.take(number)
    before = _open_fds()
    assert Spare.high(number) is None
    assert program.intact() and _open_fds() == before


def test_no_spare_descriptor_is_held_from_the_start_while_another_thread_runs() -> None:
    """Activated from a program's code (`vlhook.activate()`) while a thread of its own runs:
    growing the table of descriptors would make every thread wait (an RCU grace period), so
    the spare waits for the sender's first step (Sender._hold_spare)."""
    sender = Sender(load({"VICTORIALOGS_URL": "http://127.0.0.1:9"}), Stats())
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, args=(10,))
    worker.start()
    try:
        before = _open_fds()
        sender.hold_spare_at_start()
        assert _open_fds() == before
    finally:
        stop.set()
        worker.join(10)


def test_a_spare_descriptor_made_as_the_exit_begins_is_let_go_too(monkeypatch: Any) -> None:
    """The exit begins (a thread of the program in shutdown()) while the sender makes its
    spare: the exit lets go of the one it finds, and the sender of the one it made. Before,
    the new one was held to the end of the process, and a process at its limit had no
    descriptor free for the exit's code."""
    sender = Sender(load({"VICTORIALOGS_URL": "http://127.0.0.1:9"}), Stats())
    made = Spare.low

    def made_as_the_exit_begins() -> Spare:
        spare = made()
        sender.shutdown(time.monotonic() + 1)  # nothing captured: it only lets go
        return spare

    monkeypatch.setattr(Spare, "low", staticmethod(made_as_the_exit_begins))
    before = _open_fds()
    sender._hold_spare()
    assert _open_fds() == before


def test_a_spare_descriptor_let_go_twice_at_once_is_closed_once(monkeypatch: Any) -> None:
    """The exit (a thread of the program, or its SIGTERM handler) and the sender's step (which
    swaps the spare held from the start for one at a low number) may let go of the same spare
    at once: here the second begins between the first's check that the number is still the
    spare's and its close. Only one of them closes it: before, both did, and the second failed
    with EBADF in the program's SIGTERM handler (an internal error, 1 in a few hundred
    SIGTERMs of a flood into a full buffer), or, had the spool's next file taken the number
    in between, would have closed that file."""
    spare = Spare.low()
    checked = Spare.held.fget  # type: ignore[attr-defined]
    others: list[str] = []

    def held_as_the_other_lets_go(self: Spare) -> bool:
        answer: bool = checked(self)
        if not others:
            others.append("let go")
            self.close()
        return answer

    monkeypatch.setattr(Spare, "held", property(held_as_the_other_lets_go))
    spare.close()
    assert others == ["let go"] and not _is_open(spare.fd)


@pytest.mark.parametrize("at_start", [False, True])
def test_a_spare_descriptor_whose_number_the_program_took_is_left_to_it(
    program: ProgramFile, at_start: bool
) -> None:
    """A program that closes every descriptor it did not open, then has a file of its own
    under the spare's number: the exit's letting go closes nothing of the program's."""
    held = Spare.high(HIGH_FD + 40) if at_start else Spare.low()
    assert held is not None
    program.take(held.fd)
    held.close()
    assert program.intact()


def test_a_number_the_program_took_before_it_was_moved_is_left_to_it(
    tmp_path: Path, program: ProgramFile, monkeypatch: Any
) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "f").write_text("spool data")
    dir_fd = os.open(directory, os.O_RDONLY)
    _taken_before_moved(monkeypatch, program)
    before = _open_fds()
    try:
        with pytest.raises(OSError, match="closed by the program"):
            open_high("f", private.READ, dir_fd)
    finally:
        os.close(dir_fd)
    assert program.intact()
    assert _open_fds() == before - {dir_fd} | {program.fd}  # nothing of vlhook's left open


@pytest.mark.parametrize("room", [True, False], ids=["moved up", "no room up there"])
@pytest.mark.parametrize("flags", [private.READ, os.O_RDONLY], ids=["marked", "not marked"])
def test_a_file_gone_before_it_was_checked_leaves_nothing_of_vlhooks_open(
    tmp_path: Path, monkeypatch: Any, room: bool, flags: int
) -> None:
    """Another process replaying the spool renamed the file between vlhook's open and its
    check: whatever number vlhook had it under is closed, none left open."""
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "f").write_text("spool data")
    dir_fd = os.open(directory, os.O_RDONLY)
    moved = private.moved_up

    def gone_meanwhile(low: int) -> int:
        os.unlink(directory / "f")
        return moved(low) if room else low

    monkeypatch.setattr(private, "moved_up", gone_meanwhile)
    before = _open_fds()
    try:
        with pytest.raises(FileNotFoundError):
            open_high("f", flags, dir_fd)
    finally:
        os.close(dir_fd)
    assert _open_fds() == before - {dir_fd}


def test_a_spool_write_whose_number_the_program_took_is_written_again(
    tmp_path: Path, program: ProgramFile, monkeypatch: Any
) -> None:
    """Before: the batch went into the program's file, which was then closed."""
    store = Spool(str(tmp_path / "spool"), 1 << 20, Stats())
    assert store.usable
    _taken_before_moved(monkeypatch, program)
    assert store.put(b'{"_msg":"a"}\n', 1) == ""
    assert program.intact()
    [kept] = store.files()
    assert (tmp_path / "spool" / kept.name).read_bytes() == b'{"_msg":"a"}\n'
    assert sorted(os.listdir(tmp_path / "spool")) == [kept.name]  # no temporary file left


def test_a_spool_write_whose_descriptor_the_program_closed_is_written_again(
    tmp_path: Path, monkeypatch: Any
) -> None:
    store = Spool(str(tmp_path / "spool"), 1 << 20, Stats())
    real = spool.write_all
    closed: list[int] = []

    def closed_first(fd: int, data: bytes) -> None:
        if not closed:
            closed.append(fd)
            os.close(fd)  # the program's closerange, between the open and the write
        real(fd, data)

    monkeypatch.setattr(spool, "write_all", closed_first)
    assert store.put(b'{"_msg":"a"}\n', 1) == ""
    assert closed and closed[0] >= HIGH_FD
    [kept] = store.files()
    assert kept.lines == 1 and store.stats.spooled == 1
    assert (tmp_path / "spool" / kept.name).read_bytes() == b'{"_msg":"a"}\n'


def _claimed_file(tmp_path: Path, lines: int) -> tuple[Spool, str]:
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    name = f"{1:020d}-1-0-{lines}.jsonl"
    (folder / name).write_bytes(b"".join(b'{"_msg":"%d"}\n' % i for i in range(lines)))
    os.chmod(folder / name, 0o600)
    return Spool(str(folder), 1 << 20, Stats()), name


def test_progress_the_program_closed_while_it_was_read_is_not_read_as_none(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Before: a progress file whose descriptor failed was read as "nothing sent yet", and
    the whole file was sent again. Now the file is not claimed this time, and is claimed
    from its recorded progress the next time."""
    store, name = _claimed_file(tmp_path, 10)
    claim = store.claim_file(name)
    assert claim is not None
    store.advance(claim, 40)
    store.release(claim)
    assert (tmp_path / "spool" / (name + SENT)).read_text() == "40"
    real = open_high

    def closed_at_once(name: str, flags: int, dir_fd: Any, mode: int = 0o600) -> Opened:
        opened = real(name, flags, dir_fd, mode)
        if name.endswith(SENT):
            os.close(opened.fd)  # the program's closerange, right after it was opened
        return opened

    monkeypatch.setattr("vlhook._delivery.spool.open_high", closed_at_once)
    assert store.claim_file(name) is None
    monkeypatch.undo()
    again = store.claim_file(name)
    assert again is not None and again.offset == 40
    store.release(again)


def test_a_progress_file_found_not_ours_once_opened_is_not_read(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Looked at by name, then on what was opened: when the second look says it is not ours
    (swapped in between), nothing of it is read and the spool file is not claimed."""
    store, name = _claimed_file(tmp_path, 10)
    progress = tmp_path / "spool" / (name + SENT)
    progress.write_text("40")
    os.chmod(progress, 0o600)
    looked = spool._progress_problem

    def second_look(name: str, fd: int, info: Any = None) -> str:
        return "its progress file is not ours (swapped)" if info else looked(name, fd)

    monkeypatch.setattr(spool, "_progress_problem", second_look)
    real = os.read
    read: list[int] = []

    def reading(fd: int, size: int) -> bytes:
        read.append(fd)
        return real(fd, size)

    monkeypatch.setattr(os, "read", reading)
    assert store.claim_file(name) is None
    monkeypatch.undo()
    assert read == [] and name in store.refused


def test_progress_kept_low_whose_number_the_program_took_while_it_was_read_is_not_believed(
    tmp_path: Path, program: ProgramFile, monkeypatch: Any
) -> None:
    """With no room above 256 the progress file's descriptor stays low, and the program may
    take its number before the read: what was read is the program's, not how far the replay
    got (read as "nothing sent yet", the whole file would be sent again)."""
    store, name = _claimed_file(tmp_path, 10)
    progress = tmp_path / "spool" / (name + SENT)
    progress.write_text("40")
    os.chmod(progress, 0o600)
    monkeypatch.setattr(private, "moved_up", lambda fd: fd)
    real = os.read
    taken: list[int] = []

    def taken_first(fd: int, size: int) -> bytes:
        if not taken:
            taken.append(fd)
            program.take(fd)
        return real(fd, size)

    monkeypatch.setattr(os, "read", taken_first)
    assert store.claim_file(name) is None
    monkeypatch.undo()
    assert taken and os.path.samestat(os.fstat(program.fd), os.stat(program.path))  # left open
    again = store.claim_file(name)
    assert again is not None and again.offset == 40
    store.release(again)


def test_progress_that_cannot_be_recorded_is_said(tmp_path: Path, monkeypatch: Any) -> None:
    store, name = _claimed_file(tmp_path, 10)
    claim = store.claim_file(name)
    assert claim is not None
    shown: list[str] = []
    monkeypatch.setattr(_diag, "warn", lambda text, key=None: shown.append(text))

    def closed(fd: int, data: bytes) -> None:
        os.close(fd)  # every try: the program closes it each time
        raise OSError(9, "Bad file descriptor")

    monkeypatch.setattr(spool, "write_all", closed)
    store.advance(claim, 40)
    store.release(claim)
    assert len(shown) == 1 and "may be sent again" in shown[0] and name in shown[0]
    assert not (tmp_path / "spool" / (name + SENT)).exists()
    assert [n for n in os.listdir(tmp_path / "spool") if n != name] == []


def test_a_claim_the_program_closed_is_let_go(tmp_path: Path) -> None:
    store, name = _claimed_file(tmp_path, 10)
    claim = store.claim_file(name)
    assert claim is not None
    os.close(claim.fd)  # the program's closerange
    store.release(claim)  # nothing to close, nothing raised
    again = store.claim_file(name)  # the lock went with the descriptor
    assert again is not None
    store.release(again)


def _file_output(path: Path) -> FileTransport:
    return FileTransport(parse_endpoint(f"file://{path}"))


def test_a_file_output_whose_number_the_program_took_is_left_to_it(
    tmp_path: Path, program: ProgramFile, monkeypatch: Any
) -> None:
    """`VICTORIALOGS_URL=file://...`. Before: the entries went into the program's file, which
    was then closed."""
    out = tmp_path / "out.jsonl"
    _taken_before_moved(monkeypatch, program)
    failed = _file_output(out).post(b'{"_msg":"a"}\n', _in(5))
    assert (failed.ok, failed.retryable) == (False, True)
    assert program.intact()
    assert _file_output(out).post(b'{"_msg":"a"}\n', _in(5)).ok
    assert out.read_bytes() == b'{"_msg":"a"}\n'


def test_a_file_output_the_program_closed_at_once_is_tried_again(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Before: the failure raised out of the write (its start was never read)."""
    real = open_high

    def closed_at_once(name: str, flags: int, dir_fd: Any, mode: int = 0o600) -> Opened:
        opened = real(name, flags, dir_fd, mode)
        os.close(opened.fd)  # the program's closerange, right after it was opened
        return opened

    monkeypatch.setattr("vlhook._delivery.transport.open_high", closed_at_once)
    failed = _file_output(tmp_path / "out.jsonl").post(b'{"_msg":"a"}\n', _in(5))
    assert (failed.ok, failed.retryable) == (False, True)


def test_a_file_output_kept_low_whose_number_the_program_took_mid_write_is_not_cut(
    tmp_path: Path, program: ProgramFile, monkeypatch: Any
) -> None:
    """With no room above (a limit of open files below 256) the descriptor stays low. The
    program takes it while the batch is written: the write fails, and what would undo a half
    written batch (a truncation to where it began) is not done to the program's file."""
    monkeypatch.setattr(private, "moved_up", lambda fd: fd)
    real = os.write
    wire = b'{"_msg":"a"}\n'

    def taken_then_failed(fd: int, data: Any) -> int:
        if bytes(data) != wire:
            return real(fd, data)
        program.take(fd)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "write", taken_then_failed)
    failed = _file_output(tmp_path / "out.jsonl").post(wire, _in(5))
    monkeypatch.undo()
    assert (failed.ok, failed.retryable) == (False, True)
    assert program.intact()


# -- the connection -------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    """Answers each request with 204."""
    raw = RawServer(lambda index: [b"HTTP/1.1 204 No Content\r\n\r\n"])
    yield raw.listener.getsockname()
    raw.close()


def _post(conn: Connection) -> int:
    return conn.request("POST", "/insert/jsonline", {}, b'{"_msg":"x"}\n', _in(5)).status


def _in(seconds: float) -> float:
    return time.monotonic() + seconds


def _swapping(monkeypatch: Any, at: str, then: Callable[[int], None]) -> None:
    """The socket Connection opens; at its method `at`, the program takes its number first."""
    real = Connection._socket

    class Taken(socket.socket):
        def settimeout(self, value: Any) -> None:
            if at == "settimeout":
                self._taken()
            super().settimeout(value)

        def connect(self, address: Any) -> None:
            super().connect(address)
            if at == "connect":
                self._taken()

        def _taken(self) -> None:
            if not getattr(self, "done", False):
                self.done = True
                then(self.fileno())

    def made(self: Connection, family: int, kind: int, proto: int) -> Any:
        sock = real(self, family, kind, proto)
        return Taken(family, kind, proto, fileno=sock.detach())

    monkeypatch.setattr(Connection, "_socket", made)


@pytest.mark.parametrize("at", ["settimeout", "connect"])
def test_a_socket_number_the_program_took_while_it_connected_is_left_to_it(
    server: tuple[str, int], program: ProgramFile, monkeypatch: Any, at: str
) -> None:
    """Taken before the connect, or during it. Before: the failed connect closed the number,
    the program's file; or the connection went on with the program's file under its number."""
    conn = Connection(*server)
    _swapping(monkeypatch, at, program.take)
    with pytest.raises(HttpError, match="cannot connect"):
        _post(conn)
    assert program.intact()
    monkeypatch.undo()
    assert _post(conn) == 204  # the next request connects again
    conn.close()
    assert program.intact()


def test_a_socket_number_the_program_took_during_a_request_is_not_read(
    server: tuple[str, int], monkeypatch: Any
) -> None:
    """The program closes vlhook's socket between the request and its answer, and a socket
    of its own takes the number. Before: vlhook read the program's incoming data as its
    answer. Now the request goes again on a new connection (the server may have stored it:
    at least once, as for any connection cut), and the program's socket keeps its data."""
    conn = Connection(*server)
    assert _post(conn) == 204
    ours, peer = socket.socketpair()
    awaited = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"  # what the program awaits
    peer.sendall(awaited)
    real = Connection._send_all
    taken: list[int] = []

    def then_taken(self: Connection, head: bytes, body: bytes, deadline: float) -> None:
        real(self, head, body, deadline)
        if not taken:
            taken.append(self._sock.fileno())
            os.dup2(ours.fileno(), taken[0])  # closerange, then the program's socket

    monkeypatch.setattr(Connection, "_send_all", then_taken)
    assert _post(conn) == 204
    assert conn._sock.fileno() != taken[0]
    program = socket.socket(fileno=taken[0])
    assert program.getblocking()  # not made non-blocking by a timeout of vlhook's
    program.settimeout(5)
    assert program.recv(100) == awaited
    for sock in (program, ours, peer):
        sock.close()
    conn.close()


def test_a_socket_of_the_programs_that_took_the_number_during_connect_is_not_changed(
    server: tuple[str, int], monkeypatch: Any
) -> None:
    """Before: vlhook set its own option (TCP_NODELAY) on the program's socket."""
    programs = socket.create_connection(server, timeout=5)
    conn = Connection(*server)
    taken: list[int] = []

    def take(number: int) -> None:
        taken.append(number)
        os.dup2(programs.fileno(), number)

    _swapping(monkeypatch, "connect", take)
    with pytest.raises(HttpError, match="closed by the program while it connected"):
        _post(conn)
    held = socket.socket(fileno=taken[0])
    assert held.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    assert held.getblocking()
    for sock in (held, programs):
        sock.close()


def test_once_the_program_closed_a_socket_the_next_ones_are_moved_up(
    server: tuple[str, int], program: ProgramFile
) -> None:
    """A program that never closes vlhook's socket does not pay for moving it (fcntl's
    import); one that did gets the next ones where its next files do not go."""
    conn = Connection(*server)
    assert _post(conn) == 204
    first = conn._sock.fileno()
    assert first < HIGH_FD
    program.take(first)  # closerange, then the program's next file
    assert _post(conn) == 204
    assert conn._sock.fileno() >= HIGH_FD
    assert program.intact()
    conn.close()
    assert program.intact()


def test_the_spare_held_from_the_start_is_where_the_spools_files_are_moved_up_to() -> None:
    """Two constants, one number: the sender does not load `private` at start-up (~0.5 ms),
    and the table of descriptors it grows there is what the spool's moved files then use."""
    from vlhook._sender import SPARE_FD

    assert SPARE_FD == HIGH_FD


# -- the program's turn after any of vlhook's calls -----------------------------------------


#: The program's moves at its turn: its file takes the first or the last of the low numbers
#: vlhook holds (the program closed that one, and opened its file), or it closes every one
#: vlhook holds (its closerange) and opens a file.
MOVES = ["takes the first", "takes the last", "closes all, opens"]


class Turns:
    """The program's thread runs right after the `at`-th of vlhook's calls that let other
    threads run and make, look at or move a descriptor (they let go of the interpreter lock),
    and does `then(held)` there: `held`, the numbers those calls gave vlhook that it still
    holds. Calls
    that keep the lock (os.get_blocking, os.set_blocking) give no turn: no Python code of
    another thread runs in their middle. Counted on this thread only (a test server's threads
    make calls of their own)."""

    def __init__(self, at: int, then: Callable[[list[int]], None]) -> None:
        self.at = at
        self.then = then
        self.calls = 0
        self.busy = False
        self.turned = False
        self.failed: Optional[Exception] = None  # the program's moves: their own failure
        self.given: list[tuple[int, tuple[int, int]]] = []  # and what each was given as
        self.thread = threading.get_ident()

    def install(self, patch: Any) -> None:
        import _socket
        import types

        for module, name in ((os, "open"), (os, "pipe"), (os, "pipe2"), (os, "fstat"),
                             (os, "stat"), (fcntl, "fcntl")):  # fmt: skip
            patch.setattr(module, name, self._turning(getattr(module, name), name))
        # The connection's `_socket` only: socket.py's class calls _socket.socket's __init__.
        sockets = types.SimpleNamespace(**vars(_socket))
        sockets.socket = self._turning(_socket.socket, "socket")
        patch.setattr(http, "_socket", sockets)

    def _turning(self, real: Callable[..., Any], name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != self.thread or self.busy:
                return real(*args, **kwargs)
            try:
                result = real(*args, **kwargs)
            finally:
                self.calls += 1
            self.busy = True  # the calls made here are not vlhook's
            for number in _numbers(name, args, result):
                self.given.append((number, private.identity(number)))
            if self.calls == self.at:
                self.turned = True
                try:
                    self.then(self.held())  # and no turn after this one
                except Exception as exc:  # vlhook may take it for its own failure
                    self.failed = exc
            else:
                self.busy = False
            return result

        return call

    def held(self) -> list[int]:
        """The numbers given that vlhook still holds: what they were given as (a number let
        go may be another thread's by now: a test server's)."""
        return [number for number, mine in self.given if private.identity(number) == mine]


def _numbers(name: str, args: tuple[Any, ...], result: Any) -> list[int]:
    """The descriptors a call gave vlhook."""
    if name == "open":
        return [result]
    if name in ("pipe", "pipe2"):
        return list(result)
    if name == "fcntl" and args[1] in (fcntl.F_DUPFD_CLOEXEC, fcntl.F_DUPFD):
        return [result]
    if name == "socket" and len(args) < 4:
        return [result.fileno()]
    return []


def _at_every_turn(monkeypatch: Any, tmp_path: Path, run: Callable[[], Any], move: str) -> int:
    """`run` with the program's turn after each of its calls in turn (see Turns), where it
    makes its `move` (MOVES). Its file stays open and untouched, and nothing of vlhook's is
    left open: no number it was given still holds what it was given as (other threads of
    the suite may open and close numbers meanwhile). How many turns there were."""
    for at in range(1, 40):
        program = ProgramFile(tmp_path / f"program-{at}.txt")

        def then(held: list[int]) -> None:
            low = [number for number in held if number < HIGH_FD]  # the program's go there
            if move == "closes all, opens" or not low:
                for number in held:
                    os.close(number)
                program.opens()
            else:
                program.take(low[0] if move == "takes the first" else low[-1])

        turns = Turns(at, then)
        with monkeypatch.context() as patch:
            turns.install(patch)
            with contextlib.suppress(OSError, HttpError):
                run()
        try:
            if not turns.turned:
                return at - 1
            assert turns.failed is None, (at, turns.given)
            assert program.intact(), (at, turns.given, program.fd)
            assert not turns.held(), (at, turns.given)
        finally:
            program.close()
    raise AssertionError("more calls than expected")


@pytest.mark.parametrize("move", MOVES)
def test_a_spool_file_opened_and_closed_leaves_the_programs_file_at_any_turn(
    tmp_path: Path, monkeypatch: Any, move: str
) -> None:
    """A file of the spool's opened (os.open gives a low number, moved up) and closed. Before:
    the program's file that took the low number right after vlhook last looked at it (fstat)
    was closed by vlhook, and the program's next reads and writes went to vlhook's next file
    under that number (seen as a program reading its own file back wrong)."""
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "f").write_text("spool data")
    dir_fd = os.open(directory, os.O_RDONLY)

    def run() -> None:
        opened = open_high("f", private.READ, dir_fd)
        assert os.path.samestat(os.fstat(opened.fd), os.stat(directory / "f"))
        opened.close()

    try:
        assert _at_every_turn(monkeypatch, tmp_path, run, move) >= 5
    finally:
        os.close(dir_fd)


@pytest.mark.parametrize("move", MOVES)
def test_a_spare_descriptor_made_and_let_go_leaves_the_programs_file_at_any_turn(
    tmp_path: Path, monkeypatch: Any, move: str
) -> None:
    """Before: the pipe's write end was closed without a look, and the spare closed after a
    look that could be stale: either one closed the program's file under that number."""

    def run() -> None:
        Spare.low().close()

    assert _at_every_turn(monkeypatch, tmp_path, run, move) >= 3


@pytest.mark.parametrize("moved", [False, True])
@pytest.mark.parametrize("move", MOVES)
def test_a_connection_made_and_closed_leaves_the_programs_file_at_any_turn(
    server: tuple[str, int], tmp_path: Path, monkeypatch: Any, move: str,
    moved: bool,
) -> None:  # fmt: skip
    """A request on a new connection, then the connection closed; `moved`: once the program
    was seen to close a socket of vlhook's, the next ones are moved up. Before: the program's
    file that took the socket's number after vlhook's last look was closed by vlhook."""

    def run() -> None:
        conn = Connection(*server)
        conn._closes_ours = moved
        try:
            _post(conn)
        finally:
            conn.close()

    assert _at_every_turn(monkeypatch, tmp_path, run, move) >= 3
