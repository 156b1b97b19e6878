"""Raw captures: lines the exit writes to the spool as text (`.captures`) when there is no time
to make entries, made into entries when replayed. Redacted before they reach the disk, and
made into entries with the redaction of the process that wrote them, whatever the replaying
process's own."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import SRC, base_env, run_python

SSN = "123-45-6789"
TOKEN = "abcdefghijklmnop"  # each line's bearer token begins so
CARD = "4111111111111111"
PASSWORD = "hunter2x"  # each line's password begins so
# More lines than the exit can make into entries in its 100 ms: the rest go raw. Plain lines
# with a secret for a pattern (one of the user's, one built in); printed JSON objects with
# secrets only a field's name tells (a built-in name, one of VICTORIALOGS_REDACT_KEYS). The
# loop keeps the interpreter lock (a switch interval longer than the run): on a busy machine
# the sender, let in every 5 ms, had once made every entry before the exit, and none went raw.
BURST = f"""
import json, sys
sys.setswitchinterval(30)
for i in range(75_000):
    print(f"line {{i}} ssn={SSN} Bearer {TOKEN}{{i}}")
    print(json.dumps({{"msg": f"order {{i}}", "card": "{CARD}", "password": f"{PASSWORD}{{i}}"}}))
"""
WRITER = {
    "VICTORIALOGS_EXIT_TIMEOUT_MS": "100",
    "VICTORIALOGS_BUFFER_BYTES": str(1 << 30),  # all of it waits for the exit
    "VICTORIALOGS_REDACT": r"ssn=\d{3}-\d{2}-\d{4}",
    "VICTORIALOGS_REDACT_KEYS": "card",
}


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _replay(spool: Path, out: Path, **env: str) -> str:
    """`vlhook spool replay` by a process of other settings, into a file:// output."""
    result = subprocess.run(
        [sys.executable, "-m", "vlhook", "spool", "replay"],
        env={**base_env(), "PYTHONPATH": str(SRC), "VICTORIALOGS_URL": f"file://{out}",
             "VICTORIALOGS_SPOOL_DIR": str(spool), **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_raw_lines_are_redacted_on_disk_and_when_replayed_without_redaction(
    script: Any, tmp_path: Path
) -> None:
    """The writer's patterns apply to each raw line before it is written (no spool file holds
    what they match); the names, which apply only to an entry's fields, apply when a replay
    makes the entries, even in a process with VICTORIALOGS_REDACT=off: the file's header
    says what the writer's redaction was. Before, the raw text went to disk as printed, and
    such a replay sent the SSN, the token, the card number and the passwords."""
    spool = tmp_path / "spool"
    run = run_python(script(BURST), {"VICTORIALOGS_URL": f"http://127.0.0.1:{_unused_port()}",
                                     "VICTORIALOGS_SPOOL_DIR": str(spool), **WRITER})  # fmt: skip
    assert run.rc == 0, run.err
    (captures,) = spool.glob("*.captures")  # the exit had no time: it wrote raw lines
    # How many depends on how far behind the sender was when the exit came: 6,600 to
    # 12,500 rows in most runs, 257 in one.
    assert captures.read_text().count("\n") > 100
    for path in spool.iterdir():
        data = path.read_text()
        assert SSN not in data and TOKEN not in data, path.name
    header = json.loads(captures.read_text().split("\n", 1)[0])
    assert header["vlhook-redaction"] == {"on": True, "patterns": [WRITER["VICTORIALOGS_REDACT"]],
                                          "keys": ["card"]}  # fmt: skip

    out = tmp_path / "out.jsonl"
    said = _replay(spool, out, VICTORIALOGS_REDACT="off")
    entries = [json.loads(line) for line in out.read_text().splitlines()]
    assert f"replayed {len(entries)} entries" in said
    sent = out.read_text()
    for secret in (SSN, TOKEN, CARD, PASSWORD):
        assert secret not in sent, secret
    orders = [e for e in entries if e["_msg"].startswith("order")]
    assert orders and all(e["card"] == e["password"] == "[REDACTED]" for e in orders)
    lines = [e["_msg"] for e in entries if e["_msg"].startswith("line")]
    assert lines and all(m.endswith(" [REDACTED] Bearer [REDACTED]") for m in lines)


def test_a_captures_file_of_an_earlier_version_is_replayed_as_before(tmp_path: Path) -> None:
    """No redaction in its header: its entries are made with the replaying process's own."""
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    header = {"vlhook-captures": {"job": "old", "pid": 7}}
    t_ns = 1_700_000_000_000_000_000
    rows = [[0, t_ns, f"Bearer {TOKEN}1 ssn={SSN}", "", None],
            [1, t_ns + 1, 'two\n{"card": "4111", "x": 1}\n', "", None]]  # fmt: skip
    name = spool / "01700000000000000000-7-captures.captures"
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write("".join(json.dumps(x, separators=(",", ":")) + "\n" for x in [header, *rows]))
    out = tmp_path / "out.jsonl"
    _replay(spool, out, VICTORIALOGS_REDACT_KEYS="card")
    entries = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["_msg"], e["stream"], e["job"]) for e in entries] == [
        ("Bearer [REDACTED] ssn=123-45-6789", "stdout", "old"),
        ("two", "stderr", "old"),
        ('{"card":"[REDACTED]","x":1}', "stderr", "old"),
    ]
    assert entries[2]["card"] == "[REDACTED]" and entries[2]["x"] == 1
    assert not list(spool.iterdir())


