"""The logging hook's `callHandlers`: logging's own function compiled again with the capture
around its body, on logging's own lines, or a wrapper when that cannot be done."""

from __future__ import annotations

import importlib.util
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from vlhook._capture_logging import _in_place

MODULE = '''
class Logger:
    def callHandlers(self, record):
        """
        Hand the record over.
        """
        self.seen.append(record)
        return len(self.seen)
'''


def _load(path: Path, source: str) -> Any:
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _calls() -> tuple[list[Any], Any, Any]:
    calls: list[Any] = []

    def enter(record: Any) -> str:
        calls.append(("enter", record))
        return "state"

    def leave(record: Any, state: Any) -> None:
        calls.append(("leave", record, state))

    return calls, enter, leave


def test_rebuilt_in_place_runs_the_body_between_enter_and_leave(tmp_path: Path) -> None:
    module = _load(tmp_path / "fake_logging.py", MODULE)
    calls, enter, leave = _calls()
    hooked = _in_place(module.Logger.callHandlers, enter, leave)
    assert hooked is not None
    logger = module.Logger()
    logger.seen = []
    assert hooked(logger, "r1") == 1  # the body's own result, and its own globals
    assert calls == [("enter", "r1"), ("leave", "r1", "state")]
    code, original = hooked.__code__, module.Logger.callHandlers.__code__
    assert (code.co_filename, code.co_firstlineno) == (
        original.co_filename,
        original.co_firstlineno,
    )
    assert hooked.__qualname__ == "Logger.callHandlers"
    assert hooked.__doc__ == module.Logger.callHandlers.__doc__


def test_leave_runs_when_the_body_raises(tmp_path: Path) -> None:
    module = _load(tmp_path / "fake_logging_raises.py", MODULE)
    calls, enter, leave = _calls()
    hooked = _in_place(module.Logger.callHandlers, enter, leave)
    assert hooked is not None
    logger = module.Logger()  # no `seen`: the body raises AttributeError
    try:
        hooked(logger, "r")
    except AttributeError as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        assert (frame.lineno, frame.line) == (7, "self.seen.append(record)")
    else:
        raise AssertionError("the body's exception was lost")
    assert calls == [("enter", "r"), ("leave", "r", "state")]


def test_a_source_that_no_longer_matches_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "fake_logging_changed.py"
    module = _load(path, MODULE)
    path.write_text(MODULE.replace("return len(self.seen)", "return 0"))
    assert _in_place(module.Logger.callHandlers, *_calls()[1:]) is None


def test_no_docstring_or_no_source_means_no_rebuild(tmp_path: Path) -> None:
    bare = MODULE.replace('        """\n        Hand the record over.\n        """\n', "")
    module = _load(tmp_path / "fake_logging_bare.py", bare)
    assert _in_place(module.Logger.callHandlers, *_calls()[1:]) is None
    (tmp_path / "fake_logging_bare.py").unlink()
    assert _in_place(module.Logger.callHandlers, *_calls()[1:]) is None


def test_logging_of_this_python_is_rebuilt_on_its_own_lines() -> None:
    calls, enter, leave = _calls()
    original = logging.Logger.callHandlers
    hooked = _in_place(original, enter, leave)
    assert hooked is not None, f"logging's callHandlers of Python {sys.version} not rebuilt"
    logger = logging.Logger("vlhook-test-hook")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)
            raise KeyError("from the handler")

    logger.addHandler(Keep())
    logger.propagate = False
    record = logger.makeRecord(logger.name, logging.INFO, "f.py", 1, "m", (), None)
    try:
        hooked(logger, record)
    except KeyError as exc:  # out of the handler, through callHandlers, as without vlhook
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.name == "callHandlers"]
    else:
        raise AssertionError("the handler's exception was lost")
    assert seen == [record] and calls == [("enter", record), ("leave", record, "state")]
    # One frame, on the line of logging's own where it calls the handler.
    assert [(f.filename, f.line) for f in frames] == [(logging.__file__, "hdlr.handle(record)")]
    assert hooked.__code__.co_firstlineno == original.__code__.co_firstlineno
    assert hooked.__globals__ is original.__globals__


def test_a_body_using_the_added_names_is_not_rebuilt(tmp_path: Path) -> None:
    """`state` (or `enter`, `leave`) in the body would be clobbered by, or shadow, ours."""
    clash = MODULE.replace("self.seen.append(record)", "state = self.seen.append(record)")
    module = _load(tmp_path / "fake_logging_clash.py", clash)
    assert _in_place(module.Logger.callHandlers, *_calls()[1:]) is None


def test_a_record_that_cannot_be_formatted_is_formatted_once() -> None:
    """The program's mismatched format and args: one attempt, as without vlhook (an argument's
    __str__ may have effects), and a readable message in the capture."""
    from vlhook import _capture_logging

    formatted: list[int] = []

    class Counted:
        def __str__(self) -> str:
            formatted.append(1)
            return "c"

    captured: list[Any] = []
    assert _capture_logging._original is None, "a hook of this process's own is installed"
    _capture_logging.install(lambda item, level: captured.append(item), logging.INFO)
    try:
        logger = logging.Logger("vlhook-test-once")
        logger.addHandler(logging.NullHandler())  # formats nothing itself
        logger.propagate = False
        logger.warning("two %s %s", Counted())  # noqa: PLE1206 - the mismatch is the point
    finally:
        _capture_logging.uninstall()
    assert formatted == [1]
    assert [item.message.split(" (")[0] for item in captured] == ["two %s %s"]
    assert "formatting failed" in captured[0].message
