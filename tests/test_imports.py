"""The post-import finder's rule for modules vlhook's threads may not import first, and the
garbage collector paused while vlhook loads its own modules."""

from __future__ import annotations

import _thread
import gc
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from vlhook import _imports


@pytest.fixture
def a_module(tmp_path: Path) -> Iterator[str]:
    name = "vlhook_test_kept_out"
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield name
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)
        if _imports._finder is not None:
            sys.meta_path.remove(_imports._finder)
        _imports._finder = None
        _imports._own_threads.clear()


def _import_on_own_thread(name: str) -> str:
    """Import `name` on a new thread that counts as one of vlhook's."""
    done = _thread.allocate_lock()
    done.acquire()
    result: list[str] = []

    def run() -> None:
        try:
            _imports.own_thread()
            __import__(name)
            result.append("imported")
        except ImportError as exc:
            result.append(f"refused: {exc}")
        finally:
            done.release()

    _thread.start_new_thread(run, ())
    assert done.acquire(timeout=10)
    return result[0]


def test_own_threads_are_refused_until_another_thread_imports_it(a_module: str) -> None:
    _imports.keep_from_own_threads(a_module)
    assert _import_on_own_thread(a_module).startswith("refused: ")
    assert a_module not in sys.modules
    # The program's threads are never refused (this one; a thread started here could reuse
    # the ident of the one that ended), and once one has imported it, it is there for all.
    __import__(a_module)
    sys.modules.pop(a_module)
    assert _import_on_own_thread(a_module) == "imported"


def test_hooks_wait_for_the_import_that_succeeds(a_module: str) -> None:
    seen: list[int] = []
    _imports.keep_from_own_threads(a_module)
    _imports.when_imported(a_module, lambda module: seen.append(module.VALUE))
    assert _import_on_own_thread(a_module).startswith("refused: ")
    assert seen == []
    __import__(a_module)  # this (the program's) thread
    assert seen == [1]


@pytest.fixture
def collector() -> Iterator[None]:
    was = gc.isenabled()
    try:
        yield
    finally:
        (gc.enable if was else gc.disable)()


def test_collector_paused_then_on_again(collector: None) -> None:
    gc.enable()
    with _imports.CollectorPaused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ImportError), _imports.CollectorPaused():
        raise ImportError("a module that cannot load")
    assert gc.isenabled()


def test_collector_the_program_turned_off_stays_off(collector: None) -> None:
    gc.disable()
    with _imports.CollectorPaused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_collector_the_program_turns_on_meanwhile_stays_on(collector: None) -> None:
    gc.enable()
    with _imports.CollectorPaused():
        gc.enable()  # another of the program's threads, say
    assert gc.isenabled()


def test_collector_settled_finds_nothing_young_when_on_again(collector: None) -> None:
    """The exit's pause: what was made meanwhile goes to the oldest generation (untraversed;
    collected here where objects are frozen already: Python 3.12's interpreter freezes some
    of its own), so that no young collection follows on whichever thread allocates next."""
    gc.enable()
    frozen = gc.get_freeze_count()
    with _imports.CollectorPaused(settle=True):
        made = [[index] for index in range(5_000)]
        assert gc.get_count()[0] > 1_000
    assert gc.isenabled()
    assert gc.get_count()[0] < 50
    assert gc.get_freeze_count() == frozen
    assert any(found is made for found in gc.get_objects(generation=2))


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_collector_settled_leaves_what_the_program_froze(collector: None) -> None:
    """Settling by freeze and unfreeze would release the program's own frozen objects too:
    then the young generations are collected on this thread instead, its frozen objects
    left frozen."""
    gc.enable()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with _imports.CollectorPaused(settle=True):
            made = [[index] for index in range(5_000)]
            garbage = _Cycle()
            gone = weakref.ref(garbage)
            del garbage
            assert gone() is not None
        assert gc.isenabled()
        assert gc.get_freeze_count() == frozen
        assert gc.get_count()[0] < 50
        assert any(found is made for found in gc.get_objects(generation=2))
        assert gone() is None  # collected on this thread, before the block ended
    finally:
        gc.unfreeze()


def test_collector_not_paused_when_not_asked(collector: None) -> None:
    gc.enable()
    with _imports.CollectorPaused(False):
        assert gc.isenabled()
        gc.disable()  # the program's own choice, made meanwhile
    assert not gc.isenabled()


def test_a_module_a_host_puts_in_sys_modules_runs_its_hook_at_the_next_import(
    a_module: str,
) -> None:
    """uWSGI adds its `uwsgi` module to sys.modules itself, no import seeing it: the hook runs
    at the first import of any module after it is there, once."""
    import types

    seen: list[str] = []
    _imports.when_present("vlhook_test_host", lambda module: seen.append(module.__name__))
    __import__(a_module)  # not there yet: nothing
    sys.modules.pop(a_module)
    sys.modules["vlhook_test_host"] = types.ModuleType("vlhook_test_host")
    try:
        __import__(a_module)
        sys.modules.pop(a_module)
        __import__(a_module)
    finally:
        del sys.modules["vlhook_test_host"]
    assert seen == ["vlhook_test_host"]
