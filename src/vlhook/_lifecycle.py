"""Flush points: interpreter exit, uncaught exceptions, SIGTERM and SIGHUP, fork.

Exit: an atexit handler registered at start-up, so it runs after every handler the program
registers later (those may still log). An uncaught exception is shipped as one ERROR entry
before Python prints it; the printed copy is not captured again; after an unhandled Ctrl-C the
process still dies of SIGINT once finalized (see _note_end). SIGTERM and SIGHUP, when the program
has no handler of its own, flush and then die of the signal exactly as they would have. A forked
child starts with an empty buffer and its own sender.
"""

from __future__ import annotations

# The C module, loaded by the interpreter already: `signal` pulls in enum (~5 ms).
import _signal  # type: ignore[import-not-found]
import _thread
import atexit
import os
import sys
from time import sleep, time_ns

from vlhook import _capture_streams, _context, _diag, _imports
from vlhook._captures import uncaught
from vlhook._sync import at_fork, get_ident, start_thread

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import FrameType, TracebackType
    from typing import Any, Callable, Optional

    from vlhook._config import Config
    from vlhook._sender import Sender

_sender: Optional[Sender] = None
_config: Optional[Config] = None
#: CPython's "die of SIGINT" flag as the program alone would have left it (see _note_end);
#: None while vlhook's excepthook has seen no end of the program's top-level code.
_interrupted: Optional[bool] = None
_watching = False  # the audit hook that follows the flag's resets is added
#: The file names of code run from a string: exec()/eval() of a str, an interactive statement
#: ("<stdin>", "<stdin>-N" on Python 3.13).
STRING_FILES = ("<string>", "<stdin>")
#: The signals whose default action ends the process at once, with nothing flushed, that vlhook
#: handles when the program does not: SIGTERM (`docker stop`, Kubernetes, systemd) and SIGHUP (a
#: closed terminal or SSH session; systemd's SendSIGHUP). Not SIGQUIT: Ctrl-\ asks for a core
#: dump now. Not SIGINT: Python's own handler already ends the program through its exit.
ENDING_SIGNALS = tuple(getattr(_signal, name) for name in ("SIGTERM", "SIGHUP")
                       if hasattr(_signal, name))  # fmt: skip
#: vlhook's handler for them, when it installed one; the signals it handles; and the first of
#: them whose handler began, the one the process dies of (see _watch_signals).
_on_signal: Optional[Callable[[int, Optional[FrameType]], None]] = None
_handled: tuple[int, ...] = ()
_first_signal: Optional[int] = None
#: The thread running final_flush, while it runs; and whether such a signal came in the middle
#: of it, on that thread (see on_signal): the process then dies of the signal once it is over.
_flushing_on: Optional[int] = None
_signal_deferred = False
#: The pipe whose write end is the signal wakeup fd vlhook set (in this process or, inherited,
#: in the one it was forked from); (-1, -1): none.
_wakeup_pipe = (-1, -1)
#: How long the main thread has to begin vlhook's signal handler before it is signalled again,
#: and how many times at most.
POKE_AFTER_S = 0.05
POKES = 40
#: os._exit() flushes first (see _patch_os_exit).
_os_exit_flushes = False
#: Taken by the one that ends the process on such a signal: vlhook's handler on the main
#: thread, or the signal watch while the main thread waits in native code (see watch_signals).
_ending = _thread.allocate_lock()
#: Whether the main thread waits in native code that takes no signal, given by an integration
#: (the Lambda runtime client's request for the next invocation); None: it never does.
_native_wait: Optional[Callable[[], bool]] = None


def install(sender: Sender, config: Config) -> None:
    global _sender, _config
    _sender, _config = sender, config
    atexit.register(_at_exit)
    hook = _wrap_excepthook(sys.excepthook)
    if sys.excepthook is sys.__excepthook__:
        # Programs tell "no hook of anyone's" by this identity: code.InteractiveConsole then
        # shows tracebacks through its own write(), PyQt aborts on an exception in a slot,
        # some libraries install their hook only then. It holds as without vlhook.
        sys.__excepthook__ = hook
    sys.excepthook = hook
    unraisable = _wrap_unraisablehook(sys.unraisablehook)
    if sys.unraisablehook is sys.__unraisablehook__:  # as for the excepthook, above
        sys.__unraisablehook__ = unraisable
    sys.unraisablehook = unraisable
    at_fork(before=sender.before_fork, after_in_parent=sender.after_fork_in_parent,
            after_in_child=sender.after_fork)  # fmt: skip
    if sys.version_info >= (3, 12):
        at_fork(before=_choose_fork_warning)
    at_fork(after_in_parent=_after_fork, after_in_child=_after_fork)
    _install_signal_flush()
    _patch_exec(sender, config)
    _patch_self_kill(sender, config)
    if config.flush_on_os_exit:
        _patch_os_exit(sender, config)


