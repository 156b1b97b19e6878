"""Workers a program starts ship to its stream (same job and container_name): multiprocessing's
spawn and forkserver, `python -c` helpers, uvicorn's --workers. A different program it starts
keeps its own name. A real gunicorn's master and recycled workers ship every line once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from conftest import DROPIN, INTERNAL_ERROR, base_env

WORKERS = """\
import logging, multiprocessing, subprocess, sys

def work(method):
    print('child', method, flush=True)
    logging.getLogger('worker').warning('logged by %s', method)

if __name__ == '__main__':
    print('parent', flush=True)
    for method in ('spawn', 'forkserver'):
        process = multiprocessing.get_context(method).Process(target=work, args=(method,))
        process.start()
        process.join()
    subprocess.run([sys.executable, '-c', 'print("python -c child")'], check=True)
    subprocess.run([sys.executable, 'other.py'], check=True)
"""


def run(
    args: list[str], env: Optional[dict[str, str]], cwd: Path
) -> subprocess.CompletedProcess[bytes]:
    """A real interpreter without HOSTNAME (else container_name is the host's, whatever the
    program), with the drop-in when `env` is given."""
    full = base_env()
    full.pop("HOSTNAME", None)
    if env is not None:
        full.update(env)
        full["PYTHONPATH"] = str(DROPIN)
    proc = subprocess.run(
        [sys.executable, *args], env=full, capture_output=True, cwd=str(cwd), timeout=120
    )
    assert INTERNAL_ERROR not in proc.stderr, proc.stderr.decode("utf-8", "replace")
    return proc


def test_spawned_workers_ship_to_their_parents_stream(script: Any, sink: Any) -> None:
    path = script(WORKERS)
    script("print('other program')\n", name="other.py")
    bare = run([str(path)], None, path.parent)
    hooked = run([str(path)], sink.env(), path.parent)
    assert (hooked.returncode, hooked.stdout, hooked.stderr) == (
        bare.returncode, bare.stdout, bare.stderr
    )  # fmt: skip
    assert bare.stdout.count(b"child") == 3 and b"other program" in bare.stdout
    rows = sink.settle(7)
    assert len(rows) == 7  # each once
    names = {r["_msg"]: (r["job"], r["container_name"], r["_stream"]) for r in rows}
    app = ("app", "app", '{container_name="app",job="app"}')
    assert names == {
        "parent": app,
        "child spawn": app,
        "child forkserver": app,
        "logged by spawn": app,
        "logged by forkserver": app,
        "python -c child": app,
        "other program": ("other", "other", '{container_name="other",job="other"}'),
    }
    assert len({r["pid"] for r in rows}) == 5  # the parent, two workers, two programs


def _wait_for(sink: Any, message: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(r["_msg"] == message for r in sink.entries(0)) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{count} x {message!r} not stored within {timeout} s")


@pytest.mark.slow
def test_uvicorn_workers_ship_to_the_servers_stream(script: Any, sink: Any) -> None:
    path = script(
        "print('worker ready', flush=True)\nasync def app(scope, receive, send):\n    pass\n"
    )
    full = base_env()
    full.pop("HOSTNAME", None)
    full.update(sink.env())
    full["PYTHONPATH"] = str(DROPIN)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app:app", "--workers", "2", "--port", "0"],
        env=full, cwd=str(path.parent), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_for(sink, "worker ready", 2)
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err.decode()
    assert INTERNAL_ERROR not in err
    assert out.count(b"worker ready") == 2
    rows = sink.settle(4)
    assert {(r["job"], r["container_name"]) for r in rows} == {("uvicorn", "uvicorn")}
    ready = [r for r in rows if r["_msg"] == "worker ready"]
    assert len(ready) == 2 and len({r["pid"] for r in ready}) == 2
    assert any(r["_msg"].startswith("Started parent process") for r in rows)


GUNICORN_APP = """\
import logging, os
print('app imported', flush=True)
def app(environ, start_response):
    print('request', environ['PATH_INFO'], flush=True)
    logging.getLogger('app').warning('handled %s', environ['PATH_INFO'])
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'ok']
"""


def _get(sock_path: Path, target: str) -> bytes:
    """One request to gunicorn's UNIX socket (no port to race for)."""
    import socket

    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(str(sock_path))
        conn.sendall(f"GET {target} HTTP/1.0\r\nHost: t\r\n\r\n".encode())
        return b"".join(iter(lambda: conn.recv(4096), b""))


