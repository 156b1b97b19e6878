"""The one activation entry point, shared by sitecustomize, the .pth file, `vlhook run` and
the Python API. Idempotent across copies of the package: the mark lives on `sys`."""

from __future__ import annotations

import os
import sys

from vlhook import _diag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextvars import ContextVar
    from types import ModuleType
    from typing import Any, Callable, Optional

    from vlhook._capture_fd import FdCapture
    from vlhook._config import Config
    from vlhook._sender import Sender
    from vlhook._stats import Stats

MARK = "_vlhook_active"
#: Set by `vlhook run` for the program it replaces itself with (exec: the same process, the
#: same stderr): the configuration's warnings that digest names were said by the command's own
#: activation already. Taken out of the environment at activation: the program never sees it,
#: and the processes it starts say their warnings as programs of their own.
WARNED = "VICTORIALOGS_WARNED"
#: _fd_wire.MARKER, spelled here: that module is loaded only for fd capture.
FD_MARKER = "VICTORIALOGS_FD_CAPTURED"


class Active:
    def __init__(self, config: Config, stats: Stats, sender: Sender, source: str) -> None:
        self.config = config
        self.stats = stats
        self.sender = sender
        self.source = source


_active: Optional[Active] = None
_said = ""  # the digest of the configuration's warnings this process's activation said


def said() -> str:
    """The digest of the configuration's warnings activation said in this process ("" for
    none): `vlhook run` hands it to the program it becomes (WARNED)."""
    return _said


def unsaid(warnings: tuple[str, ...]) -> tuple[str, ...]:
    """The configuration's warnings a command of the CLI is to say: none when this process's
    activation (the drop-in first on PYTHONPATH, the installed .pth, or `vlhook run` before it
    became this program) said these very ones on stderr. One warning each, not two."""
    return () if warnings and _said == _digest(warnings) else warnings


def current() -> Optional[Active]:
    return _active


def activate(source: str = "api") -> bool:
    """Start capturing if VICTORIALOGS_URL is set. Never raises; True when active."""
    global _active
    marked = getattr(sys, MARK, None)
    if marked is not None:
        return marked is not False
    from vlhook._config import is_enabled

    if not is_enabled(os.environ):
        return False
    try:
        _active = _start(source)
    except Exception as exc:
        _diag.internal_error("activation", exc)
        return False
    # False: activated, and shipping is off (its warnings said): a second activation (the
    # wheel's .pth, then the drop-in, under `vlhook run`) said them again.
    setattr(sys, MARK, False if _active is None else _active)
    return _active is not None


def _start(source: str) -> Optional[Active]:
    from vlhook import _capture_streams, _context, _imports, _lifecycle, _sync
    from vlhook._config import load
    from vlhook._sender import Sender
    from vlhook._stats import Stats

    config = load()
    _diag.configure(sys.stderr, config.debug)
    _diag.protect(config)
    _say_warnings(config.warnings)
    if not config.active:
        return None
    _hand_down(config.handed_down)
    stats = Stats()
    fd_capture = _start_fd(config)
    if fd_capture is None:
        sender = Sender(config, stats)
    else:
        sender = _linked_sender(config, stats, fd_capture)
    sender.hold_spare_at_start()
    _capture_streams.install(sender.buffer.put, _tee_kinds(config, fd_capture), sender.put)
    sender.before_flush = _capture_streams.release_held
    sender.each_step = _capture_streams.tee_replaced
    _sync.at_fork(after_in_child=_capture_streams.forget_held)
    _sync.at_fork(after_in_child=_context.after_fork_in_child)
    if "logging" in config.capture:
        _imports.when_imported("logging", lambda module: _hook_logging(sender, config))
        _imports.when_imported("logging.handlers", _hook_logging_handlers)
    _imports.when_imported("threading", _lifecycle.hook_threading)
    _imports.when_imported("logging", _lifecycle.hook_logging_errors)
    _imports.when_imported("multiprocessing.util", _lifecycle.hook_multiprocessing)
    _lifecycle.install(sender, config)
    _context.set_environment(dict(config.trace))
    _context.when_bound(_carry_bound)
    active = Active(config, stats, sender, source)
    for library, ours in INTEGRATIONS:
        _imports.when_imported(library, _integration(ours, active))
    # uWSGI puts its module in sys.modules itself, once it has started Python.
    _imports.when_present("uwsgi", _integration("vlhook._integrations.uwsgi", active))
    _diag.debug(
        f"active ({source}): sending to {', '.join(e.display for e in config.endpoints)}, "
        f"capturing {','.join(sorted(config.capture))}"
    )
    return active


