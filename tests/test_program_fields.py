"""The program's own fields, checked on what a real VictoriaLogs stored: its `container_name`,
`job` or `env` win over vlhook's (one label each in `_stream`), whether printed as JSON, passed
as logging's `extra=` or bound with `vlhook.bind()`; a printed JSON object with both `_msg` and
`message` keeps both."""

from __future__ import annotations

from typing import Any

from conftest import run_python

PROGRAM = """\
import json, logging, sys
print(json.dumps({'message': 'printed', 'container_name': 'c1', 'job': 'j1', 'env': 'e1'}))
logging.warning('logged', extra={'container_name': 'c2', 'job': 'j2', 'env': 'e2'})
if 'vlhook' in sys.modules:  # present with the drop-in only
    sys.modules['vlhook'].bind(container_name='c3', job='j3', env='e3')
print('bound')
"""


def test_the_programs_own_fields_win_once(script: Any, sink: Any) -> None:
    path = script(PROGRAM)
    env = sink.env(VICTORIALOGS_FIELDS=f"test_id={sink.test_id},env=prod")
    bare = run_python(path, dropin=False)
    hooked = run_python(path, env)
    assert (hooked.rc, hooked.stdout, hooked.stderr) == (bare.rc, bare.stdout, bare.stderr)
    rows = {r["_msg"]: r for r in sink.settle(3)}
    assert sorted(rows) == ["bound", "logged", "printed"]
    for message, n in (("printed", 1), ("logged", 2), ("bound", 3)):
        row = rows[message]
        assert (row["container_name"], row["job"], row["env"]) == (f"c{n}", f"j{n}", f"e{n}")
        # One label per stream field, with the program's value (a duplicate key in the line
        # made the server store two container_name labels).
        assert row["_stream"] == f'{{container_name="c{n}",job="j{n}"}}'


def test_printed_msg_and_message_are_both_kept(script: Any, sink: Any) -> None:
    path = script(
        "import json\n"
        "print(json.dumps({'message': 'the message', '_msg': 'the _msg', 'k': 'v'}))\n"
        "print(json.dumps({'msg': 'second', 'message': 'first'}))\n"
    )
    run_python(path, sink.env())
    first, second = sink.settle(2)
    # `_msg` is VictoriaLogs' own message field: the program that sets it means it.
    assert (first["_msg"], first["message"], first["k"]) == ("the _msg", "the message", "v")
    assert (second["_msg"], second["msg"]) == ("first", "second")
