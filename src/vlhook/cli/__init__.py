"""`vlhook run | check | listen | path | spool`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional


def dropin_dir() -> str:
    """The directory holding the drop-in sitecustomize.py (wheel copy, else the checkout's)."""
    packaged = Path(__file__).resolve().parent / "_dropin"
    if (packaged / "sitecustomize.py").is_file():
        return str(packaged)
    return str(Path(__file__).resolve().parents[2] / "sitecustomize")


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
    paths = [dropin_dir(), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if not env.get("VICTORIALOGS_URL"):
        print("vlhook run: VICTORIALOGS_URL is not set; running without shipping", file=sys.stderr)
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"vlhook run: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # pragma: no cover - exec does not return


def cmd_check(args: argparse.Namespace) -> int:
    from vlhook._check import check

    return check(timeout=args.timeout)


def cmd_listen(args: argparse.Namespace) -> int:
    from vlhook import _listen

    return _listen.run(args)


def cmd_spool(args: argparse.Namespace) -> int:
    from vlhook._check import spool_command

    return spool_command(args.action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlhook", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a command with the interceptor active")
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check", help="validate the configuration and reach the server")
    check.add_argument("--timeout", type=float, default=5.0)
    check.set_defaults(func=cmd_check)
    listen = sub.add_parser("listen", help="a local receiver that prints what arrives")
    from vlhook import _listen

    _listen.add_arguments(listen)
    listen.set_defaults(func=cmd_listen)
    path = sub.add_parser("path", help="print the drop-in directory (for PYTHONPATH)")
    path.set_defaults(func=cmd_path)
    spool = sub.add_parser("spool", help="what is waiting in the spool")
    spool.add_argument("action", nargs="?", default="status", choices=("status", "replay", "purge"))
    spool.set_defaults(func=cmd_spool)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    # The CLI's own output is not the program's logs (and `listen` must not feed itself).
    if getattr(sys, "_vlhook_active", None) is not None:
        from vlhook._activation import deactivate

        deactivate()
    args = build_parser().parse_args(argv)
    return int(args.func(args))
