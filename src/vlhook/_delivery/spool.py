"""The spool: batches that could not be delivered wait on disk, to be replayed later.

Safe against other local users (vlhook often runs as root in every process of an image): the
directory is used only when it is a real directory (not a link) of the effective user, mode
0700 (private.py; vlhook creates it so and never changes a mode); every file is opened
relative to that directory's descriptor, created with O_EXCL|O_NOFOLLOW and mode 0600, and
checked before it is counted, read, replaced or removed: a regular file of ours with one name,
not a link, and so is its progress file. Anything else is left alone and reported once.

A write is whole or absent (temporary name, every write checked, renamed into place). A reader
claims a file with an exclusive `flock` held by its live process: a claim never outlives its
process, whatever happens to its PID. Replay reads a file in bounded pieces and records how far
it got beside it (`<name>.sent`), so a process that stops mid-file leaves exactly the rest.
"""

from __future__ import annotations

import errno
import itertools
import os
import time

from vlhook import _diag
from vlhook._delivery.private import (
    CREATE,
    READ,
    Opened,
    Refused,
    file_problem,
    open_high,
    open_private_dir,
)
from vlhook._sync import acquire_patiently, allocate_lock

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Any, Callable, Optional, TypeVar

    from vlhook._stats import Stats

    T = TypeVar("T")

BATCH, CAPTURES = ".jsonl", ".captures"  # JSON lines ready to send; raw captures (_replay.py)
SENT, TEMP = ".sent", ".tmp-"
# Earlier versions claimed a file by renaming it to `<name>.jsonl.sending-<pid>`; a claim whose
# pid was reused (pid 1 in a container) was never taken back. Such files are batches like any.
OLD_CLAIM = BATCH + ".sending-"
STALE_TEMP_S = 600.0  # a temporary file this old belongs to a process that died mid-write
#: Tries of a spool file's write or read whose descriptor the program closed under it (a
#: daemon's os.closerange): that is not a failure of the disk, and a second try succeeds.
ATTEMPTS = 3
_counter = itertools.count()


class SpoolFile:
    __slots__ = ("lines", "mtime", "name", "size")

    def __init__(self, name: str, size: int, mtime: float, lines: Optional[int]) -> None:
        self.name = name
        self.size = size
        self.mtime = mtime
        self.lines = lines  # from the name, when vlhook wrote it


class Claim(Opened):
    """An open, locked spool file being replayed (see _replay.py)."""

    __slots__ = ("name", "offset", "own", "size")

    def __init__(self, opened: Opened, size: int, name: str, offset: int, own: bool) -> None:
        super().__init__(opened.fd, opened.identity, opened.marked)
        self.name = name
        self.size = size
        self.offset = offset  # where the unsent rest begins
        self.own = own  # written by this process

    def checked(self, read: Callable[..., T], *args: Any) -> Optional[T]:
        """What `read(*args)` read from the claimed file; None when the claim was lost (the
        program closed its descriptor, a daemon's os.closerange): what was read may be a file
        of the program's under that number. Checked after reading, so that a close while the
        reads went on is seen too, and holds: this file never comes back under that number.
        A read of the closed number fails."""
        try:
            result = read(*args)
        except OSError:
            if self.held:
                raise
            return None
        return result if self.held else None


class Piece:
    """Whole lines of a claimed file, [start, end)."""

    __slots__ = ("claim", "end", "start")

    def __init__(self, claim: Claim, start: int, end: int) -> None:
        self.claim = claim
        self.start = start
        self.end = end


