"""Tracebacks the program shows are the ones it shows without vlhook: no frame of vlhook's in a
failed write to a closed pipe (`... | head -1`), in logging's or loguru's error report, at the
exit flush, or in an exception raised by the body of a module vlhook hooks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import pytest

from conftest import DROPIN, INTERNAL_ERROR, base_env, run_python

PRINT_LOOP = "for i in range(100000):\n    print(i)\n"
PROGRAMS = {
    # The write fails in the middle of the program: an uncaught BrokenPipeError.
    "print_loop": PRINT_LOOP,
    "binary_writes": "import sys\nfor i in range(1000):\n    sys.stdout.buffer.write(b'x' * 100)\n",
    "thread": (
        "import threading\n"
        "t = threading.Thread(target=lambda: [print(i) for i in range(100000)])\n"
        "t.start()\nt.join()\n"
    ),
    # Buffered output flushed at exit: "Exception ignored in: ... BrokenPipeError".
    "exit_flush": "print('hi')\n",
    # logging's report of a handler whose stream is closed: "--- Logging error ---".
    "logging_to_stdout": (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout)\n"
        "for i in range(200):\n    logging.warning('record %d %s', i, 'x' * 10000)\n"
    ),
    # loguru's own report: "--- Logging error in Loguru Handler #1 ---".
    "loguru_to_stdout": (
        "import sys\nfrom loguru import logger\n"
        "logger.remove()\nlogger.add(sys.stdout)\n"
        "for i in range(200):\n    logger.warning('record {} {}', i, 'x' * 10000)\n"
    ),
}


def run_into_closed_pipe(
    args: list[str], env: Optional[dict[str, str]], cwd: Path
) -> tuple[int, bytes]:
    """Run with stdout a pipe nobody reads any more (its reader closed before the start, as
    `head -1` does once it has its line): every write to it fails with EPIPE."""
    full = base_env()
    if env is not None:
        full.update(env)
        full["PYTHONPATH"] = str(DROPIN)
    reader, writer = os.pipe()
    os.close(reader)
    try:
        proc = subprocess.run(
            [sys.executable, *args], env=full, stdout=writer, stderr=subprocess.PIPE,
            cwd=str(cwd), timeout=60,
        )  # fmt: skip
    finally:
        os.close(writer)
    assert INTERNAL_ERROR not in proc.stderr, proc.stderr.decode("utf-8", "replace")
    return proc.returncode, proc.stderr


def _steady(err: bytes) -> bytes:
    """loguru's report shows the record, with its time, elapsed time and process id."""
    return b"".join(line for line in err.splitlines(True) if not line.startswith(b"Record was:"))


def same_with_and_without(args: list[str], sink: Any, cwd: Path) -> bytes:
    bare_rc, bare = run_into_closed_pipe(args, None, cwd)
    hooked_rc, hooked = run_into_closed_pipe(args, sink.env(), cwd)
    assert (hooked_rc, _steady(hooked)) == (bare_rc, _steady(bare)), hooked.decode()
    return bare


EXPECTED = {
    "print_loop": b"\nBrokenPipeError: [Errno 32] Broken pipe\n",
    "binary_writes": b"\nBrokenPipeError: [Errno 32] Broken pipe\n",
    "thread": b"\nBrokenPipeError: [Errno 32] Broken pipe\n",
    # Python 3.13 words the interpreter's own report of the failed exit flush differently.
    "exit_flush": b"Exception ignored on flushing sys.stdout"
    if sys.version_info >= (3, 13)
    else b"Exception ignored in: <_io.TextIOWrapper name='<stdout>'",
    "logging_to_stdout": b"--- Logging error ---\n",
    "loguru_to_stdout": b"--- Logging error in Loguru Handler #1 ---\n",
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_closed_pipe_shows_the_same_traceback(script: Any, sink: Any, name: str) -> None:
    path = script(PROGRAMS[name])
    err = same_with_and_without([str(path)], sink, path.parent)
    assert EXPECTED[name] in err


def test_python_c_into_closed_pipe(sink: Any, tmp_path: Path) -> None:
    err = same_with_and_without(["-c", PRINT_LOOP], sink, tmp_path)
    assert err.startswith(b'Traceback (most recent call last):\n  File "<string>", line 2')


def test_uncaught_broken_pipe_is_shipped_without_vlhook_frames(script: Any, sink: Any) -> None:
    path = script(PRINT_LOOP)
    run_into_closed_pipe([str(path)], sink.env(), path.parent)
    rows = sink.settle(1)
    errors = [r for r in rows if r.get("exception.type") == "BrokenPipeError"]
    assert len(errors) == 1, rows
    assert "vlhook" not in errors[0]["exception.stacktrace"]
    assert "line 2, in <module>\n    print(i)\n" in errors[0]["exception.stacktrace"]


def test_exception_in_a_hooked_module_body(script: Any, sink: Any, tmp_path: Path) -> None:
    """vlhook runs its hooks right after the body of some modules (awslambdaric's here):
    an exception from that body shows no vlhook frame and no importlib frames."""
    package = tmp_path / "awslambdaric"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "lambda_runtime_client.py").write_text("raise ValueError('broken module')\n")
    path = script("import awslambdaric.lambda_runtime_client\n")
    bare = run_into_closed_pipe([str(path)], None, tmp_path)
    hooked = run_into_closed_pipe([str(path)], sink.env(), tmp_path)
    assert hooked == bare
    assert bare[1].endswith(b"    raise ValueError('broken module')\nValueError: broken module\n")
    assert b"importlib" not in bare[1]
    rows = sink.settle(1)
    assert [r["exception.message"] for r in rows] == ["broken module"]
    assert "importlib" not in rows[0]["exception.stacktrace"]