def _serve(
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    sock: Path,
    while_up: Callable[[], Any] = lambda: None,
) -> tuple[list[bytes], Any, bytes, bytes, int]:
    """Start a server listening on the UNIX socket `sock`, make six requests, call `while_up`,
    then stop it with SIGTERM: the answers, what `while_up` returned, its stdout and stderr,
    and its exit status."""
    server = subprocess.Popen(
        command, env=env, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        for _ in range(100):  # bounded: 10 s for the socket to answer
            if sock.exists():
                break
            time.sleep(0.1)
        answers = [_get(sock, f"/p{i}") for i in range(6)]
        seen = while_up()
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    return answers, seen, out, err, server.returncode


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["sync", "gevent"])
def test_gunicorn_master_and_recycled_workers_ship_every_line_once(
    script: Any, sink: Any, tmp_path: Path, worker: str
) -> None:
    """A real gunicorn: the app loaded in the master before the fork (`--preload`, vlhook's
    thread already running there), workers recycled after two requests each (`--max-requests`)
    and the master stopped with SIGTERM. Every line its console shows is stored, once. gevent
    workers patch threads into greenlets after the fork: before, theirs shipped nothing while
    they lived and spooled it all at their exit."""
    if worker == "gevent":
        pytest.importorskip("gevent")
    path = script(GUNICORN_APP)
    sock = tmp_path / "g.sock"
    full = base_env()
    full.update(sink.env(), PYTHONPATH=str(DROPIN), HOME=str(tmp_path))  # its control socket
    # A worker still booting when the master's SIGTERM comes may miss it and is killed after
    # the graceful timeout (gunicorn's own race, without vlhook too: 30 s by default); what it
    # printed has been shipped by then, at the flush interval.
    full["VICTORIALOGS_FLUSH_INTERVAL_MS"] = "200"
    args = ["-k", worker, "-w", "2", "--preload", "--max-requests", "2", "--access-logfile", "-",
            "--graceful-timeout", "5"]  # fmt: skip
    command = [sys.executable, "-m", "gunicorn", *args, "-b", f"unix:{sock}", "app:app"]
    answers, _, out, err, returncode = _serve(command, full, path.parent, sock)
    assert returncode == 0 and INTERNAL_ERROR not in err, err.decode()
    assert all(answer.endswith(b"ok") for answer in answers)
    console = out.decode().splitlines() + err.decode().splitlines()
    rows = sink.settle(len(console))
    assert len(rows) == len(console)  # exactly: one entry per line the console shows
    requests = [r for r in rows if r["_msg"].startswith("request /p")]
    assert sorted(r["_msg"] for r in requests) == [f"request /p{i}" for i in range(6)]
    handled = [r for r in rows if r["_msg"].startswith("handled /p")]
    assert len(handled) == 6 and {r["level"] for r in handled} == {"WARNING"}
    assert sum('"GET /p' in r["_msg"] for r in rows) == 6  # the access log's records
    served = [r["pid"] for r in requests]
    if worker == "sync":  # recycled: two requests at most each, so six took three or more
        assert len(set(served)) >= 3 and max(map(served.count, served)) <= 2
    booted = {r["pid"] for r in rows if r["_msg"].startswith("Booting worker")}
    assert set(served) <= booted
    assert [r["_msg"] for r in rows if r["_msg"] == "app imported"] == ["app imported"]
    assert any(r["_msg"] == "Shutting down: Master" for r in rows)


