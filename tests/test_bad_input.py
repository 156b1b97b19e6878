"""Bad input never breaks anything: each gets a defined outcome, and nothing else is lost."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import as_without_vlhook, messages, run_python


def _around(body: str) -> str:
    return f"print('first')\n{body}\nprint('last')\n"


def test_multi_megabyte_line_is_split_and_the_next_lines_survive(script: Any, sink: Any) -> None:
    path = script(_around("print('y' * 3_000_000)"))
    run_python(path, sink.env())
    rows = sink.settle(2 + 46)
    parts = [r for r in rows if r["_msg"].startswith("y")]
    assert len(parts) == 46 and {r["msg_parts"] for r in parts} == {"46"}
    assert sum(len(r["_msg"]) for r in parts) == 3_000_000
    assert [m for m in messages(rows) if not m.startswith("y")] == ["first", "last"]


def test_endless_line_without_newline_is_bounded(script: Any, sink: Any) -> None:
    path = script(
        "import sys\nprint('first')\n"
        "for _ in range(30):\n    sys.stdout.write('z' * 100_000)\n"
        "sys.stdout.write('\\n')\nprint('last')\n"
    )
    run_python(path, sink.env())
    rows = sink.settle(3)
    assert sum(len(m) for m in messages(rows) if m.startswith("z")) == 3_000_000
    assert messages(rows)[0] == "first" and messages(rows)[-1] == "last"


def test_binary_garbage(script: Any, sink: Any) -> None:
    path = script(_around("import sys, os\nsys.stdout.buffer.write(os.urandom(5000) + b'\\n')"))
    run = run_python(path, sink.env())
    assert run.rc == 0
    rows = sink.settle(3)
    assert messages(rows)[0] == "first" and messages(rows)[-1] == "last"


def test_hostile_extra_values(script: Any, sink: Any) -> None:
    path = script(
        "import logging\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "class Evil:\n"
        "    def __str__(self): raise RuntimeError('no str')\n"
        "    def __repr__(self): raise RuntimeError('no repr')\n"
        "loop = {}\nloop['self'] = loop\n"
        "deep = current = {}\n"
        "for _ in range(2000):\n    current['d'] = {}\n    current = current['d']\n"
        "log = logging.getLogger('x')\n"
        "log.info('evil', extra={'evil': Evil()})\n"
        "log.info('loop', extra={'loop': loop})\n"
        "log.info('deep', extra={'deep': deep})\n"
        "log.info('args %s', Evil())\n"
        "log.info('long key', extra={'k' * 300: 1})\n"
        "log.info('many', extra={f'f{i}': i for i in range(1500)})\n"
        "log.info({200: 5, 404: 1, None: 'n'})\n"  # a dict as the message, keys of no text
        "print('after all that')\n"
    )
    run = run_python(path, sink.env())
    assert run.rc == 0
    rows = sink.settle(8)
    by_msg = {r["_msg"].split(" (formatting failed")[0]: r for r in rows}
    assert set(by_msg) >= {"evil", "loop", "deep", "long key", "many", "after all that"}
    assert by_msg["evil"]["evil"].startswith("<unprintable")
    counts = by_msg["{200: 5, 404: 1, None: 'n'}"]
    assert (counts["200"], counts["404"], counts["None"]) == ("5", "1", "n")
    long_key = next(k for k in by_msg["long key"] if k.startswith("kkk"))
    assert len(long_key.encode()) <= 128
    many = by_msg["many"]  # the server would drop a row with > 1,000 fields: folded instead
    assert len(many) < 1000
    folded = json.loads(many["vlhook.folded_fields"])
    assert {k: v for k, v in many.items() if k.startswith("f")} | folded == {
        f"f{i}": (str(i) if f"f{i}" in many else i) for i in range(1500)
    }


def test_non_json_brace_lines_stay_text(script: Any, sink: Any) -> None:
    path = script("print('{not json}')\nprint('{\"a\": 1} trailing')\nprint('[1, 2]')\n")
    run_python(path, sink.env())
    assert messages(sink.settle(3)) == ["{not json}", '{"a": 1} trailing', "[1, 2]"]


def test_json_line_with_unusable_time_keeps_it_as_a_field(script: Any, sink: Any) -> None:
    line = json.dumps({"msg": "odd time", "time": "2024-01-01 12:00:00,123"})
    path = script(f"print({line!r})\n")
    run_python(path, sink.env())
    (row,) = sink.settle(1)
    assert row["_msg"] == "odd time" and row["time"] == "2024-01-01 12:00:00,123"


NUMBERS = """\
import json, logging, sys
logging.basicConfig(level=logging.INFO)
nan, inf = float('nan'), float('inf')
log = logging.getLogger('numbers')
log.info('extra', extra={'ratio': nan, 'up': inf, 'down': -inf, 'big': 2**70, 'neg': -(2**64),
                         'ok': 1.5, 'n': 7, 'nested': {'a': [1, 2], 'r': nan, 'b': 2**70}})
