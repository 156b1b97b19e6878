"""The spool against another local user: `nobody` prepares each attack in a shared sticky
directory (TMPDIR of both users, like /tmp), then root runs a real program that ships to a real
VictoriaLogs, with its runtime and home directories unusable so that the spool is the
predictable `$TMPDIR/vlhook-spool-0`. Each time the program behaves as without vlhook, one
warning names the path and the reason, nothing of the attacker's is shipped, and every file
the attack involves is left exactly as it was. `vlhook spool` is run against the same places.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import PYTHON, SRC, base_env, messages, run_python
from local_users import NOBODY, Stand, as_nobody, make_stand, needs_second_user, snapshot

pytestmark = needs_second_user

PROGRAM = "import sys\nprint('victim output')\nsys.stderr.write('victim error\\n')\nsys.exit(3)\n"
OWN = ["victim error", "victim output"]
LINK = "it is a symbolic link, not a directory"


@pytest.fixture
def stand() -> Iterator[Stand]:
    yield from make_stand()


def _name(n: int) -> str:
    """A name as vlhook gives a batch of one entry, the n-th oldest."""
    return f"{n:020d}-1-0-1.jsonl"


def _entry(sink: Any, text: str) -> bytes:
    return json.dumps({"_msg": text, "test_id": sink.test_id}).encode() + b"\n"


def _env(stand: Stand, sink: Any, **extra: str) -> dict[str, str]:
    """Root's environment: no private runtime directory (the shared one is not private), no
    usable home: the default spool falls back to the shared TMPDIR."""
    env: dict[str, str] = sink.env(**extra)
    del env["VICTORIALOGS_SPOOL_DIR"]
    env.update(TMPDIR=str(stand.shared), XDG_RUNTIME_DIR=str(stand.shared),
               HOME=str(stand.top / "no-home"), XDG_CACHE_HOME="")  # fmt: skip
    return env


def _spool(stand: Stand) -> Path:
    return stand.shared / "vlhook-spool-0"


def _victim(script: Any, stand: Stand, sink: Any, *, shipped: tuple[str, ...] = ()) -> list[str]:
    """Root runs the program: same output and exit code as without vlhook, its own lines and
    `shipped` (and nothing else) stored. Returns vlhook's warnings."""
    path = script(PROGRAM)
    plain = run_python(path, {}, dropin=False)
    run = run_python(path, _env(stand, sink))
    assert (run.rc, run.stdout) == (plain.rc, plain.stdout) == (3, b"victim output\n")
    lines = run.err.splitlines()
    assert [line for line in lines if not line.startswith("vlhook: ")] == plain.err.splitlines()
    assert sorted(messages(sink.settle(len(OWN) + len(shipped)))) == sorted([*OWN, *shipped])
    return [line for line in lines if line.startswith("vlhook: ")]


def _refused(spool: Path, reason: str) -> str:
    return (f"vlhook: spool directory {spool} not used: {reason}; running without a spool "
            "(undeliverable entries are dropped and counted)")  # fmt: skip


