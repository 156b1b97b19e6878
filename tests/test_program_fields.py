"""The program's own fields, checked on what a real VictoriaLogs stored: its `container_name`,
`job` or `env` win over vlhook's (one label each in `_stream`), whether printed as JSON, passed
as logging's `extra=` or bound with `vlhook.bind()`; a printed JSON object with both `_msg` and
`message` keeps both."""

from __future__ import annotations

from typing import Any

from conftest import as_without_vlhook, run_python, shipped

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
    as_without_vlhook(path, env)
    rows = {r["_msg"]: r for r in sink.settle(3)}
    assert sorted(rows) == ["bound", "logged", "printed"]
    for message, n in (("printed", 1), ("logged", 2), ("bound", 3)):
        row = rows[message]
        assert (row["container_name"], row["job"], row["env"]) == (f"c{n}", f"j{n}", f"e{n}")
        # One label per stream field, with the program's value (a duplicate key in the line
        # made the server store two container_name labels).
        assert row["_stream"] == f'{{container_name="c{n}",job="j{n}"}}'


def test_the_programs_own_job_or_host_wins_once_without_fields_of_the_users(
    script: Any, sink: Any
) -> None:
    """vlhook's own constant fields (`container_name`, `job`, `host`, `pid`) taken by a
    record's `extra=` or by bound fields, with no VICTORIALOGS_FIELDS of the same name: the
    program's value, once, also where records and lines are written in runs."""
    rows = shipped(script, sink, (
        "import logging, sys\n"
        "for n in range(10):\n"
        "    logging.warning('job alone %d', n, extra={'job': 'j4'})\n"
        "if 'vlhook' in sys.modules:\n"
        "    sys.modules['vlhook'].bind(host='h5', pid=5)\n"
        "for n in range(10):\n"
        "    print(f'host bound {n}')\n"
    ), 20)  # fmt: skip
    assert len(rows) == 20
    for row in rows:
        if row["_msg"].startswith("job alone"):
            assert row["job"] == "j4" and 'job="j4"' in row["_stream"], row
        else:
            assert (row["host"], row["pid"]) == ("h5", "5"), row


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


CALL_OVER_BOUND = """\
import json, logging, sys
from loguru import logger as log
logging.basicConfig(level=logging.INFO, format='%(message)s')
vlhook = sys.modules.get('vlhook')  # present with the drop-in only
if vlhook:
    vlhook.bind(user='bound', thread='bound', trace_id='5' * 32)
print(json.dumps({'message': 'printed', 'user': 'printed', 'trace_id': '1' * 32}))
logging.info('logged', extra={'user': 'logged'})
with log.contextualize(request='contextualized'):
    log.bind(request='loguru bind', user='loguru').info('loguru')
log.bind(level='gold', logger='mine', _msg='text', stream='s').warning('own names')
print('plain')
"""


def test_a_calls_own_field_wins_over_a_bound_one(script: Any, sink: Any) -> None:
    """A field the line itself carries (printed JSON, `extra=`, loguru's `bind()`) is stored
    with the program's value, not a bound one of the same name; the bound ones fill the rest.
    A printed trace id keeps no bound span. loguru's `bind()` under vlhook's own names or the
    record's is kept, as logging's `extra=` is."""
    path = script(CALL_OVER_BOUND)
    bare = run_python(path, dropin=False)
    hooked = run_python(path, sink.env(TRACEPARENT=f"00-{'7' * 32}-{'8' * 16}-01"))
    assert (hooked.rc, hooked.stdout) == (bare.rc, bare.stdout) and hooked.rc == 0
    rows = {r["_msg"]: r for r in sink.settle(5)}
    assert sorted(rows) == ["logged", "loguru", "own names", "plain", "printed"]
    printed, logged, loguru = rows["printed"], rows["logged"], rows["loguru"]
    assert (printed["user"], printed["trace_id"]) == ("printed", "1" * 32)
    assert "span_id" not in printed and "trace_flags" not in printed  # not TRACEPARENT's
    assert (logged["user"], logged["thread"]) == ("logged", "MainThread")
    assert (loguru["user"], loguru["request"]) == ("loguru", "loguru bind")
    assert (rows["plain"]["user"], rows["plain"]["thread"]) == ("bound", "bound")
    # A bound trace replaces TRACEPARENT's whole: its span too.
    assert rows["plain"]["trace_id"] == "5" * 32 and "span_id" not in rows["plain"]
    assert logged["trace_id"] == "5" * 32
    own = rows["own names"]
    assert (own["level"], own["stream"], own["logger"]) == ("WARNING", "logging", "mine")
    assert (own["fields.level"], own["fields._msg"], own["fields.stream"]) == (
        "gold", "text", "s")  # fmt: skip


def test_stream_fields_that_make_no_stream_are_left_out_on_the_real_server(
    script: Any, sink: Any
) -> None:
    """`_msg` made a stream of every message on the real server, `_time` none: both are left
    out, saying so once, and the stream is made of the rest."""
    path = script("print('one'); print('two')\n", name="streams.py")
    env = sink.env(VICTORIALOGS_STREAM_FIELDS="_msg,job,_time")
    hooked = run_python(path, env)
    assert hooked.stdout == b"one\ntwo\n"
    said = hooked.stderr.decode()
    assert said.count("VICTORIALOGS_STREAM_FIELDS: ") == 2, said
    rows = sink.settle(2)
    assert sorted(r["_msg"] for r in rows) == ["one", "two"]
    assert {r["_stream"] for r in rows} == {'{job="streams"}'}
