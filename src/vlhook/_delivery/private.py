"""A directory and files of the effective user that no other local user can plant, swap or read.

vlhook often runs as root in every process of an image, and its default spool lies in a place
other users may write to (`/tmp`). So nothing here follows a link at the directory or file
itself, nothing changes the mode or owner of anything, and every check is made on the opened
descriptor (what was checked is what is used). Directories above the one checked are the
user's path: they are followed as given.
"""

from __future__ import annotations

import errno
import os
import stat

from vlhook._sync import close_nonblocking

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Optional

# getattr: Windows lacks these flags (it has no spool: open_private_dir refuses it there).
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: Every descriptor of the spool's is non-blocking from the call that opens it: the mark by
#: which a close tells it from a file of the program's under the same number (see
#: _sync.close_nonblocking). Reads and writes of regular files and directories ignore it.
MARK = getattr(os, "O_NONBLOCK", 0)
_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | MARK
#: A new file: never an existing one, never through a link.
CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | MARK
#: An existing file to read: not through a link, and opening it has no side effect (a named
#: pipe does not block, a terminal does not become the controlling one).
READ = os.O_RDONLY | _NOFOLLOW | MARK | getattr(os, "O_NOCTTY", 0)
_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))  # fmt: skip


#: Failures that say nothing of the directory itself, and may pass: the process out of
#: descriptors (a program at its limit of open files), the system out of them or of memory,
#: the disk full, a descriptor the program closed at that moment. Raised as they are, never
#: as a refusal: the directory is tried again at the next need (a refusal lasts the process).
PASSING = frozenset({errno.EBADF, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EINTR,
                     errno.EAGAIN, errno.ENOSPC, errno.EDQUOT})  # fmt: skip


class Refused(Exception):
    """The directory is not safe to use; the message says why."""


def open_private_dir(path: str, create: bool = True) -> Opened:
    """`path` opened: a real directory (not a link) of the effective user, mode 0700.
    Created with mode 0700 when missing (and `create`); its missing parents too. Raises Refused
    with the reason, FileNotFoundError when it is missing and not to be created, or OSError
    for a failure that may pass (PASSING)."""
    if not hasattr(os, "geteuid"):
        raise Refused("not supported on this system")
    parent, name = os.path.split(path.rstrip("/"))
    if not name or name in (".", ".."):
        raise Refused("it must name a directory of its own")
    if create:
        _make_parents(parent)
    try:
        parent_dir = open_high(parent or ".", _DIR, None)
    except FileNotFoundError:
        if not create:
            raise
        raise Refused(f"its parent directory {parent} does not exist") from None
    except OSError as exc:
        if exc.errno in PASSING:
            raise
        raise Refused(f"cannot open its parent directory: {exc.strerror}") from None
    try:
        opened = _open_child(parent_dir.fd, name, create)
    finally:
        parent_dir.close()
    problem = dir_problem(os.fstat(opened.fd))
    if problem:
        opened.close()
        raise Refused(problem)
    return opened


def _make_parents(parent: str) -> None:
    """Missing parents are made 0700, like the directory itself (os.makedirs would make them
    with the umask's mode, world-writable under umask 0)."""
    missing: list[str] = []
    while parent and not os.path.isdir(parent) and len(missing) < 64:
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass  # made at the same moment by another process
        except OSError as exc:
            if exc.errno in PASSING:
                raise
            raise Refused(f"cannot create {directory}: {exc.strerror}") from None


def _open_child(parent_fd: int, name: str, create: bool) -> Opened:
    for _ in range(2):  # made by another process at the same moment: opened as it is
        try:
            return open_high(name, _DIR | os.O_NOFOLLOW, parent_fd)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as exc:
            if exc.errno in PASSING:
                raise
            raise Refused(_why_not_a_dir(parent_fd, name, exc)) from None
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno in PASSING:
                raise
            raise Refused(f"cannot create it: {exc.strerror}") from None
    raise Refused("it keeps disappearing")


def _why_not_a_dir(parent_fd: int, name: str, exc: OSError) -> str:
    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
        return str(exc.strerror)
    try:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except OSError:
        return str(exc.strerror)
    return f"it is {kind(info.st_mode)}, not a directory"


def dir_problem(info: os.stat_result) -> str:
    """Why an opened directory is not private to this user ("" when it is)."""
    if info.st_uid != os.geteuid():
        return f"it belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()})"
    mode = stat.S_IMODE(info.st_mode) & 0o777
    if mode & 0o077:
        return f"other users can use it (mode {mode:04o}, not 0700)"
    if mode != 0o700:
        return f"its mode is {mode:04o}, not 0700"
    return ""


def file_problem(info: os.stat_result) -> str:
    """Why a file is not one of this user's own regular files ("" when it is)."""
    if not stat.S_ISREG(info.st_mode):
        return f"it is {kind(info.st_mode)}, not a regular file"
    if info.st_uid != os.geteuid():
        return f"it belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()})"
    if info.st_nlink > 1:  # a file vlhook wrote has one name; another is someone else's way in
        return f"it has {info.st_nlink} hard links"
    return ""


#: What `identity` gives for a descriptor that is closed.
NO_IDENTITY = (-1, -1)
#: The spool's descriptors are moved to this number or above. A program that closes every
#: descriptor it did not open (a daemon's `os.closerange(3, ...)`) and then opens files gets
#: the lowest free numbers: one up here is not taken by the program's next files (unless it
#: holds this many at once), so a descriptor of the spool that it closed stays closed (EBADF)
#: where a low one would, between two of vlhook's calls, have become the program's file.
HIGH_FD = 256


