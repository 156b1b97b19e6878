"""`vlhook query LogsQL [--limit N] [--json]`: one query through `/select/logsql/query`.

The server answers the newest N entries; they are printed oldest first, as a log reads.
Results without `_time` (a `stats` pipe) keep the server's order.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vlhook.cli._tail import INTERRUPTED


def _say(text: str) -> None:
    from vlhook.cli._select import say

    say("query", text)  # masked: the server's error text may echo the credentials


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def cmd_query(args: argparse.Namespace) -> int:
    from vlhook.cli._select import NothingToAsk, SelectError, configured, open_select

    config = configured("query")
    if config is None:
        return 2
    try:
        answer = open_select(
            config, "/select/logsql/query", {"query": args.query, "limit": str(args.limit)},
            follow=False,
        )  # fmt: skip
        try:
            lines = list(answer.lines())
        finally:
            answer.close()
    except SelectError as exc:
        _say(str(exc))
        return 2 if isinstance(exc, NothingToAsk) else 1
    except KeyboardInterrupt:
        return INTERRUPTED
    return _show(lines, args)


def _show(lines: list[bytes], args: argparse.Namespace) -> int:
    from vlhook.cli._format import Printer, parse_row, time_ns

    rows = [(line, parse_row(line)) for line in lines]
    failures = [line for line, row in rows if row is None]  # the server's error text
    entries = [(line, row) for line, row in rows if row is not None]
    times = [time_ns(str(row.get("_time", ""))) for _, row in entries]
    if None not in times:
        order = sorted(range(len(entries)), key=lambda i: times[i] or 0)
        entries = [entries[i] for i in order]
    printer = Printer(sys.stdout, args.json)
    for line, row in entries:  # a reader that goes away: see cli.main
        printer.show(line, row)
    sys.stdout.flush()
    for line in failures:
        _say(f"the server says: {line.decode('utf-8', 'replace')}")
    if len(entries) >= args.limit:
        _say(f"{args.limit} entries shown, as many as --limit allows")
    return 1 if failures else 0


def add_query(sub: Any) -> None:
    query = sub.add_parser(
        "query",
        help="run one LogsQL query against VictoriaLogs",
        description="Run one LogsQL query, with the same URL, credentials and tenancy as "
        "shipping. The newest entries are printed, oldest first.",
    )
    query.add_argument("query", help="LogsQL, e.g. 'level:ERROR _time:1h' or '\"some words\"'")
    query.add_argument(
        "--limit", type=positive, default=100, metavar="N", help="at most N entries (default 100)"
    )
    query.add_argument("--json", action="store_true", help="print the entries as JSON lines")
    query.set_defaults(func=cmd_query)