log.info({'event': 'dict message', 'ratio': nan, 'big': 2**70})
for n in range(3):
    log.info('run %d', n, extra={'ratio': nan})
print(json.dumps({'msg': 'printed', 'level': 'warning', 'ratio': nan, 'up': inf, 'down': -inf,
                  'nested': {'r': nan, 'l': [nan, 1]}}))
print(json.dumps({'msg': 'printed ids', 'trace_id': 0x0af7651916cd43dd8448eb211c80319c,
                  'low': -2**63 - 1, 'ns': 1780000000123456789, 'req': {'id': 2**70}}))
log.info(json.dumps({'event': 'logged ids', 'id': 2**70}))  # structlog's JSON, through logging
if 'vlhook' in sys.modules:  # present with the drop-in only
    sys.modules['vlhook'].bind(score=nan, id=2**70)
print('bound')
"""


def test_numbers_json_cannot_carry_are_stored_as_text(script: Any, sink: Any) -> None:
    """NaN and the infinities (which JSON has no numbers for, and which Python's `json.dumps`
    prints all the same) and integers past 64 bits: stored with the value the program had,
    as the text Python's `json` writes for them, the entry's other fields as they are. Printed
    in a JSON line, such an integer keeps every digit too (orjson alone reads it as a float)."""
    path = script(NUMBERS)
    as_without_vlhook(path, sink.env())
    stored = sink.settle(9)
    rows = {r["_msg"]: r for r in stored}
    assert len(rows) == len(stored) == 9  # each once
    big = str(2**70)
    extra = rows["extra"]
    assert (extra["ratio"], extra["up"], extra["down"]) == ("NaN", "Infinity", "-Infinity")
    assert (extra["big"], extra["neg"], extra["ok"], extra["n"]) == (big, str(-(2**64)), "1.5", "7")
    assert (extra["nested.a"], extra["nested.r"], extra["nested.b"]) == ("[1,2]", "NaN", big)
    assert (rows["dict message"]["ratio"], rows["dict message"]["big"]) == ("NaN", big)
    assert [rows[f"run {n}"]["ratio"] for n in range(3)] == ["NaN"] * 3
    printed = rows["printed"]
    assert (printed["level"], printed["ratio"], printed["up"], printed["down"]) == (
        "WARNING", "NaN", "Infinity", "-Infinity")  # fmt: skip
    assert (printed["nested.r"], printed["nested.l"]) == ("NaN", '["NaN",1]')
    assert (rows["bound"]["score"], rows["bound"]["id"]) == ("NaN", big)
    assert rows["logged ids"]["id"] == big
    ids = rows["printed ids"]
    assert (ids["trace_id"], ids["low"], ids["ns"], ids["req.id"]) == (
        str(0x0AF7651916CD43DD8448EB211C80319C),
        str(-(2**63) - 1),
        "1780000000123456789",
        big,
    )


# What the server itself refuses (see the contract): each case is followed by 5 lines, which a
# line of 256 KiB or more would take with it.
OVERSIZED = {
    "level": "print(json.dumps({'msg': 'big', 'level': 'a' * 300_000}))",
    "stream": "print(json.dumps({'msg': 'big', 'stream': 'a' * 300_000}))",
    "logger": "print(json.dumps({'msg': 'big', 'logger': ['a' * 300_000]}))",
    "extra": "logging.info('big', extra={'level': 'a' * 300_000})",
    "object": "print(json.dumps({'_msg': {f'k{i}': 'a' * 15_000 for i in range(30)},"
              " 'msg': 'big'}))",
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(OVERSIZED))
def test_no_line_reaches_the_server_limit_and_the_next_lines_survive(
    case: str, script: Any, sink: Any
) -> None:
    path = script(
        "import json, logging\nlogging.basicConfig(level=logging.INFO)\n"
        f"{OVERSIZED[case]}\nfor n in range(5):\n    print(f'after {{n}}')\n"
    )
    assert run_python(path, sink.env()).rc == 0
    rows = sink.settle(6)
    assert sorted(messages(rows)) == ["after 0", "after 1", "after 2", "after 3", "after 4", "big"]


NESTED = {
    "printed": "print(json.dumps({'msg': 'many', 'n': {f'k{i}': i for i in range(1200)}}))",
    "extra": "logging.info('many', extra={'n': {f'k{i}': {'a': i, 'b': [i]} for i in range(600)}})",
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(NESTED))
def test_nested_fields_past_the_servers_limit_are_folded(case: str, script: Any, sink: Any) -> None:
    path = script(
        "import json, logging\nlogging.basicConfig(level=logging.INFO)\n"
        f"{NESTED[case]}\nprint('after')\n"
    )
    assert run_python(path, sink.env()).rc == 0
    rows = sink.settle(2)
    assert sorted(messages(rows)) == ["after", "many"]
    many = next(r for r in rows if r["_msg"] == "many")
    assert many["vlhook.folded_fields"].startswith('{"n":{"k0":')
    assert not any(key.startswith("n.") for key in many)


VLHOOKS_OWN = """\
import json, logging, vlhook
logging.basicConfig(level=logging.INFO)
logging.error("record", extra={"level": "gold", "stream": "payments", "": "x"})
print(json.dumps({"level": 40, "levelname": "ERROR", "msg": "numbered"}))
print(json.dumps({"_msg": 5, "message": "hello"}))
print(json.dumps({"severity": "ERROR", "level": {"n": 1}, "msg": "severity"}))
print(json.dumps({"": "v", "msg": "empty key"}))
print(json.dumps({"msg": "secret", "stream": "key AKIAIOSFODNN7EXAMPLE"}))
vlhook.bind(_msg="bound", level="gold", _time="yesterday")
print("WARNING after bind")
"""


def test_the_programs_fields_never_replace_vlhooks_own(script: Any, sink: Any) -> None:
    """A bad bound `_time` would have the server drop every line; a field named `level`
    relabel the entry; one with an empty name become its message. Each is kept apart."""
    path = script(VLHOOKS_OWN)
    assert run_python(path, sink.env()).rc == 0
    rows = {row["_msg"]: row for row in sink.settle(7)}
    assert sorted(rows) == sorted(
        ["record", "numbered", "hello", "severity", "empty key", "secret", "WARNING after bind"]
    )
    record = rows["record"]
    assert (record["level"], record["stream"]) == ("ERROR", "logging")
    assert (record["fields.level"], record["fields.stream"], record["fields.(empty)"]) == (
        "gold",
        "payments",
        "x",
    )
    assert rows["numbered"]["level"] == "ERROR" and rows["severity"]["level"] == "ERROR"
    assert rows["hello"]["fields._msg"] == "5" and rows["empty key"]["fields.(empty)"] == "v"
    assert rows["secret"]["fields.stream"] == "key [REDACTED]"
    bound = rows["WARNING after bind"]
    assert (bound["level"], bound["fields._msg"], bound["fields.level"],
            bound["fields._time"]) == ("WARNING", "bound", "gold", "yesterday")  # fmt: skip
