"""Threads and waiting without `threading` (~5 ms to import, loaded at start-up by this package
otherwise): starting one of vlhook's threads, what vlhook does in a forked child, a one-waiter
event on a bare lock, the deadline a flush or the exit imposes on a worker, the flush and exit
requests the sender answers, and the close of a descriptor that no thread of the program's can
come between."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # loaded by the interpreter already
import _thread
import os
from _collections import deque  # type: ignore[import-not-found]
from itertools import filterfalse
from time import monotonic

from vlhook import _diag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from vlhook._stats import ExitReport

# The interpreter's own thread primitives, bound when vlhook loads, before the program runs;
# every module of vlhook takes them from here. A program that patches `_thread` later
# (gevent's and eventlet's monkey patching make threads greenlets, locks theirs) leaves
# vlhook's threads real threads and its locks real locks: a sender started as a greenlet ran
# only when the program's greenlets let it, and its wait on a real lock stopped the process.
# A capture, by contrast, names its writer by `_thread.get_ident()` as the program has it at
# that moment: under gevent each greenlet is a thread of its own, so one that prints while
# another's logging handler waits on a socket is not taken for that handler's output.
allocate_lock = _thread.allocate_lock
RLock = _thread.RLock
get_ident = _thread.get_ident
start_new_thread = _thread.start_new_thread

#: Signals a thread raises for itself (a fault): never blocked, so that they still reach
#: their handlers (faulthandler's) in the thread that caused them.
_FAULTS = frozenset(getattr(_signal, name) for name in
                    ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGTRAP", "SIGSYS")
                    if hasattr(_signal, name))  # fmt: skip


#: vlhook's own steps in a forked child, in the order they were registered (see `at_fork`).
_child_steps: list[Callable[[], object]] = []
_steps_ran_in = 0  # the process they last ran in


def at_fork(
    before: Optional[Callable[[], object]] = None,
    after_in_parent: Optional[Callable[[], object]] = None,
    after_in_child: Optional[Callable[[], object]] = None,
) -> None:
    """`os.register_at_fork` for vlhook's own steps. Those for the child run together through
    `in_forked_child`, which a host that forks in C without running Python's at-fork hooks
    calls too: uWSGI's workers (see _integrations/uwsgi)."""
    if not hasattr(os, "register_at_fork"):
        return
    around = {"before": before, "after_in_parent": after_in_parent}
    hooks = {when: hook for when, hook in around.items() if hook is not None}
    if hooks:
        os.register_at_fork(**hooks)
    if after_in_child is not None:
        _child_steps.append(after_in_child)


def in_forked_child() -> None:
    """vlhook's steps in a forked child, once in each process: after a fork made through
    Python, and again (doing nothing then) when the host that forked calls them too."""
    global _steps_ran_in
    pid = os.getpid()
    if pid == _steps_ran_in:
        return
    _steps_ran_in = pid
    for step in _child_steps:
        with _diag.guard("fork"):
            step()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=in_forked_child)


def start_thread(run: Callable[..., None], *args: Any) -> int:
    """Start one of vlhook's threads with the process's signals blocked in it (a new thread
    takes the mask of the thread that starts it, which gets its own back at once).

    A signal sent to the process (Ctrl-C, SIGTERM) then goes to one of the program's threads,
    as without vlhook. Python runs its handler on the main thread wherever the signal lands,
    but only the thread that receives it is woken: landed on ours, it would leave a main
    thread blocked in sleep() or read() waiting, and Ctrl-C with it. RuntimeError as
    `start_new_thread` (at interpreter shutdown).

    Each `pthread_sigmask` call runs, once the mask is set, the Python handlers of signals
    that came meanwhile, and a handler may raise (Ctrl-C, a handler's `sys.exit()`). The mask
    is read first, changing nothing, so that it is put back whichever call that happens in:
    else the program's thread would be left with every signal blocked."""
    if not hasattr(_signal, "pthread_sigmask"):  # not POSIX: no per-thread masks
        return start_new_thread(run, args)
    previous = _signal.pthread_sigmask(_signal.SIG_BLOCK, ())
    try:
        _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals() - _FAULTS)
        return start_new_thread(run, args)
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, previous)


