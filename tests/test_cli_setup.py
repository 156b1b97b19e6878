"""The CLI around the setup: `--version`, the CLI in an environment where vlhook is active,
`vlhook run` with an interpreter that has no vlhook, invalid URLs, a shadowing sitecustomize,
and the start-up path kept apart from CLI code."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Optional

import pytest

import vlhook
from conftest import DROPIN, PYTHON, SRC, base_env, messages, purelib, run_python, venv_with

SECRET = "pw-hunter2"


def cli(*args: str, env: dict[str, str], python: str = PYTHON,
        cwd: Optional[str] = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    full = base_env()
    if python == PYTHON:
        full["PYTHONPATH"] = str(SRC)
    full.update(env)
    return subprocess.run([python, "-m", "vlhook", *args], env=full, capture_output=True,
                          text=True, timeout=60, cwd=cwd)  # fmt: skip


@pytest.fixture(scope="module")
def installed(vlhook_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel installed: its vlhook.pth activates vlhook in every interpreter."""
    return venv_with(tmp_path_factory.mktemp("venv"), vlhook_wheel)


def test_version() -> None:
    result = cli("--version", env={})
    assert (result.returncode, result.stdout) == (0, f"vlhook {vlhook.__version__}\n")


def test_console_script_entry_point_and_version_when_installed(installed: Path) -> None:
    code = (
        "import sys\n"
        "from importlib.metadata import entry_points\n"
        "found = entry_points()\n"  # Python 3.9: a dict of groups; later: selectable
        "group = found.select(group='console_scripts') if hasattr(found, 'select') else"
        " found['console_scripts']\n"
        "(script,) = [e for e in group if e.name == 'vlhook']\n"
        "sys.exit(script.load()(['--version']))\n"
    )
    result = subprocess.run(
        [str(installed), "-c", code], env=base_env(), capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout) == (0, f"vlhook {vlhook.__version__}\n")


def test_cli_in_an_active_environment_has_no_import_hook_error(
    installed: Path, receiver: Any
) -> None:
    """With the .pth active, the CLI process deactivates its own capture cleanly."""
    env = {"VICTORIALOGS_URL": receiver.url}
    for args in (["--version"], ["path"], ["check"], ["query", "*"], ["spool", "status"]):
        result = cli(*args, env=env, python=str(installed))
        assert "internal error" not in result.stderr + result.stdout, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
    assert cli("check", env=env, python=str(installed)).returncode == 0


def test_deactivated_capture_stays_off_when_logging_comes_later(script: Any, sink: Any) -> None:
    path = script(
        "import sys\n"
        "assert 'logging' not in sys.modules\n"
        "print('before')\n"
        "from vlhook._activation import deactivate\n"
        "deactivate()\n"
        "import logging\n"
        "logging.warning('after, logged')\n"
        "print('after, printed')\n"
    )
    run = run_python(path, sink.env())
    assert run.rc == 0 and run.out == "before\nafter, printed\n"
    assert messages(sink.settle(1, quiet=1.0)) == ["before"]


def _pyenv_python(version: str) -> str:
    for candidate in sorted(Path("/root/.pyenv/versions").glob(f"{version}.*/bin/python3")):
        if subprocess.run([str(candidate), "-c", "pass"], capture_output=True).returncode == 0:
            return str(candidate)
    return ""


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_run_works_with_an_interpreter_that_has_no_vlhook(
    version: str, installed: Path, script: Any, sink: Any, tmp_path: Path
) -> None:
    """`vlhook run` from an installed vlhook, with another Python's venv where vlhook is not
    installed: it ships, and only the vlhook package (not its site-packages) is reachable."""
    other = _pyenv_python(version)
    if not other:
        pytest.skip(f"no Python {version} under /root/.pyenv/versions")
    subprocess.run([other, "-m", "venv", "--without-pip", str(tmp_path / "other")], check=True)
    foreign = str(tmp_path / "other" / "bin" / "python")
    site = purelib(installed)
    path = script(
        "import logging, os, sys\n"
        f"print('on', sys.version_info[:2], {site!r} in map(os.path.abspath, sys.path))\n"
        "logging.warning('logged there')\n"
        "print(sys.modules['vlhook'].__file__)\n"
    )
    result = cli("run", "--", foreign, str(path), env=sink.env(), python=str(installed))
    major, minor = version.split(".")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"on ({major}, {minor}) False",
        os.path.join(site, "vlhook", "__init__.py"),
    ]
    assert result.stderr == "WARNING:root:logged there\n"
    assert sorted(messages(sink.settle(3))) == sorted([*result.stdout.splitlines(), "logged there"])


def test_run_hands_down_no_name_of_its_own(installed: Path, sink: Any) -> None:
    """The CLI process is active too (the .pth): the program name it would hand down to its
    children ("vlhook") is taken back, so a `python -c` it runs is named as without it."""
    code = "import os; print(os.environ.get('VICTORIALOGS_PARENT_PROGRAM'))"
    result = cli("run", "--", str(installed), "-c", code, env=sink.env(), python=str(installed))
    assert (result.returncode, result.stdout) == (0, "None\n"), result.stderr
    (row,) = sink.settle(1)
    assert (row["_msg"], row["job"]) == ("None", "python")


