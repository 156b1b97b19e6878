"""Fields bound with vlhook.bind() carried into the threads and pool tasks started afterwards.

A new thread starts with an empty context: without this, a worker thread would lose the
request id its parent bound. As OpenTelemetry's threading instrumentation does for its own
context, the bound fields are read where a thread is started (or a task is submitted to a
`ThreadPoolExecutor`) and set in that thread (around that task) before it runs. Only vlhook's
own variable is carried: the program's other context variables behave as without vlhook.

Installed once fields are first bound, so a program that never binds any runs unpatched. The
wrappers sit outside the frames an exception passes through (`Thread._bootstrap_inner` and
the pool's `_WorkItem.run` catch the program's exceptions themselves): tracebacks are unchanged.
"""

from __future__ import annotations

from functools import update_wrapper

from vlhook import _diag, _imports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextvars import ContextVar
    from types import ModuleType
    from typing import Any

ATTRIBUTE = "_vlhook_bound"


def install(variable: ContextVar[Any]) -> None:
    _imports.when_imported("threading", lambda module: _into_threads(module.Thread, variable))
    _imports.when_imported(
        "concurrent.futures.thread", lambda module: _into_tasks(module, variable)
    )


def _into_threads(thread_class: Any, variable: ContextVar[Any]) -> None:
    original_start, original_bootstrap = thread_class.start, thread_class._bootstrap_inner
    get, set_ = variable.get, variable.set

    def start(self: Any) -> Any:
        with _diag.guard("bind: thread start"):
            fields = get()
            if fields is not None:
                object.__setattr__(self, ATTRIBUTE, fields)
        return original_start(self)

    def _bootstrap_inner(self: Any) -> Any:
        with _diag.guard("bind: thread"):
            fields = self.__dict__.get(ATTRIBUTE)
            if fields is not None:
                set_(fields)
        return original_bootstrap(self)

    thread_class.start = update_wrapper(start, original_start)
    thread_class._bootstrap_inner = update_wrapper(_bootstrap_inner, original_bootstrap)


def _into_tasks(module: ModuleType, variable: ContextVar[Any]) -> None:
    """A pool's worker runs tasks submitted from anywhere: each gets the fields bound where it
    was submitted (the work item is made in `submit`, on the submitting thread)."""
    work_item = getattr(module, "_WorkItem", None)
    if work_item is None:
        _diag.debug("concurrent.futures has no _WorkItem: bound fields stay out of pool tasks")
        return
    original_init, original_run = work_item.__init__, work_item.run
    get = variable.get

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        with _diag.guard("bind: pool submit"):
            object.__setattr__(self, ATTRIBUTE, get())

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = None
        with _diag.guard("bind: pool task"):
            if ATTRIBUTE in self.__dict__:
                token = variable.set(self.__dict__[ATTRIBUTE])
        try:
            return original_run(self, *args, **kwargs)
        finally:
            if token is not None:
                with _diag.guard("bind: pool task"):
                    variable.reset(token)

    work_item.__init__ = update_wrapper(__init__, original_init)
    work_item.run = update_wrapper(run, original_run)