#: stdin, stdout and stderr are 0 to 2: a number of theirs that vlhook's socket or pipe takes
#: (the program closed that stream) would be where the program's writes to it go.
LAST_STANDARD_FD = 2


def close_nonblocking(fd: int) -> None:
    """Close `fd` if it is non-blocking: the mark every descriptor vlhook opens for itself
    bears from the call that made it (the spool's files and directories, the connection's
    sockets, the spare pipe). A program that closes every descriptor it did not open (a
    daemon's `os.closerange(3, ...)`) and opens a file gets vlhook's number, and its file is
    blocking: left open. Raises OSError (EBADF: closed already).

    Why one call: an earlier look at the number (fstat, which lets other threads run) may be
    stale by the close, the program having closed and reused it while this thread waited to
    run again. Here the look (os.get_blocking, which keeps the interpreter lock) and the close
    are made by one call from C, with no bytecode between them: the interpreter switches
    threads only between bytecodes, so no Python code of the program's runs in between.

    Why a yield first: os.close lets go of the lock just before the close itself, and a
    thread that has waited for the lock past the switch interval (5 ms) is then handed it,
    this one waiting until that one has taken it: the program's thread would be running
    between the look and the close. Yielding first hands it over before the look. What is
    left is a thread of the program's that wakes, closes the number and opens a file in the
    instant between the letting go and the close (bench/closing_race.py: docs/design.md).

    Elsewhere (Windows) os.get_blocking is for pipes only, and no spool is kept: closed after
    the caller's look alone."""
    if os.name != "posix":
        os.close(fd)
        return
    os.sched_yield()
    deque(map(os.close, filterfalse(os.get_blocking, (fd,))), 0)


#: acquire_patiently waits in slices this long; a slice counts at most twice that.
SLICE_S = 0.01


def acquire_patiently(lock: Any, timeout: float) -> bool:
    """lock.acquire() within `timeout` of this thread's own waiting. Waiting on a lock gives
    up the interpreter, and taking it back waits for whichever thread holds it: a slice that
    took far longer than asked (a C call holding the interpreter for a second) does not count
    in full, for the lock's holder could not run either."""
    waited = 0.0
    while waited < timeout:
        start = monotonic()
        if lock.acquire(True, SLICE_S):
            return True
        waited += min(monotonic() - start, 2 * SLICE_S)
    return False


class Wakeup:
    """A flag one thread waits on. Held lock = not set; `wait` re-arms it."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:
            pass  # already set

    def wait(self, timeout: Optional[float]) -> bool:
        """True when set (and re-armed), False when the timeout passed first."""
        if timeout is None:
            return self._lock.acquire()
        return self._lock.acquire(True, max(timeout, 0.0))


class Cancel:
    """What a delivery worker obeys: `deadline` (monotonic; None = no flush pending) ends its
    requests and its waits; `poke()` makes a waiting worker look at it again at once."""

    __slots__ = ("_wake", "deadline", "final")

    def __init__(self) -> None:
        self.deadline: Optional[float] = None
        self.final = False  # the deadline is the process's exit
        self._wake = Wakeup()

    def poke(self) -> None:
        self._wake.set()

    def sleep(self, seconds: float) -> None:
        """Sleep, unless poked first."""
        self._wake.wait(seconds)


class FlushRequest:
    __slots__ = ("deadline", "disconnect", "done", "failed", "ok", "upto")

    def __init__(self, deadline: float, disconnect: bool = False) -> None:
        self.deadline = deadline
        #: Answered, the idle delivery connections are closed too (see Sender.flush).
        self.disconnect = disconnect
        self.done = Wakeup()
        self.ok = False
        self.failed = False  # a batch it covers was not delivered (spooled, dropped)
        self.upto = 0  # the last batch it covers


class ShutdownRequest:
    __slots__ = ("deadline", "done", "report")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.done = Wakeup()
        self.report: Optional[ExitReport] = None  # set when the exit is over
