"""The program cannot tell: terminals, its own stream replacements, stdin, closed streams."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from typing import Any

import pytest

from conftest import DROPIN, as_without_vlhook, base_env, messages, run_python

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
    as_without_vlhook(path, sink.env())
    # The failed print was never output, so it is not shipped; the error message is.
    assert messages(sink.settle(1)) == ["error: I/O operation on closed file."]


def test_writelines_outputs_and_ships_the_lines_written_before_an_error(
    script: Any, sink: Any
) -> None:
    # The lines are not made into a list first: those before the error are output (and shipped,
    # in order with what the generator prints itself); the one whose write failed is not.
    path = script(
        "import sys\n"
        "def lines():\n"
        "    yield 'one\\n'\n"
        "    print('making two')\n"
        "    yield 'two\\n'\n"
        "    raise RuntimeError('no three')\n"
        "try:\n    sys.stdout.writelines(lines())\n"
        "except RuntimeError as e:\n    print('caught', e)\n"
        "try:\n    sys.stdout.writelines(['four\\n', 5, 'six\\n'])\n"
        "except TypeError:\n    print('not a str')\n"
        "sys.stdout.flush()\n"
        "line = bytearray(b'bytes one\\n')\n"
        "def chunks():\n"
        "    yield line\n"
        "    line[:] = b'bytes two\\n'  # reused: each is shipped as it was written\n"
        "    yield line\n"
        "    raise RuntimeError('no bytes three')\n"
        "try:\n    sys.stdout.buffer.writelines(chunks())\n"
        "except RuntimeError as e:\n    sys.stdout.buffer.flush()\n    print('caught', e)\n"
    )
    bare, _ = as_without_vlhook(path, sink.env())
    assert bare.out.startswith("one\nmaking two\ntwo\ncaught no three\nfour\nnot a str\n")
    assert messages(sink.settle(9)) == [
        "one", "making two", "two", "caught no three", "four", "not a str",
        "bytes one", "bytes two", "caught no bytes three",
    ]  # fmt: skip


def test_delattr_copy_and_pickle_answer_as_the_original(script: Any, sink: Any) -> None:
    path = script(
        "import copy, pickle, sys\n"
        "def show(label, call):\n"
        "    try:\n        print(label, call())\n"
        "    except Exception as e:\n        print(label, type(e).__name__, e)\n"
        "sys.stdout.x = 1\n"
        "show('del', lambda: delattr(sys.stdout, 'x'))\n"
        "show('del again', lambda: delattr(sys.stdout, 'x'))\n"
        "show('copy', lambda: copy.copy(sys.stdout))\n"
        "show('copy buffer', lambda: copy.copy(sys.stdout.buffer))\n"
        "show('deepcopy', lambda: copy.deepcopy(sys.stderr))\n"
        "show('pickle', lambda: pickle.dumps(sys.stdout))\n"
        "show('reduce_ex', lambda: sys.stdout.__reduce_ex__(2))\n"
        "show('reduce', lambda: sys.stdout.__reduce__())\n"
        "show('getstate', lambda: sys.stdout.__getstate__())\n"  # Python < 3.11: AttributeError
    )
    bare, _ = as_without_vlhook(path, sink.env())
    assert bare.out.count("TypeError cannot pickle") == 6 and "del None" in bare.out
    assert len(sink.settle(9)) == 9


# IPython 9 wraps `sys.stdout.write` around each cell (`stream.write = wrapper`, the wrapper
# calling the write it replaced). The tee passed the assignment on to the stream under it,
# whose new `write` called the tee's, which called the stream's: print() recursed until
# RecursionError, and the program printed nothing and ended with status 1.
OWN_WRITE = """
import sys
saved = sys.stdout.write
sys.stdout.write = saved
print("put back")
def shout(text):
    return saved(text.upper())