HANDLER_OF_ITS_OWN = (
    "import logging, sys\n"
    "class Mine(logging.StreamHandler):\n"
    "    def emit(self, record):\n"
    "        super().emit(record)\n"
    "        if record.name == 'boom':\n"
    "            raise RuntimeError('handler broke')\n"
    "logging.basicConfig(level=logging.INFO, handlers=[Mine(sys.stderr)])\n"
    "logging.getLogger('app').warning('two %s %s', 'one')\n"
    "logging.getLogger('app').info('fine')\n"
    "logging.getLogger('boom').error('last')\n"
)


def test_a_failing_handler_of_the_programs_own(script: Any, sink: Any) -> None:
    """logging's report of a handler defined by the program prints the call stack from that
    handler's frame out, logging's frames included, and an exception out of a handler passes
    through them: `callHandlers` shows as one frame, on logging's own lines and columns."""
    path = script(HANDLER_OF_ITS_OWN)
    bare = run_python(path, dropin=False)
    hooked = run_python(path, sink.env())
    assert (hooked.rc, hooked.stderr) == (bare.rc, bare.stderr), hooked.stderr.decode()
    assert bare.stderr.count(b", in callHandlers\n    hdlr.handle(record)\n") == 2
    rows = sink.settle(4)
    assert sorted(r["_msg"].split(" (")[0] for r in rows if r["stream"] == "logging") == [
        "fine", "last", "two %s %s"]  # fmt: skip
    assert [r["exception.message"] for r in rows if "exception.type" in r] == ["handler broke"]


UNRAISABLE = (
    "import sys, weakref\n"
    "print(sys.unraisablehook is sys.__unraisablehook__)\n"  # as without vlhook
    "class Resource:\n"
    "    def __del__(self):\n"
    "        raise RuntimeError('close failed')\n"
    "r = Resource()\n"
    "del r\n"
    "print('after')\n"
    "class Node:\n"
    "    pass\n"
    "def gone(ref):\n"
    "    raise KeyError('callback broke')\n"
    "n = Node()\n"
    "ref = weakref.ref(n, gone)\n"
    "del n\n"
    "print('end')\n"
)


def _addresses_out(text: str) -> str:
    return re.sub(r" at 0x[0-9a-f]+", " at 0x?", text)


def test_an_exception_python_ignores_is_one_error_entry(script: Any, sink: Any) -> None:
    """An exception raised where it cannot propagate (a `__del__`, a weak reference's
    callback) Python reports through sys.unraisablehook: "Exception ignored in: <...>", then
    its traceback. One ERROR entry each, saying both, with the exception's fields; the head
    was an INFO entry of its own. stderr is as without vlhook."""
    path = script(UNRAISABLE)
    bare = run_python(path, sink.env(), dropin=False)
    hooked = run_python(path, sink.env())
    assert (hooked.rc, hooked.out) == (bare.rc, bare.out) == (0, "True\nafter\nend\n")
    assert _addresses_out(hooked.err) == _addresses_out(bare.err)
    rows = sink.settle(5)
    assert [r["_msg"] for r in rows if r["level"] == "INFO"] == ["True", "after", "end"]
    errors = [r for r in rows if r["level"] == "ERROR"]
    assert [(r["exception.type"], r["exception.message"]) for r in errors] == [
        ("RuntimeError", "close failed"),
        ("KeyError", "'callback broke'"),
    ]
    heads = [line for line in hooked.err.splitlines() if line.startswith("Exception ignored")]
    assert len(heads) == 2
    for head, row in zip(heads, errors):
        assert row["_msg"].startswith(head + "\nTraceback (most recent call last):\n")
        assert row["_msg"].endswith(row["exception.stacktrace"])
        assert row["stream"] == "stderr"


def test_an_unraisable_on_a_thread_whose_writes_are_not_captured_is_left_to_its_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the thread's writes are not captured (vlhook's own work, such as the exit
    keeping late writes under its lock, where a collection may finalize the program's
    object; a record being handled), the hook takes nothing, as the text would not be: the
    capture would wait for that very lock. Python's hook runs either way, and the thread's
    state comes back as it was."""
    from types import SimpleNamespace

    from vlhook import _capture_streams, _lifecycle

    taken: list[Any] = []
    monkeypatch.setattr(_lifecycle, "_sender", SimpleNamespace(put=lambda *a: taken.append(a)))
    shown: list[Any] = []
    hook = _lifecycle._wrap_unraisablehook(shown.append)
    told = SimpleNamespace(exc_value=KeyError("k"), err_msg="Exception ignored in", object=None)
    ident = threading.get_ident()
    collected: list[str] = []
    _capture_streams.suppressed[ident] = collected  # a record being handled
    try:
        with _capture_streams.NotCaptured():
            hook(told)
        assert _capture_streams.suppressed[ident] is collected
        hook(told)
    finally:
        _capture_streams.suppressed.pop(ident, None)
    assert taken == [] and shown == [told, told]
    hook(told)
    assert ident not in _capture_streams.suppressed
    ((capture, level),) = taken
    assert (level, capture.head, capture.exc) == (40, "Exception ignored in:", told.exc_value)
