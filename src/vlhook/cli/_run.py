"""`vlhook run` and `vlhook path`: start any command with the drop-in first on PYTHONPATH.

Only the drop-in directory goes on the path, never the site-packages vlhook is installed in
(its other packages may be built for another Python): the drop-in loads the vlhook package
next to it by itself, so any Python 3.9+ interpreter can run under `vlhook run`.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from typing import Any

from vlhook._activation import WARNED, said
from vlhook._config import is_enabled
from vlhook.cli._diagnose import shadowing_warnings, why_inactive


def dropin_dir() -> str:
    """The directory holding the drop-in sitecustomize.py (wheel copy, else the checkout's)."""
    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    packaged = os.path.join(package, "_dropin")
    if os.path.isfile(os.path.join(packaged, "sitecustomize.py")):
        return packaged
    return os.path.join(os.path.dirname(os.path.dirname(package)), "sitecustomize")


def cmd_path(_: argparse.Namespace) -> int:
    print(dropin_dir())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("vlhook run: give a command, e.g. `vlhook run -- python app.py`", file=sys.stderr)
        return 2
    env = dict(os.environ)
    digest = said()
    if digest:  # this command's own activation said them: the program it becomes need not
        env[WARNED] = digest
    inherited = env.get("PYTHONPATH", "")
    for warning in shadowing_warnings(inherited, running=True):
        print(f"vlhook run: warning: {warning}", file=sys.stderr)
    env["PYTHONPATH"] = os.pathsep.join([dropin_dir(), *filter(None, inherited.split(os.pathsep))])
    if not is_enabled(env):
        print(f"vlhook run: {why_inactive(env)}; running without shipping", file=sys.stderr)
    else:
        for warning in _isolation_warnings(command):
            print(f"vlhook run: warning: {warning}", file=sys.stderr)
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        hint = _hint(command[0], exc)
        print(f"vlhook run: cannot run {command[0]!r}: {exc.strerror}{hint}", file=sys.stderr)
        # As `env` and a shell answer: not found, or found and not runnable.
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 0  # pragma: no cover - exec does not return


def _isolation_warnings(command: list[str]) -> list[str]:
    """What a Python interpreter's own options in `command` do to the drop-in: `-E` and `-I`
    ignore PYTHONPATH, where it is; `-S` skips sitecustomize and .pth files alike. Such a
    program would run without shipping and say nothing."""
    if not re.fullmatch(r"python[0-9.]*", os.path.basename(command[0])):
        return []
    flags = _python_flags(command[1:])
    if "S" in flags:
        return ["`python -S` loads no sitecustomize and no .pth file: this program will not "
                "ship"]  # fmt: skip
    ignoring = [flag for flag in "IE" if flag in flags]
    if ignoring:
        return [f"`python -{ignoring[0]}` ignores PYTHONPATH, where the drop-in is: this program "
                "will not ship, unless vlhook is installed in that interpreter (its vlhook.pth "
                "activates it)"]  # fmt: skip
    return []


def _python_flags(args: list[str]) -> list[str]:
    """The interpreter's one-letter options before the program (`-IS`, `-E -u`); the values of
    `-W` and `-X` are not options."""
    flags: list[str] = []
    rest = iter(args)
    for arg in rest:
        if arg == "--check-hash-based-pycs":
            next(rest, None)
            continue
        if arg.startswith("--"):
            continue  # --version, --help
        if not arg.startswith("-") or arg == "-":
            break  # the script, or stdin
        for index, flag in enumerate(arg[1:]):
            if flag in "cm":
                return flags  # the program follows
            if flag in "WX":  # its value is the rest of the word, or the next one
                if index == len(arg) - 2:
                    next(rest, None)
                break
            flags.append(flag)
    return flags


def _hint(name: str, exc: OSError) -> str:
    """What was likely meant, for the two ways a script is commonly given: by its bare name
    (looked up on PATH, as by `env`, not in this directory) or without a `#!` line."""
    if isinstance(exc, FileNotFoundError) and os.sep not in name and os.path.isfile(name):
        here = f"`vlhook run ./{name}`, or `vlhook run python {name}`"
        return f" (not on PATH; the file here: {here})"
    if exc.errno == errno.ENOEXEC:
        return f" (no #! line to say what runs it: `vlhook run python {name}`)"
    return ""


def add_run(sub: Any) -> None:
    run = sub.add_parser("run", help="run a command with the interceptor active")
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(func=cmd_run)


def add_path(sub: Any) -> None:
    path = sub.add_parser("path", help="print the drop-in directory (for PYTHONPATH)")
    path.set_defaults(func=cmd_path)
