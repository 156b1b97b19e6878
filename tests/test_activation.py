"""The activation paths: drop-in, the wheel's .pth, `vlhook run`; chain-loading; bad config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    DROPIN,
    PYTHON,
    SRC,
    as_without_vlhook,
    base_env,
    messages,
    purelib,
    run_python,
    venv_with,
)


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> Any:
    full = base_env()
    full["PYTHONPATH"] = str(SRC)
    full.update(env or {})
    return subprocess.run(
        [PYTHON, "-m", "vlhook", *args], env=full, capture_output=True, text=True, timeout=timeout
    )


def test_vlhook_path_prints_the_dropin_dir() -> None:
    result = _cli("path")
    assert result.returncode == 0 and Path(result.stdout.strip()) == DROPIN


def test_vlhook_run_activates_the_command(script: Any, sink: Any) -> None:
    path = script("print('via run')\n")
    result = _cli("run", "--", PYTHON, str(path), env=sink.env())
    assert result.returncode == 0 and result.stdout == "via run\n"
    assert messages(sink.settle(1)) == ["via run"]


def test_vlhook_run_keeps_exit_code(script: Any, sink: Any) -> None:
    path = script("import sys; sys.exit(5)\n")
    assert _cli("run", PYTHON, str(path), env=sink.env()).returncode == 5


def test_activating_twice_ships_once(script: Any, sink: Any) -> None:
    path = script("import vlhook\nassert vlhook.activate()\nprint('once')\n")
    env = sink.env()
    env["PYTHONPATH"] = os.pathsep.join([str(DROPIN), str(SRC)])
    run_python(path, env, dropin=False)
    assert messages(sink.settle(1)) == ["once"]


@pytest.mark.parametrize("form", ["module", "package", "link"])
def test_shadowed_sitecustomize_still_runs(
    script: Any, sink: Any, tmp_path: Path, form: str
) -> None:
    """The sitecustomize the drop-in shadows runs, a module or a package (Python's own path
    finder looks for it); the drop-in works reached through a link too."""
    other = tmp_path / "other"
    other.mkdir()
    code = "import os\nos.environ['OTHER_SITE_RAN'] = 'yes'\n"
    if form == "package":
        (other / "sitecustomize").mkdir()
        (other / "sitecustomize" / "__init__.py").write_text(code)
    else:
        (other / "sitecustomize.py").write_text(code)
    dropin = DROPIN
    if form == "link":
        dropin = tmp_path / "dropin-link"
        dropin.symlink_to(DROPIN, target_is_directory=True)
    path = script("import os\nprint('other ran:', os.environ.get('OTHER_SITE_RAN'))\n")
    env = sink.env()
    env["PYTHONPATH"] = os.pathsep.join([str(dropin), str(other)])
    for active in (True, False):
        run = run_python(path, env if active else {"PYTHONPATH": env["PYTHONPATH"]}, dropin=False)
        assert run.out == "other ran: yes\n"
    assert messages(sink.settle(1)) == ["other ran: yes"]


def test_the_inactive_dropin_loads_no_module_to_hand_over_to_a_later_sitecustomize(
    script: Any, tmp_path: Path
) -> None:
    """Debian's Python has a sitecustomize of its own: handing over to it loaded importlib.util
    (collections, functools, contextlib, warnings...: 17 modules, +35 % of a bare start) in every
    process, with vlhook off as on."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['OTHER_SITE_RAN'] = 'yes'\n")
    path = script("import os, sys\nprint(os.environ.get('OTHER_SITE_RAN'), sorted(sys.modules))\n")
    alone = run_python(path, {"PYTHONPATH": str(other)}, dropin=False)
    behind = run_python(path, {"PYTHONPATH": os.pathsep.join([str(DROPIN), str(other)])},
                        dropin=False)  # fmt: skip
    assert alone.out.startswith("yes ") and behind.out == alone.out


def test_bad_configuration_warns_once_and_program_is_unaffected(script: Any, sink: Any) -> None:
    path = script("print('fine')\n")
    run = run_python(
        path, sink.env(VICTORIALOGS_BATCH_LINES="lots", VICTORIALOGS_COMPRESSION="brotli")
    )
    assert run.rc == 0 and run.out == "fine\n"
    assert sorted(run.err.splitlines()) == [
        "vlhook: VICTORIALOGS_BATCH_LINES='lots' is not valid; using 1000",
        "vlhook: VICTORIALOGS_COMPRESSION='brotli' is not valid; using gzip",
    ]
    assert messages(sink.settle(1)) == ["fine"]


def test_bad_url_turns_shipping_off_with_one_warning(script: Any) -> None:
    path = script("import sys\nprint(type(sys.stdout).__name__)\n")
    run = run_python(path, {"VICTORIALOGS_URL": "ftp://user:hunter2@example/x"})
    assert run.rc == 0 and run.out == "TextIOWrapper\n"
    assert "shipping is off" in run.err and "hunter2" not in run.err
    assert len(run.err.splitlines()) == 2  # the URL's mistake, and that shipping is off


