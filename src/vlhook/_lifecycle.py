"""Flush points: interpreter exit, uncaught exceptions, SIGTERM, fork.

Exit: an atexit handler registered at start-up, so it runs after every handler the program
registers later (those may still log). An uncaught exception is shipped as one ERROR entry
before Python prints it; the printed copy is not captured again. SIGTERM, when the program has
no handler of its own, flushes and then dies of the signal exactly as it would have. A forked
child starts with an empty buffer and its own sender.
"""

from __future__ import annotations

import atexit
import os
import sys
from _thread import get_ident
from time import time_ns

from vlhook import _capture_streams, _context, _diag
from vlhook._kinds import EXCEPTION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType, TracebackType
    from typing import Any, Optional

    from vlhook._config import Config
    from vlhook._sender import Sender

_sender: Optional[Sender] = None
_config: Optional[Config] = None
_keyboard_interrupt = False  # the program ended on an unhandled Ctrl-C


def install(sender: Sender, config: Config) -> None:
    global _sender, _config
    _sender, _config = sender, config
    atexit.register(_at_exit)
    sys.excepthook = _wrap_excepthook(sys.excepthook)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=sender.before_fork,
            after_in_parent=sender.after_fork_in_parent,
            after_in_child=sender.after_fork,
        )
        if sys.version_info >= (3, 12):
            os.register_at_fork(before=_choose_fork_warning)
    _install_sigterm()
    if config.flush_on_os_exit:
        _patch_os_exit(sender, config)


def _at_exit() -> None:
    if _sender is None or _config is None:
        return
    try:
        _final_flush(_sender, _config)
    except Exception as exc:
        _diag.internal_error("exit flush", exc)
    if _keyboard_interrupt:
        _die_of_sigint()


def _die_of_sigint() -> None:
    """After an unhandled KeyboardInterrupt CPython dies of SIGINT (status -2 / 130), unless
    Python code ran imports in the meantime: vlhook's sender may have. Do what CPython does,
    now: this handler runs last, the streams are flushed first."""
    import _signal  # type: ignore[import-not-found]

    if _signal.getsignal(_signal.SIGINT) is not _signal.default_int_handler:
        return  # the program installed its own: CPython would not re-raise either
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    os.kill(os.getpid(), _signal.SIGINT)


FLUSH_SHARE = 0.75  # of the exit budget for the sender; the rest to salvage what it left


def _final_flush(sender: Sender, config: Config) -> None:
    """Flush within the exit budget. Threads may still write meanwhile: a second round takes
    what they wrote during the first. If the sender cannot finish in time, this thread spools
    what it had not reached yet; what does not fit in the budget is counted and reported."""
    import time

    budget = config.exit_timeout_ms / 1000
    started = time.monotonic()
    flush_deadline = started + budget * FLUSH_SHARE
    # The sender itself may spool a batch it could not send by the deadline: counted too.
    spooled_before = sender.stats.spooled
    sender.exiting = True
    ok = True
    for _ in range(2):
        ok = sender.flush(max(0.0, flush_deadline - time.monotonic()))
        if not ok or not sender.buffer.items:
            break
    if ok and not sender.buffer.items:
        return
    _, dropped = sender.salvage(started + budget)
    spooled = sender.stats.spooled - spooled_before
    if not ok or dropped:
        where = f"the spool {config.spool_dir}" if config.spool_dir else "no spool (off)"
        in_flight = sender.stats.in_flight_at_exit
        tally = ", ".join(f"{k}: {v}" for k, v in sorted(sender.stats.dropped.items()))
        _diag.warn(
            f"not everything was delivered within VICTORIALOGS_EXIT_TIMEOUT_MS="
            f"{config.exit_timeout_ms}: {spooled} entries kept in {where}, {dropped} lost"
            + (f", {in_flight} in a request still under way" if in_flight else "")
            + f" (dropped since start: {tally})"
        )
    elif spooled:
        _diag.warn(f"{spooled} entries written by threads still running at exit were spooled")


def capture_exception(exc: BaseException, thread_name: str = "MainThread") -> None:
    """Queue one ERROR entry for an exception nobody caught."""
    if _sender is None:
        return
    try:
        item = (EXCEPTION, exc, time_ns(), get_ident(), _context.invocation,
                _context.bound_get(), thread_name)  # fmt: skip
        _sender.put(item, 40)
    except Exception as error:
        _diag.internal_error("capture.exception", error)


def _wrap_excepthook(original: Any) -> Any:
    def excepthook(
        exc_type: type[BaseException], exc: BaseException, tb: Optional[TracebackType]
    ) -> Any:
        global _keyboard_interrupt
        capture_exception(exc)
        _keyboard_interrupt = isinstance(exc, KeyboardInterrupt)
        # The traceback Python prints now is the same exception: not captured twice.
        ident = get_ident()
        _capture_streams.suppressed[ident] = None
        try:
            return original(exc_type, exc, tb)
        finally:
            _capture_streams.suppressed.pop(ident, None)

    return excepthook


def hook_threading(threading: Any) -> None:
    """Uncaught exceptions in threads, once the program imports threading."""
    original = threading.excepthook

    def excepthook(args: Any) -> Any:
        if args.exc_value is not None and args.exc_type is not SystemExit:
            capture_exception(args.exc_value, getattr(args.thread, "name", "") or "")
        ident = get_ident()
        _capture_streams.suppressed[ident] = None
        try:
            return original(args)
        finally:
            _capture_streams.suppressed.pop(ident, None)

    threading.excepthook = excepthook


def _install_sigterm() -> None:
    try:
        import _signal as signal_module  # the C module: `signal` pulls in enum (~5 ms)
    except ImportError:  # pragma: no cover - not CPython
        import signal as signal_module
    if get_ident() != _main_thread_ident():
        return
    if signal_module.getsignal(signal_module.SIGTERM) != signal_module.SIG_DFL:
        return  # the program (or its launcher) handles SIGTERM itself: leave it alone

    def on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
        try:
            if _sender is not None and _config is not None:
                _final_flush(_sender, _config)  # as at exit: deliver, spool, or count
        except Exception as exc:
            _diag.internal_error("SIGTERM flush", exc)
        finally:
            # Then die of the signal, as without vlhook: same exit status, no atexit.
            signal_module.signal(signum, signal_module.SIG_DFL)
            os.kill(os.getpid(), signum)

    signal_module.signal(signal_module.SIGTERM, on_sigterm)


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


def hook_multiprocessing(util: Any) -> None:
    """multiprocessing's forked workers end with os._exit(), after running multiprocessing's
    own exit finalizers: in each such child, the exit flush is registered there, last."""
    if _sender is not None:
        util.register_after_fork(_sender, _register_child_flush)


def _register_child_flush(_: object) -> None:
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.Finalize(None, _at_exit, exitpriority=-(10**6))


def _patch_os_exit(sender: Sender, config: Config) -> None:
    """Opt-in: os._exit() skips every flush, by contract (forked workers and watchdogs use it to
    die at once). With VICTORIALOGS_FLUSH_ON_OS_EXIT=1 it flushes first, within the budget."""
    original = os._exit

    def _exit(status: int) -> None:
        try:
            sender.flush(config.exit_timeout_ms / 1000)
        except Exception as exc:
            _diag.internal_error("os._exit flush", exc)
        original(status)

    os._exit = _exit  # type: ignore[assignment]


def _main_thread_ident() -> int:
    threading = sys.modules.get("threading")
    if threading is not None:
        return int(threading.main_thread().ident or 0)
    return get_ident()  # before threading exists only the main thread runs Python