sys.stdout.write = shout
print("shouted")
del sys.stdout.write
print("deleted", sys.stdout.write == saved)
sys.stderr.writelines = sys.stderr.writelines
sys.stderr.writelines(["lines\\n"])
"""


def test_a_program_that_sets_the_streams_write_keeps_it(script: Any, sink: Any) -> None:
    bare, _ = as_without_vlhook(script(OWN_WRITE), sink.env())
    assert bare.out == "put back\nSHOUTED\ndeleted True\n" and bare.err == "lines\n"
    assert sorted(messages(sink.settle(4))) == ["SHOUTED", "deleted True", "lines", "put back"]


def test_a_tee_made_without_init_raises_attributeerror_not_recursionerror() -> None:
    from vlhook._capture_streams import StreamTee

    blank = StreamTee.__new__(StreamTee)  # as copy and pickle would make one
    assert not hasattr(blank, "encoding")
    assert not hasattr(blank, "__setstate__")


def test_stream_detached_and_wrapped_anew_is_still_shipped(script: Any, sink: Any) -> None:
    # `detach()` gives the buffer's tee (the one `.buffer` gives): the new wrapper's bytes
    # are captured, decoded on the sender; the program sees the original's behaviour.
    path = script(
        "import io, sys\n"
        "print('before')\n"
        "buffer = sys.stdout.buffer\n"
        "raw = sys.stdout.detach()\n"
        "sys.stdout = io.TextIOWrapper(raw, encoding='utf-8', line_buffering=True)\n"
        "print('after', sys.stdout.buffer is buffer, sys.stdout.fileno(), sys.stdout.isatty(),\n"
        "      isinstance(sys.stdout.buffer, io.BufferedWriter), 'é')\n"
        "try:\n    sys.__stdout__.write('detached\\n')\n"
        "except ValueError as e:\n    print('old stream:', e)\n"
        "sys.stderr = io.TextIOWrapper(sys.stderr.detach(), encoding='utf-8')\n"
        "print('to stderr', file=sys.stderr)\n"
        "sys.stderr.flush()\n"
        "print('last')\n"
        "sys.stdout.close()\n"
    )
    bare, _ = as_without_vlhook(path, sink.env())
    assert bare.out.startswith("before\nafter True 1 False True é\nold stream: underlying")
    rows = sink.settle(5)
    assert messages(rows, "stdout") == [
        "before", "after True 1 False True é", bare.out.splitlines()[2], "last",
    ]  # fmt: skip
    assert messages(rows, "stderr") == ["to stderr"]


def test_a_recursion_limit_far_below_the_default_does_not_crash_the_program(
    script: Any, sink: Any
) -> None:
    """orjson's import crashes the interpreter near the recursion limit: with a limit the
    program set that low, vlhook's sender writes entries with the standard library."""
    path = script("import logging, sys\n"
                  "sys.setrecursionlimit(60)\n"
                  "print('{\"a\": 1}')\n"
                  "logging.getLogger('t').warning('a record')\n")  # fmt: skip
    bare = run_python(path, dropin=False)
    hooked = run_python(path, sink.env())
    assert (hooked.rc, hooked.out, hooked.err) == (bare.rc, bare.out, bare.err) == \
        (0, '{"a": 1}\n', "a record\n")  # fmt: skip
    assert sorted(messages(sink.settle(2))) == ["a record", '{"a": 1}']