def test_a_mistyped_host_is_said_at_the_start_and_the_other_urls_ship(
    script: Any, sink: Any
) -> None:
    """An unclosed bracket used to be taken for the host `::1:9428` on port 80: no word at the
    start, and every batch tried there first, then a failed delivery at exit."""
    path = script("print('fine')\n")
    port = sink.url.rsplit(":", 1)[1]
    urls = f"http://user:hunter2@[::1:{port}, {sink.url}"
    run = run_python(path, sink.env(VICTORIALOGS_URL=urls, VICTORIALOGS_DEBUG="1"))
    assert run.rc == 0 and run.out == "fine\n"
    warnings = [line for line in run.err.splitlines() if "not a valid URL" in line]
    assert warnings == [
        f"vlhook: VICTORIALOGS_URL item 'http://***@[::1:{port}' is not a valid URL: the '[' "
        "before its IPv6 address is not closed; it is ignored"
    ]
    assert "hunter2" not in run.err and "cannot deliver" not in run.err
    assert messages(sink.settle(1)) == ["fine"]


def test_a_url_in_quotes_from_an_env_file_ships_saying_so(script: Any, sink: Any) -> None:
    """`docker run --env-file` passes `VICTORIALOGS_URL="http://..."` with its quotes: the
    program shipped nothing (shipping was off, for a URL with the scheme `"http`)."""
    run = run_python(script("print('fine')\n"), sink.env(VICTORIALOGS_URL=f'"{sink.url}"'))
    assert run.rc == 0 and run.out == "fine\n"
    assert run.err.splitlines() == [
        "vlhook: VICTORIALOGS_URL is in quotes, which are part of its value (as `docker run "
        "--env-file` passes them); using it without them"
    ]
    assert messages(sink.settle(1)) == ["fine"]


@pytest.mark.parametrize("path", ["/insert/jsonline", "/select/vmui/"])
def test_a_url_copied_from_the_servers_docs_or_web_ui_ships_to_that_server(
    script: Any, sink: Any, path: str
) -> None:
    """`/insert/jsonline` is added to the URL given: the endpoint's own URL sent every batch
    to `/insert/jsonline/insert/jsonline`, and the server refused (400) and dropped them."""
    run = run_python(script("print('fine')\n"), sink.env(VICTORIALOGS_URL=sink.url + path))
    assert run.rc == 0 and run.out == "fine\n"
    said = [] if path == "/insert/jsonline" else [
        f"vlhook: VICTORIALOGS_URL item '{sink.url}{path}' has the path of one of "
        f"VictoriaLogs' own endpoints; using {sink.url} (vlhook adds /insert/jsonline)"
    ]  # fmt: skip
    assert run.err.splitlines() == said
    assert messages(sink.settle(1)) == ["fine"]


def test_a_url_whose_path_is_wrong_keeps_the_lines_and_says_so(
    script: Any, sink: Any, tmp_path: Any
) -> None:
    """The server answers 400 "unsupported path requested" to a path it has not: a mistake of
    the URL's, and the lines were dropped as rejected. They are kept now, and the next run,
    its URL mended, delivers them."""
    said = "has no /insert/jsonline under the path VICTORIALOGS_URL gives"
    _kept_then_delivered(script, sink, tmp_path, sink.url + "/vlogs", said)


def _kept_then_delivered(script: Any, sink: Any, tmp_path: Any, url: str, said: str) -> None:
    """A run shipping to `url` keeps its line in the spool and says `said` (what to mend in
    the URL); the next run, shipping to the sink, delivers it with its own."""
    spool = str(tmp_path / "spool")
    run = run_python(script("print('kept')\n"), sink.env(
        VICTORIALOGS_URL=url, VICTORIALOGS_SPOOL_DIR=spool))  # fmt: skip
    assert run.rc == 0 and run.out == "kept\n"
    assert said in run.err, run.err
    assert "1 kept in the spool" in run.err and "dropped" not in run.err
    again = run_python(script("print('next')\n", name="next.py"),
                       sink.env(VICTORIALOGS_SPOOL_DIR=spool))  # fmt: skip
    assert again.err == ""
    assert sorted(messages(sink.settle(2))) == ["kept", "next"]


def test_a_url_that_answers_with_a_web_page_keeps_the_lines_and_says_so(
    script: Any, sink: Any, tmp_path: Any
) -> None:
    """A server that answers every request with 200 and a web page (a web app on the port
    VICTORIALOGS_URL names, a sign-in page in front) stored nothing: the lines were taken for
    delivered, and lost without a word. They are kept now, and the next run delivers them."""
    from fault_proxy import FaultProxy

    with FaultProxy(sink.url, ["page"] * 5) as proxy:
        said = "answered with a web page, not as VictoriaLogs does"
        _kept_then_delivered(script, sink, tmp_path, proxy.url, said)


