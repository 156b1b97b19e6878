"""`vlhook tail [LogsQL] [--since D] [--json]`: entries as they arrive, like `kubectl logs -f`.

Reads VictoriaLogs' live tail (`/select/logsql/tail`). The server sends an entry about 5 s
after its time, so that entries that reach it a little late are not skipped. Ctrl-C ends it
with exit status 130 (the shell's code for an interrupted command); a server that stops or
cannot be reached ends it with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

INTERRUPTED = 130
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y))+", re.ASCII)


def duration(text: str) -> str:
    """A duration as VictoriaLogs reads it (`30s`, `5m`, `1h30m`, `2d`)."""
    if not _DURATION.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30s, 5m, 1h or 2d")
    return text


def this_host_query() -> str:
    """The entries vlhook shipped from this machine: it stamps them with `host`."""
    return f"host:={json.dumps(os.uname().nodename)}"


def _say(text: str) -> None:
    from vlhook.cli._select import say

    say("tail", text)  # masked: the server's error text may echo the credentials


def cmd_tail(args: argparse.Namespace) -> int:
    from vlhook.cli._select import configured

    config = configured("tail")
    if config is None:
        return 2
    params = {"query": args.query or this_host_query()}
    if args.since:
        params["start_offset"] = args.since
    try:
        return _follow(config, params, args.json)
    except KeyboardInterrupt:
        return INTERRUPTED


def _follow(config: Any, params: dict[str, str], raw: bool) -> int:
    from vlhook.cli._format import Printer, parse_row
    from vlhook.cli._select import NothingToAsk, SelectError, open_select

    try:
        answer = open_select(config, "/select/logsql/tail", params, follow=True)
    except SelectError as exc:
        _say(str(exc))
        return 2 if isinstance(exc, NothingToAsk) else 1
    _say(f"following {params['query']} at {answer.endpoint.display}; Ctrl-C stops")
    printer = Printer(sys.stdout, raw)
    try:
        for line in answer.lines():
            row = parse_row(line)
            if row is None:  # the server reports a failure inside the stream
                _say(f"the server says: {line.decode('utf-8', 'replace')}")
                continue
            printer.show(line, row)
            sys.stdout.flush()
    except SelectError as exc:
        _say(str(exc))
        return 1
    finally:  # a reader that goes away: see cli.main
        answer.close()
    _say(f"{answer.endpoint.display} ended the stream (the server stopped or restarted)")
    return 1


def add_tail(sub: Any) -> None:
    tail = sub.add_parser(
        "tail",
        help="follow entries live from VictoriaLogs (default: this host's)",
        description="Follow entries live from VictoriaLogs, with the same URL, credentials and "
        "tenancy as shipping. Ctrl-C stops (exit status 130).",
    )
    tail.add_argument(
        "query", nargs="?", default="", help='LogsQL filter (default: host:="<this host>")'
    )
    tail.add_argument(
        "--since", type=duration, metavar="D",
        help="start this far back, e.g. 30s, 5m, 1h (default: the server's 5s)",
    )  # fmt: skip
    tail.add_argument("--json", action="store_true", help="print the entries as JSON lines")
    tail.set_defaults(func=cmd_tail)