def test_lines_printed_at_the_recursion_limit_are_output_and_stored_once(
    script: Any, sink: Any
) -> None:
    """`print()` is C and needs no Python frame; the tee's `write` is one, and the capture a
    few more. A program printing on its way back up from a RecursionError (its first capture
    at the very limit) lost the deepest lines, with "vlhook: (a message could not be shown)"
    on its stderr, and from Python 3.12 on printed torn lines ("depthdepth 996"). Now only the
    deepest print, where the tee's own frame does not fit, fails, as one frame deeper would
    without vlhook; every line printed is stored once, the deepest after the start of the
    line written before the recursion, which was held unfinished."""
    path = script("import sys\n"
                  "sys.setrecursionlimit(200)\n"
                  "def f(n):\n"
                  "    try:\n"
                  "        f(n + 1)\n"
                  "    except RecursionError:\n"
                  "        pass\n"
                  "    print('depth', n)\n"
                  "sys.stdout.write('start: ')\n"
                  "f(0)\n")  # fmt: skip
    bare = run_python(path, dropin=False)
    hooked = run_python(path, sink.env())
    printed = hooked.out.splitlines()
    assert (hooked.rc, hooked.err) == (bare.rc, bare.err) == (0, "")
    assert printed[0].startswith("start: depth ") and printed[-1] == "depth 0"
    unstarted = [line.split(": ")[-1] for line in bare.out.splitlines()]
    assert [line.split(": ")[-1] for line in printed] == unstarted[len(unstarted) - len(printed) :]
    assert len(unstarted) - len(printed) <= 1
    assert sorted(messages(sink.settle(len(printed)))) == sorted(printed)


def test_hooks_called_by_hand_with_no_exception_answer_as_without(script: Any, sink: Any) -> None:
    """A program calling sys.excepthook / threading.excepthook itself with a value that is no
    exception: Python's own complaint, no word of vlhook's, every line around it shipped."""
    path = script("import sys, threading\n"
                  "print('before')\n"
                  "sys.excepthook(ValueError, 'a string', None)\n"
                  "threading.excepthook(threading.ExceptHookArgs((ValueError, 's', None, None)))\n"
                  "for i in range(3):\n    print('after', i)\n")  # fmt: skip
    bare = run_python(path, dropin=False)
    hooked = run_python(path, sink.env())
    idents = re.compile(r"thread \d+")
    assert (hooked.rc, hooked.out) == (bare.rc, bare.out)
    assert idents.sub("thread N", hooked.err) == idents.sub("thread N", bare.err)
    assert "vlhook" not in hooked.err and "Exception expected" in hooked.err
    shipped = messages(sink.settle(6))
    assert {"before", "after 0", "after 1", "after 2"} <= set(shipped)


CLOSES_EVERY_DESCRIPTOR = """\
import os, sys
vlhook = sys.modules.get("vlhook")  # present with the drop-in only
print("before")
if vlhook:
    vlhook.flush(10)  # a connection to the server is open now
os.closerange(3, 1024)  # as a daemon does: vlhook's socket is closed
data = sys.argv[1]
with open(data, "w") as out:  # the lowest free number: the socket's
    print("after")
    if vlhook:
        vlhook.flush(10)  # the next request
    out.write("the program's data\\n")
print("done")
"""


def test_a_program_that_closes_every_descriptor_keeps_its_files(
    script: Any, sink: Any, tmp_path: Any
) -> None:
    """Before: vlhook closed the number its socket had had, now the program's file, and the
    program's data went out on vlhook's new socket, which took that number; the file stayed
    empty. Now a socket whose descriptor is no longer its own is let go, never closed."""
    path = script(CLOSES_EVERY_DESCRIPTOR)
    data = tmp_path / "data.txt"
    bare = run_python(path, args=(str(data),), dropin=False)
    assert data.read_text() == "the program's data\n"
    data.unlink()
    hooked = run_python(path, sink.env(), args=(str(data),))
    assert (hooked.rc, hooked.out, hooked.err) == (bare.rc, bare.out, bare.err) == (
        0, "before\nafter\ndone\n", "")  # fmt: skip
    assert data.read_text() == "the program's data\n"
    assert messages(sink.settle(3)) == ["before", "after", "done"]


NUMBERS = """\
import json, os, subprocess, sys
first = os.open(os.devnull, os.O_RDONLY)
listing = "import os; print(os.listdir('/proc/self/fd'))"
child = subprocess.run([sys.executable, "-S", "-c", listing], capture_output=True, text=True,
                       env={}).stdout.strip()
print(first, child)
print(json.dumps(sorted(map(int, os.listdir("/proc/self/fd")))), file=sys.stderr)
"""


