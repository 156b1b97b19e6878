"""Run a hook right after a module is imported, without importing it ourselves.

vlhook patches `logging` only if and when the program imports it: importing it at start-up
would cost every process ~15 ms. A finder at the head of `sys.meta_path` lets the real finders
locate the module, then wraps that module's own loader instance so the hook runs after the
module body. A hook's failure is swallowed: it must never break the program's import.

The same finder keeps vlhook's own threads from being the first to import a module the program
must import first (`threading`, before Python 3.13: see `keep_from_own_threads`). And while
vlhook loads its own modules, the cyclic garbage collector waits (`CollectorPaused`).
"""

from __future__ import annotations

import sys

from vlhook._diag import internal_error
from vlhook._sync import at_fork, get_ident

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType
    from typing import Any, Callable, Optional

    Hook = Callable[[ModuleType], None]


class _PostImportFinder:
    def __init__(self) -> None:
        self.hooks: dict[str, list[Hook]] = {}
        #: Modules vlhook's threads may not import until another thread has.
        self.kept_out: set[str] = set()
        #: Hooks for modules a host puts in sys.modules itself, without an import (see
        #: `when_present`).
        self.present: dict[str, list[Hook]] = {}

    def find_spec(
        self, name: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
    ) -> Any:
        if self.present:
            self._run_present()
        if name in self.kept_out:
            if get_ident() in _own_threads:
                raise ModuleNotFoundError(f"{name} is the program's to import first", name=name)
            self.kept_out.discard(name)
        hooks = self.hooks.pop(name, None)
        if hooks is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                _wrap_loader(spec, name, hooks)
                return spec
        return None

    def _run_present(self) -> None:
        for name in [name for name in self.present if name in sys.modules]:
            hooks = self.present.pop(name, None)
            if hooks is not None:
                _run(hooks, sys.modules[name], name)


def _wrap_loader(spec: Any, name: str, hooks: list[Hook]) -> None:
    loader = spec.loader
    if loader is None or isinstance(loader, type) or not hasattr(loader, "exec_module"):
        return  # builtin or frozen: such a module cannot be hooked this way
    loader.exec_module = _exec_then(loader.exec_module, lambda module: _run(hooks, module, name))


# The wrapper that runs the module body carries the file name of one of importlib's frames:
# Python takes importlib's frames out of the traceback of an exception raised by a module's
# body, and so it takes this one out too (else every such traceback would show importlib's
# frames and ours).
IMPORTLIB_FILE = "<frozen importlib._bootstrap_external>"


def _exec_then(exec_module: Hook, after: Hook) -> Hook:
    def exec_module_then_hooks(module: ModuleType) -> None:
        exec_module(module)
        after(module)

    code = exec_module_then_hooks.__code__
    exec_module_then_hooks.__code__ = code.replace(co_filename=IMPORTLIB_FILE)
    return exec_module_then_hooks


def _run(hooks: list[Hook], module: ModuleType, name: str) -> None:
    for hook in hooks:
        try:
            hook(module)
        except Exception as exc:
            internal_error(f"import hook for {name}", exc)


_finder: Optional[_PostImportFinder] = None
#: The idents of vlhook's own threads (the sender, the delivery workers) in this process.
_own_threads: set[int] = set()


def _installed() -> _PostImportFinder:
    global _finder
    if _finder is None:
        _finder = _PostImportFinder()
        sys.meta_path.insert(0, _finder)
    return _finder


def when_imported(name: str, hook: Hook) -> None:
    """Call `hook(module)` now if `name` is already imported, else right after its import."""
    module = sys.modules.get(name)
    if module is not None:
        _run([hook], module, name)
        return
    _installed().hooks.setdefault(name, []).append(hook)


def when_present(name: str, hook: Hook) -> None:
    """Call `hook(module)` now if `name` is in sys.modules, else at the first import of any
    module after it is. For a module the host program puts there itself, no import seeing it:
    uWSGI's `uwsgi`, added once its Python plugin starts, before it loads the application
    (whose first import then runs the hook)."""
    module = sys.modules.get(name)
    if module is not None:
        _run([hook], module, name)
        return
    _installed().present.setdefault(name, []).append(hook)


def keep_from_own_threads(name: str) -> None:
    """Until another thread imports `name`, an import of it on one of vlhook's threads fails
    with ModuleNotFoundError. Before Python 3.13 the thread that first imports `threading`
    becomes its main thread, and the exit waits for that thread to end: ours never do."""
    if name not in sys.modules:
        _installed().kept_out.add(name)


def own_thread() -> None:
    """Called first thing by each thread vlhook starts."""
    _own_threads.add(get_ident())


# A forked child has none of the parent's threads; its new threads may reuse their idents.
at_fork(after_in_child=_own_threads.clear)


def forget(name: str) -> None:
    """Drop the hooks still waiting for `name` to be imported."""
    if _finder is not None:
        _finder.hooks.pop(name, None)


class CollectorPaused:
    """`with CollectorPaused(when):` the cyclic garbage collector does not run automatically
    (when `when` is true; else this does nothing).

    For the imports of vlhook's own modules, made when the process has a use for them:
    everything an import makes (functions, classes, their code and constants) lives as long
    as the process, so a collection in the middle traverses all of it and frees nothing.
    Measured on a script that prints one line: the sender's pipeline loads at the exit, and
    a generation-1 collection in the middle of it took 1.1-2.6 ms; paused, the process ended
    ~1.5-1.9 ms sooner (interleaved runs). What the program threw away meanwhile waits those
    few milliseconds, then is collected as usual.

    The collector's switch is the whole process's, so the caller pauses it only while the
    program waits for vlhook (a flush, the exit), not while the program's code runs on. A
    collector that is off is left alone, and one turned off is turned back on only if it is
    still off: a program whose other thread turns it on meanwhile keeps it on. One whose
    other thread turns it off in those milliseconds would find it on again: the one case
    this cannot tell apart.

    `settle` (the exit's): when turned back on, the collector finds no young objects to
    traverse. Otherwise what the exit made (a short script's pipeline, loaded there) would set
    off a young collection at the next allocation — on whichever thread makes it, often the
    sender's, where the program's cyclic garbage would then be finalized: a `__del__` that
    closes an sqlite3 connection fails there ("created in a thread can only be used in that
    same thread"). `gc.freeze()` then `gc.unfreeze()` moves every object the collector tracks
    to its oldest generation (two list splices, nothing traversed) and sets the young count
    to zero, so the next collection is the interpreter's own full one at shutdown, on the
    main thread, before the modules are torn down: where the program's finalizers run
    without vlhook. When objects are frozen already (the program's own; on Python 3.12, 375
    of the interpreter's from its start), `unfreeze` would release them too: the young
    generations are collected instead, here, on the exiting thread, as the collection the
    next allocation would set off, on whichever thread, would have."""

    __slots__ = ("_paused", "_settle", "_when")

    def __init__(self, when: bool = True, settle: bool = False) -> None:
        self._when = when
        self._settle = settle

    def __enter__(self) -> None:
        self._paused = False
        if not self._when:
            return
        import gc  # built in; loaded here, not by every process at start-up

        self._paused = gc.isenabled()
        if self._paused:
            gc.disable()

    def __exit__(self, *exc_info: object) -> None:
        if not self._paused:
            return
        import gc

        if gc.isenabled():
            return  # turned on meanwhile by the program: its own doing, left as it is
        gc.enable()
        if not self._settle:
            return
        if gc.get_freeze_count():
            gc.collect(1)  # unfreeze would release what is frozen: collected here instead
        else:
            gc.freeze()
            gc.unfreeze()
