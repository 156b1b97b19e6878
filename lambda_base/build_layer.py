"""Build the AWS Lambda layer: dist/vlhook-layer-<version>.zip.

Layout (unpacked by Lambda under /opt):
  python/vlhook/...        the package (with the drop-in in vlhook/_dropin)
  python/vlhook.pth        activates vlhook when the runtime adds /opt/python with site.addsitedir
  python/orjson/...        the encoder, built for the target Python and architecture
  vlhook-wrapper           for AWS_LAMBDA_EXEC_WRAPPER, when the function sets PYTHONPATH (the
                           managed runtime then skips /opt/python, and with it the .pth)

Every module comes compiled for the layer's Python (python/**/__pycache__, hash-based pycs):
Lambda's /opt is read-only, so without them the interpreter compiles vlhook's modules again at
every cold start (a one-line script measured 218 against 53 ms). The pycs are made by an
interpreter of that version: this one, `pythonX.Y` on PATH, or `--python`.

Usage: python lambda_base/build_layer.py [--python-version 3.12] [--arch x86_64|arm64] [--local]
                                         [--python PATH]
`--local` builds for this interpreter's own platform (what the tests unpack and run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
THIS_PYTHON = "{}.{}".format(*sys.version_info[:2])
WRAPPER = """#!/bin/sh
# AWS_LAMBDA_EXEC_WRAPPER=/opt/vlhook-wrapper: puts vlhook's drop-in first on PYTHONPATH, so
# it activates even when the function sets PYTHONPATH (the runtime then ignores /opt/python).
layer=$(dirname "$0")
export PYTHONPATH="$layer/python/vlhook/_dropin:$layer/python${PYTHONPATH:+:$PYTHONPATH}"
exec "$@"
"""


def version() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    raise SystemExit("no version in pyproject.toml")


def pip(*args: str) -> None:
    # --no-compile: pip's pycs would be this interpreter's, checked against the sources' times,
    # which the zip does not keep; compile_for makes the layer's own.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-compile", *args],
                   check=True)  # fmt: skip


def interpreter_for(python_version: str, given: Optional[str]) -> Optional[str]:
    """An interpreter of the layer's Python version, to compile its modules; None if none."""
    if given:
        return given
    if python_version == THIS_PYTHON:
        return sys.executable
    return shutil.which(f"python{python_version}")


def compile_for(site: Path, python_version: str, python: Optional[str]) -> bool:
    """Compile every module under site/ for the layer's Python, as unchecked hash-based pycs:
    a layer never changes once published, so nothing is gained by reading and hashing each
    source again at every cold start (checked: ~0.8 ms more for a one-line script). The
    tracebacks' file names are those of the layer under /opt. False, with a warning, when no
    interpreter of that version can be run: the layer then works, compiling at every start."""
    found = _version_of(python) if python else "none found"
    if found != python_version:
        print(f"build_layer: no Python {python_version} to compile the layer's modules with "
              f"({python or 'pythonX.Y on PATH'}: {found}); the layer carries no bytecode, so "
              f"every cold start compiles vlhook again. Pass --python <a {python_version} "
              "interpreter>", file=sys.stderr)  # fmt: skip
        return False
    assert python is not None
    subprocess.run(
        [python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
         "-d", "/opt/python", str(site)],
        check=True,
    )  # fmt: skip
    return True


def _version_of(python: str) -> str:
    try:
        done = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    except OSError as exc:
        return f"cannot run: {exc.strerror}"
    said = done.stderr.strip().splitlines()
    return done.stdout.strip() or "cannot run" + (f": {said[0]}" if said else "")


def build(out_dir: Path, python_version: str, arch: str, local: bool,
          python: Optional[str] = None) -> Path:  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        site = root / "python"
        wheels = root / "wheels"
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
             "-w", str(wheels), str(REPO)],
            check=True,
        )  # fmt: skip
        (wheel,) = wheels.glob("vlhook-*.whl")
        pip("--no-deps", "--target", str(site), str(wheel))
        platform = [] if local else [
            "--platform", f"manylinux2014_{'aarch64' if arch == 'arm64' else 'x86_64'}",
            "--implementation", "cp", "--python-version", python_version, "--only-binary=:all:",
        ]  # fmt: skip
        pip("--no-deps", "--target", str(site), *platform, "orjson")
        for junk in site.glob("*.dist-info"):
            shutil.rmtree(junk)
        shutil.rmtree(site / "bin", ignore_errors=True)
        compile_for(site, python_version, interpreter_for(python_version, python))
        (root / "vlhook-wrapper").write_text(WRAPPER)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"vlhook-layer-{version()}.zip"
        _zip(root, target, [site, root / "vlhook-wrapper"])
    return target


def _zip(root: Path, target: Path, paths: list[Path]) -> None:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in paths:
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for file in files:
                info = zipfile.ZipInfo(str(file.relative_to(root)), date_time=(2020, 1, 1, 0, 0, 0))
                executable = file.name == "vlhook-wrapper"
                info.external_attr = (0o755 if executable else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, file.read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--arch", choices=("x86_64", "arm64"), default="x86_64")
    parser.add_argument("--local", action="store_true", help="for this interpreter's platform")
    parser.add_argument(
        "--python",
        help="an interpreter of --python-version, to compile the "
        "layer's modules with (default: this one, or pythonX.Y on PATH)",
    )
    parser.add_argument("--out", default=str(REPO / "dist"))
    args = parser.parse_args()
    version = THIS_PYTHON if args.local else args.python_version
    target = build(Path(args.out), version, args.arch, args.local, args.python)
    print(f"built {target} ({os.path.getsize(target) // 1024} KiB)")


if __name__ == "__main__":
    main()