def _say_warnings(warnings: tuple[str, ...]) -> None:
    """Each warning once, unless `vlhook run` said these very ones in this process before it
    became the program (WARNED)."""
    global _said
    told = os.environ.pop(WARNED, None)
    if not warnings:
        return
    digest = _digest(warnings)
    if told != digest:
        for warning in warnings:
            _diag.warn(warning)
    _said = digest


def _digest(warnings: tuple[str, ...]) -> str:
    """A short name for a set of warnings (their texts' CRC-32), to tell them in WARNED."""
    from binascii import crc32  # loaded only when there is something wrong to say

    return format(crc32("\n".join(warnings).encode("utf-8")), "08x")


def _start_fd(config: Config) -> Optional[FdCapture]:
    """Capture at the fd level when asked to, or join the capture of a parent process whose
    fds this one inherited. None otherwise, or when the fds cannot be captured (then the
    streams are teed instead, and the user is told)."""
    own = "fd" in config.capture
    if not own and FD_MARKER not in os.environ:
        return None
    from vlhook import _capture_fd

    try:
        return _capture_fd.start(config, own)
    except Exception as exc:  # no fork, no pipes left, no abstract sockets (not Linux)...
        _diag.warn(f"VICTORIALOGS_CAPTURE=fd: fds 1 and 2 cannot be captured here ({exc}); "
                   "capturing sys.stdout and sys.stderr instead")  # fmt: skip
        return None


def _tee_kinds(config: Config, fd_capture: Optional[FdCapture]) -> list[int]:
    """The streams to tee: those asked for whose fd is not captured (both, when fd capture
    was asked for and could not start)."""
    from vlhook._captures import STDERR, STDOUT

    covered = fd_capture.routes if fd_capture is not None else {}
    wanted = set(config.capture)
    if "fd" in wanted and fd_capture is None:
        wanted |= {"stdout", "stderr"}
    return [kind for kind, name, fd in ((STDOUT, "stdout", 1), (STDERR, "stderr", 2))
            if name in wanted and fd not in covered]  # fmt: skip


def _linked_sender(config: Config, stats: Stats, capture: FdCapture) -> Sender:
    from vlhook._capture_fd import LinkedSender

    sender = LinkedSender(config, stats)
    sender.capture = capture
    return sender


#: Integrations with libraries a program may use: (the module whose import triggers it, ours).
#: Ours is imported only then, and has `install(module, active)`; see _integrations/.
INTEGRATIONS = (
    ("awslambdaric.lambda_runtime_client", "vlhook._integrations.awslambda"),
    ("loguru", "vlhook._integrations.loguru"),
    ("opentelemetry.trace", "vlhook._integrations.opentelemetry"),
    ("structlog.contextvars", "vlhook._integrations.structlog_context"),
    ("loguru._logger", "vlhook._integrations.loguru_context"),
)


def _carry_bound(variable: ContextVar[Any]) -> None:
    """Once the program binds fields, threads it starts afterwards carry them."""
    from vlhook import _carry

    _carry.install(variable)


def _integration(ours: str, active: Active) -> Callable[[ModuleType], None]:
    def install(module: ModuleType) -> None:
        import importlib

        importlib.import_module(ours).install(module, active)

    return install


#: The environment variables activation set for child processes, with the values they had.
_replaced: dict[str, Optional[str]] = {}


def _hand_down(variables: tuple[tuple[str, str], ...]) -> None:
    for name, value in variables:
        _replaced.setdefault(name, os.environ.get(name))
        os.environ[name] = value


def _hook_logging(sender: Sender, config: Config) -> None:
    from vlhook import _capture_logging

    # The buffer's own put, as the streams have it: no frame of the sender's per record.
    _capture_logging.install(sender.buffer.put, config.level)


def _hook_logging_handlers(module: ModuleType) -> None:
    from vlhook import _capture_logging

    _capture_logging.hook_handlers(module)


def deactivate() -> None:
    """Stop capturing in this process (the CLI uses it: a receiver must not ship its own
    output to itself). Already queued entries are still delivered."""
    from vlhook import _capture_streams, _imports

    for name, value in _replaced.items():  # what the commands it starts see is theirs
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _replaced.clear()
    _imports.forget("logging")
    _imports.forget("logging.handlers")
    _capture_streams.uninstall()
    capture_fd = sys.modules.get("vlhook._capture_fd")
    if capture_fd is not None:
        capture_fd.stop()
    # Only a capture that was installed is undone: importing the module here would import
    # logging, whose pending hook would import this half-loaded module again.
    capture_logging = sys.modules.get("vlhook._capture_logging")
    if capture_logging is not None:
        capture_logging.uninstall()
