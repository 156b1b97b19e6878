"""Credentials are never printed, whatever form the URL takes: real programs with the drop-in and
`vlhook check`, with a URL that is malformed, one that cannot be reached (the HTTP layer's
errors are shown with VICTORIALOGS_DEBUG=1), and one that works; the spool is read too."""

from __future__ import annotations

import base64
import http.server
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import PYTHON, SRC, base_env, refused_port, run_python
from vlhook import _diag
from vlhook._config import load
from vlhook._delivery.transport import HttpTransport

SECRET = "Zq8SECRETx"
PROGRAM = "import logging\nprint('a line')\nlogging.warning('a record')\n"


PORT = refused_port()
DEAD = f"127.0.0.1:{PORT}"

# Cannot be used as given: a password with an unescaped ",", "/", "?" or "#", a scheme or port
# that is wrong, an "@" inside the password of a URL that is wrong anyway, a token in a query.
MALFORMED = [
    f"http://u:pa,{SECRET}@{DEAD}",
    f"http://u:pa,mid,{SECRET}@{DEAD}",
    f"http://u:1234,{SECRET}@{DEAD}",
    f"http://u:pa/{SECRET}@{DEAD}",
    f"http://u:1234/{SECRET}@{DEAD}",
    f"http://u:pa?{SECRET}@{DEAD}",
    f"http://u:pa#{SECRET}@{DEAD}",
    f"htp://u:{SECRET}@{DEAD}",
    f"ftp://{DEAD}/?token={SECRET}",
    f"http://u:{SECRET}@127.0.0.1:notaport",
    f"http://{SECRET}@127.0.0.1:bad",
    f"http://u:p@{SECRET}@127.0.0.1:bad",
    f"{SECRET}@{DEAD}",
    f"http://{DEAD},u:{SECRET}@{DEAD}",
]

# Usable (the server is down): credentials in every form the parser accepts.
WELL_FORMED = [
    f"http://u:{SECRET}@{DEAD}",
    f"http://u:pa%2C{SECRET}@{DEAD}",
    f"http://u:pa%2F{SECRET}%3F%23@{DEAD}",
    f"http://u:p@{SECRET}@{DEAD}",
    f"http://u:{SECRET}%40%25x@{DEAD}",
    f"http://{SECRET}@{DEAD}",
    f"http://{DEAD}/?token={SECRET}",
    f"http://{DEAD}/base?x=1&access_token={SECRET}",
    f"http://{DEAD},http://u:{SECRET}@127.0.0.1:{refused_port()}",
]


def _forms(url: str) -> list[str]:
    """The secret, and the Basic header's value made of the URL's credentials."""
    pairs = [f"{e.username}:{e.password}" for e in load({"VICTORIALOGS_URL": url}).endpoints]
    return [SECRET, *(base64.b64encode(pair.encode()).decode() for pair in pairs if pair != ":")]


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = base_env()
    full["PYTHONPATH"] = str(SRC)
    full.update(env)
    return subprocess.run(
        [PYTHON, "-m", "vlhook", "check", "--timeout", "1"],
        env=full, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _env(url: str, spool: Path, **extra: str) -> dict[str, str]:
    env = {
        "VICTORIALOGS_URL": url,
        "VICTORIALOGS_DEBUG": "1",
        "VICTORIALOGS_TIMEOUT_MS": "200",
        "VICTORIALOGS_EXIT_TIMEOUT_MS": "400",
        "VICTORIALOGS_SPOOL_DIR": str(spool),
    }
    env.update(extra)
    return env


def _assert_hidden(text: str, secret: str = SECRET) -> None:
    assert secret not in text, text


def _spooled(spool: Path) -> str:
    return "".join(path.read_text() for path in spool.glob("*")) if spool.is_dir() else ""


@pytest.mark.parametrize("url", MALFORMED)
def test_the_configuration_refuses_a_malformed_url_and_says_so_safely(url: str) -> None:
    config = load({"VICTORIALOGS_URL": url})
    assert not config.active and config.warnings
    assert SECRET not in "\n".join(config.warnings) + repr(config)


def test_a_comma_or_slash_in_a_password_works_escaped_and_a_file_path_may_hold_an_at() -> None:
    (endpoint,) = load({"VICTORIALOGS_URL": f"https://u:a%2Cb%2Fc%3F%23%40{SECRET}@h"}).endpoints
    assert endpoint.password == f"a,b/c?#@{SECRET}" and endpoint.host == "h"
    (endpoint,) = load({"VICTORIALOGS_URL": "file:///tmp/logs@2024.jsonl"}).endpoints
    assert endpoint.file_path == "/tmp/logs@2024.jsonl"


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_url_is_refused_without_showing_its_credentials(
    url: str, script: Any, tmp_path: Path
) -> None:
    run = run_python(script(PROGRAM), _env(url, tmp_path / "spool"))
    assert "vlhook: VICTORIALOGS_URL" in run.err  # refused, and said so
    assert "a line" in run.out
    _assert_hidden(run.out + run.err)
    result = _check(_env(url, tmp_path / "spool"))
    assert "VICTORIALOGS_URL" in result.stdout
    _assert_hidden(result.stdout + result.stderr)


@pytest.mark.parametrize("url", WELL_FORMED)
def test_http_errors_and_check_never_show_credentials(
    url: str, script: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    run = run_python(script(PROGRAM), _env(url, spool))
    assert "cannot deliver" in run.err  # the HTTP layer's error was shown...
    for form in _forms(url):
        _assert_hidden(run.out + run.err, form)  # ...without the credentials
    assert "a record" in _spooled(spool)  # the batch was kept, and nothing else with it
    _assert_hidden(_spooled(spool))
    result = _check(_env(url, spool))
    assert result.returncode == 1 and "probe refused: cannot deliver" in result.stdout
    _assert_hidden(result.stdout + result.stderr)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VICTORIALOGS_BEARER_TOKEN", f"{SECRET}\nInjected: 1"),
        ("VICTORIALOGS_HEADERS", f"X-Api-Key={SECRET}\r\nInjected: 1"),
        ("VICTORIALOGS_HEADERS", f"X-Api-Key=\u2603{SECRET}"),
    ],
)
def test_a_header_the_http_layer_refuses_is_not_shown(
    variable: str, value: str, script: Any, tmp_path: Path
) -> None:
    env = _env(f"http://{DEAD}", tmp_path / "spool", **{variable: value})
    run = run_python(script(PROGRAM), env)
    assert "vlhook:" in run.err
    _assert_hidden(run.out + run.err)
    result = _check(env)
    assert "probe refused" in result.stdout
    _assert_hidden(result.stdout + result.stderr)


