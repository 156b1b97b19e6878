"""Where the spool is by default, and how its directory is made: real processes. The first
private place of the user wins — `$XDG_RUNTIME_DIR/vlhook/spool`, then a cache directory in the
home, then `$TMPDIR/vlhook-spool-<uid>` — the same every run; vlhook makes the directory and
its missing parents 0700 whatever the umask, and never changes the mode of one it finds."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import DROPIN, PYTHON, SRC, base_env, messages, run_python
from local_users import (
    NOBODY,
    Stand,
    as_nobody,
    make_stand,
    needs_second_user,
    nobody_runs_python,
    snapshot,
)


@pytest.fixture
def stand() -> Iterator[Stand]:
    yield from make_stand()


def _mkdir(path: Path, mode: int) -> Path:
    path.mkdir()
    path.chmod(mode)
    return path


def _env(stand: Stand, **chosen: str) -> dict[str, str]:
    """An environment where only what `chosen` sets can be used: the shared TMPDIR last."""
    env = {"TMPDIR": str(stand.shared), "XDG_RUNTIME_DIR": "", "XDG_CACHE_HOME": "",
           "HOME": str(stand.top / "no-home")}  # fmt: skip
    env.update(chosen)
    return env


def _where(env: dict[str, str]) -> str:
    """The spool `vlhook spool status` looks at (it creates nothing)."""
    full = base_env()
    full.update(env, PYTHONPATH=str(SRC))
    result = subprocess.run([PYTHON, "-m", "vlhook", "spool", "status"], env=full,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result
    assert result.stdout.endswith(": no files (the directory does not exist yet)\n"), result
    return result.stdout.split(": ")[0].removeprefix("spool ")


def _uid() -> int:
    return os.geteuid()


def test_runtime_directory_first(stand: Stand) -> None:
    runtime = _mkdir(stand.top / "run", 0o700)
    home = _mkdir(stand.top / "home", 0o755)
    assert _where(_env(stand, XDG_RUNTIME_DIR=str(runtime), HOME=str(home))) == str(
        runtime / "vlhook" / "spool"
    )


@pytest.mark.parametrize("problem", ["mode 0755", "a link", "relative", "missing"])
def test_runtime_directory_not_private_falls_back_to_the_home(problem: str, stand: Stand) -> None:
    real = _mkdir(stand.top / "run", 0o755 if problem == "mode 0755" else 0o700)
    runtime = {"mode 0755": real, "a link": stand.top / "run-link", "relative": Path("run"),
               "missing": stand.top / "gone"}[problem]  # fmt: skip
    if problem == "a link":
        runtime.symlink_to(real)
    home = _mkdir(stand.top / "home", 0o755)
    where = _where(_env(stand, XDG_RUNTIME_DIR=str(runtime), HOME=str(home)))
    assert where == str(home / ".cache" / "vlhook" / "spool")


@needs_second_user
def test_runtime_directory_of_another_user_is_not_used(stand: Stand) -> None:
    runtime = _mkdir(stand.top / "run", 0o700)
    assert NOBODY is not None
    os.chown(runtime, NOBODY.pw_uid, NOBODY.pw_gid)
    where = _where(_env(stand, XDG_RUNTIME_DIR=str(runtime)))
    assert where == str(stand.shared / f"vlhook-spool-{_uid()}")


def test_cache_directory_named_by_xdg_cache_home(stand: Stand) -> None:
    home = _mkdir(stand.top / "home", 0o700)
    cache = stand.top / "cache"
    env = _env(stand, HOME=str(home), XDG_CACHE_HOME=str(cache))
    assert _where(env) == str(cache / "vlhook" / "spool")


@pytest.mark.parametrize("problem", ["missing", "writable by others", "of another user"])
def test_home_not_usable_falls_back_to_the_temporary_directory(problem: str, stand: Stand) -> None:
    home = stand.top / "home"
    if problem != "missing":
        _mkdir(home, 0o1777 if problem == "writable by others" else 0o755)
    if problem == "of another user":
        if NOBODY is None:
            pytest.skip("needs another user")
        os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    assert _where(_env(stand, HOME=str(home))) == str(stand.shared / f"vlhook-spool-{_uid()}")


@needs_second_user
def test_each_user_has_its_own_place(stand: Stand) -> None:
    """nobody, whose home does not exist, and root's home is not nobody's."""
    env = base_env()
    env.update(_env(stand, HOME=str(stand.private)), PYTHONPATH=str(SRC))
    if not nobody_runs_python(env):
        pytest.skip("nobody cannot run this interpreter or read this checkout")
    out = as_nobody(PYTHON, "-m", "vlhook", "spool", "status", env=env).stdout.decode()
    assert NOBODY is not None
    assert out.startswith(f"spool {stand.shared / f'vlhook-spool-{NOBODY.pw_uid}'}: no files")


def test_the_next_run_finds_what_a_run_spooled(stand: Stand, script: Any, sink: Any) -> None:
    """The place is chosen the same way every run: what a run could not deliver is replayed
    by the next one. The directory and the parents vlhook made are 0700, even under umask 0;
    the home it found keeps its mode."""
    home = _mkdir(stand.top / "home", 0o755)
    env = {**sink.env(), **_env(stand, HOME=str(home))}
    del env["VICTORIALOGS_SPOOL_DIR"]
    spool = home / ".cache" / "vlhook" / "spool"
    dead = {"VICTORIALOGS_URL": "http://127.0.0.1:1", "VICTORIALOGS_EXIT_TIMEOUT_MS": "300"}
    full = {**base_env(), **env, **dead, "PYTHONPATH": str(DROPIN)}
    first = subprocess.run([PYTHON, str(script("print('kept for the next run')\n"))], env=full,
                           umask=0, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert f"kept in the spool {spool}" in first.stderr, first.stderr
    made = (home, home / ".cache", spool.parent, spool)
    assert [stat.S_IMODE(path.stat().st_mode) for path in made] == [0o755, 0o700, 0o700, 0o700]
    second = run_python(script("print('next run')\n", name="next.py"), env)
    assert second.err == ""
    assert sorted(messages(sink.settle(2))) == ["kept for the next run", "next run"]
    assert list(spool.iterdir()) == []


REFUSED = {
    "mode 0755": "other users can use it (mode 0755, not 0700)",
    "a link to a private directory": "it is a symbolic link, not a directory",
    "a file": "it is a regular file, not a directory",
    "below a file": "cannot open its parent directory: Not a directory",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_spool_dir_given_is_checked_the_same_way(
    case: str, stand: Stand, script: Any, sink: Any
) -> None:
    """VICTORIALOGS_SPOOL_DIR set by the user: refused for the same reasons, with one warning,
    and left as it was; the program's lines are shipped all the same."""
    private = _mkdir(stand.top / "private-spool", 0o700)
    given = {"mode 0755": private, "a link to a private directory": stand.top / "link",
             "a file": stand.top / "file",
             "below a file": stand.top / "file" / "spool"}[case]  # fmt: skip
    if case == "mode 0755":
        private.chmod(0o755)
    elif case == "a link to a private directory":
        given.symlink_to(private)
    else:
        (stand.top / "file").write_text("not a directory\n")
    before = snapshot(stand.top)
    run = run_python(
        script("print('shipped anyway')\n"), sink.env(VICTORIALOGS_SPOOL_DIR=str(given))
    )
    assert run.err.splitlines() == [
        f"vlhook: spool directory {given} not used: {REFUSED[case]}; running without a spool "
        "(undeliverable entries are dropped and counted)"
    ]
    assert messages(sink.settle(1)) == ["shipped anyway"]
    assert snapshot(stand.top) == before


