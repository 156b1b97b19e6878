"""The `vlhook` command (also `python -m vlhook`): run, check, listen, path, spool, tail, query.

Nothing the interceptor loads at interpreter start imports this package. Each command's code
is imported only when that command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, Optional

from vlhook import __version__
from vlhook.cli import _query, _run, _tail


def cmd_check(args: argparse.Namespace) -> int:
    from vlhook._check import check

    return check(timeout=args.timeout)


def cmd_listen(args: argparse.Namespace) -> int:
    from vlhook import _listen

    return _listen.run(args)


def cmd_spool(args: argparse.Namespace) -> int:
    from vlhook._check import spool_command

    return spool_command(args.action)


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535; 0: one the "
                                         "system picks)")  # fmt: skip
    return int(text)


def _seconds(text: str) -> float:
    """A time to wait: more than 0 and finite (0, nan or inf made the probe fail, and the
    failure was put down to the server)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 86_400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (more than 0, "
                                         "less than a day)")  # fmt: skip
    return seconds


def _add_listen(sub: Any) -> None:
    listen = sub.add_parser("listen", help="a local receiver that prints what arrives")
    listen.add_argument("--host", default="127.0.0.1", help="address to listen on")
    listen.add_argument("--port", type=_port, default=9428,
                        help="port (VictoriaLogs' by default; 0: any free)")  # fmt: skip
    listen.add_argument("--quiet", action="store_true", help="do not print the received rows")
    listen.add_argument("--max-stored", type=_query.positive, default=2_000_000,
                        help="rows kept per tenant (oldest go first)")  # fmt: skip
    listen.set_defaults(func=cmd_listen)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlhook",
        description="Ship any Python program's output and logging to VictoriaLogs, and read it "
        "back. Configured by the VICTORIALOGS_* environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"vlhook {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    _run.add_run(sub)
    check = sub.add_parser("check", help="validate the configuration and reach the server")
    check.add_argument("--timeout", type=_seconds, default=5.0)
    check.set_defaults(func=cmd_check)
    _add_listen(sub)
    _run.add_path(sub)
    spool = sub.add_parser("spool", help="what is waiting in the spool")
    spool.add_argument("action", nargs="?", default="status", choices=("status", "replay", "purge"))
    spool.set_defaults(func=cmd_spool)
    _tail.add_tail(sub)
    _query.add_query(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    # The CLI's own output is not a program's logs: `listen` must not feed itself, and `tail`
    # must not ship what it prints (it would then print it again).
    if getattr(sys, "_vlhook_active", None):  # False: activated with shipping off
        from vlhook._activation import deactivate

        deactivate()
    try:
        try:
            args = build_parser().parse_args(argv)
            return int(args.func(args))  # --help and --version exit from parse_args
        finally:
            if sys.stdout is not None:  # None when fd 1 was closed (`>&-`)
                sys.stdout.flush()  # here, where a reader that went away is caught, not at exit
    except BrokenPipeError:  # `vlhook ... | head`: the reader has what it wanted
        from vlhook.cli._format import silence_stdout

        silence_stdout()
        return 0