@pytest.mark.parametrize(
    "header",
    ["Content-Encoding=br", "Transfer-Encoding=chunked",
     "Content-Type=application/x-www-form-urlencoded"],
)  # fmt: skip
def test_a_header_that_would_make_the_server_store_nothing_is_left_out_saying_so(
    script: Any, sink: Any, header: str
) -> None:
    """Each of these got 200 from the real server for every batch, and nothing was stored:
    the lines were lost without a word."""
    path = script("for i in range(50):\n    print(f'line {i}')\n")
    run = run_python(path, sink.env(VICTORIALOGS_HEADERS=f"{header},X-Team=shop"))
    assert run.rc == 0 and run.out == "".join(f"line {i}\n" for i in range(50))
    name = header.partition("=")[0]
    assert run.err.splitlines() == [
        f"vlhook: VICTORIALOGS_HEADERS: {name} is vlhook's to write (it frames every request: "
        "another value can make the server store nothing); left out, the other headers are "
        "sent"
    ]
    assert sorted(messages(sink.settle(50))) == sorted(f"line {i}" for i in range(50))


def test_fork_child_ships_its_own_lines_once(script: Any, sink: Any) -> None:
    path = script(
        "import os, sys\n"
        "print('parent before fork', flush=True)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    print('child line')\n"
        "    sys.exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print('parent after fork')\n"
    )
    # Fork right after the first write: the parent's sender thread is starting up then.
    run = run_python(path, sink.env())
    assert run.rc == 0 and run.stderr == b""
    rows = sink.settle(3)
    assert sorted(messages(rows)) == ["child line", "parent after fork", "parent before fork"]
    pids = {r["_msg"]: r["pid"] for r in rows}
    assert pids["child line"] != pids["parent after fork"] == pids["parent before fork"]


def test_multiprocessing_spawn_children_ship(script: Any, sink: Any) -> None:
    path = script(
        "import multiprocessing as mp\n"
        "def work(i):\n    print('worker', i)\n"
        "if __name__ == '__main__':\n"
        "    ctx = mp.get_context('spawn')\n"
        "    procs = [ctx.Process(target=work, args=(i,)) for i in range(3)]\n"
        "    [p.start() for p in procs]; [p.join() for p in procs]\n"
        "    print('main')\n"
    )
    run_python(path, sink.env())
    assert sorted(messages(sink.settle(4))) == ["main", "worker 0", "worker 1", "worker 2"]


@pytest.fixture(scope="module")
def installed_venv(vlhook_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (and the dev venv's orjson reused)."""
    return venv_with(tmp_path_factory.mktemp("venv"), vlhook_wheel)


def test_wheel_pth_activates_without_pythonpath(
    installed_venv: Path, script: Any, sink: Any
) -> None:
    site = Path(purelib(installed_venv))
    assert (site / "vlhook.pth").is_file()
    assert (site / "vlhook" / "_dropin" / "sitecustomize.py").is_file()
    path = script("import logging\nprint('from the venv')\nlogging.warning('warned')\n")
    as_without_vlhook(path, sink.env(), dropin=False, python=str(installed_venv))
    assert messages(sink.settle(2)) == ["from the venv", "warned"]


def test_wheel_pth_inactive_imports_nothing(installed_venv: Path, script: Any) -> None:
    path = script("import sys\nprint(sorted(m for m in sys.modules if 'vlhook' in m))\n")
    assert run_python(path, dropin=False, python=str(installed_venv)).out == "[]\n"


def test_run_with_shipping_off_warns_once_where_the_pth_and_the_dropin_both_activate(
    installed_venv: Path,
) -> None:
    """Under `vlhook run` the program's Python activates twice: the wheel's .pth, then the
    drop-in the command puts on PYTHONPATH. After a first activation that found shipping off
    the second warned again: the first had taken the command's note that it said them."""
    env = {**base_env(), "VICTORIALOGS_URL": "ftp://user:hunter2@example/x"}
    run = subprocess.run(
        [str(installed_venv), "-m", "vlhook", "run", str(installed_venv), "-c", "print(1)"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout == "1\n"
    lines = run.stderr.splitlines()
    assert len(lines) == 2 and "shipping is off" in lines[1], run.stderr


def test_installed_cli_path_points_into_the_package(installed_venv: Path) -> None:
    result = subprocess.run(
        [str(installed_venv), "-m", "vlhook", "path"],
        env=base_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0
    assert result.stdout.strip().endswith(os.path.join("vlhook", "_dropin"))


def _python39() -> str:
    import shutil

    for candidate in (
        shutil.which("python3.9"),
        *Path("/root/.pyenv/versions").glob("3.9*/bin/python3.9"),
    ):
        if (
            candidate
            and subprocess.run([str(candidate), "-c", "pass"], capture_output=True).returncode == 0
        ):
            return str(candidate)
    return ""


@pytest.mark.skipif(not _python39(), reason="no python3.9 on this machine")
def test_runs_on_python_39(script: Any, sink: Any) -> None:
    """The drop-in with no third-party package at all (stdlib json, http.client)."""
    path = script("import logging\nprint('old python')\nlogging.warning('w')\n")
    run = run_python(path, sink.env(), python=_python39())
    assert run.rc == 0, run.err
    assert messages(sink.settle(2)) == ["old python", "w"]
    assert sys.version_info >= (3, 9)
