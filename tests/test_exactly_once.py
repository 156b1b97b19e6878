"""Each record arrives exactly once, whichever way the program configured its logging."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import as_without_vlhook, messages, run_python

GET_LOGGER = "log = logging.getLogger('app')\n"
SETUPS = {
    "no_config": "log = logging.getLogger('app')\n",
    "basicConfig_stderr": "logging.basicConfig(level=logging.INFO)\n" + GET_LOGGER,
    "basicConfig_stdout": "logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
    + GET_LOGGER,
    "dictConfig_two_handlers": (
        "import logging.config\n"
        "logging.config.dictConfig({'version': 1, 'handlers': {"
        "'out': {'class': 'logging.StreamHandler', 'stream': 'ext://sys.stdout'},"
        "'err': {'class': 'logging.StreamHandler', 'stream': 'ext://sys.stderr'}},"
        "'root': {'level': 'INFO', 'handlers': ['out', 'err']}})\n"
        "log = logging.getLogger('app')\n"
    ),
    "non_propagating_own_handler": (
        "log = logging.getLogger('app')\nlog.propagate = False\nlog.setLevel(logging.INFO)\n"
        "h = logging.StreamHandler(sys.stdout)\n"
        "h.setFormatter(logging.Formatter('[%(levelname)s] %(message)s'))\n"
        "log.addHandler(h)\n"
    ),
    "json_formatter_handler": (
        "import json\n"
        "class J(logging.Formatter):\n"
        "    def format(self, r):\n"
        "        return json.dumps({'message': r.getMessage(), 'level': r.levelname,"
        " 'service': 'billing'})\n"
        "h = logging.StreamHandler(sys.stdout)\nh.setFormatter(J())\n"
        "logging.basicConfig(level=logging.INFO, handlers=[h])\nlog = logging.getLogger('app')\n"
    ),
}


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_each_record_once(script: Any, sink: Any, setup: str) -> None:
    path = script(
        "import logging, sys\n" + SETUPS[setup] + "log.warning('disk %d%% full', 91)\n"
        "log.error('payment failed', extra={'order': 7})\n"
        "print('plain print')\n"
    )
    as_without_vlhook(path, sink.env())
    rows = sink.settle(3)
    assert sorted(messages(rows)) == ["disk 91% full", "payment failed", "plain print"]
    records = [r for r in rows if r["stream"] == "logging"]
    assert [r["level"] for r in records] == ["WARNING", "ERROR"]
    assert records[1]["order"] == "7" and records[1]["logger"] == "app"
    if setup == "json_formatter_handler":
        # The JSON the handler printed and the record are one entry with both's fields.
        assert {r.get("service") for r in records} == {"billing"}


def test_structlog_json_to_stdout(script: Any, sink: Any) -> None:
    path = script(
        "import structlog\n"
        "structlog.configure(processors=[structlog.processors.add_log_level,"
        " structlog.processors.TimeStamper(fmt='iso', utc=True),"
        " structlog.processors.JSONRenderer()])\n"
        "log = structlog.get_logger()\n"
        "log.info('user signed in', user='ann', attempts=2)\n"
        "log.error('quota exceeded', tenant='t1')\n"
    )
    bare = run_python(path, dropin=False)
    hooked = run_python(path, sink.env())

    # Lines carry their own timestamps: compare them without.
    def strip(out: bytes) -> list[str]:
        return [line.split('"timestamp"')[0] for line in out.decode().splitlines()]

    assert strip(hooked.stdout) == strip(bare.stdout) and len(strip(bare.stdout)) == 2
    assert hooked.rc == bare.rc == 0 and hooked.stderr == bare.stderr == b""
    rows = sink.settle(2)
    assert messages(rows) == ["user signed in", "quota exceeded"]
    assert [r["level"] for r in rows] == ["INFO", "ERROR"]
    assert rows[0]["user"] == "ann" and rows[0]["attempts"] == "2" and rows[1]["tenant"] == "t1"
    assert rows[0]["_time"].startswith("20")  # taken from the line's own timestamp


def test_loguru_to_stderr(script: Any, sink: Any) -> None:
    path = script(
        "from loguru import logger\n"
        "logger.info('loguru info')\n"
        "logger.warning('loguru warning')\n"
        "logger.error('loguru error')\n"
    )
    run = run_python(path, sink.env())
    assert run.err.count("loguru") == 3
    rows = sink.settle(3)
    # Shipped as records: the level and message are the record's, not read from the text.
    assert [r["level"] for r in rows] == ["INFO", "WARNING", "ERROR"]
    assert all(r["stream"] == "logging" and r["logger"] == "__main__" for r in rows)
    assert messages(rows) == ["loguru info", "loguru warning", "loguru error"]


def test_handler_that_logs_while_handling(script: Any, sink: Any) -> None:
    """Re-entrant logging from inside a handler: each record once, none lost."""
    path = script(
        "import logging, sys\n"
        "class Noisy(logging.StreamHandler):\n"
        "    def emit(self, record):\n"
        "        super().emit(record)\n"
        "        if record.name == 'app':\n"
        "            logging.getLogger('audit').warning('handled %s', record.getMessage())\n"
        "logging.basicConfig(level=logging.INFO, handlers=[Noisy(sys.stdout)])\n"
        "logging.getLogger('app').info('first')\n"
        "print('after')\n"
    )
    run_python(path, sink.env())
    rows = sink.settle(3)
    assert sorted(messages(rows)) == ["after", "first", "handled first"]


def test_bad_format_args_are_shipped_not_raised(script: Any, sink: Any) -> None:
    path = script("import logging\nlogging.warning('two %s %s', 'only-one')\nprint('still here')\n")
    bare = run_python(path, dropin=False)
    hooked = run_python(path, sink.env())
    # Python's own "--- Logging error ---" report, call stack included, is unchanged.
    assert (hooked.rc, hooked.stderr) == (bare.rc, bare.stderr)
    rows = sink.settle(2)
    text = "\n".join(messages(rows))
    assert "two %s %s" in text and "only-one" in text and "still here" in text