def _at_exit() -> None:
    if _sender is None or _config is None:
        return
    if _interrupted is None:
        with _diag.guard("exit: a crash shown by the program's hook"):
            _capture_shown_elsewhere()
    with _diag.guard("exit: streams replaced"):
        for name in _capture_streams.never_teed():
            _diag.warn(f"sys.{name} was replaced by a stream of the program's on fd "
                       f"{1 if name == 'stdout' else 2} (os.fdopen, open(fd)): what was written "
                       "through it was not captured; VICTORIALOGS_CAPTURE=fd,logging captures "
                       "the descriptor itself")  # fmt: skip
    try:
        with _diag.guard("exit flush"):
            final_flush(_sender, _config)
    except KeyboardInterrupt:  # a Ctrl-C outside the exit's wait, which handles its own
        _diag.warn("the exit was interrupted (Ctrl-C): what was not yet delivered may be lost")
    interrupted = _interrupted
    if interrupted is None:
        interrupted = _interrupted_by_last()
    if interrupted:
        _mark_interrupted()


def _note_end(exc: BaseException, tb: Optional[TracebackType]) -> None:
    """Follow CPython's flag for an unhandled Ctrl-C, from the hook Python calls when the
    program's top-level code ends on an exception.

    CPython dies of SIGINT, after finalizing (atexit, files flushed, `__del__`), when that
    code (a script, `-c`, `-m`, an interactive statement) ended with exactly KeyboardInterrupt.
    Its flag is reset whenever code run from a string starts: `exec`/`eval` of a str (which
    namedtuple and dataclasses do when imported), the next interactive statement. vlhook's own
    work after the interrupt (this capture, the sender's imports, the exit flush) runs such
    code, so the flag is mirrored here, its resets by the program followed by an audit hook
    (added only now), and set again at vlhook's last exit step (_mark_interrupted)."""
    global _interrupted
    if _top_level_end(tb):
        _interrupted = type(exc) is KeyboardInterrupt  # that class only, as CPython
        if _interrupted:
            _watch_resets()


def _top_level_end(tb: Optional[TracebackType]) -> bool:
    """The traceback is of code that ended at the top: its first frame was called by no
    Python code (a console's runcode() was) and no longer runs (the program did not catch the
    exception and pass it to the hook itself)."""
    if tb is None or tb.tb_frame.f_back is not None:
        return False
    first: Optional[FrameType] = tb.tb_frame
    frame: Optional[FrameType] = sys._getframe(1)
    while frame is not None:
        if frame is first:
            return False
        frame = frame.f_back
    return True


def _watch_resets() -> None:
    global _watching
    if not _watching:
        _watching = True  # one hook at most, even when adding it fails
        sys.addaudithook(_on_audit)


def _on_audit(event: str, args: tuple[Any, ...]) -> None:
    """A program's code run from a string resets CPython's flag: so does it vlhook's mirror.
    (Code compiled by the program with "<string>" as its file name and run as a code object
    does not, but is taken for such code: the process then ends with status 1, not -2.)"""
    global _interrupted
    if event != "exec" or not _interrupted:
        return
    try:
        name = getattr(args[0], "co_filename", "")
        if isinstance(name, str) and name.startswith(STRING_FILES) and not _ours_running():
            _interrupted = False
    except Exception:  # an audit hook's exception would be raised in the program's exec
        pass


def _ours_running() -> bool:
    """vlhook's own work runs on this thread: one of its threads, or a call of vlhook's. The
    original excepthook's, called by vlhook's, counts as such: on Python 3.13 its imports (of
    `traceback`, to show the exception) leave the flag set."""
    if get_ident() in _imports._own_threads:
        return True
    frame: Optional[FrameType] = sys._getframe(1).f_back  # the audit hook's caller, if any
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if isinstance(name, str) and name.startswith("vlhook"):
            return True
        frame = frame.f_back
    return False


