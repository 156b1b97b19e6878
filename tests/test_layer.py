"""The Lambda layer zip, unpacked and run the way the managed runtime runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, base_env
from lambda_runtime import RuntimeApi

pytest.importorskip("awslambdaric")

BUILDER = REPO / "lambda_base" / "build_layer.py"

# What /var/runtime/bootstrap.py does in the managed Python runtimes: the layer's python/ joins
# the path through site.addsitedir *after* start-up (so a sitecustomize there never runs, a .pth
# does), and not at all when the function sets PYTHONPATH. awslambdaric is imported first here,
# the harder case for vlhook's hook.
BOOTSTRAP = """
import os, site, sys
import awslambdaric.lambda_runtime_client
sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
if "PYTHONPATH" not in os.environ:
    site.addsitedir(os.path.join(os.environ["TEST_OPT"], "python"))
from awslambdaric.__main__ import main
main(["bootstrap", os.environ["_HANDLER"]])
"""


@pytest.fixture(scope="module")
def opt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("layer")
    subprocess.run(
        [sys.executable, str(BUILDER), "--local", "--out", str(out)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (layer,) = out.glob("vlhook-layer-*.zip")
    opt = out / "opt"
    with zipfile.ZipFile(layer) as archive:
        archive.extractall(opt)
        for info in archive.infolist():  # extractall drops permission bits
            os.chmod(opt / info.filename, (info.external_attr >> 16) & 0o777 or 0o644)
    return opt


def _run(opt: Path, api: RuntimeApi, sink: Any, tmp: Path, wrapped: bool, pythonpath: str) -> Any:
    bootstrap = tmp / "bootstrap.py"
    bootstrap.write_text(BOOTSTRAP)
    env = base_env()
    env.update(
        AWS_LAMBDA_RUNTIME_API=api.address, AWS_LAMBDA_FUNCTION_NAME="orders",
        LAMBDA_TASK_ROOT=str(REPO / "examples" / "lambda"), _HANDLER="handler.handler",
        TEST_OPT=str(opt), **sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="600000"),
    )  # fmt: skip
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    argv = [sys.executable, str(bootstrap)]
    if wrapped:
        argv = [str(opt / "vlhook-wrapper"), *argv]
    return subprocess.run(argv, env=env, capture_output=True, timeout=90, cwd=str(tmp))


def test_layer_layout(opt: Path) -> None:
    assert (opt / "python" / "vlhook.pth").is_file()
    assert (opt / "python" / "vlhook" / "_dropin" / "sitecustomize.py").is_file()
    assert (opt / "python" / "orjson").is_dir()
    assert os.access(opt / "vlhook-wrapper", os.X_OK)


@pytest.mark.parametrize(
    ("wrapped", "pythonpath"),
    [(False, ""), (True, ""), (True, "/nonexistent/function/libs")],
    ids=["pth", "wrapper", "wrapper_with_function_pythonpath"],
)
def test_layer_activates_under_the_managed_bootstrap(
    opt: Path, sink: Any, tmp_path: Path, wrapped: bool, pythonpath: str
) -> None:
    with RuntimeApi() as api:
        first = api.add({"name": "layer"})
        second = api.add({"name": "again"})
        result = _run(opt, api, sink, tmp_path, wrapped, pythonpath)
    assert first.response and second.response, result.stderr.decode()
    rows = sink.settle(2)
    for invocation in (first, second):
        mine = [r["_msg"] for r in rows if r.get("aws_request_id") == invocation.request_id]
        assert f"hello {invocation.event['name']}" in mine
        assert mine.count("processing order") == 1
    # orjson from the layer was importable, and vlhook came from the layer, not from elsewhere
    assert b"internal error" not in result.stderr


def test_function_pythonpath_without_wrapper_is_not_captured(
    opt: Path, sink: Any, tmp_path: Path
) -> None:
    """Documented limit: with PYTHONPATH set, the runtime skips /opt/python and its .pth."""
    with RuntimeApi() as api:
        only = api.add({"name": "skipped"})
        _run(opt, api, sink, tmp_path, wrapped=False, pythonpath="/nonexistent")
    assert only.response
    assert sink.entries(0, timeout=0) == []


def test_layer_carries_bytecode_for_its_python(opt: Path) -> None:
    """Lambda's /opt is read-only: bytecode the layer does not carry is compiled again at every
    cold start. Unchecked hash-based pycs: the zip keeps no modification times to check."""
    sources = sorted((opt / "python").rglob("*.py"))
    assert len(sources) > 40
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"
        header = pyc.read_bytes()[:8]
        assert header[4:8] == (1).to_bytes(4, "little"), pyc  # hash-based, source unchecked
    assert not [p for p in (opt / "python").rglob("*.pyc") if p.parent.name != "__pycache__"]


def test_layer_loads_without_compiling(opt: Path, sink: Any, tmp_path: Path) -> None:
    """With nothing written, as on Lambda, neither start-up nor the first delivery compiles a
    module of vlhook's: `python -v` says each one's code came from the layer's pycs."""
    env = base_env()
    env.update(sink.env(), PYTHONDONTWRITEBYTECODE="1", PYTHONVERBOSE="1")
    env.pop("PYTHONPYCACHEPREFIX", None)
    code = f"import site; site.addsitedir({str(opt / 'python')!r}); print('from the layer')"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            timeout=60, cwd=str(tmp_path))  # fmt: skip
    said = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0, said[-2000:]
    compiled = re.findall(r"^# code object from (\S+\.py)$", said, re.M)
    loaded = re.findall(r"^# code object from '(\S+\.pyc)'$", said, re.M)
    assert [path for path in compiled if "vlhook" in path] == []
    ours = {Path(path).name.split(".")[0] for path in loaded if str(opt) in path}
    assert {"_activation", "_capture_streams", "_sender", "_entry", "client"} <= ours
    assert "from the layer" in [row["_msg"] for row in sink.settle(1)]


def test_a_layer_for_a_python_not_at_hand_is_built_without_bytecode_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pycs of another Python version would never load: none are made, and the build says
    what that costs and how to give it the interpreter."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_layer", BUILDER)
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    (tmp_path / "mod.py").write_text("x = 1\n")
    assert not builder.compile_for(tmp_path, "3.99", builder.interpreter_for("3.99", None))
    assert not builder.compile_for(tmp_path, "3.99", sys.executable)  # not that version
    assert list(tmp_path.rglob("*.pyc")) == []
    said = capsys.readouterr().err
    assert said.count("no Python 3.99 to compile the layer's modules with") == 2
    assert "every cold start compiles vlhook again. Pass --python" in said
    assert builder.compile_for(tmp_path, builder.THIS_PYTHON, sys.executable)
    assert [p.name for p in tmp_path.rglob("*.pyc")] == [f"mod.{sys.implementation.cache_tag}.pyc"]
