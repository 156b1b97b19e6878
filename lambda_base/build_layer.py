"""Build the AWS Lambda layer: dist/vlhook-layer-<version>.zip.

Layout (unpacked by Lambda under /opt):
  python/vlhook/...        the package (with the drop-in in vlhook/_dropin)
  python/vlhook.pth        activates vlhook when the runtime adds /opt/python with site.addsitedir
  python/orjson/...        the encoder, built for the target Python and architecture
  vlhook-wrapper           for AWS_LAMBDA_EXEC_WRAPPER, when the function sets PYTHONPATH (the
                           managed runtime then skips /opt/python, and with it the .pth)

Usage: python lambda_base/build_layer.py [--python-version 3.12] [--arch x86_64|arm64] [--local]
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

REPO = Path(__file__).resolve().parents[1]
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
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)


def build(out_dir: Path, python_version: str, arch: str, local: bool) -> Path:
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
                if "__pycache__" in file.parts:
                    continue
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
    parser.add_argument("--out", default=str(REPO / "dist"))
    args = parser.parse_args()
    target = build(Path(args.out), args.python_version, args.arch, args.local)
    print(f"built {target} ({os.path.getsize(target) // 1024} KiB)")


if __name__ == "__main__":
    main()