def _interrupted_by_last() -> bool:
    """The program replaced vlhook's excepthook: whether the exception that ended its
    top-level code was a Ctrl-C (reset by the program since is not known then)."""
    return type(_last_top_level_end()) is KeyboardInterrupt


def _last_top_level_end() -> Optional[BaseException]:
    """What Python recorded (sys.last_value, set as it passes an uncaught exception to
    sys.excepthook) of the exception that ended the program's top-level code, for an exit
    whose excepthook was not vlhook's. None when there is none; and in an interactive session,
    whose statements typed since may have ended otherwise.

    Consoles record what they show too (code.InteractiveInterpreter, IPython from its cell's
    coroutine, which has no caller either), and go on: the first frame then ran on past the
    exception. Ended by it, its last instruction is the one the traceback names."""
    if sys.flags.inspect or os.environ.get("PYTHONINSPECT"):
        return None
    tb = getattr(sys, "last_traceback", None)
    exc = getattr(sys, "last_value", None)
    if not isinstance(exc, BaseException) or tb is None:
        return None
    first = tb.tb_frame
    return exc if first.f_back is None and first.f_lasti == tb.tb_lasti else None


def _capture_shown_elsewhere() -> None:
    """The program's top-level code ended on an exception its own excepthook showed, one that
    never calls the hook before it (rich.traceback.install(), typer's pretty exceptions): the
    one ERROR entry vlhook's hook would have queued, made at the exit (its time), beside the
    lines that hook printed (captured as the program's output they are)."""
    exc = _last_top_level_end()
    if exc is not None:
        _without_our_frames(exc, exc.__traceback__)
        capture_exception(exc)


def _mark_interrupted() -> None:
    """Set CPython's flag again, as code run from a string that ends with KeyboardInterrupt
    does: CPython then finalizes and dies of SIGINT itself, as it would have (status -2, 130
    in a shell)."""
    try:
        exec("raise KeyboardInterrupt", {})  # noqa: S102 - a constant: the flag is the point
    except (KeyboardInterrupt, Exception):  # another: a program's audit hook refused the exec
        pass


def final_flush(sender: Sender, config: Config, python_buffers: bool = True) -> None:
    """The process is ending (exit, SIGTERM or SIGHUP, os._exit where it flushes): deliver
    within the exit budget, keep the rest in the spool, and say plainly on stderr what did not
    make it. `python_buffers`: the process ends through Python's finalization, which writes
    out its streams' buffers (see Sender.shutdown)."""
    from time import monotonic

    global _flushing_on
    outer, _flushing_on = _flushing_on, get_ident()
    try:
        report = sender.shutdown(monotonic() + config.exit_timeout_ms / 1000, python_buffers)
        message = report.message(config.exit_timeout_ms)
        if message:
            _diag.warn(message, key="exit")
    finally:
        _flushing_on = outer
    if _signal_deferred and _first_signal is not None and outer is None:
        _die_of(_first_signal)


def _as_init() -> None:
    """SIGTERM or SIGHUP to PID 1 (a container's program run without an init): the kernel drops
    the default action of a signal sent to it, so without vlhook the program goes on. Deliver
    what is queued (`docker stop` sends SIGKILL after its grace period), and go on too. Before,
    the exit ran and its kill was dropped: every later line went to the spool, untold."""
    if _flushing_on is not None:  # the exit, under way: it delivers
        return
    with _diag.guard("signal flush"):
        if _sender is not None and _config is not None:
            _sender.flush(_config.exit_timeout_ms / 1000)