def _cli(stand: Stand, sink: Any, action: str) -> subprocess.CompletedProcess[str]:
    env = base_env()
    env.update(_env(stand, sink), PYTHONPATH=str(SRC))
    return subprocess.run([PYTHON, "-m", "vlhook", "spool", action], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def _cli_refuses(stand: Stand, sink: Any, reason: str) -> None:
    """status, replay and purge refuse the directory, say why, and fail; replay sends
    nothing."""
    spool = _spool(stand)
    for action in ("status", "replay", "purge"):
        result = _cli(stand, sink, action)
        assert result.returncode == 1, result
        assert result.stdout == (f"spool {spool} refused: {reason}; nothing in it is read, "
                                 "sent or removed\n")  # fmt: skip
    assert sorted(messages(sink.settle(len(OWN)))) == OWN


@pytest.mark.parametrize("mode", [0o755, 0o700])
def test_a_link_at_the_spool_path_to_a_directory_of_roots(
    mode: int, script: Any, stand: Stand, sink: Any
) -> None:
    """The link is not followed: root's directory keeps its mode and files, and gets no new
    one; nothing in it is shipped or deleted."""
    stand.root_only(_name(1), _entry(sink, "root's own file"))
    stand.root_only(_name(2) + ".captures", _entry(sink, "root's other file"))
    stand.private.chmod(mode)
    spool = _spool(stand)
    as_nobody("ln", "-s", str(stand.private), str(spool))
    before = snapshot(stand.top)
    assert _victim(script, stand, sink) == [_refused(spool, LINK)]
    _cli_refuses(stand, sink, LINK)
    assert snapshot(stand.top) == before


def test_a_dangling_link_at_the_spool_path_creates_nothing(
    script: Any, stand: Stand, sink: Any
) -> None:
    spool, target = _spool(stand), stand.private / "made-by-vlhook"
    as_nobody("ln", "-s", str(target), str(spool))
    before = snapshot(stand.top)
    assert _victim(script, stand, sink) == [_refused(spool, LINK)]
    _cli_refuses(stand, sink, LINK)
    assert not target.exists() and snapshot(stand.top) == before


def test_b_spool_directory_made_first_by_another_user(script: Any, stand: Stand, sink: Any) -> None:
    """nobody makes the directory (0777) with a forged batch and a link to a root-only file:
    the directory is refused, neither is shipped, nothing in it changes."""
    secret = stand.root_only("secret.jsonl", _entry(sink, "root-only secret"))
    spool = _spool(stand)
    as_nobody("sh", "-c", 'umask 0 && mkdir -m 0777 "$1" && cat > "$1/1.jsonl" && '
              'ln -s "$2" "$1/2.jsonl"', "-", str(spool), str(secret),
              stdin=_entry(sink, "forged by nobody"))  # fmt: skip
    before = snapshot(stand.top)
    assert NOBODY is not None
    reason = f"it belongs to uid {NOBODY.pw_uid}, not to this user (uid 0)"
    assert _victim(script, stand, sink) == [_refused(spool, reason)]
    _cli_refuses(stand, sink, reason)
    assert snapshot(stand.top) == before


def _planted(stand: Stand, sink: Any) -> dict[str, str]:
    """Root's own spool directory holding what is not a batch of root's: a link to a root-only
    file, a named pipe, a file of nobody's and a second name of a root-only file. Returns
    each name with the reason it is left alone."""
    spool = _spool(stand)
    spool.mkdir(mode=0o700)
    secret = stand.root_only("secret.jsonl", _entry(sink, "root-only secret"))
    (spool / _name(2)).symlink_to(secret)
    os.mkfifo(spool / _name(3))
    (spool / _name(4)).write_bytes(_entry(sink, "forged by nobody"))
    assert NOBODY is not None
    os.chown(spool / _name(4), NOBODY.pw_uid, NOBODY.pw_gid)
    os.link(stand.root_only("other-secret", _entry(sink, "another root-only secret")),
            spool / _name(5))  # fmt: skip
    return {
        _name(2): "it is a symbolic link, not a regular file",
        _name(3): "it is a named pipe, not a regular file",
        _name(4): f"it belongs to uid {NOBODY.pw_uid}, not to this user (uid 0)",
        _name(5): "it has 2 hard links",
    }


def _without(found: dict[str, Any], spool: Path, name: str = "") -> dict[str, Any]:
    """A snapshot without the spool directory's own entry (its time changes with every file
    vlhook writes or removes) and without `name` in it."""
    return {k: v for k, v in found.items() if k not in (str(spool), str(spool / name))}


def _left_alone(spool: Path, reasons: dict[str, str]) -> list[str]:
    return sorted(f"vlhook: spool file {spool / name} left alone: {why}"
                  for name, why in reasons.items())  # fmt: skip


def test_c_files_not_roots_in_roots_own_spool(script: Any, stand: Stand, sink: Any) -> None:
    """Replay sends root's own batch and leaves the rest alone, each reported once."""
    spool = _spool(stand)
    reasons = _planted(stand, sink)
    (spool / _name(1)).write_bytes(_entry(sink, "spooled by root"))
    before = _without(snapshot(stand.top), spool, _name(1))
    warnings = _victim(script, stand, sink, shipped=("spooled by root",))
    assert sorted(warnings) == _left_alone(spool, reasons)
    assert not (spool / _name(1)).exists()  # replayed, then removed
    assert _without(snapshot(stand.top), spool) == before


def test_c_size_cap_and_vlhook_spool_leave_them_alone(stand: Stand, sink: Any, script: Any) -> None:
    """Eviction by the size cap, `vlhook spool status`, `replay` and `purge` take root's own
    batches only, and say what they left alone."""
    spool = _spool(stand)
    reasons = _planted(stand, sink)
    before = _without(snapshot(stand.top), spool)
    (spool / _name(1)).write_bytes(_entry(sink, "evicted"))
    dead = {"VICTORIALOGS_URL": "http://127.0.0.1:1", "VICTORIALOGS_SPOOL_MAX_BYTES": "100",
            "VICTORIALOGS_EXIT_TIMEOUT_MS": "300"}  # fmt: skip
    capped = run_python(script(PROGRAM), {**_env(stand, sink), **dead})
    assert capped.rc == 3 and "the spool is full" in capped.err
    assert not (spool / _name(1)).exists()
    summary = (f"left alone: {len(reasons)} files that are not this user's own regular files "
               "(each named in a warning)\n")  # fmt: skip
    (spool / _name(1)).write_bytes(_entry(sink, "replayed by vlhook spool replay"))
    replay = _cli(stand, sink, "replay")
    assert replay.returncode == 1
    assert replay.stdout == f"replayed 1 entries; 0 files left in {spool}\n{summary}"
    assert sorted(replay.stderr.splitlines()) == _left_alone(spool, reasons)
    (spool / _name(1)).write_bytes(_entry(sink, "purged"))
    purge = _cli(stand, sink, "purge")
    assert (purge.returncode, purge.stdout) == (1, f"removed 1 files from {spool}\n{summary}")
    status = _cli(stand, sink, "status")
    assert (status.returncode, status.stdout) == (1, f"spool {spool}: 0 files, 0 bytes\n{summary}")
    assert _without(snapshot(stand.top), spool) == before
    assert messages(sink.settle(1)) == ["replayed by vlhook spool replay"]


def test_d_progress_file_and_stale_temporary_file_that_are_links(
    script: Any, stand: Stand, sink: Any
) -> None:
    """Neither link is followed, replaced or removed; the batch whose progress file is a
    link is left alone too (its progress cannot be known)."""
    spool = _spool(stand)
    spool.mkdir(mode=0o700)
    progress = stand.root_only("progress", b"10")
    (spool / _name(1)).write_bytes(_entry(sink, "batch with a foreign progress file"))
    (spool / f"{_name(1)}.sent").symlink_to(progress)
    temp = spool / f".tmp-{_name(2)}"
    temp.symlink_to(stand.root_only("temp-target", b"root's"))
    hours_ago = time.time() - 7200  # older than any write in progress: stale, were it ours
    os.utime(temp, (hours_ago, hours_ago), follow_symlinks=False)
    before = snapshot(stand.top)
    warnings = _victim(script, stand, sink)
    assert sorted(warnings) == _left_alone(spool, {
        _name(1): f"its progress file {_name(1)}.sent is not ours (it is a symbolic link, not "
                  "a regular file)",
        f".tmp-{_name(2)}": "it is a symbolic link, not a regular file",
    })  # fmt: skip
    for action in ("status", "replay", "purge"):
        assert _cli(stand, sink, action).returncode == 1
    assert snapshot(stand.top) == before
    assert sorted(messages(sink.settle(len(OWN)))) == OWN


# -- a file:// output in a shared directory -------------------------------------------------------


@pytest.mark.parametrize("planted", ["link", "file"])
def test_e_file_output_planted_by_another_user_gets_nothing(
    planted: str, script: Any, stand: Stand, sink: Any
) -> None:
    """nobody puts a link to a root-only file, or a file of theirs anyone may write, where
    root's `file://` output goes: neither is written to (the victim file keeps its content,
    nobody reads nothing), and root's lines are kept in root's spool."""
    victim = stand.root_only("victim.jsonl", b"root's own\n")
    out = stand.shared / "out.jsonl"
    if planted == "link":
        as_nobody("ln", "-s", str(victim), str(out))
    else:
        as_nobody("sh", "-c", 'umask 0 && : > "$1"', "-", str(out))
    spool = stand.private / "spool"
    env = sink.env(VICTORIALOGS_URL=f"file://{out}", VICTORIALOGS_SPOOL_DIR=str(spool),
                   VICTORIALOGS_EXIT_TIMEOUT_MS="1000")  # fmt: skip
    run = run_python(script(PROGRAM), env)
    assert (run.rc, run.out) == (3, "victim output\n")
    assert victim.read_bytes() == b"root's own\n"
    if planted == "file":
        assert out.read_bytes() == b"" and "another user's file" in run.err, run.err
    kept = b"".join(path.read_bytes() for path in spool.glob("*.jsonl"))
    assert b"victim output" in kept and b"victim error" in kept
