"""`vlhook check` and `vlhook spool`: plain answers to "is this set up right?"."""

from __future__ import annotations

import json
import os
import time
import uuid
from urllib.parse import urlencode

from vlhook import _diag
from vlhook._activation import unsaid
from vlhook._config import Config, Endpoint, load
from vlhook._delivery.client import urls_mistake
from vlhook._delivery.transport import HttpTransport, make_transport
from vlhook._levels import level_name
from vlhook._stats import Stats
from vlhook.cli._diagnose import shadowing_warnings, why_inactive


def _say(text: str) -> None:
    print(_diag.scrub(text), flush=True)


def check(timeout: float = 5.0) -> int:
    config = load()
    _diag.protect(config)
    shadowing = shadowing_warnings(os.environ.get("PYTHONPATH", ""))
    for warning in (*unsaid(config.warnings), *shadowing):
        _say(f"warning: {warning}")
    if not config.active:
        _say(f"not active: {why_inactive(os.environ)}")
        return 2
    capture = ",".join(sorted(config.capture))
    _say(
        f"container_name={config.container_name} job={config.job} "
        f"level>={level_name(config.level)} "
        f"capture={capture} compression={config.compression}"
    )
    if not _check_pipeline(config):
        return 1
    failures = [e.display for e in config.endpoints if not _check_endpoint(e, config, timeout)]
    if failures:
        _say(f"FAILED: {', '.join(failures)}")
        return 1
    _say("OK")
    return 0


def _check_pipeline(config: Config) -> bool:
    """What the sender loads before it sends anything: a package copied incompletely, or built
    for another Python, fails here, not at the first line a program prints."""
    from vlhook._sender import Sender

    try:
        Sender(config, Stats()).load_pipeline()
    except Exception as exc:
        _say(
            f"FAILED: vlhook cannot load what it sends with ({type(exc).__name__}: {exc}); "
            "nothing would be sent. Reinstall vlhook for this Python, or rebuild the layer"
        )
        return False
    return True


def _check_endpoint(endpoint: Endpoint, config: Config, timeout: float) -> bool:
    _say(f"endpoint {endpoint.display}")
    probe_id = uuid.uuid4().hex
    entry = {"_msg": f"vlhook check probe {probe_id}", "level": "INFO", "stream": "vlhook",
             "container_name": config.container_name, "job": config.job}  # fmt: skip
    transport = make_transport(endpoint, config)
    body = json.dumps(entry).encode() + b"\n"
    # Compressed as a batch is (a body this small would otherwise go as it is): a proxy that
    # mangles gzip is found here, not by the first real batch.
    result = transport.post(transport.wire(body, min_bytes=0), time.monotonic() + timeout)
    transport.close()
    if not result.ok:
        _say(f"  probe refused: {result.message or result.status}")
        mistake = urls_mistake(result)
        if mistake is not None:
            _say(f"  {mistake}")
        return False
    _say(f"  probe accepted ({'HTTP ' + str(result.status) if result.status else 'written'})")
    if isinstance(transport, HttpTransport):
        _read_back(endpoint, config, probe_id, timeout)
    return True


def _read_back(endpoint: Endpoint, config: Config, probe_id: str, timeout: float) -> None:
    # Through the CLI's requests: the same headers, TLS settings (a CA bundle or
    # VICTORIALOGS_TLS_VERIFY=0) and redirect rules as shipping, so that no redirect takes the
    # credentials to another host or over plain http.
    _get(endpoint, config, "/internal/force_flush", timeout)
    query = urlencode({"query": f'"{probe_id}"', "limit": "1"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = _get(endpoint, config, f"/select/logsql/query?{query}", timeout)
        if status == 200 and probe_id in body:
            _say("  probe read back: stored and searchable")
            return
        if status != 200:
            why = f"HTTP {status}" if status else body
            _say(f"  read-back not available here ({why}); the server accepted the probe")
            return
        time.sleep(0.5)
    _say("  probe not found by a query yet (rows become searchable ~1 s after ingestion)")


def _get(endpoint: Endpoint, config: Config, path: str, timeout: float) -> tuple[int, str]:
    """(HTTP status, body) of a GET of `path` under the endpoint; (0, why) when no answer came
    or a redirect was not followed."""
    from http.client import HTTPException

    from vlhook.cli._select import SelectError, exchange

    try:
        conn, response, _ = exchange(endpoint, config, "GET", endpoint.base_path + path, None,
                                     timeout)  # fmt: skip
    except SelectError as exc:
        return 0, str(exc)
    try:
        return int(response.status), response.read(65536).decode("utf-8", "replace")
    except (OSError, HTTPException) as exc:
        return 0, f"no answer: {type(exc).__name__}: {exc}"
    finally:
        conn.close()


def spool_command(action: str) -> int:
    """status, replay or purge, with the checks every process applies: a directory or file
    that is not safe to use is refused, said, and not touched."""
    from vlhook._delivery.private import Refused, open_private_dir
    from vlhook._delivery.spool import Spool

    config = load()
    _diag.protect(config)
    directory = config.spool_dir
    if not directory:
        _say("spool is off (VICTORIALOGS_SPOOL_DIR=off)")
        return 0
    try:
        open_private_dir(directory, create=False).close()
    except FileNotFoundError:
        _say(f"spool {directory}: no files (the directory does not exist yet)")
        return 0
    except Refused as exc:
        _say(f"spool {directory} refused: {exc}; nothing in it is read, sent or removed")
        return 1
    stats = Stats()
    spool = Spool(directory, config.spool_max_bytes, stats)
    files = spool.files()
    if action == "purge":
        _say(f"removed {spool.purge()} files from {directory}")
        code = 0
    elif action == "replay":
        code = _replay(config, stats)
    else:
        total = sum(f.size for f in files)
        _say(f"spool {directory}: {len(files)} files, {total} bytes")
        if files:
            _say(f"oldest: {files[0].name} ({time.time() - files[0].mtime:.0f} s old)")
        code = 0
    if spool.refused:
        _say(f"left alone: {len(spool.refused)} files that are not this user's own regular "
             "files (each named in a warning)")  # fmt: skip
        code = code or 1
    return code


def _replay(config: Config, stats: Stats) -> int:
    from vlhook._delivery.replay import replay_now

    if not config.active:
        for warning in unsaid(config.warnings):
            _say(f"warning: {warning}")
        _say(f"cannot replay: {why_inactive(os.environ)}")
        return 2
    left, problem = replay_now(config, stats, timeout=config.timeout_ms / 1000)
    rejected = stats.replay_rejected
    _say(
        f"replayed {stats.replayed} entries"
        + (f", {rejected} rejected" if rejected else "")
        + f"; {left} files left in {config.spool_dir}"
    )
    if problem:
        _say(f"stopped: {problem}")
    return 0 if left == 0 else 1


__all__ = ["check", "spool_command"]