def _die_of(signum: int) -> None:
    """As without vlhook: the signal's own end (its status, no atexit)."""
    if get_ident() != _main_thread_ident():
        _die_off_the_main_thread(signum)
    _signal.signal(signum, _signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _die_off_the_main_thread(signum: int) -> None:
    """`signal.signal` works on the main thread only: from the signal watch (see
    _end_from_watch) the default action is set by the C library's own `signal()` (ctypes,
    loaded now: ~5 ms, once). Where that cannot be done, the end a shell reports for such a
    death (status 128 + the signal's number), without atexit as the signal's."""
    try:
        import ctypes

        ctypes.CDLL(None).signal(signum, 0)  # SIG_DFL
        os.kill(os.getpid(), signum)
    except Exception as exc:  # no C library to call: the status below instead
        _diag.debug(f"the signal's default action could not be set: {exc}")
    getattr(os._exit, "__wrapped__", os._exit)(128 + signum)  # not the exit's flush again


def capture_exception(exc: BaseException, thread_name: str = "MainThread") -> None:
    """Queue one ERROR entry for an exception nobody caught."""
    if _sender is None:
        return
    with _diag.guard("capture.exception"):
        _sender.put(uncaught(exc, time_ns(), _thread.get_ident(), _context.get(), thread_name), 40)


def _wrap_excepthook(original: Any) -> Any:
    def excepthook(
        exc_type: type[BaseException], exc: BaseException, tb: Optional[TracebackType]
    ) -> Any:
        if not isinstance(exc, BaseException):  # a program calling the hook by hand: Python
            return original(exc_type, exc, tb)  # says what is wrong, nothing to ship
        with _diag.guard("excepthook"):
            _note_end(exc, tb)  # first: before vlhook's own work resets CPython's flag
            tb = _without_our_frames(exc, tb)
        capture_exception(exc)
        # The traceback Python prints now is the same exception: not captured twice.
        with _capture_streams.NotCaptured():
            return original(exc_type, exc, tb)

    return excepthook


def _wrap_unraisablehook(original: Any) -> Any:
    """An exception Python could not raise (in a `__del__`, a weak reference's callback, a
    failed flush of a stream) is one ERROR entry: what Python prints before its traceback
    ("Exception ignored in: <...>"), then the traceback, with the exception's fields. What
    the hook prints is not captured again. At teardown, after vlhook's exit, it is left to
    the text capture as before: vlhook's modules may be wiped by then."""
    # The closure's own: at teardown no module global is read before is_finalizing() answers.
    is_finalizing, guard = sys.is_finalizing, _diag.guard

    def unraisablehook(unraisable: Any) -> Any:
        captured = False
        with guard("unraisablehook"):
            captured = not is_finalizing() and _capture_unraisable(unraisable)
        if not captured:
            return original(unraisable)
        with _capture_streams.NotCaptured():
            return original(unraisable)

    return unraisablehook


def _capture_unraisable(unraisable: Any) -> bool:
    """Queue the entry of what sys.unraisablehook is told; False when there is none."""
    exc = getattr(unraisable, "exc_value", None)
    if _sender is None or not isinstance(exc, BaseException):
        return False  # none, or the hook called by hand: left to the text capture
    ident = _thread.get_ident()  # as the program has it now: see _sync
    suppressed = _capture_streams.suppressed
    if suppressed and ident in suppressed:
        # A record or an exception being printed, or vlhook's own work on this thread (a
        # collection there finalizing the program's object): as its text would be, not taken.
        # Keeping late writes, the exit holds a lock this capture would wait for.
        return False
    head = _unraisable_head(getattr(unraisable, "err_msg", None),
                            getattr(unraisable, "object", None))  # fmt: skip
    _sender.put(uncaught(exc, time_ns(), ident, _context.get(), _thread_name(ident), head), 40)
    return True


def _unraisable_head(err_msg: Any, obj: Any) -> str:
    """The line Python's own hook prints before the traceback, as it makes it."""
    if obj is not None:
        try:
            shown = repr(obj)
        except Exception:
            shown = "<object repr() failed>"
        return f"{err_msg if err_msg is not None else 'Exception ignored in'}: {shown}"
    return f"{err_msg}:" if err_msg is not None else ""


def _thread_name(ident: int) -> str:
    """threading's name for the thread, without making a Thread object for one it does not
    know (current_thread() would) or taking its lock (enumerate() does)."""
    threading = sys.modules.get("threading")
    thread = getattr(threading, "_active", {}).get(ident) if threading is not None else None
    if thread is not None:
        return str(thread.name)
    return "MainThread" if ident == _main_thread_ident() else ""


def _without_our_frames(exc: Optional[BaseException], tb: Optional[TracebackType]
                        ) -> Optional[TracebackType]:  # fmt: skip
    """Shown and shipped as without vlhook: `exc` and its traceback with no frame of the
    stream tee in the middle (they have one when the exception came through a write). As
    they are when the frames' module cannot load, its file not opened for want of
    descriptors (a program, or one of its threads, dying at its limit of open files): no
    word of vlhook's then beside the program's own traceback."""
    try:
        from vlhook import _frames
    except OSError as exc_of_ours:
        from vlhook._sender import shortage  # loaded at start-up

        if shortage(exc_of_ours):
            return tb
        raise
    _frames.hide(exc)
    return _frames.without_ours(tb)


def hook_threading(threading: Any) -> None:
    """Uncaught exceptions in threads, once the program imports threading."""
    original = threading.excepthook

    def excepthook(args: Any) -> Any:
        if not isinstance(getattr(args, "exc_value", None), BaseException):
            return original(args)  # none, or a program calling the hook by hand: as without us
        with _diag.guard("threading.excepthook"):
            tb = _without_our_frames(args.exc_value, args.exc_traceback)
            if tb is not args.exc_traceback:
                args = type(args)((args.exc_type, args.exc_value, tb, args.thread))
        if args.exc_type is not SystemExit:
            capture_exception(args.exc_value, getattr(args.thread, "name", "") or "")
        with _capture_streams.NotCaptured():
            return original(args)

    if original is getattr(threading, "__excepthook__", None):  # as for sys's, in install
        threading.__excepthook__ = excepthook
    threading.excepthook = excepthook


def _install_signal_flush() -> None:
    if get_ident() != _main_thread_ident():
        return
    # Only where the program (or its launcher: `nohup` ignores SIGHUP) left the default.
    handled = tuple(s for s in ENDING_SIGNALS if _signal.getsignal(s) == _signal.SIG_DFL)
    if not handled:
        return

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        global _first_signal, _signal_deferred
        if os.getpid() == 1:
            _as_init()
            return
        # SIGHUP in the middle of SIGTERM's flush: the process dies of SIGTERM.
        first = _first_signal = signum if _first_signal is None else _first_signal
        if _flushing_on == get_ident():
            # In the middle of the exit (atexit's, a pool worker's finalizers), on this thread:
            # an exit of the handler's own would wait for one that cannot go on until it
            # returns (a sender not yet woken; one waiting for the import lock that exit
            # holds), and give up at the deadline, its lines dropped. That exit goes on, and
            # the process dies of the signal once it is over (final_flush).
            _signal_deferred = True
            return
        if not _ending.acquire(False):
            return  # the signal watch ends the process already (see _end_from_watch)
        _flush_then_die(first)

    global _on_signal, _handled
    _on_signal, _handled = on_signal, handled
    for signum in handled:
        _signal.signal(signum, on_signal)


# Python 3.12+ warns at fork() when the process has other threads. When vlhook's sender is the
# only other thread, the warning is vlhook's doing, not the program's, and is not shown. The
# choice is made before each fork (CPython warns after its own after-fork hooks have run).
_FORK_WARNING = r"This process \(pid=\d+\) is multi-threaded"
_fork_filter: Optional[tuple[Any, ...]] = None


def _choose_fork_warning() -> None:
    global _fork_filter
    import warnings

    threading = sys.modules.get("threading")
    program_threads = threading.active_count() if threading is not None else 1
    ours_only = _sender is not None and _sender.thread_started and program_threads <= 1
    if ours_only and _fork_filter is None:
        warnings.filterwarnings("ignore", message=_FORK_WARNING, category=DeprecationWarning)
        _fork_filter = warnings.filters[0]
    elif not ours_only and _fork_filter is not None:
        filters: list[Any] = warnings.filters  # type: ignore[assignment]
        if _fork_filter in filters:
            filters.remove(_fork_filter)
            mutated = getattr(warnings, "_filters_mutated", None)  # private, version-dependent
            if mutated is not None:
                mutated()
        _fork_filter = None


def hook_logging_errors(logging: Any) -> None:
    """logging's "--- Logging error ---" report shows the failed write's traceback as it would
    be without vlhook (a handler writing to a closed pipe)."""
    original = logging.Handler.handleError

    def handleError(self: Any, record: Any) -> None:
        with _diag.guard("logging.handleError"):
            _without_our_frames(sys.exc_info()[1], None)
        original(self, record)

    logging.Handler.handleError = handleError


def _after_fork() -> None:
    """A process that forked, or was forked: there os._exit() is how a child ends (a worker of
    billiard's pool, Celery's, calls it inside its task loop; a child of a bare os.fork()) and
    how a daemonizing parent hands over to its child (python-daemon, a double fork), each
    leaving what it had printed undelivered. From now on it flushes first, as the opt-in
    VICTORIALOGS_FLUSH_ON_OS_EXIT makes it everywhere."""
    with _diag.guard("fork: os._exit flush"):
        if _sender is not None and _config is not None:
            _patch_os_exit(_sender, _config)


def hook_multiprocessing(util: Any) -> None:
    """multiprocessing's forked children (fork, forkserver) end with os._exit(), which flushes
    first in a forked process (see _after_fork): after the traceback of a target that raised,
    which multiprocessing prints once its exit finalizers have run. (The exit flush was one of
    them until 2026-12-07: that traceback came after the exit, and was stored line by line.)
    Here each such child only makes sure vlhook's signal handler runs (_watch_signals)."""
    if _sender is not None:
        util.register_after_fork(_sender, _watch_signals_in_child)


def _watch_signals_in_child(_: object) -> None:
    with _diag.guard("signal watch"):
        _watch_signals()


def _watch_signals() -> None:
    """In a forked multiprocessing child with vlhook's signal handler: see that it runs.

    Python runs a handler on the main thread when that thread next looks, and a main thread
    already blocked in a wait is woken only by a signal delivered to it. So the handler may
    never run: when the signal comes just after the main thread's last look and before it blocks
    (a Pool worker taking the task queue's lock as Pool.terminate() sends it: 1 to 3 % of
    `with Pool()` exits hung, measured; a closed terminal's SIGHUP reaches such workers too), or
    when another of the child's threads takes it.
    Without a handler of Python's the kernel ends the process whatever it is doing. Here a
    thread of vlhook's hears of the signal through `signal.set_wakeup_fd` (unless the program
    set one) and, while the handler has not begun, signals the main thread again."""
    global _wakeup_pipe
    if not _ours(_handled):
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        previous = _signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except (ValueError, OSError):  # not the main thread; not allowed here
        os.close(read_fd)
        os.close(write_fd)
        return
    if previous not in (-1, _wakeup_pipe[1]):  # the program's own (or its parent's): left be
        _signal.set_wakeup_fd(previous)
        os.close(read_fd)
        os.close(write_fd)
        return
    for inherited in _wakeup_pipe if previous != -1 else ():  # the parent's, and its reader's
        os.close(inherited)
    _wakeup_pipe = (read_fd, write_fd)
    start_thread(_poke_main, read_fd, get_ident())


def watch_signals(native_wait: Callable[[], bool]) -> None:
    """For a program whose main thread waits in native code that takes no signal, and tells
    when it does (`native_wait`): the Lambda runtime client's request for the next invocation,
    where a SIGTERM (Lambda's at an environment's shutdown) waited for vlhook's handler, Python
    code, until the request returned, and the runtime outlived it (then died of SIGKILL, its
    undelivered lines with it). A SIGTERM or SIGHUP heard meanwhile ends the process from the
    signal watch (see _end_from_watch). Called on the main thread."""
    global _native_wait
    _native_wait = native_wait
    _watch_signals()


def _poke_main(read_fd: int, main: int) -> None:
    _imports.own_thread()
    while True:
        try:
            heard = os.read(read_fd, 64)
        except OSError:
            return
        if not heard:
            return
        pending = _ours(s for s in _handled if s in heard)
        if pending and _native_wait is not None and _native_wait():
            _end_from_watch(pending[0])
        elif pending:
            _poke(main, pending[0])


def _end_from_watch(signum: int) -> None:
    """As vlhook's handler would on the main thread, from the signal watch's: deliver within the
    exit budget, keep the rest, then die of the signal (unless the handler has begun)."""
    global _first_signal
    if os.getpid() == 1 or not _ending.acquire(False):
        return  # the kernel drops it (see _as_init); or the handler ends the process
    _first_signal = signum if _first_signal is None else _first_signal
    _flush_then_die(_first_signal)


def _flush_then_die(signum: int) -> None:
    """As at exit: deliver, spool, or count (the signal's death writes out none of Python's
    buffers); then die of the signal, as without vlhook: same exit status, no atexit."""
    try:
        with _diag.guard("signal flush"):
            if _sender is not None and _config is not None:
                final_flush(_sender, _config, python_buffers=False)
    finally:
        _die_of(signum)


def _poke(main: int, signum: int) -> None:
    """Signal the main thread again until vlhook's handler has begun there."""
    for _ in range(POKES):
        sleep(POKE_AFTER_S)
        if _first_signal is not None or not _ours((signum,)):
            return
        _signal.pthread_kill(main, signum)


def _ours(signals: Iterable[int]) -> tuple[int, ...]:
    """Those of `signals` whose handler is still vlhook's."""
    return tuple(s for s in signals if _signal.getsignal(s) is _on_signal)


def _patch_os_exit(sender: Sender, config: Config) -> None:
    """os._exit() skips every flush, by contract (a watchdog uses it to die at once). It flushes
    first, within the budget, with VICTORIALOGS_FLUSH_ON_OS_EXIT=1, and in a process that forked
    or was forked (see _after_fork). Once: a forked child inherits its parent's wrapper."""
    global _os_exit_flushes
    if not _os_exit_flushes:
        _os_exit_flushes = True
        os._exit = _first(os._exit, lambda *call: final_flush(sender, config, False),
                          "os._exit flush")  # fmt: skip


def _patch_exec(sender: Sender, config: Config) -> None:
    """os.exec*() replaces the process, and what vlhook had not delivered went with it (the
    program it becomes, vlhook active there too, ships only its own lines). Every one of them
    ends in os.execv or os.execve (the l and p forms look these up in `os` at each call): those
    flush first, within the exit budget, what cannot be delivered going to the spool. A flush,
    not the exit: an exec that fails returns to the program, and vlhook goes on with it."""

    def flush(*call: Any) -> None:  # the new image never writes out the old one's buffers
        sender.flush(config.exit_timeout_ms / 1000, python_buffers=False)

    for name in ("execv", "execve"):
        original = getattr(os, name, None)
        if original is not None:
            setattr(os, name, _first(original, flush, "exec flush"))


#: The signals a program sends itself to end as a signal ends it, its handler set back to the
#: default once it has cleaned up (Twisted's `twistd` and `twist` on SIGINT and SIGTERM).
SELF_ENDING = tuple(getattr(_signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                    if hasattr(_signal, name))  # fmt: skip


def _patch_self_kill(sender: Sender, config: Config) -> None:
    """`os.kill(os.getpid(), sig)` (or to its group, pid 0) and `signal.raise_signal(sig)` with
    the signal's default action set: the process dies at once, and what vlhook had not
    delivered died with it, untold. Those flush first, as an exec does; PID 1 is left alone
    (the kernel drops such a signal: see _as_init)."""

    def ends_here(pid: int, signum: int) -> bool:
        return (pid == 0 or pid == os.getpid() != 1) and signum in SELF_ENDING and (
            _signal.getsignal(signum) == _signal.SIG_DFL)  # fmt: skip

    def kill_flush(pid: Any, signum: Any, *rest: Any) -> None:
        if ends_here(pid, signum) and _flushing_on is None:
            sender.flush(config.exit_timeout_ms / 1000, python_buffers=False)

    def raise_flush(signum: Any, *rest: Any) -> None:
        kill_flush(os.getpid(), signum)

    os.kill = _first(os.kill, kill_flush, "kill flush")
    if hasattr(_signal, "raise_signal"):  # `signal` copies it from `_signal` when it loads
        _signal.raise_signal = _first(_signal.raise_signal, raise_flush, "kill flush")


def _first(original: Any, flush: Callable[..., object], where: str) -> Any:
    """`original` (an `os` function that ends this process's image), `flush` run first with
    the call's arguments, under the one guard: it never keeps the call from being made."""

    def flush_first(*args: Any, **kwargs: Any) -> Any:
        with _diag.guard(where):
            flush(*args, **kwargs)
        return original(*args, **kwargs)

    # As functools.wraps would (not loaded at start-up): its name, module and help are the
    # original's, and inspect.signature() follows __wrapped__ to the original's signature.
    for name in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(flush_first, name, getattr(original, name, None))
    flush_first.__wrapped__ = original  # type: ignore[attr-defined]
    return flush_first


def _main_thread_ident() -> int:
    threading = sys.modules.get("threading")
    if threading is not None:
        return int(threading.main_thread().ident or 0)
    return get_ident()  # before threading exists only the main thread runs Python
