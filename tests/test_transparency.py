"""The program cannot tell: terminals, its own stream replacements, stdin, closed streams."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from typing import Any

from conftest import DROPIN, base_env, messages, run_python

PROBE = (
    "import sys, io\n"
    "out = sys.stdout\n"
    "print(out.isatty(), sys.stderr.isatty(), out.fileno(), out.encoding,\n"
    "      out.errors, out.line_buffering, isinstance(out, io.TextIOWrapper),\n"
    "      out is sys.__stdout__, type(out.buffer).__name__ != '')\n"
)


def _under_pty(path: str, env: dict[str, str]) -> bytes:
    """Run a program with a real terminal as stdout/stderr; return what it displayed."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, path], env=env, stdout=secondary, stderr=secondary)
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(primary)
    return output


def test_terminal_properties_are_the_originals(script: Any, sink: Any) -> None:
    path = str(script(PROBE))
    bare = _under_pty(path, base_env())
    env = base_env()
    env.update(sink.env())
    env["PYTHONPATH"] = str(DROPIN)
    hooked = _under_pty(path, env)
    assert bare.startswith(b"True True 1 utf-8 ") and bare.rstrip().endswith(b"True True True True")
    assert hooked == bare


def test_pipe_properties_are_the_originals(script: Any, sink: Any) -> None:
    path = script(PROBE + "sys.stdout.reconfigure(line_buffering=True)\nprint('reconfigured')\n")
    bare = run_python(path, dropin=False)
    hooked = run_python(path, sink.env())
    assert hooked.stdout == bare.stdout and bare.out.startswith("False False 1 utf-8")
    assert "reconfigured" in messages(sink.settle(2))


def test_program_that_replaces_stdout_itself(script: Any, sink: Any) -> None:
    path = script(
        "import contextlib, io, sys\n"
        "print('before')\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    print('captured by the program, not output')\n"
        "print('after, got', len(buf.getvalue()))\n"
        "saved = sys.stdout\n"
        "sys.stdout = open('/dev/null', 'w')\n"
        "print('to devnull')\n"
        "sys.stdout = sys.__stdout__\n"
        "print('restored from __stdout__')\n"
    )
    bare = run_python(path, dropin=False)
    hooked = run_python(path, sink.env())
    assert hooked.stdout == bare.stdout
    assert messages(sink.settle(3)) == ["before", "after, got 36", "restored from __stdout__"]


def test_stdin_and_input_untouched(script: Any, sink: Any) -> None:
    path = script("name = input('name? ')\nprint('hi', name)\n")
    bare = run_python(path, dropin=False, stdin=b"ann\n")
    hooked = run_python(path, sink.env(), stdin=b"ann\n")
    assert hooked.stdout == bare.stdout == b"name? hi ann\n"
    assert messages(sink.settle(1)) == ["name? hi ann"]


def test_closed_stdout_behaves_as_without(script: Any, sink: Any) -> None:
    path = script(
        "import sys\nsys.stdout.close()\n"
        "try:\n    print('x')\nexcept ValueError as e:\n    sys.stderr.write(f'error: {e}\\n')\n"
    )
    bare = run_python(path, dropin=False)
    hooked = run_python(path, sink.env())
    assert (hooked.rc, hooked.stdout, hooked.stderr) == (bare.rc, bare.stdout, bare.stderr)
    # The failed print was never output, so it is not shipped; the error message is.
    assert messages(sink.settle(1)) == ["error: I/O operation on closed file."]
