"""uWSGI's hooks as vlhook sets them, on a stand-in for its `uwsgi` module (a real uWSGI runs in
tests/test_workers.py): the warning when its forks are unsafe, and the post-fork chain."""

from __future__ import annotations

import types
from typing import Any

import pytest

from vlhook import _capture_streams, _sync
from vlhook._integrations import uwsgi


def _module(**opt: Any) -> types.ModuleType:
    module = types.ModuleType("uwsgi")
    module.opt = opt  # type: ignore[attr-defined]
    module.numproc = int(opt.get("processes", b"1"))  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize(
    ("opt", "unsafe"),
    [
        ({"master": True, "processes": b"2"}, True),
        ({"master": True}, True),  # the master forks one worker
        ({"processes": b"4"}, True),  # the first worker forks the others
        ({}, False),  # one process, no fork
        ({"master": True, "processes": b"2", "py-call-uwsgi-fork-hooks": True}, False),
        ({"master": True, "processes": b"2", "lazy-apps": True}, False),
    ],
)
def test_unsafe_forks_are_told_apart(opt: dict[str, Any], unsafe: bool) -> None:
    assert uwsgi._forks_unsafely(_module(**opt)) is unsafe


def test_the_post_fork_hook_runs_vlhooks_steps_then_the_one_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(_sync, "in_forked_child", lambda: calls.append("vlhook"))
    uwsgi._after(lambda: calls.append("program"))()
    uwsgi._after(None)()
    assert calls == ["vlhook", "program", "vlhook"]


def test_uwsgidecorators_chain_gets_vlhooks_steps_first() -> None:
    decorators = types.ModuleType("uwsgidecorators")
    decorators.postfork_chain = [print]  # type: ignore[attr-defined]
    uwsgi._join_chain(decorators)
    assert decorators.postfork_chain == [_sync.in_forked_child, print]


def test_vlhooks_steps_run_once_in_each_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a fork through Python, uWSGI's hook (with --py-call-uwsgi-fork-hooks it runs too)
    finds them done."""
    calls: list[int] = []
    monkeypatch.setattr(_sync, "_child_steps", [lambda: calls.append(1)])
    monkeypatch.setattr(_sync, "_steps_ran_in", 0)
    _sync.in_forked_child()
    _sync.in_forked_child()
    assert calls == [1]


def test_only_streams_writing_to_the_processs_output_are_teed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uWSGI's replacement writes to fd 2; a stream the program put in place itself at that
    moment (a StringIO of redirect_stdout) is its own."""
    import io
    import os

    from vlhook._captures import STDERR, STDOUT

    with open(os.devnull, "w") as devnull, os.fdopen(os.dup(2), "w") as console:
        monkeypatch.setattr("sys.stdout", io.StringIO())
        monkeypatch.setattr("sys.stderr", devnull)
        on_fd_1_or_2 = _capture_streams._on_fd_1_or_2
        assert not on_fd_1_or_2(STDOUT) and not on_fd_1_or_2(STDERR)
        monkeypatch.setattr("sys.stderr", types.SimpleNamespace(fileno=lambda: 2))
        assert on_fd_1_or_2(STDERR)
        assert console.fileno() not in (1, 2)
