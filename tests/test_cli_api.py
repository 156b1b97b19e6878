"""`vlhook check`, `vlhook spool`, `vlhook listen`, and the optional Python API."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import DROPIN, PYTHON, SRC, base_env, messages, run_python


def _vlhook(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = base_env()
    full["PYTHONPATH"] = str(SRC)
    full.update(env)
    return subprocess.run(
        [PYTHON, "-m", "vlhook", *args], env=full, capture_output=True, text=True, timeout=60
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_succeeds_against_a_real_server(vl_node: Any) -> None:
    result = _vlhook("check", env={"VICTORIALOGS_URL": vl_node.url})
    assert result.returncode == 0, result.stdout
    assert "probe accepted (HTTP 200)" in result.stdout and result.stdout.rstrip().endswith("OK")
    assert "probe read back: stored and searchable" in result.stdout
    (probe,) = vl_node.rows("*")  # a server of this test's own: the probe is all it stored
    assert probe["_msg"].startswith("vlhook check probe") and probe["stream"] == "vlhook"


def test_check_probes_compressed_as_batches_go(sink: Any) -> None:
    """The probe is a few hundred bytes, which a batch would send as they are: the check sends
    it as larger batches go, so that a proxy mangling gzip shows here."""
    from fault_proxy import FaultProxy

    for compression, encoding in (("gzip", "gzip"), ("none", None)):
        with FaultProxy(sink.url, []) as proxy:
            env = {"VICTORIALOGS_URL": proxy.url, "VICTORIALOGS_COMPRESSION": compression}
            result = _vlhook("check", env=env)
        assert "probe accepted (HTTP 200)" in result.stdout, result.stdout
        posts = [r for r in proxy.requests if r.path.startswith("/insert/")]
        assert [r.headers.get("Content-Encoding") for r in posts] == [encoding]
        assert posts[0].lines()[0]["_msg"].startswith("vlhook check probe")


def test_check_fails_plainly_when_unreachable() -> None:
    url = f"http://user:hunter2@127.0.0.1:{_free_port()}"
    result = _vlhook("check", env={"VICTORIALOGS_URL": url})
    assert result.returncode == 1
    assert "probe refused: cannot deliver" in result.stdout and "FAILED" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "soon"])
def test_check_refuses_a_timeout_that_is_no_time(timeout: str) -> None:
    """0, a negative number, nan and inf were taken, and the probe's failure blamed on the
    server ("timed out", "timestamp out of range"); other commands refuse such numbers."""
    result = _vlhook("check", "--timeout", timeout, env={"VICTORIALOGS_URL": "http://127.0.0.1:9"})
    assert result.returncode == 2, result.stdout
    assert f"argument --timeout: {timeout!r} is not a number of seconds" in result.stderr


def test_check_shows_the_servers_refusal(sink: Any) -> None:
    result = _vlhook(
        "check", env={"VICTORIALOGS_URL": sink.url, "VICTORIALOGS_HEADERS": "AccountID=x"}
    )
    assert result.returncode == 1 and "HTTP 400" in result.stdout


def test_check_fails_where_a_web_page_answers(sink: Any) -> None:
    """A web app answers the probe 200: the check said "probe accepted", waited out the
    read-back, and ended with OK, where every batch would be lost."""
    from fault_proxy import FaultProxy

    with FaultProxy(sink.url, ["page"] * 20) as proxy:
        result = _vlhook("check", "--timeout", "2", env={"VICTORIALOGS_URL": proxy.url})
    assert result.returncode == 1, result.stdout
    assert "answered with a web page, not as VictoriaLogs does" in result.stdout, result.stdout
    assert "FAILED" in result.stdout and "probe accepted" not in result.stdout


def test_check_names_the_lowest_level_shipped() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    for value, shown in (("warn", "WARNING"), ("", "INFO"), ("DEBUG", "DEBUG")):
        result = _vlhook("check", env={"VICTORIALOGS_URL": url, "VICTORIALOGS_LOG_LEVEL": value})
        assert f" level>={shown} " in result.stdout, result.stdout


def test_check_without_url_says_not_active() -> None:
    result = _vlhook("check", env={})
    assert result.returncode == 2 and "not active" in result.stdout


def test_spool_status_and_replay(sink: Any) -> None:
    spool = sink.spool
    spool.mkdir(mode=0o700)
    line = f'{{"_msg":"kept on disk","test_id":"{sink.test_id}"}}\n'.encode()
    (spool / "00000000000000000001-1-0.jsonl").write_bytes(line)
    env = sink.env()
    status = _vlhook("spool", "status", env=env)
    assert re.search(rf": 1 files, {len(line)} bytes", status.stdout), status.stdout
    replay = _vlhook("spool", "replay", env=env)
    assert replay.returncode == 0 and "replayed 1 entries; 0 files left" in replay.stdout
    assert messages(sink.settle(1)) == ["kept on disk"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--port", "99999"), "argument --port: '99999' is not a port (0 to 65535"),
        (("--port", "-1"), "argument --port: '-1' is not a port (0 to 65535"),
        (("--max-stored", "0"), "argument --max-stored: '0' is not a whole number of at least 1"),
    ],
)
def test_listen_refuses_a_port_or_a_bound_it_cannot_use_in_a_word(
    args: tuple[str, ...], said: str
) -> None:
    """A port out of range ended in a traceback (OverflowError from bind)."""
    result = _vlhook("listen", *args, env={})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert said in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args",
    [("spool", "status"), ("check",), ("path",), ("--version",), ("--help",), ("query", "*")],
)
def test_every_command_whose_reader_went_away_ends_quietly(
    args: tuple[str, ...], tmp_path: Path, sink: Any
) -> None:
    """`vlhook check | head -1`: the commands but tail and query ended in a traceback
    (BrokenPipeError) when stdout's reader was gone. Its read end is closed before the
    command starts, so every write to stdout fails."""
    read, write = os.pipe()
    os.close(read)
    env = base_env()
    env.update(sink.env(VICTORIALOGS_SPOOL_DIR=str(tmp_path / "spool")), PYTHONPATH=str(SRC))
    try:
        result = subprocess.run([PYTHON, "-m", "vlhook", *args], env=env, stdout=write,
                                stderr=subprocess.PIPE, text=True, timeout=60)  # fmt: skip
    finally:
        os.close(write)
    assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr, result.stderr
    assert result.returncode == 0


def test_a_command_run_with_stdout_closed_ends_as_it_did(sink: Any) -> None:
    """`vlhook path >&-`: Python's sys.stdout is None then, and print() writes nothing."""
    env = base_env()
    env.update(sink.env(), PYTHONPATH=str(SRC))
    result = subprocess.run(f"{PYTHON} -m vlhook path >&-", shell=True, env=env,
                            stderr=subprocess.PIPE, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0 and result.stderr == ""


def test_listen_ignores_its_own_activation(tmp_path: Path) -> None:
    """`vlhook listen` with VICTORIALOGS_URL pointing at itself must not feed on its output.
    (A test of `listen` itself: no VictoriaLogs involved.)"""
    port = _free_port()
    # A spool of this test's own: the machine-wide default may hold other programs' batches,
    # which the app would replay to the receiver.
    spool = str(tmp_path / "spool")
    env = base_env()
    env.update(PYTHONPATH=os.pathsep.join([str(DROPIN), str(SRC)]),
               VICTORIALOGS_URL=f"http://127.0.0.1:{port}",
               VICTORIALOGS_SPOOL_DIR=spool)  # fmt: skip
    proc = subprocess.Popen(
        [PYTHON, "-m", "vlhook", "listen", "--port", str(port)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        app = tmp_path / "app.py"
        app.write_text("print('one line')\n")
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                import time

                time.sleep(0.1)
        run_python(app, {"VICTORIALOGS_URL": f"http://127.0.0.1:{port}",
                         "VICTORIALOGS_SPOOL_DIR": spool})  # fmt: skip
        import json
        import time
        import urllib.request

        time.sleep(1.0)  # long enough for a feedback loop to show
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/vlhook/stats", timeout=5) as r:
            stats = json.loads(r.read())
        assert stats["rows_stored"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_python_api_flush_stats_bind(script: Any, sink: Any) -> None:
    path = script(
        "import vlhook, json, sys\n"
        "vlhook.bind(request_id='r-1')\n"
        "print('bound line')\n"
        "vlhook.unbind('request_id')\n"
        "print('unbound line')\n"
        "ok = vlhook.flush(5)\n"
        "s = vlhook.stats()\n"
        "summary = [ok, s['active'], s['shipped'], s['dropped_total']]\n"
        "sys.stderr.write(json.dumps(summary) + '\\n')\n"
    )
    env = sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="60000")
    env["PYTHONPATH"] = str(SRC)
    run = run_python(path, env)
    assert run.err.strip().splitlines()[-1] == "[true, true, 2, 0]"
    rows = sink.settle(3)
    by_msg = {r["_msg"]: r for r in rows}
    assert by_msg["bound line"]["request_id"] == "r-1"
    assert "request_id" not in by_msg["unbound line"]


def test_stats_of_an_inactive_process_have_every_key(script: Any) -> None:
    """Without a URL the counters are all nothing, under the same keys: code that reads
    stats()["dropped"] needs no test of "active" first."""
    path = script("import vlhook\ns = vlhook.stats()\nprint(s['active'], s['dropped'], "
                  "s['captured'], s['buffered_bytes'])\n")  # fmt: skip
    run = run_python(path, {"PYTHONPATH": str(SRC)}, dropin=False)
    assert (run.rc, run.out) == (0, "False {} 0 0\n"), run.err


def test_overflow_drops_are_counted_and_reported(script: Any, sink: Any) -> None:
    """With a tiny buffer and a flood, what arrived plus what was reported dropped is exactly
    what was written."""
    total = 50_000
    path = script(f"for i in range({total}):\n    print('flood', i)\n")
    run = run_python(
        path, sink.env(VICTORIALOGS_BUFFER_BYTES="65536", VICTORIALOGS_EXIT_TIMEOUT_MS="10000")
    )
    assert run.rc == 0 and run.out.count("\n") == total
    rows = sink.entries(1, timeout=20)
    import time

    time.sleep(1.0)
    rows = sink.entries(len(rows))
    floods = [r for r in rows if r["_msg"].startswith("flood")]
    reports = [r for r in rows if r.get("stream") == "vlhook"]
    dropped = sum(int(r["vlhook.dropped"]) for r in reports)
    assert len(floods) + dropped == total
    assert len({r["_msg"] for r in floods}) == len(floods)  # no duplicates
    if dropped:
        assert "dropped" in run.err and all(r["level"] == "WARNING" for r in reports)