def test_the_programs_descriptors_have_the_numbers_they_have_without_vlhook(
    script: Any, sink: Any
) -> None:
    """The descriptor vlhook holds from the start (for an exit at the limit of open files)
    sits at 256, not at the lowest free number: the program's files get the numbers they get
    without vlhook, and the programs it starts do not inherit it. Held while the process has
    one thread, it grows the kernel's table of descriptors past 256 then, where that is cheap
    (with threads, the thread growing it later waits 4-14 ms)."""
    path = script(NUMBERS)
    bare = run_python(path, dropin=False)
    hooked = run_python(path, sink.env())
    assert (hooked.rc, hooked.out) == (bare.rc, bare.out), (hooked.out, bare.out)
    # The listing's own descriptor is the lowest free one: the program's next number.
    assert json.loads(hooked.err) == sorted([*json.loads(bare.err), 256]), (hooked.err, bare.err)
    assert len(sink.settle(2)) == 2  # the two lines, as printed


# A program that closes a standard stream's descriptor (a daemon's, or one started with `>&-`):
# vlhook's connection took the lowest free number, that stream's, and the program's writes to
# it went into the connection (exit status 0 where it is 120 without vlhook, Python's report of
# the failed write gone). The connection is moved above them.
CLOSED_STDOUT = """\
import os, sys
print("before os.close", flush=True)
os.close(1)
print("lost line")
sys.stderr.write("err after close\\n")
"""


def test_a_closed_standard_descriptor_stays_closed_to_the_programs_writes(
    script: Any, sink: Any
) -> None:
    bare, _ = as_without_vlhook(script(CLOSED_STDOUT), sink.env(), stdin=b"")
    assert bare.rc == 120 and b"Bad file descriptor" in bare.stderr, bare.stderr
    stored = messages(sink.settle(3))
    assert {"before os.close", "err after close"} <= set(stored), stored


# Started with stdin and stdout closed (`prog <&- >&-`, as some supervisors start a daemon):
# after vlhook's first delivery its connection and its spare descriptor held numbers 0 and 1,
# and the program's next file got another number than without vlhook.
CLOSED_AT_START = """\
import os, sys, time
os.close(0)
os.close(1)
sys.stderr.write("starting\\n")
time.sleep(0.6)  # past vlhook's first delivery (a flush interval of 100 ms)
try:
    os.write(1, b"GET / HTTP/1.1\\r\\n\\r\\n")
except OSError as exc:
    sys.stderr.write(f"os.write(1): {exc.strerror}\\n")
with open(os.devnull) as file:
    sys.stderr.write(f"a file opened now gets {file.fileno()}\\n")
"""


def test_closed_standard_descriptors_are_left_to_the_programs_next_files(
    script: Any, sink: Any
) -> None:
    bare, _ = as_without_vlhook(script(CLOSED_AT_START), sink.env())
    assert bare.stderr.endswith(b"os.write(1): Bad file descriptor\na file opened now gets 0\n")
    assert len(sink.settle(3)) == 3


# The unbuffered-output idioms of older programs: a new stream on the process's fd 1 (or 2) put
# in place of sys.stdout. Nothing written through it was captured, for the life of the process,
# and nothing said so. Once vlhook's sender runs (the first line it captures: here a record),
# each of its steps tees such a stream; what was written through it before is not captured.
NEW_STREAM_ON_FD_1 = """\
import io, logging, os, sys, time
how = sys.argv[1]
if how == "fdopen":
    sys.stdout = os.fdopen(sys.stdout.fileno(), "w", buffering=1)
elif how == "wrapper":
    sys.stdout = io.TextIOWrapper(open(sys.stdout.fileno(), "wb", 0), write_through=True)
else:
    sys.stderr = os.fdopen(2, "w", buffering=1)
logging.warning("started")
time.sleep(0.4)  # a few of the sender's steps (a flush interval of 100 ms)
for i in range(3):
    print("line", i, file=sys.stderr if how == "stderr" else sys.stdout, flush=True)
"""


