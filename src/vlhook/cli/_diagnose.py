"""Plain reasons for a setup that does not ship: shared by `run`, `check`, `tail` and `query`."""

from __future__ import annotations

import os
from collections.abc import Mapping

from vlhook._config import TRUE

DROPIN_MARK = b"vlhook drop-in"


def why_inactive(environ: Mapping[str, str]) -> str:
    """Why the configuration in `environ` ships nothing (its warnings give the details)."""
    if not environ.get("VICTORIALOGS_URL", "").strip():
        return "VICTORIALOGS_URL is not set"
    disable = environ.get("VICTORIALOGS_DISABLE", "").strip()
    if disable.lower() in TRUE:
        return f"VICTORIALOGS_DISABLE={disable} turns vlhook off"
    return "VICTORIALOGS_URL is not valid (the warning above says why)"


def _sitecustomize_in(folder: str) -> str:
    for name in ("sitecustomize.py", os.path.join("sitecustomize", "__init__.py")):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return ""


def _is_dropin(path: str) -> bool:
    try:
        with open(path, "rb") as file:
            return DROPIN_MARK in file.read(200)
    except OSError:
        return False


def shadowing_sitecustomize(pythonpath: str) -> list[str]:
    """The sitecustomize files on `pythonpath` before a vlhook drop-in: Python imports only the
    first one it finds, so the drop-in after them never runs."""
    found: list[str] = []
    for folder in filter(None, pythonpath.split(os.pathsep)):
        path = _sitecustomize_in(os.path.abspath(folder))
        if not path:
            continue
        if _is_dropin(path):
            return found
        found.append(path)
    return []


def shadowing_warnings(pythonpath: str, running: bool = False) -> list[str]:
    """What to say of the sitecustomize files before the drop-in; `running`: said by `vlhook
    run`, whose command gets the drop-in first (it runs them after itself), so that only other
    programs started with that PYTHONPATH are left without vlhook (a launcher that puts its
    own first, `ddtrace-run`, started before `vlhook run`: the order that works)."""
    if running:
        return [
            f"{path} comes before the vlhook drop-in on PYTHONPATH: Python runs only the first "
            "sitecustomize it finds, so vlhook stays inactive in programs started with that "
            "PYTHONPATH; this command is started with the drop-in first, which runs it after "
            "itself"
            for path in shadowing_sitecustomize(pythonpath)
        ]
    return [
        f"{path} comes before the vlhook drop-in on PYTHONPATH: Python runs only the first "
        "sitecustomize it finds, so vlhook stays inactive in programs started with this "
        "PYTHONPATH (put the drop-in first; `vlhook run` does)"
        for path in shadowing_sitecustomize(pythonpath)
    ]