def test_invalid_url_is_called_invalid_with_the_reason(tmp_path: Path) -> None:
    url = f"http://reader:{SECRET}@victorialogs:94x28"
    check = cli("check", env={"VICTORIALOGS_URL": url})
    assert check.returncode == 2
    assert check.stdout.splitlines() == [
        "warning: VICTORIALOGS_URL item 'http://***@victorialogs:94x28' is not a valid URL: the "
        "port '94x28' is not a number from 1 to 65535; it is ignored",
        "warning: VICTORIALOGS_URL has no usable URL; shipping is off",
        "not active: VICTORIALOGS_URL is not valid (the warning above says why)",
    ]
    env = {"VICTORIALOGS_URL": "victorialogs:9428", "VICTORIALOGS_SPOOL_DIR": str(tmp_path)}
    replay = cli("spool", "replay", env=env)
    assert "it does not start with http://, https:// or file://" in replay.stdout
    assert "cannot replay: VICTORIALOGS_URL is not valid" in replay.stdout
    unset = cli("check", env={})
    assert "not active: VICTORIALOGS_URL is not set" in unset.stdout
    for result in (check, replay, unset):
        assert SECRET not in result.stdout + result.stderr


def _user_site(tmp_path: Path) -> Path:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "sitecustomize.py").write_text("import os\nos.environ['MINE_RAN'] = '1'\n")
    return mine


def test_check_and_run_warn_about_a_sitecustomize_before_the_dropin(
    script: Any, sink: Any, tmp_path: Path
) -> None:
    mine = _user_site(tmp_path)
    shadowed = {"PYTHONPATH": os.pathsep.join([str(mine), str(DROPIN), str(SRC)])}
    path = script(
        "import os, sys\nprint(os.environ.get('MINE_RAN'), hasattr(sys, '_vlhook_active'))\n"
    )
    # The situation warned about: the program runs, vlhook silently does not.
    silent = run_python(path, {**sink.env(), **shadowed}, dropin=False)
    assert silent.out == "1 False\n"
    warning = (
        f"{mine / 'sitecustomize.py'} comes before the vlhook drop-in on PYTHONPATH: Python runs "
        "only the first sitecustomize it finds, so vlhook stays inactive in programs started "
        "with this PYTHONPATH (put the drop-in first; `vlhook run` does)"
    )
    check = cli("check", env={**sink.env(), **shadowed})
    assert f"warning: {warning}" in check.stdout.splitlines()
    run = cli("run", "--", PYTHON, str(path), env={**sink.env(), **shadowed})
    assert run.stderr == (
        f"vlhook run: warning: {mine / 'sitecustomize.py'} comes before the vlhook drop-in on "
        "PYTHONPATH: Python runs only the first sitecustomize it finds, so vlhook stays "
        "inactive in programs started with that PYTHONPATH; this command is started with the "
        "drop-in first, which runs it after itself\n"
    )
    assert run.stdout == "1 True\n"  # under `vlhook run` both run: the drop-in chains the other
    assert messages(sink.settle(1)) == ["1 True"]
    fine = {"PYTHONPATH": os.pathsep.join([str(DROPIN), str(mine), str(SRC)])}
    assert "comes before" not in cli("check", env={**sink.env(), **fine}).stdout
    assert cli("run", "--", PYTHON, str(path), env={**sink.env(), **fine}).stderr == ""


def _a_bad_variable(sink: Any) -> tuple[str, dict[str, str], dict[str, str]]:
    """The warning a bad variable makes, the environment that has it, and the same with the
    drop-in first on PYTHONPATH (vlhook active in the CLI's own interpreter too)."""
    env = sink.env(VICTORIALOGS_BATCH_LINES="lots")
    dropin = {**env, "PYTHONPATH": os.pathsep.join([str(DROPIN), str(SRC)])}
    return "VICTORIALOGS_BATCH_LINES='lots' is not valid; using 1000", env, dropin


def test_check_shows_a_configuration_warning_once_in_an_active_process(
    installed: Path, sink: Any
) -> None:
    """`vlhook check` run where vlhook activates every interpreter (the drop-in first on
    PYTHONPATH, or the installed .pth): the process's own activation has shown the warning on
    stderr already, and the report does not repeat it. Where nothing activated, the report
    shows it."""
    warning, env, dropin = _a_bad_variable(sink)
    for result in (cli("check", env=dropin), cli("check", env=env, python=str(installed))):
        assert result.returncode == 0, result.stdout + result.stderr
        assert (result.stdout + result.stderr).count(warning) == 1, result.stdout + result.stderr
        assert result.stderr == f"vlhook: {warning}\n"
        assert result.stdout.splitlines()[-1] == "OK"
    inactive = cli("check", env=env)
    assert inactive.stderr == ""
    assert f"warning: {warning}" in inactive.stdout.splitlines()