class Spool:
    def __init__(self, directory: str, max_bytes: int, stats: Stats) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.stats = stats
        self._opened: Optional[Opened] = None  # the directory
        self._refused = "" if directory else "VICTORIALOGS_SPOOL_DIR=off"
        #: Why the directory could not be opened at the last try, when that may pass (out of
        #: descriptors, a full disk: see private.PASSING); None once it is open.
        self._unopened: Optional[OSError] = None
        #: Files this process wrote and their entries (its own accounting follows them).
        self.own: dict[str, int] = {}
        #: Entries left alone, and why (each reported once).
        self.refused: dict[str, str] = {}
        #: Held while a file of this process is written and counted; see seal().
        self.lock = allocate_lock()
        self.sealed = False

    # -- the directory ------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self._dir() is not None

    @property
    def refusal(self) -> str:
        """Why the spool cannot be used ("" while it can)."""
        self._dir()
        return self._refused

    def _dir(self) -> Optional[int]:
        if self._opened is not None and not self._opened.held:
            # The program closed it, and the number may be one of its own directories now:
            # left to the program, never closed, and the spool is opened (and checked) again.
            self._opened = None
        for _ in range(ATTEMPTS):
            if self._opened is not None or self._refused:
                break
            try:
                self._opened = open_private_dir(self.directory)
            except Refused as exc:
                self._refused = str(exc)
                _diag.warn(f"spool directory {self.directory} not used: {exc}; running without "
                           "a spool (undeliverable entries are dropped and counted)",
                           key="spool-dir")  # fmt: skip
            except OSError as exc:  # may pass (see private.PASSING): tried again, now and later
                self._unopened = exc
        if self._opened is None:
            return None
        self._unopened = None
        return self._opened.fd

    # -- writing ------------------------------------------------------------------------------

    def seal(self, timeout: float) -> None:
        """The exit was given up on (its thread did not finish in time): what this process's
        files hold is final, for the report said so. A write under way ends first."""
        held = acquire_patiently(self.lock, timeout)
        self.sealed = True
        if held:
            self.lock.release()

    def put(self, body: bytes, lines: int, own: bool = True) -> str:
        """Keep a batch of JSON lines. "" when kept, else the drop reason. `own`: entries this
        process captured (its counters follow them; vlhook's own reports are not)."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter)}-{lines}{BATCH}"
        with self.lock:
            if self.sealed:
                return "exit_timeout"
            reason = self.write(name, body, lines)
            if not reason and own:
                self.own[name] = lines
                self.stats.add("spooled", lines)
        return reason

    def write(self, name: str, body: bytes, lines: int) -> str:
        if self._dir() is None:
            if self._refused or self._unopened is None:
                return "spool_off" if not self.directory else "spool_refused"
            return self._unwritable(self._unopened)
        if self.max_bytes <= 0 or not self._make_room(len(body)):
            return "spool_full"
        try:
            self._write_file(name, body)
        except OSError as exc:
            return self._unwritable(exc)
        return ""

    def _unwritable(self, exc: OSError) -> str:
        """The drop reason for a spool that cannot be written now, said once in a warning."""
        _diag.warn(f"cannot write to the spool {self.directory}: {exc}", key="spool-write")
        return "spool_no_space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else \
            "spool_unwritable"  # fmt: skip

    def _write_file(self, name: str, data: bytes) -> None:
        """`data` as the file `name`: whole or not at all (written under a temporary name,
        then renamed into place). Raises OSError."""
        temp = f"{TEMP}{name}"
        for attempt in range(ATTEMPTS):
            fd = self._dir()
            if fd is None:
                raise self._unopened or OSError(errno.ENOENT, "the spool directory is not usable",
                                                self.directory)  # fmt: skip
            if attempt:
                _unlink(temp, fd)  # left by a try whose directory descriptor was closed
            try:
                out = open_high(temp, CREATE, fd)
                try:
                    write_all(out.fd, data)
                finally:
                    out.close()
                os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
                return
            except OSError as exc:
                _unlink(temp, fd)
                if exc.errno != errno.EBADF or attempt == ATTEMPTS - 1:
                    raise

    def create(self, name: str) -> Optional[Opened]:
        """A new file of ours, open for appending (raw captures at exit); None when refused."""
        fd = self._dir()
        if fd is None:
            return None
        try:
            return open_high(name, CREATE | os.O_APPEND, fd)
        except OSError as exc:
            _diag.warn(f"cannot write to the spool {self.directory}: {exc}", key="spool-write")
            return None

    def publish(self, temp: str, name: str) -> None:
        """Give a file written under a temporary name its final name (OSError if it fails)."""
        fd = self._dir()
        if fd is None:
            raise OSError("the spool directory is not usable")
        os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)

    def _make_room(self, size: int) -> bool:
        """Drop the oldest files nobody is replaying until `size` more bytes fit the cap."""
        files = self.files()
        total = sum(f.size for f in files)
        for file in files:
            if total + size <= self.max_bytes:
                break
            lines = self._evict(file)
            if lines is not None:
                total -= file.size
        return total + size <= self.max_bytes

    def _evict(self, file: SpoolFile) -> Optional[int]:
        claim = self.claim_file(file.name)
        if claim is None:
            return None  # being replayed: not ours to delete
        try:
            lines = self._lines_left(file, claim)
            if lines is None:
                return None  # lost: the program closed it (see Claim.held)
            own = self.own.pop(file.name, None)
            self.finish(claim)
        finally:
            self.release(claim)
        if own is not None:  # this process's entries: from "spooled" to dropped
            self.stats.add("spooled", -lines)
            self.stats.drop("spool_full", lines)
        else:
            self.stats.add("spool_evicted", lines)
            _diag.warn(f"the spool is full (VICTORIALOGS_SPOOL_MAX_BYTES={self.max_bytes}): "
                       "the oldest files are dropped", key="spool-evict")  # fmt: skip
        return lines

    def _lines_left(self, file: SpoolFile, claim: Claim) -> Optional[int]:
        """The entries a claimed file still holds; None when the claim was lost (see
        Claim.checked)."""
        if file.lines is not None and not claim.offset:
            return file.lines if claim.held else None
        return claim.checked(count_lines, claim.fd, claim.offset, claim.size)

    # -- reading ------------------------------------------------------------------------------

    def files(self) -> list[SpoolFile]:
        """Waiting files of ours, oldest first (names start with the time they were written);
        anything else is reported and left out."""
        fd = self._dir()
        if fd is None:
            return []
        try:
            names = sorted(os.listdir(fd))
        except OSError:
            return []
        out, present = [], set(names)
        for name in names:
            if name.startswith(TEMP):
                self._drop_stale_temp(name, fd)
                continue
            if not name.endswith((BATCH, CAPTURES)) and OLD_CLAIM not in name:
                continue
            if not _named_by_us(name):  # a file:// output kept in the same folder, say
                self._report(name, "its name is not one vlhook gives its spool files")
                continue
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            problem = file_problem(info)
            if not problem and name + SENT in present:
                problem = _progress_problem(name, fd)
            if problem:
                self._report(name, problem)
            else:
                out.append(SpoolFile(name, info.st_size, info.st_mtime, _lines_in_name(name)))
        return out

    def claim(self) -> Optional[Claim]:
        """The oldest file no other process is replaying, locked and checked; None if none."""
        for file in self.files():
            claim = self.claim_file(file.name)
            if claim is not None:
                return claim
        return None

    def claim_file(self, name: str) -> Optional[Claim]:
        """`name` checked, locked and with its progress; None when another process is
        replaying it, it is gone, or it (or its progress file) is not ours (reported)."""
        import fcntl

        fd = self._dir()
        if fd is None:
            return None
        try:
            opened = open_high(name, READ, fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._report(name, "it is a symbolic link, not a regular file")
            return None
        try:
            problem = file_problem(os.fstat(opened.fd))
            if not problem:
                fcntl.flock(opened.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # else: being replayed
                info = os.fstat(opened.fd)
                if not info.st_nlink:  # replayed and removed while it was being opened
                    raise FileNotFoundError(name)
                offset, problem = self._progress(name, fd)
        except OSError:
            opened.close()
            return None
        if problem:
            opened.close()
            self._report(name, problem)
            return None
        size = info.st_size
        return Claim(opened, size, name, min(offset, size), own=name in self.own)

    def read(self, claim: Claim, limit: int) -> Optional[Piece]:
        """The next whole lines of the claimed file, at most ~`limit` bytes (a longer single
        line whole); None at the end."""
        start = claim.offset
        if start >= claim.size:
            return None
        end = start
        while end < claim.size:
            data = os.pread(claim.fd, min(limit, claim.size - end), end)
            if not data:
                break
            cut = data.rfind(b"\n")
            if cut >= 0:
                end += cut + 1
                break
            end += len(data)  # one line longer than `limit`: read on to its end
        return Piece(claim, start, end)

    def piece_bytes(self, piece: Piece) -> bytes:
        return os.pread(piece.claim.fd, piece.end - piece.start, piece.start)

    def advance(self, claim: Claim, offset: int) -> None:
        """Everything before `offset` is settled: remember it (or remove a finished file)."""
        claim.offset = offset
        if offset >= claim.size:
            self.finish(claim)
            return
        if self._dir() is None:
            return
        try:
            self._write_file(claim.name + SENT, str(offset).encode())
        except OSError as exc:  # replayed again from the last recorded point: at-least-once
            _diag.warn(f"cannot record how far {claim.name} in the spool was replayed ({exc}): "
                       "its entries delivered since the last record may be sent again",
                       key="spool-progress")  # fmt: skip

    def finish(self, claim: Claim) -> None:
        fd = self._dir()
        if fd is not None:
            _remove(claim.name, fd, claim.identity)
            _remove(claim.name + SENT, fd)
        self.own.pop(claim.name, None)

    def release(self, claim: Claim) -> None:
        claim.close()  # and with it the lock; not when the program closed it

    def purge(self) -> int:
        removed = 0
        for file in self.files():
            claim = self.claim_file(file.name)
            if claim is not None:
                self.finish(claim)
                self.release(claim)
                removed += 1
        return removed

    def _progress(self, name: str, fd: int) -> tuple[int, str]:
        """How far `name` was replayed (0: from its start), or why its progress file is not
        ours (then neither file is read, replaced or removed). Raises OSError when it cannot
        be read (a descriptor closed by the program): read as 0, what was delivered would be
        sent again."""
        problem = _progress_problem(name, fd)
        if problem:
            return 0, problem
        try:
            opened = open_high(name + SENT, READ, fd)
        except FileNotFoundError:
            return 0, ""  # no progress file
        try:
            problem = _progress_problem(name, fd, os.fstat(opened.fd))
            if problem:  # what was opened is not what was looked at: not read
                return 0, problem
            text = os.read(opened.fd, 32)
            if not opened.held:  # closed and its number reused: not what was read
                raise OSError(errno.EBADF, "closed by the program while it was read")
        finally:
            opened.close()
        try:
            return int(text.decode("ascii", "replace").strip() or 0), ""
        except ValueError:
            return 0, ""

    def _drop_stale_temp(self, name: str, fd: int) -> None:
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return
        problem = file_problem(info)
        if problem:
            self._report(name, problem)
        elif time.time() - info.st_mtime > STALE_TEMP_S:
            _unlink(name, fd)

    def _report(self, name: str, problem: str) -> None:
        if name not in self.refused:
            self.refused[name] = problem
            _diag.warn(f"spool file {os.path.join(self.directory, name)} left alone: {problem}",
                       key=f"spool-file {name}")  # fmt: skip


def _progress_problem(name: str, fd: int, info: Optional[os.stat_result] = None) -> str:
    """Why the progress file of `name` is not ours ("" when it is, or there is none)."""
    try:
        info = info or os.stat(name + SENT, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return ""
    problem = file_problem(info)
    return f"its progress file {name}{SENT} is not ours ({problem})" if problem else ""


def _named_by_us(name: str) -> bool:
    """`<20-digit time>-<pid>-...`: how vlhook (this version and earlier ones) names them."""
    head, dash, _ = name.partition("-")
    return bool(dash) and len(head) == 20 and head.isdigit()


def _lines_in_name(name: str) -> Optional[int]:
    """`<time>-<pid>-<n>-<lines>.jsonl`, as put() names a batch."""
    if not name.endswith(BATCH):
        return None
    last = name[: -len(BATCH)].rpartition("-")[2]
    return int(last) if last.isdigit() and name.count("-") == 3 else None


def count_lines(fd: int, start: int, end: int) -> int:
    count = 0
    while start < end:
        data = os.pread(fd, min(1 << 20, end - start), start)
        if not data:
            break
        count += data.count(b"\n")
        start += len(data)
    return count


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _unlink(name: str, fd: int) -> None:
    try:
        os.unlink(name, dir_fd=fd)
    except OSError:
        pass


def _remove(name: str, fd: int, opened: Optional[tuple[int, int]] = None) -> None:
    """Remove `name` if it is a file of ours (and still the one `opened`, by identity)."""
    try:
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return
    if not file_problem(info) and opened in (None, (info.st_dev, info.st_ino)):
        _unlink(name, fd)