def test_a_relative_spool_dir_is_where_the_program_started(script: Any, sink: Any) -> None:
    """`VICTORIALOGS_SPOOL_DIR=spool` is the directory the process started in, whatever it
    changes to later: it used to follow the program's `os.chdir()`, and the next run, started
    where this one was, never found what it kept."""
    first = script("import os\nprint('before')\nos.mkdir('elsewhere')\nos.chdir('elsewhere')\n"
                   "print('after')\n")  # fmt: skip
    start = first.parent
    dead = {
        "VICTORIALOGS_URL": "http://127.0.0.1:1",
        "VICTORIALOGS_EXIT_TIMEOUT_MS": "300",
        "VICTORIALOGS_SPOOL_DIR": "spool",
        "VICTORIALOGS_FIELDS": f"test_id={sink.test_id}",
    }
    run = run_python(first, dead)
    assert run.out == "before\nafter\n"
    assert f"2 kept in the spool {start / 'spool'} (sent by the next run)" in run.err, run.err
    assert not (start / "elsewhere" / "spool").exists()
    second = run_python(script("print('next run')\n", name="next.py"),
                        sink.env(VICTORIALOGS_SPOOL_DIR="spool"))  # fmt: skip
    assert second.err == ""
    assert sorted(messages(sink.settle(3))) == ["after", "before", "next run"]