def test_credentials_that_work_are_not_shown_either(script: Any, sink: Any) -> None:
    url = sink.url.replace("://", f"://u:{SECRET}@", 1)
    env = sink.env(
        VICTORIALOGS_URL=url,
        VICTORIALOGS_DEBUG="1",
        VICTORIALOGS_HEADERS=f"X-Scope=team,X-Api-Key=k-{SECRET}",
    )
    run = run_python(script(PROGRAM), env)
    assert "vlhook: active" in run.err
    _assert_hidden(run.out + run.err)
    rows = sink.settle(2)
    assert {r["_msg"] for r in rows} >= {"a line", "a record"}
    _assert_hidden(repr(rows))
    result = _check(env)
    assert result.returncode == 0 and result.stdout.rstrip().endswith("OK")
    _assert_hidden(result.stdout + result.stderr)


# -- the choke point, in-process --------------------------------------------------------------


@pytest.fixture
def protected() -> Any:
    """The configuration's credentials registered, as at activation; forgotten afterwards."""
    yield lambda env: _diag.protect(load(env))
    _diag.protect(load({}))


@pytest.mark.parametrize(
    "message",
    [
        f"cannot reach http://u:{SECRET}@h:1/x: OSError",
        f"cannot reach http://u:1234/{SECRET}@h:1: gaierror",
        f"sending to 'https://u:p,{SECRET}@h' and http://u:p#{SECRET}@h",
        f"GET http://h/?a=1&api_key={SECRET}&b=2 failed",
        f"GET http://h/?X-Amz-Security-Token={SECRET} failed",
        f"Invalid header value b'Bearer {SECRET}\\r\\nx'",
        f"header Authorization: Bearer {SECRET}",
    ],
)
def test_every_message_is_scrubbed(message: str, protected: Any) -> None:
    protected({"VICTORIALOGS_URL": "http://h:1", "VICTORIALOGS_BEARER_TOKEN": f"{SECRET}\r\nx"})
    shown = _diag.scrub(message)
    assert SECRET not in shown and ("***" in shown or "[REDACTED]" in shown)


def test_the_configurations_literal_credentials_are_scrubbed(protected: Any) -> None:
    protected(
        {
            "VICTORIALOGS_URL": f"http://user:pa%2C{SECRET}@h:1,http://tokenuser9@h:2",
            "VICTORIALOGS_HEADERS": f"X-Api-Key=key-{SECRET}",
            "VICTORIALOGS_REDACT_KEYS": "tenant_ref",
        }
    )
    basic = base64.b64encode(f"user:pa,{SECRET}".encode()).decode()
    for text in (f"pa,{SECRET}", f"pa%2C{SECRET}", basic, f"key-{SECRET}", "tokenuser9"):
        assert _diag.scrub(f"said {text} here") == "said *** here"
    assert _diag.scrub("GET /x?tenant_ref=abc&page=2") == "GET /x?tenant_ref=***&page=2"
    assert _diag.scrub("user and key and h:1") == "user and key and h:1"  # nothing else


def test_a_message_that_cannot_be_scrubbed_is_not_shown(monkeypatch: Any, capfd: Any) -> None:
    from vlhook import _redact

    def broken(*args: Any) -> str:
        raise RuntimeError("broken")

    monkeypatch.setattr(_redact, "redact_text", broken)
    monkeypatch.setattr(_diag, "_out", None)
    _diag.warn(f"password {SECRET}")
    err = capfd.readouterr().err
    assert "vlhook: (a message could not be shown)" in err and SECRET not in err


# The secret's place in the answer: " you sent Bearer token-" is 23 characters after the
# padding, so the cut at 500 falls inside it.
@pytest.mark.parametrize("padding", [468, 472, 476])
def test_an_echoed_credential_is_masked_before_the_answer_is_cut(
    padding: int, protected: Any
) -> None:
    """A server's error answer is cut to 500 characters for the message: masked first, or a
    credential cut in its middle is no longer found whole, and its beginning is shown."""

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = ("x" * padding + f" you sent {self.headers['Authorization']}").encode()
            self.send_response(400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"VICTORIALOGS_URL": f"http://127.0.0.1:{server.server_address[1]}",
               "VICTORIALOGS_BEARER_TOKEN": f"token-{SECRET}"}  # fmt: skip
        protected(env)
        transport = HttpTransport(load(env).endpoints[0], load(env))
        result = transport.post(b'{"_msg":"x"}\n', time.monotonic() + 5)
        transport.close()
    finally:
        server.shutdown()
        server.server_close()
    assert result.status == 400 and "you sent" in result.message
    pieces = {SECRET[i : i + 4] for i in range(len(SECRET) - 3)}
    assert not [piece for piece in pieces if piece in result.message], result.message