class Opened:
    """A descriptor vlhook opened, and the file it refers to (`identity`): what a program
    that closes descriptors it did not open may put under that number is not that file.
    `marked`: opened non-blocking (MARK), as all of the spool's are."""

    __slots__ = ("fd", "identity", "marked")

    def __init__(self, fd: int, mine: tuple[int, int], marked: bool) -> None:
        self.fd = fd
        self.identity = mine
        self.marked = marked

    @property
    def held(self) -> bool:
        """Its descriptor is still the file it opened. A look, not a lock: the program may
        close the number right after it, and the thread that looked may wait for the
        interpreter lock before the next call. From HIGH_FD up, the program's next files do
        not take the number, and that call fails (EBADF); kept low (no room up there), the
        program's file could be under it."""
        return identity(self.fd) == self.identity

    def close(self) -> None:
        """Closed while it is still its file (see close_if)."""
        close_if(self.fd, self.identity, self.marked)


def open_high(name: str, flags: int, dir_fd: Optional[int], mode: int = 0o600) -> Opened:
    """`name` (in the directory `dir_fd`) opened, moved up to HIGH_FD or above, and checked
    to be the file of that name. The low number os.open gave is exposed until it is moved:
    had the program closed and reused it meanwhile, what was moved is the program's file,
    which is then neither used nor closed (OSError EBADF, as for a closed descriptor). Once
    the moved one is known to be vlhook's file, the low number is let go only while it still
    is that file (release). Kept at its low number when there is no room up there (a limit
    of open files below HIGH_FD). Raises OSError."""
    low = os.open(name, flags, mode, dir_fd=dir_fd)
    fd = moved_up(low)
    mine = identity(fd)
    marked = bool(flags & MARK)
    try:
        named = os.stat(name, dir_fd=dir_fd, follow_symlinks=not flags & _NOFOLLOW)
    except OSError:  # gone already (another process replayed it): nothing to check against
        if fd == low:
            close_if(low, mine, marked)
        else:
            if not marked or _nonblocking(fd):  # the mark, where there is one, says vlhook's
                release(low, fd)
            close_duplicate(fd)
        raise
    if mine != (named.st_dev, named.st_ino):
        if fd != low:
            close_duplicate(fd)  # of the program's file: its own number stays open
        raise OSError(errno.EBADF, "closed by the program before vlhook used it", name)
    if fd != low:
        release(low, fd)
    return Opened(fd, mine, marked)


def moved_up(fd: int) -> int:
    """A duplicate of `fd` from HIGH_FD up; `fd` itself when there is no room there."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no spool there
        return fd
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
    except OSError:
        return fd


def _nonblocking(fd: int) -> bool:
    try:
        return not os.get_blocking(fd)
    except OSError:
        return False


def close_duplicate(fd: int) -> None:
    """Close a duplicate moved_up just made, whatever file it refers to: its number, from
    HIGH_FD up, is vlhook's (the program's next files do not go there)."""
    try:
        os.close(fd)
    except OSError:
        pass  # closed by the program meanwhile


def release(low: int, kept: int) -> None:
    """Close `low` while it is still a duplicate of `kept`, a descriptor known to be vlhook's
    (moved up, and checked). A look at `low` alone (fstat) may be stale by the close: the
    program may have closed it and opened a file under its number while this thread waited
    to run again. Instead `kept`'s file description is made blocking, then non-blocking,
    and `low` must follow both (they are one description); the second look is made in the
    same call as the close (_sync.close_nonblocking), where no thread of the program's can
    come between. A file of the program's fails one of the two looks (it would have to be
    opened in between, and non-blocking). `kept` is left as it was."""
    try:
        was = os.get_blocking(kept)
    except OSError:
        return  # closed by the program meanwhile, and `low` with it as a rule
    try:
        os.set_blocking(kept, True)
        if os.get_blocking(low):
            os.set_blocking(kept, False)
            close_nonblocking(low)
    except OSError:
        pass  # either one closed by the program meanwhile: `low` is not closed
    finally:
        try:
            os.set_blocking(kept, was)
        except OSError:
            pass


def close_if(fd: int, mine: tuple[int, int], marked: bool) -> None:
    """`fd` closed while it is still the file `mine` names: otherwise the program may hold
    that number now (it closed vlhook's, then opened a file of its own). The look at its
    identity may be stale by the close (see release); a `marked` descriptor is therefore
    closed only if still non-blocking at that very moment (_sync.close_nonblocking). One not
    marked (the file output, which may be a named pipe) is closed after the look alone: it
    is at HIGH_FD or above, where the program's next files do not go, unless there was no
    room up there."""
    if mine == NO_IDENTITY or identity(fd) != mine:
        return
    if marked:
        close_nonblocking(fd)
    else:
        os.close(fd)


def identity(fd: int) -> tuple[int, int]:
    """(device, inode) of what `fd` refers to: a file's own, unlike its number. A descriptor
    vlhook keeps open is checked against the identity it had when opened before it is used: a
    program that closes every descriptor it does not know of (a daemon's
    `os.closerange(3, ...)`) may open a file or directory of its own under that very number."""
    try:
        info = os.fstat(fd)
    except OSError:
        return NO_IDENTITY
    return info.st_dev, info.st_ino


def kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "a device"