UWSGI_APP = """\
import logging, os
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
print("app imported", flush=True)
logging.info("app logged")

def application(environ, start_response):
    print("request", environ["PATH_INFO"])
    logging.warning("handled %s in %d", environ["PATH_INFO"], os.getpid())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


@pytest.mark.slow
def test_uwsgi_master_and_workers_ship_every_line_of_the_application_once(
    script: Any, sink: Any, tmp_path: Path
) -> None:
    """A real uWSGI (PyPI's pyuwsgi: uWSGI built as a Python extension), a master and two
    workers, with --py-call-uwsgi-fork-hooks (what vlhook's warning asks for; without it a
    worker forked while a thread of the master runs Python can hang). uWSGI replaces
    sys.stdout and sys.stderr once its Python plugin is up: before, nothing the application
    printed was captured. Every line of the master's and the workers' is stored, once,
    while uWSGI runs; then it stops on SIGTERM."""
    path = script(UWSGI_APP)
    sock = tmp_path / "u.sock"
    full = base_env()
    full.update(sink.env(), PYTHONPATH=str(DROPIN))
    command = [sys.executable, "-c", "import sys, pyuwsgi; sys.exit(pyuwsgi.run())",
               "--http-socket", str(sock), "--wsgi-file", str(path), "--master", "--processes",
               "2", "--die-on-term", "--disable-logging", "--py-call-uwsgi-fork-hooks"]  # fmt: skip
    answers, rows, _, err, returncode = _serve(command, full, path.parent, sock,
                                               lambda: sink.settle(14))  # fmt: skip
    assert returncode == 0 and INTERNAL_ERROR not in err, err.decode()
    assert all(answer.endswith(b"ok") for answer in answers)
    lines = sorted(r["_msg"].split(" in ")[0] for r in rows)
    assert lines == sorted(["app imported", "app logged", *(f"request /p{i}" for i in range(6)),
                            *(f"handled /p{i}" for i in range(6))])  # fmt: skip
    assert {r["stream"] for r in rows if r["_msg"].startswith("request")} == {"stdout"}
    assert b"vlhook" not in err


FORKED_IN_C = """\
import ctypes, os, sys, time
import vlhook._sync
print("parent before the fork", flush=True)
time.sleep(0.3)  # the sender thread started, and waits
# fork(2) itself, as uWSGI makes it: none of Python's at-fork hooks run in the child. PyDLL:
# the interpreter lock stays held across the call, so the child has it.
pid = ctypes.PyDLL(None).fork()
if pid == 0:
    if sys.argv[1] == "hook":
        vlhook._sync.in_forked_child()  # what uWSGI's post_fork_hook calls, once installed
    print("child", os.getpid(), flush=True)
    sys.exit(0)
os.waitpid(pid, 0)
print("parent after the child", flush=True)
"""


def test_a_child_forked_in_c_runs_vlhooks_steps_from_its_hosts_post_fork_hook(
    script: Any, sink: Any
) -> None:
    """uWSGI forks its workers in C, without Python's at-fork hooks: a worker kept the master's
    sender, whose thread it does not have, and what it captured was dropped at its exit after
    VICTORIALOGS_EXIT_TIMEOUT_MS. The hook vlhook sets on uWSGI's post_fork_hook runs vlhook's
    steps for a forked child: the child's lines are delivered, once, and the parent's are not
    sent again by the child."""
    path = script(FORKED_IN_C)
    env = sink.env(VICTORIALOGS_EXIT_TIMEOUT_MS="1000")
    unhooked = run([str(path), "none"], env, path.parent)  # as a worker was
    assert b"dropped" in unhooked.stderr  # the child's line and the parent's it kept
    assert sorted(r["_msg"].split(" ")[0] for r in sink.settle(2)) == ["parent", "parent"]
    env["VICTORIALOGS_FIELDS"] += ",run=hooked"
    hooked = run([str(path), "hook"], env, path.parent)
    assert hooked.returncode == 0 and b"vlhook" not in hooked.stderr, hooked.stderr.decode()
    rows = [r for r in sink.settle(5) if r.get("run") == "hooked"]
    assert sorted(r["_msg"].split(" ")[0] for r in rows) == ["child", "parent", "parent"]
    child = [r for r in rows if r["_msg"].startswith("child")]
    assert child[0]["pid"] == child[0]["_msg"].split()[1]
