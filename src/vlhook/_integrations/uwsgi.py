"""uWSGI: its workers deliver what they capture, and what the application prints is captured.

uWSGI starts Python (vlhook activates then), and once its Python plugin is up it replaces
`sys.stdout` and `sys.stderr` with a writer of its own to its log (file descriptor 2), then
loads the application and forks its workers in C. Unless started with
`--py-call-uwsgi-fork-hooks` (or `--py-call-osafterfork`), a worker runs none of Python's
at-fork hooks: a worker kept the master's sender, whose thread
does not exist there, and what it captured waited for a thread that never came (dropped at its
exit after VICTORIALOGS_EXIT_TIMEOUT_MS, every worker; printed lines were not captured at all).

Installed at the first import after uWSGI's `uwsgi` module appears (see
_imports.when_present), in the master before it loads the application: the streams uWSGI set
are teed as vlhook's own were, and uWSGI's post-fork hook runs vlhook's steps for a forked
child (_sync.in_forked_child) in every worker, before any request.

What the hook cannot mend is said once: without `--py-call-uwsgi-fork-hooks`, uWSGI forks
without taking the interpreter lock first, and a worker forked while another thread of the
master holds it (vlhook's sender, once the master has printed or logged; any thread of the
program's) waits for it for ever (seen here when a worker is respawned; uWSGI's issue 1149).
"""

from __future__ import annotations

from vlhook import _capture_streams, _diag, _imports, _sync

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Callable

    from vlhook._activation import Active


#: uWSGI's options under which a worker cannot inherit the interpreter lock held by another
#: thread: it takes the lock before forking, or the master loads nothing to run threads for.
SAFE_FORKS = ("py-call-uwsgi-fork-hooks", "lazy-apps", "lazy")


def install(module: ModuleType, active: Active) -> None:
    if _forks_unsafely(module):
        _diag.warn(
            "uWSGI forks its workers without taking the interpreter lock: one forked while a "
            "thread of the master runs Python (vlhook's sender is one) can hang; start uWSGI "
            "with --py-call-uwsgi-fork-hooks (or --lazy-apps)"
        )
    _capture_streams.tee_again()
    setattr(module, "post_fork_hook", _after(getattr(module, "post_fork_hook", None)))  # noqa: B010
    # uwsgidecorators sets its own hook when imported, in place of any other: vlhook's steps
    # then go first in its chain, as they do before any hook of the program's here.
    _imports.when_imported("uwsgidecorators", _join_chain)
    _diag.debug("uWSGI: its streams teed, its workers run vlhook's steps for a forked child")


def _forks_unsafely(module: ModuleType) -> bool:
    """Whether uWSGI forks workers from a master that may run threads, without its fork hooks
    (`uwsgi.opt` holds the options it was started with, from its command line, ini file or
    UWSGI_* variables)."""
    options = getattr(module, "opt", None)
    if not isinstance(options, dict) or any(options.get(name) for name in SAFE_FORKS):
        return False
    return bool(options.get("master")) or getattr(module, "numproc", 1) > 1


def _after(previous: Any) -> Callable[[], Any]:
    """uWSGI's post-fork hook: vlhook's steps, then the hook that was there before."""

    def post_fork_hook() -> Any:
        _sync.in_forked_child()
        if callable(previous):
            return previous()
        return None

    return post_fork_hook


def _join_chain(decorators: ModuleType) -> None:
    chain = getattr(decorators, "postfork_chain", None)
    if isinstance(chain, list):
        chain.insert(0, _sync.in_forked_child)
    else:
        _diag.debug("uwsgidecorators has an unknown shape: vlhook's post-fork steps not chained")
