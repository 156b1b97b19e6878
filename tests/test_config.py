"""Tests of `vlhook._config`: every variable, every bad value (one warning, a safe default),
URLs and their credentials (never shown)."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlhook._config import (
    MIN_TIMEOUT_MS,
    SECRET_VARIABLES,
    SERVER_LINE_LIMIT,
    Config,
    Endpoint,
    is_enabled,
    load,
    parse_endpoint,
    parse_pairs,
)

URL = "http://127.0.0.1:9428"


ENDPOINT_FIELDS = ("scheme", "host", "port", "base_path", "username", "password", "file_path")


def fields(endpoint: Endpoint) -> dict[str, Any]:
    """Every field's value (Endpoint's own == compares only the fields given at construction)."""
    return {name: getattr(endpoint, name) for name in ENDPOINT_FIELDS}


def program() -> str:
    base = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if base in ("", "-c", "-"):
        return "python"
    if base == "__main__.py":
        base = os.path.basename(os.path.dirname(sys.argv[0])) or base
    return (base[:-3] if base.endswith(".py") else base) or "python"


# -- defaults ---------------------------------------------------------------------------------


def test_defaults_without_any_variable() -> None:
    c = load({})
    assert c.endpoints == ()
    assert c.active is False
    assert c.level == 20
    assert c.capture == frozenset({"stdout", "stderr", "logging"})
    assert c.stream_fields == ("container_name", "job")
    assert c.fields == ()
    assert c.container_name == program()
    assert c.job == program()
    assert c.headers == ()
    assert c.bearer_token == ""
    assert c.account_id == ""
    assert c.project_id == ""
    assert c.tls_verify is True
    assert c.ca_bundle == ""
    assert c.compression == "gzip"
    assert c.batch_lines == 1000
    assert c.batch_bytes == 1 << 20
    assert c.flush_interval_ms == 500
    assert c.buffer_bytes == 32 << 20
    assert c.on_full == "drop"
    assert c.timeout_ms == 5000
    assert c.exit_timeout_ms == 2000
    uid = os.getuid() if hasattr(os, "getuid") else 0
    assert c.spool_dir == os.path.join("/tmp", f"vlhook-spool-{uid}")
    assert c.spool_max_bytes == 64 << 20
    assert c.max_line_bytes == 64 << 10
    assert c.redact is True
    assert c.redact_extra == ()
    assert c.debug is False
    assert c.in_lambda is False
    assert c.warnings == ()


def test_defaults_equal_class_defaults_with_a_url() -> None:
    c = load({"VICTORIALOGS_URL": URL})
    assert c.active
    assert [fields(e) for e in c.endpoints] == [
        fields(Endpoint(scheme="http", host="127.0.0.1", port=9428))
    ]
    assert c.warnings == ()


def test_every_variable_is_parsed() -> None:
    env = {
        "VICTORIALOGS_URL": "https://logs.example.com:8443/vl",
        "VICTORIALOGS_LOG_LEVEL": "warning",
        "VICTORIALOGS_CAPTURE": " STDOUT , logging ",
        "VICTORIALOGS_STREAM_FIELDS": "app, env ,",
        "VICTORIALOGS_FIELDS": "env=prod, team = core ,",
        "VICTORIALOGS_CONTAINER_NAME": "box",
        "VICTORIALOGS_JOB": "nightly",
        "VICTORIALOGS_HEADERS": "X-Scope=a,X-Other=b=c",
        "VICTORIALOGS_BEARER_TOKEN": "tok-123",
        "VICTORIALOGS_ACCOUNT_ID": "0042",
        "VICTORIALOGS_PROJECT_ID": "4294967295",
        "VICTORIALOGS_TLS_VERIFY": "no",
        "VICTORIALOGS_CA_BUNDLE": "/etc/ca.pem",
        "VICTORIALOGS_COMPRESSION": "NONE",
        "VICTORIALOGS_BATCH_LINES": "1_000_000",
        "VICTORIALOGS_BATCH_BYTES": "1024",
        "VICTORIALOGS_FLUSH_INTERVAL_MS": "3600000",
        "VICTORIALOGS_BUFFER_BYTES": "65536",
        "VICTORIALOGS_ON_FULL": "Block",
        "VICTORIALOGS_TIMEOUT_MS": "100",
        "VICTORIALOGS_EXIT_TIMEOUT_MS": "0",
        "VICTORIALOGS_SPOOL_DIR": "/var/spool/x",
        "VICTORIALOGS_SPOOL_MAX_BYTES": "0",
        "VICTORIALOGS_MAX_LINE_BYTES": str(SERVER_LINE_LIMIT // 2),
        "VICTORIALOGS_REDACT": r"card=\d+,,ssn:\S+",
        "VICTORIALOGS_DEBUG": "ON",
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
    }
    c = load(env)
    assert c.warnings == ()
    assert [fields(e) for e in c.endpoints] == [
        fields(Endpoint(scheme="https", host="logs.example.com", port=8443, base_path="/vl"))
    ]
    assert c.level == 30
    assert c.capture == frozenset({"stdout", "logging"})
    assert c.stream_fields == ("app", "env")
    assert c.fields == (("env", "prod"), ("team", "core"))
    assert c.container_name == "box"
    assert c.job == "nightly"
    assert c.headers == (("X-Scope", "a"), ("X-Other", "b=c"))
    assert c.bearer_token == "tok-123"
    assert c.account_id == "42"
    assert c.project_id == "4294967295"
    assert c.tls_verify is False
    assert c.ca_bundle == "/etc/ca.pem"
    assert c.compression == "none"
    assert c.batch_lines == 1_000_000
    assert c.batch_bytes == 1024
    assert c.flush_interval_ms == 3_600_000
    assert c.buffer_bytes == 65536
    assert c.on_full == "block"
    assert c.timeout_ms == 100
    assert c.exit_timeout_ms == 0
    assert c.spool_dir == "/var/spool/x"
    assert c.spool_max_bytes == 0
    assert c.max_line_bytes == SERVER_LINE_LIMIT // 2
    assert c.redact is True
    assert c.redact_extra == (r"card=\d+", r"ssn:\S+")
    assert c.debug is True
    assert c.in_lambda is True


@pytest.mark.parametrize(
    ("env", "level"),
    [
        ({"LOG_LEVEL": "debug"}, 10),
        ({"LOG_LEVEL": "ERROR"}, 40),
        ({"LOG_LEVEL": "warn"}, 30),
        ({"VICTORIALOGS_LOG_LEVEL": "critical", "LOG_LEVEL": "debug"}, 50),
        ({"VICTORIALOGS_LOG_LEVEL": " ", "LOG_LEVEL": "error"}, 40),
        # logging's own alias, and loguru's lowest (its TRACE records' level: 5).
        ({"LOG_LEVEL": "fatal"}, 50),
        ({"LOG_LEVEL": "TRACE"}, 5),
        ({"VICTORIALOGS_LOG_LEVEL": " warning "}, 30),
    ],
)
def test_log_level_sources(env: dict[str, str], level: int) -> None:
    c = load(env)
    assert c.level == level
    assert c.warnings == ()


@pytest.mark.parametrize(
    ("env", "container", "job"),
    [
        ({"HOSTNAME": "pod-1"}, "pod-1", program()),
        ({"HOSTNAME": "pod-1", "AWS_LAMBDA_FUNCTION_NAME": "fn"}, "fn", "lambda"),
        ({"HOSTNAME": "h", "VICTORIALOGS_CONTAINER_NAME": "c", "VICTORIALOGS_JOB": "j"}, "c", "j"),
        ({"AWS_LAMBDA_FUNCTION_NAME": "fn", "VICTORIALOGS_JOB": "j"}, "fn", "j"),
    ],
)
def test_container_name_and_job_sources(env: dict[str, str], container: str, job: str) -> None:
    c = load(env)
    assert (c.container_name, c.job) == (container, job)


@pytest.mark.parametrize(
    ("argv", "orig_argv", "env", "name", "handed_down"),
    [
        (["/srv/app.py"], None, {}, "app", "app"),
        (["/srv/app.py"], None, {"VICTORIALOGS_PARENT_PROGRAM": "parent"}, "app", "app"),
        (["/srv/shop/__main__.py"], None, {}, "shop", "shop"),
        (["shop/"], None, {}, "shop", "shop"),  # a directory, as a shell completes it
        (["/srv/shop/"], None, {}, "shop", "shop"),
        (["shop.pyz"], None, {}, "shop", "shop"),  # a zipapp
        (["./.py"], None, {}, ".py", ".py"),
        (["-m"], ["python3", "-X", "dev", "-m", "uvicorn", "app:app"], {}, "uvicorn", "uvicorn"),
        (["-c", "--multiprocessing-fork"], None, {"VICTORIALOGS_PARENT_PROGRAM": "app"}, "app", ""),
        # A worker of joblib's loky pool: its parent's (it was named after loky's module).
        (
            ["-m"],
            [
                "python3",
                "-m",
                "joblib.externals.loky.backend.popen_loky_posix",
                "--process-name",
                "LokyProcess-1",
                "--pipe",
                "5",
            ],
            {"VICTORIALOGS_PARENT_PROGRAM": "app"},
            "app",
            "",
        ),
        (["-c"], None, {}, "python", ""),
        (["-"], None, {"VICTORIALOGS_PARENT_PROGRAM": " "}, "python", ""),
        ([], None, {"VICTORIALOGS_PARENT_PROGRAM": "app"}, "app", ""),
    ],
)
def test_program_name_own_else_the_parents(
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    orig_argv: Any,
    env: dict[str, str],
    name: str,
    handed_down: str,
) -> None:
    """A process with a program of its own is named after it and hands the name down; one with
    none (a spawned worker, `python -c`) takes the name its parent handed down."""
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(sys, "orig_argv", orig_argv or ["python3", *argv], raising=False)
    c = load(env)
    assert (c.container_name, c.job) == (name, name)
    expected = (("VICTORIALOGS_PARENT_PROGRAM", handed_down),) if handed_down else ()
    assert c.handed_down == expected


def test_the_directory_a_program_runs_from_is_named_for_dot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    program = tmp_path / "shop"
    program.mkdir()
    monkeypatch.chdir(program)
    monkeypatch.setattr(sys, "argv", ["."])
    assert load({}).job == "shop"


def test_explicit_names_win_over_the_parents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["-c"])
    c = load({"VICTORIALOGS_PARENT_PROGRAM": "app", "VICTORIALOGS_JOB": "j", "HOSTNAME": "h"})
    assert (c.container_name, c.job) == ("h", "j")


@pytest.mark.parametrize("value", ["off", "OFF", " off "])
def test_spool_off(value: str) -> None:
    assert load({"VICTORIALOGS_SPOOL_DIR": value}).spool_dir == ""


def test_a_relative_spool_dir_is_made_absolute_from_where_the_process_starts(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load({"VICTORIALOGS_SPOOL_DIR": "a/../spool"}).spool_dir == f"{tmp_path}/a/../spool"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    assert load({"TMPDIR": "scratch"}).spool_dir == f"{tmp_path}/scratch/vlhook-spool-{uid}"
    assert load({"VICTORIALOGS_SPOOL_DIR": "/x/../y"}).spool_dir == "/x/../y"
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # getcwd() fails now
    assert load({"VICTORIALOGS_SPOOL_DIR": "spool"}).spool_dir == "spool"


def test_spool_default_follows_tmpdir() -> None:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    assert load({"TMPDIR": "/scratch"}).spool_dir == f"/scratch/vlhook-spool-{uid}"


@pytest.mark.parametrize(
    ("value", "redact", "extra"),
    [
        ("1", True, ()),
        ("true", True, ()),
        ("0", False, ()),
        ("no", False, ()),
        ("x+", True, ("x+",)),
    ],
)
def test_redact_values(value: str, redact: bool, extra: tuple[str, ...]) -> None:
    c = load({"VICTORIALOGS_REDACT": value})
    assert (c.redact, c.redact_extra, c.warnings) == (redact, extra, ())


def test_capture_fd_is_a_source() -> None:
    c = load({"VICTORIALOGS_CAPTURE": "fd,logging"})
    assert (c.capture, c.warnings) == (frozenset({"fd", "logging"}), ())
    c = load({"VICTORIALOGS_CAPTURE": " FD "})
    assert (c.capture, c.warnings) == (frozenset({"fd"}), ())


# -- bad values -------------------------------------------------------------------------------

BAD: list[tuple[str, str, str, Any]] = [
    ("VICTORIALOGS_LOG_LEVEL", "LOUD", "level", 20),
    ("LOG_LEVEL", "verbose", "level", 20),
    ("VICTORIALOGS_CAPTURE", "stdout,files", "capture", Config.capture),
    ("VICTORIALOGS_CAPTURE", ",", "capture", Config.capture),
    ("VICTORIALOGS_STREAM_FIELDS", ",", "stream_fields", Config.stream_fields),
    ("VICTORIALOGS_FIELDS", "novalue", "fields", ()),
    ("VICTORIALOGS_FIELDS", "a=1,=2", "fields", ()),
    ("VICTORIALOGS_HEADERS", "X-Api-Key", "headers", ()),
    ("VICTORIALOGS_HEADERS", "X Api Key=1", "headers", ()),  # a name HTTP cannot carry
    ("VICTORIALOGS_HEADERS", "Authorization: Bearer t=1", "headers", ()),
    ("VICTORIALOGS_ACCOUNT_ID", "-1", "account_id", ""),
    ("VICTORIALOGS_ACCOUNT_ID", "abc", "account_id", ""),
    ("VICTORIALOGS_PROJECT_ID", "4294967296", "project_id", ""),
    ("VICTORIALOGS_TLS_VERIFY", "maybe", "tls_verify", True),
    ("VICTORIALOGS_COMPRESSION", "zstd", "compression", "gzip"),
    ("VICTORIALOGS_BATCH_LINES", "0", "batch_lines", 1000),
    ("VICTORIALOGS_BATCH_LINES", "1e3", "batch_lines", 1000),
    ("VICTORIALOGS_BATCH_LINES", "1000001", "batch_lines", 1000),
    ("VICTORIALOGS_BATCH_BYTES", "1023", "batch_bytes", 1 << 20),
    ("VICTORIALOGS_FLUSH_INTERVAL_MS", "-5", "flush_interval_ms", 500),
    ("VICTORIALOGS_BUFFER_BYTES", "65535", "buffer_bytes", 32 << 20),
    ("VICTORIALOGS_ON_FULL", "wait", "on_full", "drop"),
    ("VICTORIALOGS_TIMEOUT_MS", "fast", "timeout_ms", 5000),
    ("VICTORIALOGS_TIMEOUT_MS", "0", "timeout_ms", 5000),
    # Seconds written for milliseconds: 5 ms timed out requests the server then stored, and
    # sending them again stored 3,000 of 20,000 lines twice (measured on the real server).
    ("VICTORIALOGS_TIMEOUT_MS", "5", "timeout_ms", 5000),
    ("VICTORIALOGS_TIMEOUT_MS", "99", "timeout_ms", 5000),
    ("VICTORIALOGS_EXIT_TIMEOUT_MS", "-1", "exit_timeout_ms", 2000),
    ("VICTORIALOGS_SPOOL_MAX_BYTES", "lots", "spool_max_bytes", 64 << 20),
    ("VICTORIALOGS_MAX_LINE_BYTES", "1023", "max_line_bytes", 64 << 10),
    ("VICTORIALOGS_MAX_LINE_BYTES", str(SERVER_LINE_LIMIT), "max_line_bytes", 64 << 10),
    ("VICTORIALOGS_DEBUG", "2", "debug", False),
    ("VICTORIALOGS_REDACT", "(unclosed", "redact_extra", ()),
]


@pytest.mark.parametrize(("name", "value", "field", "default"), BAD)
def test_bad_value_gives_one_warning_and_the_default(
    name: str, value: str, field: str, default: Any
) -> None:
    c = load({"VICTORIALOGS_URL": URL, name: value})
    assert getattr(c, field) == default
    assert len(c.warnings) == 1, c.warnings
    (warning,) = c.warnings
    assert warning.startswith(f"{name}=")
    # Variables that may carry credentials are named, never quoted back.
    shown = "<hidden>" if name in SECRET_VARIABLES else repr(value)
    assert shown in warning and (shown != "<hidden>" or value not in warning)
    assert "not valid; using" in warning
    assert c.endpoints  # one bad setting does not turn shipping off


@pytest.mark.parametrize(
    "name",
    ["Host", "content-length", "Transfer-Encoding", "Connection", "Content-Type",
     "CONTENT-ENCODING", "Expect", "TE", "Trailer", "Upgrade", "Keep-Alive", "Proxy-Connection"],
)  # fmt: skip
def test_headers_that_frame_the_request_are_left_out_and_the_others_sent(name: str) -> None:
    """Measured against the real server: `Content-Encoding=br` or `Transfer-Encoding=chunked`
    or the form's `Content-Type` got 200 for every batch and stored none of it; a second
    `Host` or `Content-Length` got 400 for every batch. vlhook writes these itself."""
    c = load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_HEADERS": f"X-Team=a,{name}=x,X-Env=b"})
    assert c.headers == (("X-Team", "a"), ("X-Env", "b"))
    (warning,) = c.warnings
    assert warning == (f"VICTORIALOGS_HEADERS: {name} is vlhook's to write (it frames every "
                       "request: another value can make the server store nothing); left out, "
                       "the other headers are sent")  # fmt: skip


@pytest.mark.parametrize("name", ["_msg", "_time", "level", "stream", "_stream", "_stream_id"])
def test_a_field_every_entry_writes_itself_is_left_out_saying_so(name: str) -> None:
    """Constant fields go before each entry's own, and the server keeps the last of a name:
    these never showed, without a word (checked against the real server)."""
    c = load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_FIELDS": f"env=prod,{name}=x,host=h1"})
    assert c.fields == (("env", "prod"), ("host", "h1"))
    assert c.warnings == (f"VICTORIALOGS_FIELDS: every entry has its own {name}; left out, the "
                          "other fields are added",)  # fmt: skip


@pytest.mark.parametrize(
    "name, why",
    [
        ("_msg", "every entry has its own _msg, and the server would make a stream of each"),
        ("_time", "the server makes no stream of _time"),
        ("_stream", "the server makes no stream of _stream"),
        ("_stream_id", "the server makes no stream of _stream_id"),
    ],
)
def test_a_stream_field_no_stream_can_be_made_of_is_left_out_saying_so(name: str, why: str) -> None:
    """Checked against the real server: `_msg` made a stream of every message (the
    cardinality VictoriaLogs asks to avoid); the others are left out by the server, and alone
    they put every entry in the stream `{}`."""
    c = load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_STREAM_FIELDS": f"job,{name},level"})
    assert c.stream_fields == ("job", "level")
    assert c.warnings == (f"VICTORIALOGS_STREAM_FIELDS: {why}; left out, the other fields are "
                          "used",)  # fmt: skip
    alone = load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_STREAM_FIELDS": f" {name} "})
    assert alone.stream_fields == ("container_name", "job")
    assert alone.warnings == (f"VICTORIALOGS_STREAM_FIELDS: {why}; left out, using the default "
                              "container_name,job",)  # fmt: skip


def test_the_fields_every_entry_has_are_the_entry_builders() -> None:
    from vlhook._config import ENTRY_OWN_FIELDS
    from vlhook._entry import PLAIN_KEYS

    assert ENTRY_OWN_FIELDS == PLAIN_KEYS | {"_stream", "_stream_id"}


def test_vl_debug_in_the_headers_is_sent_and_said_plainly() -> None:
    c = load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_HEADERS": "VL-Debug=true"})
    assert c.headers == (("VL-Debug", "true"),)
    assert c.warnings == ("VICTORIALOGS_HEADERS sets VL-Debug: the server logs every entry "
                          "vlhook sends and stores none of them",)  # fmt: skip
    quiet = load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_HEADERS": "vl-debug=0"})
    assert quiet.headers == (("vl-debug", "0"),) and quiet.warnings == ()


def test_two_bad_values_give_two_warnings() -> None:
    c = load({"VICTORIALOGS_BATCH_LINES": "x", "VICTORIALOGS_ON_FULL": "y"})
    assert len(c.warnings) == 2
    assert any("VICTORIALOGS_BATCH_LINES" in w for w in c.warnings)
    assert any("VICTORIALOGS_ON_FULL" in w for w in c.warnings)


@pytest.mark.parametrize(
    "url",
    [
        "notaurl",
        "ftp://example.com",
        "http://",
        "http://:9428",
        "http://host:0",
        "http://host:65536",
        "http://host:port",
        "file://relative/path",
        "localhost:9428",
    ],
)
def test_bad_url_turns_shipping_off_with_a_warning(url: str) -> None:
    c = load({"VICTORIALOGS_URL": url})
    assert c.endpoints == ()
    assert c.active is False
    assert any("VICTORIALOGS_URL" in w and "shipping is off" in w for w in c.warnings)
    assert all("VICTORIALOGS_URL" in w for w in c.warnings)


def test_bad_item_in_a_list_is_ignored_the_rest_ship() -> None:
    c = load({"VICTORIALOGS_URL": f"ftp://x, {URL}"})
    assert [e.display for e in c.endpoints] == [URL]
    (warning,) = c.warnings
    assert "ftp://x" in warning and "ignored" in warning


# -- secrets are never shown ------------------------------------------------------------------

SECRET = "S3cr3tP4ss"


@pytest.mark.parametrize(
    "url",
    [
        f"http://user:{SECRET}@127.0.0.1:9428",
        f"https://user:{SECRET}@logs.example.com/base",
        f"http://user:{SECRET}@host:notaport",
        f"ftp://user:{SECRET}@host",
        f"http://{SECRET}@host:bad",
        f"http://user:{SECRET}@[::1]:9428",
    ],
)
def test_credentials_never_in_warnings_or_repr(url: str) -> None:
    c = load(
        {
            "VICTORIALOGS_URL": f"{url},also-bad",
            "VICTORIALOGS_BEARER_TOKEN": f"bt-{SECRET}",
            "VICTORIALOGS_HEADERS": f"Authorization=Basic {SECRET}",
        }
    )
    shown = repr(c) + "\n".join(c.warnings) + "".join(e.display for e in c.endpoints)
    assert SECRET not in shown
    assert all(SECRET not in repr(e) for e in c.endpoints)
    assert c.warnings  # "also-bad" at least


def test_repr_shows_the_secret_fields_masked_only_when_set() -> None:
    c = load({"VICTORIALOGS_URL": f"http://u:{SECRET}@h:1", "VICTORIALOGS_BEARER_TOKEN": "tok"})
    assert "bearer_token='***'" in repr(c)
    assert "password='***'" in repr(c)
    assert "headers=()" in repr(c)
    assert "username='u'" in repr(c)
    lone = load({"VICTORIALOGS_URL": f"https://{SECRET}@h"})  # a user name alone: a token
    assert "username='***'" in repr(lone) and SECRET not in repr(lone)


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://localhost", Endpoint(scheme="http", host="localhost", port=80)),
        ("https://Logs.Example.COM", Endpoint(scheme="https", host="logs.example.com", port=443)),
        ("HTTP://h:9428", Endpoint(scheme="http", host="h", port=9428)),
        ("http://h:9428/", Endpoint(scheme="http", host="h", port=9428)),
        (
            "http://h:9428/base/path/",
            Endpoint(scheme="http", host="h", port=9428, base_path="/base/path"),
        ),
        ("http://h/vl?x=1#frag", Endpoint(scheme="http", host="h", port=80, base_path="/vl")),
        ("http://[::1]:9428", Endpoint(scheme="http", host="::1", port=9428)),
        ("https://[2001:DB8::1]", Endpoint(scheme="https", host="2001:db8::1", port=443)),
        (
            "http://[fe80::1]:8080/x",
            Endpoint(scheme="http", host="fe80::1", port=8080, base_path="/x"),
        ),
        (
            "http://user:pass@h:1",
            Endpoint(scheme="http", host="h", port=1, username="user", password="pass"),
        ),
        (
            "http://us%40er:p%3Aa%2Fss@h:1",
            Endpoint(scheme="http", host="h", port=1, username="us@er", password="p:a/ss"),
        ),
        ("http://user@h", Endpoint(scheme="http", host="h", port=80, username="user")),
        (
            "http://user:p@ss@h",
            Endpoint(scheme="http", host="h", port=80, username="user", password="p@ss"),
        ),
        ("  http://h:65535  ", Endpoint(scheme="http", host="h", port=65535)),
        ("file:///var/log/out.jsonl", Endpoint(scheme="file", file_path="/var/log/out.jsonl")),
        ("file:///tmp/a%20b.jsonl", Endpoint(scheme="file", file_path="/tmp/a b.jsonl")),
        ("FILE:///x?y#z", Endpoint(scheme="file", file_path="/x")),
    ],
)
def test_parse_endpoint(url: str, expected: Endpoint) -> None:
    assert fields(parse_endpoint(url)) == fields(expected)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "h:9428",
        "ftp://h",
        "http://",
        "http://:1",
        "http://h:0",
        "http://h:70000",
        "http://h:-1",
        "http://h:1x",
        "http://[::1]:x",
        "file://rel",
        "file://",
    ],
)
def test_parse_endpoint_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://[::1:9428", "'[' before its IPv6 address is not closed"),
        ("http://[::1]9428", "after ']'"),
        ("http://[::1]x:9428", "after ']'"),
        ("http://[logs.example.com]:9428", "not an IPv6 address"),
        ("http://[1.2.3.4]:9428", "not an IPv6 address"),
        ("http://logs]:9428", "holds ']'"),
        ("http://lo[gs:9428", "holds '['"),
        ("http://logs example.com:9428", "holds ' '"),
        ("http://logs\texample.com", "holds '\\t'"),
        ("http://logs\x7f:9428", "holds '\\x7f'"),
        ("http://logs{1}:9428", "holds '{'"),
        ("http://logs\u3000example.com", "holds ' '"),  # IDNA maps this space to a space
        ("http://h:\u0663", "is not a number"),  # an Arabic-Indic 3: isdigit(), not a port
        ("http://h:\uff19\uff14\uff12\uff18", "is not a number"),  # full-width 9428
        ("http://" + "\u00e4" * 70 + ".example", "not a valid host name"),  # a label over 63
        ("http://\u00e4..example", "not a valid host name"),  # an empty label
    ],
)
def test_a_host_the_connection_would_fail_on_is_refused_saying_why(url: str, why: str) -> None:
    """Bad configuration is said at the start, not as a failed delivery after it: an unclosed
    bracket used to send to the host `::1:9428` on port 80, a space to resolve a name that
    cannot be, and a digit of another script to connect to its value."""
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_endpoint(url)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://[::ffff:1.2.3.4]:1", "::ffff:1.2.3.4"),
        ("http://victoria_logs:9428", "victoria_logs"),  # a container's name, as Docker allows
        ("http://b\u00fccher.example:9428", "xn--bcher-kva.example"),
        ("http://\u043b\u043e\u0433\u0438.\u0440\u0444", "xn--c1akhm.xn--p1ai"),
    ],
)
def test_hosts_as_a_connection_takes_them(url: str, host: str) -> None:
    """A name in another script is sent as DNS and TLS know it (IDNA): in the Host header,
    which HTTP/1.1 carries in ASCII, and to the resolver."""
    assert parse_endpoint(url).host == host


@pytest.mark.parametrize(
    ("url", "base"),
    [("http://h:9428/insert/jsonline", ""), ("https://h/vl/insert/jsonline/", "/vl")],
)
def test_a_url_of_the_insert_endpoint_itself_is_taken_as_its_server(url: str, base: str) -> None:
    """The endpoint's own URL, as VictoriaLogs' docs give it: every batch went to
    `/insert/jsonline/insert/jsonline`, refused (400), and was dropped."""
    c = load({"VICTORIALOGS_URL": url})
    assert [e.base_path for e in c.endpoints] == [base] and c.warnings == ()


@pytest.mark.parametrize(
    ("url", "used"),
    [
        ("http://h:9428/select/vmui/", "http://h:9428"),
        (f"http://u:{SECRET}@h:9428/select/vmui/#/?query=*", "http://h:9428"),
        ("https://proxy/vl/select/logsql/query", "https://proxy:443/vl"),
        ("http://h:9428/insert/loki/api/v1/push", "http://h:9428"),
    ],
)
def test_a_url_of_another_endpoint_of_the_server_is_cut_to_its_base_saying_so(
    url: str, used: str
) -> None:
    c = load({"VICTORIALOGS_URL": url})
    assert [e.display for e in c.endpoints] == [used]
    (warning,) = c.warnings
    assert warning.startswith("VICTORIALOGS_URL item '") and SECRET not in warning
    assert warning.endswith(f"' has the path of one of VictoriaLogs' own endpoints; using {used} "
                            "(vlhook adds /insert/jsonline)")  # fmt: skip


def test_a_urls_query_string_is_said_not_to_be_sent() -> None:
    c = load({"VICTORIALOGS_URL": f"http://h:9428/?extra_fields=env=prod&token={SECRET}"})
    assert [e.display for e in c.endpoints] == ["http://h:9428"]
    assert c.warnings == (
        "VICTORIALOGS_URL item 'http://h:9428/?***': its query string is not sent (VictoriaLogs' "
        "parameters come from VICTORIALOGS_STREAM_FIELDS, VICTORIALOGS_FIELDS and "
        "VICTORIALOGS_HEADERS)",
    )


def test_a_value_in_quotes_as_docker_env_files_pass_them_is_used_without_them() -> None:
    """`docker run --env-file` keeps the quotes of `VICTORIALOGS_URL="http://vl:9428"`: the
    URL was then no URL, and shipping was off."""
    c = load({"VICTORIALOGS_URL": '"http://vl:9428"', "VICTORIALOGS_LOG_LEVEL": "'debug'",
              "VICTORIALOGS_BEARER_TOKEN": f'"{SECRET}"'})  # fmt: skip
    assert [e.display for e in c.endpoints] == ["http://vl:9428"]
    assert c.level == 10 and c.bearer_token == SECRET
    said = "is in quotes, which are part of its value (as `docker run --env-file` passes them); "
    assert c.warnings == tuple(f"VICTORIALOGS_{name} {said}using it without them"
                               for name in ("URL", "LOG_LEVEL", "BEARER_TOKEN"))  # fmt: skip
    assert SECRET not in "".join(c.warnings)


@pytest.mark.parametrize("given", [f"Bearer {SECRET}", f"bearer  {SECRET}", f"BEARER {SECRET}"])
def test_a_bearer_token_given_with_its_scheme_is_used_without_it(given: str) -> None:
    """The header's whole value pasted (`Bearer abc`) went as `Authorization: Bearer Bearer
    abc`, refused (401) for every batch, each dropped."""
    c = load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_BEARER_TOKEN": given})
    assert c.bearer_token == SECRET
    assert c.warnings == ("VICTORIALOGS_BEARER_TOKEN starts with the scheme 'Bearer ', which "
                          "vlhook writes itself; using the token after it",)  # fmt: skip


def test_a_pattern_and_the_switch_are_read_quotes_and_all() -> None:
    c = load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_REDACT": '"card"'})
    assert c.redact_extra == ('"card"',) and c.warnings == ()
    off = load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_DISABLE": '"1"'})
    (warning,) = off.warnings
    assert warning.startswith("VICTORIALOGS_DISABLE='\"1\"' is not valid")
    assert load({"VICTORIALOGS_URL": '""'}).endpoints == ()


def test_empty_port_means_the_default_port() -> None:
    # RFC 3986: an empty port is the scheme's default.
    assert parse_endpoint("http://h:").port == 80
    assert parse_endpoint("https://h:/b").port == 443


def test_display_never_has_credentials() -> None:
    e = parse_endpoint(f"https://u:{SECRET}@h:8443/b")
    assert e.display == "https://h:8443/b"
    assert parse_endpoint("file:///x/y").display == "file:///x/y"


def test_comma_separated_urls() -> None:
    c = load(
        {"VICTORIALOGS_URL": " http://a:1 ,, https://b/base ,file:///tmp/o.jsonl, http://[::1]:2"}
    )
    assert c.warnings == ()
    assert [e.display for e in c.endpoints] == [
        "http://a:1",
        "https://b:443/base",
        "file:///tmp/o.jsonl",
        "http://::1:2",
    ]


@pytest.mark.parametrize(("value", "active"), [("1", False), ("TRUE", False), (" yes ", False),
                                               ("on", False), ("0", True), ("false", True),
                                               ("", True)])  # fmt: skip
def test_disable(value: str, active: bool) -> None:
    env = {"VICTORIALOGS_URL": URL, "VICTORIALOGS_DISABLE": value}
    assert is_enabled(env) is active
    c = load(env)
    assert c.active is active
    assert c.warnings == ()


def test_a_bad_disable_value_names_every_spelling_that_is_understood() -> None:
    c = load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_DISABLE": "nope"})
    assert c.active
    (warning,) = c.warnings
    assert warning.startswith("VICTORIALOGS_DISABLE='nope' is not valid")
    for spelling in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        assert load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_DISABLE": spelling}).warnings == ()
        assert spelling in warning, warning


def test_a_bad_redact_pattern_among_good_ones_is_left_out_alone() -> None:
    """The warning says what is used instead: the built-ins and the other patterns given, not
    "the built-in patterns only" while the others still apply."""
    c = load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_REDACT": r"card=\d+,,([,,ssn:\S+"})
    assert c.redact_extra == (r"card=\d+", r"ssn:\S+")
    (warning,) = c.warnings
    assert warning == (
        "VICTORIALOGS_REDACT='([' is not valid; using the built-in patterns and the other "
        "patterns given"
    )
    alone = load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_REDACT": "(["})
    assert alone.warnings == (
        "VICTORIALOGS_REDACT='([' is not valid; using the built-in patterns only",
    )


def test_disabled_bad_url_gives_no_warning() -> None:
    c = load({"VICTORIALOGS_URL": "notaurl", "VICTORIALOGS_DISABLE": "1"})
    assert c.endpoints == ()
    assert c.warnings == ()


@pytest.mark.parametrize("value", ["", "   ", "\t"])
def test_blank_url_is_off_without_warning(value: str) -> None:
    assert is_enabled({"VICTORIALOGS_URL": value}) is False
    c = load({"VICTORIALOGS_URL": value})
    assert c.endpoints == () and c.warnings == ()


# -- the frozen objects -----------------------------------------------------------------------


def test_config_is_read_only_hashable_and_comparable() -> None:
    a = load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_FIELDS": "a=1"})
    b = load({"VICTORIALOGS_URL": URL, "VICTORIALOGS_FIELDS": "a=1"})
    assert a == b
    assert hash(a) == hash(b)
    assert a != load({"VICTORIALOGS_URL": URL})
    with pytest.raises(AttributeError):
        a.level = 10
    with pytest.raises(TypeError):
        Config(no_such_field=1)


def test_load_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("VICTORIALOGS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("VICTORIALOGS_URL", URL)
    monkeypatch.setenv("VICTORIALOGS_BATCH_LINES", "7")
    c = load()
    assert c.batch_lines == 7
    assert c.active


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ("a=1", (("a", "1"),)),
        (" a = 1 , b=2=3 ,", (("a", "1"), ("b", "2=3"))),
        ("a=", (("a", ""),)),
        ("", ()),
    ],
)
def test_parse_pairs(text: str, pairs: tuple[tuple[str, str], ...]) -> None:
    assert parse_pairs(text) == pairs


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted({n for n, *_ in BAD})), st.text(max_size=20)))
def test_load_never_raises_and_values_stay_in_range(env: dict[str, str]) -> None:
    c = load({"VICTORIALOGS_URL": URL, **env})
    assert 1 <= c.batch_lines <= 1_000_000
    assert 1024 <= c.batch_bytes
    assert 1024 <= c.max_line_bytes <= SERVER_LINE_LIMIT // 2
    assert c.timeout_ms >= MIN_TIMEOUT_MS
    assert c.exit_timeout_ms >= 0
    assert c.on_full in ("drop", "block")
    assert c.compression in ("gzip", "none")
    assert c.capture and c.capture <= {"stdout", "stderr", "logging", "fd"}
    assert c.level in (5, 10, 20, 30, 40, 50)  # 5: loguru's TRACE
    assert c.account_id == "" or 0 <= int(c.account_id) < 2**32
    named = {name for name in env if env[name].strip()}
    # Each names its variable: `NAME='value' ...`, or `NAME is in quotes ...` (not its value).
    assert all(any(w.startswith((f"{n}=", f"{n} ")) for n in named) for w in c.warnings), \
        c.warnings  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VICTORIALOGS_BEARER_TOKEN", "tök€n-S3cr3tP4ss"),
        ("VICTORIALOGS_HEADERS", "X-Key=v€-S3cr3tP4ss"),
    ],
)
def test_a_credential_http_cannot_carry_is_named_once_never_shown(name: str, value: str) -> None:
    c = load({"VICTORIALOGS_URL": "http://h:1", name: value})
    (warning,) = c.warnings
    assert warning.startswith(name) and "cannot carry" in warning and SECRET not in warning
    assert load({"VICTORIALOGS_URL": "http://h:1", name: value.replace("€", "e")}).warnings == ()
