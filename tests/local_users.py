"""A second local user for the tests: `nobody`, played with setpriv by a suite that runs as root
(here and in CI), and a shared sticky directory, like /tmp, where the two users meet."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest


def _nobody() -> tuple[Optional[pwd.struct_passwd], str]:
    if os.geteuid() != 0:
        return None, "playing a second local user needs root (the suite runs as root in CI)"
    if shutil.which("setpriv") is None:
        return None, "playing a second local user needs setpriv (util-linux)"
    try:
        return pwd.getpwnam("nobody"), ""
    except KeyError:
        return None, "playing a second local user needs the user nobody"


NOBODY, WHY_NOT = _nobody()
needs_second_user = pytest.mark.skipif(NOBODY is None, reason=WHY_NOT)


def as_nobody(
    *command: str, stdin: bytes = b"", env: Optional[dict[str, str]] = None
) -> subprocess.CompletedProcess[bytes]:
    """Run `command` as nobody (its own uid and group, no other groups); it must succeed."""
    assert NOBODY is not None
    ids = [f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}", "--clear-groups"]
    return subprocess.run(["setpriv", *ids, *command], input=stdin, env=env,
                          capture_output=True, check=True, timeout=60)  # fmt: skip


def nobody_runs_python(env: dict[str, str]) -> bool:
    """Whether nobody can run this interpreter on this checkout (they may sit in a directory
    closed to other users)."""
    try:
        as_nobody(sys.executable, "-c", "import vlhook", env=env)
    except subprocess.CalledProcessError:
        return False
    return True


class Stand:
    """Where the attacks happen: `shared` (mode 1777) is both users' TMPDIR; `private` is a
    directory of root's (0700) with root-only files, what an attacker wants to reach."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.shared = top / "shared"
        self.shared.mkdir()
        self.shared.chmod(0o1777)
        self.private = top / "private"
        self.private.mkdir()
        self.private.chmod(0o700)

    def root_only(self, name: str, content: bytes, folder: Optional[Path] = None) -> Path:
        path = (folder or self.private) / name
        path.write_bytes(content)
        path.chmod(0o600)
        return path


def make_stand() -> Iterator[Stand]:
    """A Stand, removed afterwards (a fixture's body). Not under pytest's tmp_path: its
    parents are closed to other users."""
    top = Path(tempfile.mkdtemp(prefix="vlhook-users-"))
    top.chmod(0o755)
    try:
        yield Stand(top)
    finally:
        shutil.rmtree(top)


def snapshot(top: Path) -> dict[str, tuple[object, ...]]:
    """Everything vlhook must leave as it was, under `top` (links not followed): each entry's
    type, mode, owner, modification time and content (a link's target)."""
    found: dict[str, tuple[object, ...]] = {}
    pending = [top]
    for _ in range(10_000):
        if not pending:
            return found
        path = pending.pop()
        info = path.lstat()
        content: object = None
        if stat.S_ISLNK(info.st_mode):
            content = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            content = path.read_bytes()
        elif stat.S_ISDIR(info.st_mode):
            pending.extend(path.iterdir())
        found[str(path)] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid,
                            info.st_gid, info.st_mtime_ns, content)  # fmt: skip
    raise AssertionError(f"too many files under {top}")
