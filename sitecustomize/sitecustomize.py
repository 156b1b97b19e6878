"""vlhook drop-in: `PYTHONPATH=<this directory> python any_script.py`.

Active only when VICTORIALOGS_URL is set (and VICTORIALOGS_DISABLE is not); otherwise it imports
nothing. Then it runs the `sitecustomize` this file shadows, if there is one further down the path.
"""

import os
import sys


def _vlhook_activate() -> None:
    env = os.environ
    if not env.get("VICTORIALOGS_URL", "").strip():
        return
    if env.get("VICTORIALOGS_DISABLE", "").strip().lower() in ("1", "true", "yes", "on"):
        return
    if sys.version_info < (3, 9):  # noqa: UP036 - `vlhook run` may start any interpreter
        sys.stderr.write("vlhook: needs Python 3.9 or later; not shipping\n")
        return
    if "vlhook" not in sys.modules:  # else the installed .pth has loaded it already
        _vlhook_locate()
    try:
        from vlhook._activation import activate
    except ImportError:
        sys.stderr.write("vlhook: the vlhook package is not importable; not shipping\n")
        return
    activate("sitecustomize")


def _vlhook_locate() -> None:
    """Find the vlhook package this drop-in belongs to, whatever the interpreter, without
    putting any other package on its path."""
    # The real place: a drop-in reached through a link finds its package where it is.
    parent = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    if os.path.basename(parent) == "vlhook":  # the wheel's copy: <site-packages>/vlhook/_dropin
        # Load that one package by location: its site-packages may hold packages built for
        # another Python.
        import importlib.util

        init = os.path.join(parent, "__init__.py")
        spec = importlib.util.spec_from_file_location(
            "vlhook", init, submodule_search_locations=[parent]
        )
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            sys.modules["vlhook"] = module
            spec.loader.exec_module(module)
        return
    # A source checkout: the package sits alone in ../src. One stat instead of a failed import
    # that would search the whole path first.
    src = os.path.join(parent, "src")
    if os.path.isdir(os.path.join(src, "vlhook")) and src not in sys.path:
        sys.path.append(src)


def _vlhook_chain() -> None:
    """Run the `sitecustomize` Python would have run had this one not come first on sys.path
    (Debian's, a venv's...): a module, a package or a compiled one, found by Python's own
    path finder in the entries after this one."""
    here = os.path.dirname(os.path.abspath(__file__))
    later = None
    for index, entry in enumerate(sys.path):
        if os.path.abspath(entry or os.curdir) == here:
            later = sys.path[index + 1 :]
            break
    finder = next((f for f in sys.meta_path if getattr(f, "__name__", "") == "PathFinder"), None)
    spec = finder.find_spec("sitecustomize", later) if later and finder is not None else None
    if spec is None or spec.loader is None:
        return
    # The import system's own, loaded already: importlib.util would load 17 modules (+35 % of
    # a bare start) in every process, vlhook off as on.
    bootstrap = sys.modules.get("_frozen_importlib")
    module_from_spec = getattr(bootstrap, "module_from_spec", None)
    if module_from_spec is None:
        import importlib.util

        module_from_spec = importlib.util.module_from_spec
    module = module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_vlhook_activate()
_vlhook_chain()