@pytest.mark.parametrize("how", ["fdopen", "wrapper", "stderr"])
def test_a_new_stream_on_fd_1_or_2_in_place_of_sys_stdout_is_teed(
    script: Any, sink: Any, how: str
) -> None:
    bare, _ = as_without_vlhook(script(NEW_STREAM_ON_FD_1), sink.env(), args=(how,))
    shown = bare.stdout if how != "stderr" else bare.stderr
    assert shown.endswith(b"line 0\nline 1\nline 2\n"), bare
    stream = "stderr" if how == "stderr" else "stdout"
    rows = sink.settle(4)
    assert sorted((r["_msg"], r["stream"]) for r in rows) == [
        ("line 0", stream),
        ("line 1", stream),
        ("line 2", stream),
        ("started", "logging"),
    ]


def test_a_new_stream_on_fd_1_never_teed_is_said_at_exit(script: Any, sink: Any) -> None:
    """Nothing else captured, vlhook's sender never ran a step to tee it: the lines are not
    shipped, and the exit says why (they were lost without a word)."""
    code = "import os, sys\nsys.stdout = os.fdopen(sys.stdout.fileno(), 'w', 1)\nprint('unseen')\n"
    path = script(code)
    bare = run_python(path, {}, dropin=False)
    hooked = run_python(path, sink.env())
    assert (hooked.rc, hooked.stdout) == (bare.rc, bare.stdout) == (0, b"unseen\n")
    assert hooked.err == (
        "vlhook: sys.stdout was replaced by a stream of the program's on fd 1 (os.fdopen, "
        "open(fd)): what was written through it was not captured; "
        "VICTORIALOGS_CAPTURE=fd,logging captures the descriptor itself\n"
    )


WRAPPER_OF_THE_TEE = """\
import logging, sys, time
class Unbuffered:  # as awslambdaric wraps sys.stdout
    def __init__(self, stream):
        self.stream = stream
    def write(self, data):
        self.stream.write(data)
        self.stream.flush()
    def __getattr__(self, name):
        return getattr(self.stream, name)
sys.stdout = Unbuffered(sys.stdout)
logging.warning("started")
time.sleep(0.4)  # a few of the sender's steps (a flush interval of 100 ms)
print("once")
"""


def test_a_wrapper_that_writes_through_the_tee_is_not_teed_again(script: Any, sink: Any) -> None:
    """A stream put in place of sys.stdout that writes through the tee it wraps, whose
    fileno() is fd 1 (it asks the tee): teed again, each line was stored twice, joined."""
    as_without_vlhook(script(WRAPPER_OF_THE_TEE), sink.env())
    assert sorted(messages(sink.settle(2))) == ["once", "started"]


FILE_IN_PLACE_OF_STDOUT = """\
import logging, sys, time
logging.warning("started")  # vlhook's sender runs its steps from here on
sys.stdout = open("out.txt", "w")
print("into the file")
time.sleep(0.3)  # a few of the sender's steps look at it (a flush interval of 100 ms)
sys.stdout = sys.__stdout__  # the file, dropped, is closed: its line written out
with open("out.txt") as kept:
    print(repr(kept.read()))
"""


def test_a_stream_the_program_drops_is_not_kept_alive(script: Any, sink: Any) -> None:
    """A file put in place of sys.stdout and dropped is closed by the program's last reference
    to it going, and its buffer written out: vlhook's look at it must not hold it."""
    bare, _ = as_without_vlhook(script(FILE_IN_PLACE_OF_STDOUT), sink.env())
    assert bare.stdout == b"'into the file\\n'\n"