def test_a_contexts_numbers_json_cannot_carry_are_kept_as_text_without_redaction(
    tmp_path: Path,
) -> None:
    """Bound fields holding NaN, an infinity or an integer past 64 bits, in a raw line of a
    process with VICTORIALOGS_REDACT=off: the line is kept (the encoder refused the integer,
    and the line's write with it) and replayed with the values as text, nested ones too."""
    from vlhook._config import load
    from vlhook._delivery.replay import CaptureFile
    from vlhook._delivery.spool import Spool
    from vlhook._stats import Stats

    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    config = load({"VICTORIALOGS_URL": f"http://127.0.0.1:{_unused_port()}",
                   "VICTORIALOGS_SPOOL_DIR": str(spool), "VICTORIALOGS_REDACT": "off"})  # fmt: skip
    file = CaptureFile(Spool(str(spool), 1 << 20, Stats()), {"job": "raw", "pid": 7}, config)
    context = {"score": float("nan"), "id": 2**70, "deep": {"up": float("inf"), "n": [2**65]}}
    assert file.write([(0, 1_700_000_000_000_000_000, "bound line\n", "", context)]) == ""
    file.close()
    out = tmp_path / "out.jsonl"
    _replay(spool, out)
    (entry,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (entry["_msg"], entry["job"], entry["score"], entry["id"], entry["deep"]) == (
        "bound line", "raw", "NaN", str(2**70), {"up": "Infinity", "n": [str(2**65)]})  # fmt: skip


KEY_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7KEYBODYabcdefghij"
# A private key printed in one write, at interpreter teardown (an object's `__del__`), where
# the exit used the spool (the server down): the write goes to the spool raw.
KEY_AT_TEARDOWN = f"""
class Late:
    def __del__(self):
        print("-----BEGIN PRIVATE KEY-----\\n{KEY_BODY}\\n-----END PRIVATE KEY-----")
late = Late()
print("hello")
"""


def test_a_private_key_written_raw_is_redacted_whole_on_disk_and_when_replayed(
    script: Any, tmp_path: Path
) -> None:
    """A raw text was redacted line by line: a key's lines, apart, match no pattern, and the
    key's body went to disk as printed, and to the server at the replay."""
    spool = tmp_path / "spool"
    env = {"VICTORIALOGS_URL": f"http://127.0.0.1:{_unused_port()}",
           "VICTORIALOGS_SPOOL_DIR": str(spool), "VICTORIALOGS_EXIT_TIMEOUT_MS": "200"}  # fmt: skip
    run = run_python(script(KEY_AT_TEARDOWN), env)
    assert run.out.endswith(f"{KEY_BODY}\n-----END PRIVATE KEY-----\n"), run.err
    assert list(spool.glob("*.captures")), sorted(p.name for p in spool.iterdir())
    for path in spool.iterdir():
        assert KEY_BODY not in path.read_text(), path.name
    out = tmp_path / "out.jsonl"
    _replay(spool, out)
    sent = out.read_text()
    assert "hello" in sent and KEY_BODY not in sent
