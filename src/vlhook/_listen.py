"""`vlhook listen`: a local stand-in for VictoriaLogs' ``POST /insert/jsonline``.

It is the CI receiver and a debugging tap, not a database: rows live in memory per tenant. It
reproduces the server behaviours a client can trip over (silent 200s, lost lines, dropped rows),
as written down in the project's VictoriaLogs contract, so client bugs fail tests here first.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import hashlib
import importlib
import json
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Callable, TextIO, cast
from urllib.parse import SplitResult, parse_qs, urlsplit

MAX_LINE = 262_143
MAX_FIELDS = 1_000
MAX_KEY = 128
MAX_ROW_BYTES = 2 * 1024 * 1024
DAY_NS = 86_400 * 10**9
RETENTION_NS = 7 * DAY_NS
MISSING_MSG = "missing _msg field; see https://docs.victoriametrics.com/victorialogs/keyconcepts/#message-field"
STAT_KEYS = (
    "requests", "rows_stored", "bad_json", "too_long", "lost_after_too_long", "too_many_fields",
    "out_of_retention", "bad_time", "form_content_type", "unknown_encoding", "too_large", "debug",
    "evicted",
)  # fmt: skip
_KNOWN_ENCODINGS = {"", "identity", "none", "gzip", "deflate", "zstd", "snappy"}
_OPTIONAL_MODULES = {"zstd": "zstandard", "snappy": "snappy"}
_PROBES = {"/health": (200, "OK"), "/insert/ready": (200, "OK"), "/ping": (204, "")}
_PROBES["/internal/force_flush"] = (200, "")
_GO_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_GO_FALSE = {"", "0", "f", "F", "false", "FALSE", "False"}
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", re.ASCII
)
_NUMERIC = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_UINT = re.compile(r"\d{1,10}", re.ASCII)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_TEXT = "text/plain; charset=utf-8"
_Reply = tuple[int, bytes, str]  # status, body, content type


class BadRequest(Exception):
    """Answered with 400 and this message, as the server does for bad parameters."""


class _BadTime(ValueError):
    pass


class _Num(str):
    """A JSON number kept as its literal text, as the server stores it."""


@dataclass
class RequestInfo:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    content_encoding: str
    status: int = 0
    lines_stored: int = 0
    body_bytes: int = 0
    received: float = 0.0  # time.monotonic() on arrival, for ordering checks


@dataclass
class _Params:
    msg_fields: list[str]
    time_fields: list[str]
    stream_fields: list[str]
    ignore: list[str]
    decolorize: list[str]
    extra: dict[str, str]
    debug: bool
    tenant: tuple[int, int] = (0, 0)


def _parse_params(query: str, header: Callable[[str], str]) -> _Params:
    args = parse_qs(query, keep_blank_values=True)

    def get(arg: str, name: str) -> str:
        return args.get(arg, [""])[0] or header(name)

    def names(arg: str, name: str) -> list[str]:
        return [n for n in get(arg, name).split(",") if n]

    debug = get("debug", "VL-Debug")
    if debug not in _GO_TRUE | _GO_FALSE:
        raise BadRequest(f"cannot parse debug={debug!r} as a bool")
    return _Params(
        msg_fields=names("_msg_field", "VL-Msg-Field"),
        time_fields=names("_time_field", "VL-Time-Field") or ["_time"],
        stream_fields=names("_stream_fields", "VL-Stream-Fields"),
        ignore=names("ignore_fields", "VL-Ignore-Fields"),
        decolorize=names("decolorize_fields", "VL-Decolorize-Fields"),
        extra=_parse_extra(names("extra_fields", "VL-Extra-Fields")),
        debug=debug in _GO_TRUE,
        tenant=(_tenant_id(header, "AccountID"), _tenant_id(header, "ProjectID")),
    )


def _parse_extra(items: list[str]) -> dict[str, str]:
    extra: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key or not value:
            raise BadRequest(f"cannot parse extra_fields item {item!r}: want name=value")
        extra[key] = value
    return extra


def _tenant_id(header: Callable[[str], str], name: str) -> int:
    raw = header(name)
    if not raw:
        return 0
    if not _UINT.fullmatch(raw) or int(raw) > 0xFFFFFFFF:
        raise BadRequest(f"cannot parse {name}={raw!r}: want a uint32")
    return int(raw)


def _decode(encoding: str, body: bytes) -> tuple[bytes, str]:
    """The decoded body and, if the stream broke midway, why (what came before it is kept)."""
    if encoding in ("gzip", "deflate"):
        return _inflate(body, 31 if encoding == "gzip" else 15, encoding == "gzip")
    if encoding in _OPTIONAL_MODULES:
        return _optional_decode(encoding, body), ""
    return body, ""


def _inflate(body: bytes, wbits: int, multi_member: bool) -> tuple[bytes, str]:
    out: list[bytes] = []
    rest = body
    try:
        while rest:
            decomp = zlib.decompressobj(wbits)
            out.append(decomp.decompress(rest))
            if not decomp.eof:
                return b"".join(out), "cannot decompress body: unexpected EOF (truncated)"
            rest = decomp.unused_data if multi_member else b""
    except zlib.error as exc:
        return b"".join(out), f"cannot decompress body: {exc}"
    return b"".join(out), ""


def _optional_decode(encoding: str, body: bytes) -> bytes:
    name = _OPTIONAL_MODULES[encoding]
    try:
        module: Any = importlib.import_module(name)
    except ImportError:
        raise BadRequest(
            f"vlhook listen cannot decode Content-Encoding {encoding}: "
            f"the optional Python module {name!r} is not installed"
        ) from None
    if encoding == "zstd":
        return bytes(module.ZstdDecompressor().decompressobj().decompress(body))
    return bytes(module.uncompress(body))


def _split_lines(data: bytes, counts: Counter[str]) -> Iterator[bytes]:
    lines = data.split(b"\n")
    for index, raw in enumerate(lines):
        if len(raw) > MAX_LINE:
            # The server bug: the rest of the chunk goes with the too-long line.
            counts["too_long"] += 1
            counts["lost_after_too_long"] += sum(
                1 for rest in lines[index + 1 :] if rest.strip(b"\r")
            )
            return
        line = raw.rstrip(b"\r")
        if line:
            yield line


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _parse_line(raw: bytes, p: _Params, now: int) -> tuple[int, dict[str, str], bool]:
    """(time in ns, flattened fields, verbatim); raises ValueError for a rejected line."""
    text = raw.decode("utf-8", "replace")
    obj = json.loads(text, parse_int=_Num, parse_float=_Num, parse_constant=_no_constant)
    if not isinstance(obj, dict):
        raise ValueError(f"{text[:80]!r} is not a JSON object")
    fields: dict[str, str] = {}
    if not _flatten(obj, "", fields):
        return now, {"_msg": text}, True
    if "\\u" in text:  # only a \u escape can leave a lone surrogate, which is stored as U+FFFD
        fields = {
            _SURROGATE.sub("\ufffd", k): _SURROGATE.sub("\ufffd", v) for k, v in fields.items()
        }
    stamp = next((fields.pop(k) for k in p.time_fields if k in fields), "")
    return _parse_time(stamp, now), fields, False


def _flatten(obj: dict[str, Any], prefix: str, out: dict[str, str]) -> bool:
    """Flattens to dotted keys; False when a key path is over MAX_KEY bytes."""
    for key, value in obj.items():
        path = prefix + key
        if len(path.encode("utf-8", "surrogatepass")) > MAX_KEY:
            return False
        if isinstance(value, dict):
            inner: dict[str, str] = {}
            if _flatten(value, path + ".", inner):
                out.update(inner)
            else:  # the server keeps an object with an over-long key path as text
                out[path] = _to_json(value)
        elif isinstance(value, bool):
            out[path] = "true" if value else "false"
        elif isinstance(value, list):
            out[path] = _to_json(value)
        elif value is not None:
            out[path] = str(value)
    return True


def _to_json(value: Any) -> str:
    if isinstance(value, _Num):
        return str(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(k, ensure_ascii=False)}:{_to_json(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(_to_json, value)) + "]"
    return json.dumps(value, ensure_ascii=False)


def _parse_time(stamp: str, now: int) -> int:
    if stamp in ("", "0", "-"):
        return now
    match = _RFC3339.fullmatch(stamp)
    if match:
        year, month, day, hour, minute, sec = (int(g) for g in match.groups()[:6])
        try:
            datetime(year, month, day, hour, minute, sec)
        except ValueError:
            raise _BadTime(f"cannot parse timestamp {stamp!r}: no such date") from None
        secs = calendar.timegm((year, month, day, hour, minute, sec, 0, 0, 0))
        zone = match.group(8)
        if zone != "Z":
            offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
            secs += -offset if zone[0] == "+" else offset
        return secs * 10**9 + int((match.group(7) or "").ljust(9, "0"))
    if _NUMERIC.fullmatch(stamp) and Decimal(stamp).adjusted() < 30:
        value = Decimal(stamp)
        # The unit is guessed from the magnitude, as the server does.
        for limit, scale in ((2**31, 10**9), (1000 * 2**31, 10**6), (10**6 * 2**31, 10**3)):
            if abs(value) < limit:
                return int(value * scale)
        return int(value)
    raise _BadTime(f"cannot parse timestamp {stamp!r}: want RFC 3339 or a unix timestamp")


def _format_time(t_ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_ns // 10**9)) + f".{t_ns % 10**9:09d}Z"


def _matches(name: str, patterns: list[str]) -> bool:
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)


def _apply_params(fields: dict[str, str], p: _Params) -> dict[str, str]:
    for name in p.msg_fields:
        if fields.get(name):
            fields["_msg"] = fields.pop(name)
            break
    if p.ignore:
        fields = {k: v for k, v in fields.items() if not _matches(k, p.ignore)}
    for key, value in fields.items() if p.decolorize else ():
        if _matches(key, p.decolorize):
            fields[key] = _ANSI.sub("", value)
    fields.update(p.extra)
    return fields


def _build_row(t_ns: int, fields: dict[str, str], verbatim: bool, p: _Params) -> dict[str, str]:
    fields = {k: v for k, v in fields.items() if v}
    if not verbatim:
        fields = _apply_params(fields, p)
    fields.pop("_stream", None)
    fields.pop("_stream_id", None)
    if not fields.get("_msg"):
        fields["_msg"] = MISSING_MSG
    keys = [k for k in sorted(set(p.stream_fields)) if k in fields]
    stream = "{" + ",".join(f"{k}={json.dumps(fields[k], ensure_ascii=False)}" for k in keys) + "}"
    digest = hashlib.blake2b(stream.encode(), digest_size=12).hexdigest()
    row = {"_time": _format_time(t_ns), "_stream": stream}
    row["_stream_id"] = f"{p.tenant[0]:08x}{p.tenant[1]:08x}{digest}"
    row.update(fields)  # a literal `_time` sent with another _time_field hides the real time
    return row


class _Ingest:
    """One request body's outcome: the rows to store and what was skipped, by reason."""

    def __init__(self, params: _Params, now: int) -> None:
        self.params, self.now = params, now
        self.rows: list[tuple[int, dict[str, str]]] = []
        self.counts: Counter[str] = Counter()
        self.parsed = 0
        self.failed = 0
        self.last_error = ""

    def feed(self, data: bytes) -> None:
        for raw in _split_lines(data, self.counts):
            try:
                self._line(raw)
            except _BadTime as exc:
                self._fail("bad_time", exc)
            except Exception as exc:  # whatever a line does, the request goes on
                self._fail("bad_json", exc)

    def _fail(self, reason: str, exc: Exception) -> None:
        self.counts[reason] += 1
        self.failed += 1
        self.last_error = f"cannot parse JSON line: {exc}"

    def _line(self, raw: bytes) -> None:
        t_ns, fields, verbatim = _parse_line(raw, self.params, self.now)
        self.parsed += 1
        if len(fields) > MAX_FIELDS:
            self.counts["too_many_fields"] += 1
            return
        row = _build_row(t_ns, fields, verbatim, self.params)
        if t_ns < self.now - RETENTION_NS or t_ns >= (self.now // DAY_NS + 3) * DAY_NS:
            self.counts["out_of_retention"] += 1
        elif sum(len(k) + len(v) for k, v in row.items()) > MAX_ROW_BYTES:
            self.counts["too_large"] += 1
        else:
            self.rows.append((t_ns, row))


class Receiver:
    """Serves the VictoriaLogs insert API on a daemon thread and keeps rows per tenant.

    ``requests`` records every request but the ``/vlhook/*`` control endpoints; the
    ``requests`` stat counts those that reached ``/insert/jsonline``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        echo: TextIO | None = None,
        max_stored: int = 2_000_000,
    ) -> None:
        self.host, self.port, self.echo, self.max_stored = host, port, echo, max_stored
        self.requests: list[RequestInfo] = []
        self._cond = threading.Condition()
        self._rows: dict[tuple[int, int], deque[dict[str, str]]] = {}
        self._stats: Counter[str] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._echo_lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._server.server_address[1]}"

    def start(self) -> Receiver:
        self._server = _Server((self.host, self.port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="vlhook-listen", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        address = (str(server.server_address[0]), int(server.server_address[1]))
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        for _ in range(100):  # poke the accept loop awake rather than wait out its poll interval
            with contextlib.suppress(OSError):
                socket.create_connection(address, timeout=0.5).close()
            stopper.join(0.01)
            if not stopper.is_alive():
                break
        server.server_close()
        # Like a stopped server, break open keep-alive connections instead of serving them on.
        with self._cond:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def entries(self, account: int = 0, project: int = 0) -> list[dict[str, str]]:
        with self._cond:
            return list(self._rows.get((account, project), ()))

    def wait_for(
        self, count: int, timeout: float = 10.0, account: int = 0, project: int = 0
    ) -> list[dict[str, str]]:
        """Entries once at least `count` are stored, or whatever is there after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._rows.get((account, project), ())) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self._rows.get((account, project), ()))

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {key: self._stats[key] for key in STAT_KEYS}

    def clear(self) -> None:
        with self._cond:
            self._rows.clear()
            self._stats.clear()
            self.requests.clear()

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._cond:
            (self._connections.add if alive else self._connections.discard)(conn)

    def _route(self, method: str, target: str, headers: Message, body: bytes) -> _Reply:
        parts = urlsplit(target)
        if parts.path.startswith("/vlhook/"):
            try:
                return self._control(method, parts.path, parts.query)
            except Exception as exc:
                return 400, f"vlhook listen: {exc}".encode(), _TEXT
        info = RequestInfo(
            method, parts.path, parts.query, {k.lower(): v for k, v in headers.items()},
            headers.get("Content-Encoding", ""), body_bytes=len(body), received=time.monotonic(),
        )  # fmt: skip
        ingest: _Ingest | None = None
        try:
            status, text, ingest = self._dispatch(method, parts, headers, body)
        except BadRequest as exc:
            status, text = 400, str(exc)
        except Exception as exc:  # a bad request must never take the receiver down
            status, text = 400, f"vlhook listen: cannot process request: {exc!r}"
        info.status = status
        self._commit(info, ingest)
        return status, text.encode(), _TEXT

    def _dispatch(
        self, method: str, parts: SplitResult, headers: Message, body: bytes
    ) -> tuple[int, str, _Ingest | None]:
        if parts.path in _PROBES:
            return (*_PROBES[parts.path], None)
        if parts.path != "/insert/jsonline":
            raise BadRequest(f"unsupported path requested: {parts.path!r}")
        if method != "POST":
            return 405, f"unsupported method {method}; use POST", None
        params = _parse_params(parts.query, lambda name: str(headers.get(name, "")))
        ingest = _Ingest(params, time.time_ns())
        encoding = headers.get("Content-Encoding", "")
        if headers.get_content_type() == "application/x-www-form-urlencoded":
            ingest.counts["form_content_type"] += 1  # the server reads the body as a form
        elif encoding not in _KNOWN_ENCODINGS:
            ingest.counts["unknown_encoding"] += 1
        else:
            data, broken = _decode(encoding, body)
            if broken:  # the half line at the break is not a line
                data = data[: data.rfind(b"\n") + 1]
            ingest.feed(data)
            if broken or (ingest.failed and not ingest.parsed):
                return 400, broken or ingest.last_error, ingest
        return 200, "", ingest

    def _commit(self, info: RequestInfo, ingest: _Ingest | None) -> None:
        rows = [] if ingest is None or ingest.params.debug else ingest.rows
        with self._cond:
            if info.path == "/insert/jsonline":
                self._stats["requests"] += 1
            if ingest is not None:
                self._stats.update(ingest.counts)
                self._stats["debug"] += len(ingest.rows) - len(rows)
                self._store(ingest.params.tenant, [row for _, row in rows])
            info.lines_stored = len(rows)
            self.requests.append(info)
            self._cond.notify_all()
        if rows and self.echo is not None:
            self._echo([row for _, row in rows])

    def _store(self, tenant: tuple[int, int], rows: list[dict[str, str]]) -> None:
        stored = self._rows.setdefault(tenant, deque(maxlen=max(self.max_stored, 1)))
        self._stats["evicted"] += max(0, len(stored) + len(rows) - self.max_stored)
        stored.extend(rows)
        self._stats["rows_stored"] += len(rows)

    def _echo(self, rows: list[dict[str, str]]) -> None:
        assert self.echo is not None
        from vlhook.cli._format import format_entry, wants_colour

        colour = wants_colour(self.echo)
        text = "".join(format_entry(row, colour) + "\n" for row in rows)
        # A terminal that cannot show ⏎ (or the message) gets escapes instead of an error.
        encoding = getattr(self.echo, "encoding", None) or "utf-8"
        text = text.encode(encoding, "backslashreplace").decode(encoding, "replace")
        with self._echo_lock:
            try:
                self.echo.write(text)
                self.echo.flush()
            except (OSError, ValueError):  # a closed or broken pipe must not stop receiving
                pass

    def _control(self, method: str, path: str, query: str) -> _Reply:
        if path == "/vlhook/entries" and method == "GET":
            args = parse_qs(query)
            tenant = (int(args.get(name, ["0"])[0] or 0) for name in ("account", "project"))
            rows = self.entries(*tenant)
            text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            return 200, text.encode(), "application/stream+json"
        if path == "/vlhook/stats" and method == "GET":
            return 200, json.dumps(self.stats()).encode(), "application/json"
        if path == "/vlhook/clear" and method == "POST":
            self.clear()
            return 200, b"", _TEXT
        return 400, f"vlhook listen: no {method} {path}".encode(), _TEXT


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], receiver: Receiver) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.receiver = receiver
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer would resolve the host name here, which can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up mid-answer are expected, not worth a traceback


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vlhook-listen"
    timeout = 60  # VictoriaLogs drops keep-alive connections idle for a minute

    def setup(self) -> None:
        super().setup()
        # Headers and body are separate writes: no Nagle delay on top of what clients measure.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._receiver()._track(self.connection, True)

    def finish(self) -> None:
        self._receiver()._track(self.connection, False)
        super().finish()

    def _receiver(self) -> Receiver:
        return cast(_Server, self.server).receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        try:
            body = self._read_body()
        except Exception as exc:
            self.close_connection = True
            self._reply((400, f"cannot read request body: {exc}".encode(), _TEXT))
            return
        self._reply(self._receiver()._route(self.command, self.path, self.headers, body))

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError(f"negative Content-Length {length}")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"-", 16)
            if size <= 0:
                break
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)
        while self.rfile.readline(1024).strip():  # trailers
            pass
        return b"".join(parts)

    def _reply(self, reply: _Reply) -> None:
        status, body, content_type = reply
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status != 204:
            self.wfile.write(body)


def run(args: argparse.Namespace) -> int:
    echo = None if args.quiet else sys.stdout
    receiver = Receiver(args.host, args.port, echo=echo, max_stored=args.max_stored)
    try:
        receiver.start()
    except OSError as exc:
        print(f"vlhook listen: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(
        f"vlhook listen: receiving on {receiver.url}/insert/jsonline", file=sys.stderr, flush=True
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        receiver.stop()
    return 0