def test_run_shows_a_configuration_warning_once_in_an_active_process(
    installed: Path, sink: Any
) -> None:
    """`vlhook run` where vlhook activates the command's own interpreter too: the command's
    activation said the warning, and the program it becomes (the same process, same stderr)
    does not say it again, nor sees the variable that told it so; a process the program
    starts is a program of its own, and says it."""
    warning, env, dropin = _a_bad_variable(sink)
    shown = "import os; print(sorted(k for k in os.environ if k.startswith('VICTORIALOGS_W')))"
    for python, given in ((PYTHON, dropin), (str(installed), env)):
        result = cli("run", "--", python, "-c", shown, env=given, python=python)
        assert (result.returncode, result.stdout) == (0, "[]\n"), result.stderr
        assert result.stderr == f"vlhook: {warning}\n"
    starts = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'pass'], check=True)"
    result = cli("run", "--", str(installed), "-c", starts, env=env, python=str(installed))
    assert (result.returncode, result.stderr.count(warning)) == (0, 2), result.stderr
    assert messages(sink.settle(2)) == ["[]", "[]"]


def test_start_up_path_never_loads_cli_code(script: Any, sink: Any) -> None:
    path = script(
        "import logging, sys, vlhook\n"
        "logging.warning('w')\n"
        "print('p')\n"
        "vlhook.flush(5)\n"
        "sys.stderr.write(' '.join(sorted(m for m in sys.modules if m.startswith('vlhook'))))\n"
    )
    loaded = run_python(path, sink.env()).err.splitlines()[-1].split()
    assert "vlhook._activation" in loaded and "vlhook._capture_logging" in loaded
    assert not [
        m for m in loaded if m.startswith("vlhook.cli") or m in ("vlhook._check", "vlhook._listen")
    ]


def test_an_interpreter_older_than_39_runs_unchanged_and_says_why(script: Any, sink: Any) -> None:
    old = _pyenv_python("3.8")
    if not old:
        pytest.skip("no Python 3.8 under /root/.pyenv/versions")
    path = script("print('still runs')\n")
    run = run_python(path, sink.env(), python=old)
    assert (run.rc, run.out) == (0, "still runs\n")
    assert run.err == "vlhook: needs Python 3.9 or later; not shipping\n"


def test_run_says_how_to_run_a_script_given_by_its_bare_name_or_without_a_shebang(
    tmp_path: Path,
) -> None:
    """`vlhook run app.py` looks `app.py` up on PATH, as `env` does; a script without `#!`
    cannot be executed: the status is `env`'s, the message says what would run it."""
    app = tmp_path / "app.py"
    app.write_text("print('hi')\n")
    app.chmod(0o755)
    env = {"VICTORIALOGS_URL": "http://127.0.0.1:9"}
    bare = cli("run", "app.py", env=env, cwd=str(tmp_path))
    assert bare.returncode == 127
    assert bare.stderr == ("vlhook run: cannot run 'app.py': No such file or directory (not on "
                           "PATH; the file here: `vlhook run ./app.py`, or `vlhook run python "
                           "app.py`)\n")  # fmt: skip
    unmarked = cli("run", "./app.py", env=env, cwd=str(tmp_path))
    assert unmarked.returncode == 126
    assert unmarked.stderr == ("vlhook run: cannot run './app.py': Exec format error (no #! line "
                               "to say what runs it: `vlhook run python ./app.py`)\n")  # fmt: skip


def test_run_exits_as_env_does_when_the_command_cannot_be_run(tmp_path: Path) -> None:
    """127 when the command is not found; 126 when it is found and cannot be run (not
    executable, a directory): what `env`, `nohup` and a shell answer."""
    unexecutable = tmp_path / "job.sh"
    unexecutable.write_text("#!/bin/sh\necho hi\n")
    unexecutable.chmod(0o644)
    for command, status in ((str(tmp_path / "missing"), 127), ("no-such-command-here", 127),
                            (str(unexecutable), 126), (str(tmp_path), 126)):  # fmt: skip
        result = cli("run", "--", command, env={"VICTORIALOGS_URL": "http://127.0.0.1:9"})
        as_env = subprocess.run(["env", command], capture_output=True, timeout=30)
        assert (result.returncode, as_env.returncode) == (status, status), command
        assert result.stderr.startswith(f"vlhook run: cannot run {command!r}: "), result.stderr


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (
            ["-I"],
            "`python -I` ignores PYTHONPATH, where the drop-in is: this program will not ship",
        ),
        (["-X", "dev", "-uE"], "`python -E` ignores PYTHONPATH"),
        (["-S"], "`python -S` loads no sitecustomize and no .pth file: this program will not ship"),
        (["-u"], ""),
    ],
)
def test_run_says_when_the_interpreters_options_keep_the_dropin_out(
    tmp_path: Path, sink: Any, options: list[str], said: str
) -> None:
    """`vlhook run python -I app.py` ran the program without shipping, and said nothing."""
    app = tmp_path / "app.py"
    app.write_text("print('hi')\n")
    result = cli("run", PYTHON, *options, str(app), env=sink.env())
    assert (result.returncode, result.stdout) == (0, "hi\n")
    assert (said in result.stderr) if said else result.stderr == "", result.stderr
    if not said:
        assert messages(sink.settle(1)) == ["hi"]
